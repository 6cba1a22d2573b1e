//! The filesystem backend: object `bucket/key` is the file `<root>/<bucket>/<key>`,
//! its metadata document is the `user.dg.metadata` extended attribute.
//!
//! Layout of a root:
//! - `<root>/<bucket>/...`   buckets are directories, objects are files, keys
//!   ending in `/` are directories carrying the metadata xattr;
//! - `<root>/.dg/tmp/`       objects being written (wiped at startup);
//! - `<root>/.dg/multipart/<upload-id>/` multipart uploads in progress.
//!
//! Publishing is atomic: the body and the xattr are written to a temp file in
//! `.dg/tmp` on the same filesystem, fsynced, renamed over the target, and the
//! target directory is fsynced. A reader that opened the old file keeps
//! reading the old inode; nobody ever sees a partial object.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use xattr::FileExt;

use super::backend::{Backend, Body, BucketEntry, Found, Loc, RawObject, StoredBody, WalkItem};
use super::keypath::{ObjectPath, object_path, valid_bucket_name};
use super::{Result, StorageError};

/// The xattr that holds an object's metadata document.
pub const META_XATTR: &str = "user.dg.metadata";
/// The xattr on a bucket directory that records when it was created.
pub const BUCKET_XATTR: &str = "user.dg.bucket";
/// The backend's internal area, hidden from buckets (a bucket name cannot start with '.').
pub const INTERNAL_DIR: &str = ".dg";
/// Largest xattr value ext4 holds in one attribute (measured: 4032 bytes with a 4 KiB block).
pub const MAX_XATTR_VALUE: usize = 4032;

/// A file being written in the internal temp area. Removed on drop unless published.
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("temp file open until published")
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    fn disarm(&mut self) {
        self.path = PathBuf::new();
    }
    /// Renames the temp file to `target` (same filesystem); on success it is
    /// no longer removed on drop.
    pub(super) fn rename_to(&mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.disarm();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[derive(Debug)]
pub struct FsBackend {
    root: PathBuf,
    tmp: PathBuf,
    pub(super) uploads: PathBuf,
}

pub(super) fn not_found_to(e: io::Error, err: StorageError) -> StorageError {
    if e.kind() == ErrorKind::NotFound {
        err
    } else {
        StorageError::Io(e)
    }
}

fn is_enotdir(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTDIR)
}

pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl FsBackend {
    /// Opens (creating if needed) a backend root: checks that the filesystem
    /// stores user xattrs and removes temp files a crash left behind.
    pub fn open(root: &Path) -> Result<Self> {
        let backend = Self::open_shared(root)?;
        backend.clean_tmp()?;
        Ok(backend)
    }

    /// Opens a backend root for an operator command that may run next to the
    /// server: the same checks, but temp files (in-flight uploads) are left alone.
    pub fn open_shared(root: &Path) -> Result<Self> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        let internal = root.join(INTERNAL_DIR);
        let tmp = internal.join("tmp");
        let uploads = internal.join("multipart");
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&uploads)?;
        let backend = FsBackend { root, tmp, uploads };
        backend.check_xattrs()?;
        Ok(backend)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Size and free space (for unprivileged users) of the root's filesystem, in bytes.
    pub fn disk_space(&self) -> Result<(u64, u64)> {
        let v = rustix::fs::statvfs(&self.root).map_err(io::Error::from)?;
        Ok((
            v.f_blocks.saturating_mul(v.f_frsize),
            v.f_bavail.saturating_mul(v.f_frsize),
        ))
    }

    /// The backend's internal directory, for other rooms' durable state (keys, jobs).
    pub fn internal_dir(&self) -> PathBuf {
        self.root.join(INTERNAL_DIR)
    }

    fn clean_tmp(&self) -> Result<()> {
        let mut removed = 0usize;
        for e in fs::read_dir(&self.tmp)? {
            let e = e?;
            if fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, root = %self.root.display(), "removed temp files left by an interrupted write");
        }
        Ok(())
    }

    fn check_xattrs(&self) -> Result<()> {
        let mut probe = self.temp_file()?;
        let value = b"{\"probe\":1}";
        let res = probe
            .file()
            .set_xattr(META_XATTR, value)
            .and_then(|_| probe.file().get_xattr(META_XATTR));
        match res {
            Ok(Some(v)) if v == value => Ok(()),
            Ok(_) => Err(StorageError::Io(io::Error::other(
                "user xattr read back differs",
            ))),
            Err(e) => Err(StorageError::Io(io::Error::new(
                e.kind(),
                format!(
                    "the filesystem under {} does not support user extended attributes ({e}); \
                     use ext4, xfs or btrfs, or mount with 'user_xattr'",
                    self.root.display()
                ),
            ))),
        }
    }

    // ---------------------------------------------------------------- buckets

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        debug_assert!(valid_bucket_name(bucket));
        self.root.join(bucket)
    }

    fn existing_bucket_dir(&self, bucket: &str) -> Result<PathBuf> {
        let dir = self.bucket_dir(bucket);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir),
            Ok(m) if m.file_type().is_symlink() => Err(symlink_met(dir)),
            Ok(_) => Err(StorageError::NoSuchBucket),
            Err(e) => Err(not_found_to(e, StorageError::NoSuchBucket)),
        }
    }

    pub fn has_bucket(&self, bucket: &str) -> bool {
        self.existing_bucket_dir(bucket).is_ok()
    }

    fn read_buckets(&self) -> Result<Vec<BucketEntry>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_bucket_name(&name) || !e.file_type()?.is_dir() {
                continue;
            }
            let created = read_created(&e.path()).or_else(|| e.metadata().ok()?.modified().ok());
            out.push(BucketEntry {
                name,
                created: created.unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn created(&self, bucket: &str) -> Result<SystemTime> {
        let dir = self.existing_bucket_dir(bucket)?;
        Ok(read_created(&dir).unwrap_or(fs::metadata(&dir)?.modified()?))
    }

    pub fn make_bucket(&self, bucket: &str) -> Result<()> {
        let dir = self.bucket_dir(bucket);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StorageError::BucketExists);
            }
            Err(e) => return Err(e.into()),
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        xattr::set(
            &dir,
            BUCKET_XATTR,
            format!("{{\"v\":1,\"created_ms\":{}}}", now.as_millis()).as_bytes(),
        )?;
        fsync_dir(&self.root)?;
        Ok(())
    }

    /// Deletes an empty bucket. Empty directories left inside it are removed
    /// with it; any object (file or directory object) makes it `BucketNotEmpty`.
    fn remove_bucket(&self, bucket: &str) -> Result<()> {
        let dir = self.existing_bucket_dir(bucket)?;
        let mut has_object = false;
        self.walk_bucket(bucket, "", "", false, &mut |_| {
            has_object = true;
            ControlFlow::Break(())
        })?;
        if has_object || self.has_uploads_for(bucket)? {
            return Err(StorageError::BucketNotEmpty);
        }
        fs::remove_dir_all(&dir)?;
        fsync_dir(&self.root)?;
        Ok(())
    }

    // ---------------------------------------------------------------- objects

    /// A new temp file in the internal area, on the same filesystem as the objects.
    pub fn temp_file(&self) -> Result<TempFile> {
        let path = self
            .tmp
            .join(format!("put-{}", uuid::Uuid::new_v4().simple()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// Where object `op` lives, checked to stay beneath the bucket directory:
    /// no existing component of the path (the object itself included) may be
    /// a symbolic link, so a link placed in the data directory never makes a
    /// GET read, a PUT write or a DELETE remove anything outside the root.
    fn object_fs_path(&self, bucket: &str, op: &ObjectPath) -> Result<PathBuf> {
        let dir = self.existing_bucket_dir(bucket)?;
        beneath(&dir, &op.rel)
    }

    /// Atomically makes `temp` the object `op`, with `meta` as its metadata document.
    pub fn publish_object(
        &self,
        bucket: &str,
        op: &ObjectPath,
        mut temp: TempFile,
        meta: &[u8],
    ) -> Result<()> {
        if meta.len() > MAX_XATTR_VALUE {
            return Err(StorageError::MetadataTooLarge(meta.len()));
        }
        let target = self.object_fs_path(bucket, op)?;
        if op.is_dir {
            if temp.file().metadata()?.len() != 0 {
                return Err(StorageError::NonEmptyDirectoryObject);
            }
            return self.publish_dir_object(bucket, &target, meta);
        }
        set_meta_fd(temp.file(), meta)?;
        temp.file().sync_all()?;
        let parent = target
            .parent()
            .expect("object path has a parent")
            .to_path_buf();
        // A concurrent delete may prune the parent directories we just made: retry.
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.make_parents(bucket, &parent)?;
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {
                    return Err(StorageError::KeyConflict("directory of the same name"));
                }
                _ => {}
            }
            match fs::rename(&temp.path, &target) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 5 => continue,
                Err(e)
                    if e.kind() == ErrorKind::IsADirectory
                        || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
                {
                    return Err(StorageError::KeyConflict("directory of the same name"));
                }
                Err(e) if is_enotdir(&e) => {
                    return Err(StorageError::KeyConflict(
                        "object that is a parent of this key",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        temp.disarm();
        fsync_dir(&parent)?;
        Ok(())
    }

    fn publish_dir_object(&self, bucket: &str, dir: &Path, meta: &[u8]) -> Result<()> {
        self.make_parents(bucket, dir)?;
        xattr::set(dir, META_XATTR, meta).map_err(map_xattr_err(meta.len()))?;
        fsync_dir(dir)?;
        Ok(())
    }

    /// `mkdir -p` below the bucket directory, reporting a file in the way as a key conflict.
    fn make_parents(&self, bucket: &str, dir: &Path) -> Result<()> {
        let bucket_dir = self.existing_bucket_dir(bucket)?;
        match fs::create_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists || is_enotdir(&e) => {
                let _ = bucket_dir;
                Err(StorageError::KeyConflict(
                    "object that is a parent of this key",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Metadata and size of an object, without opening its body.
    fn stat_object(&self, bucket: &str, op: &ObjectPath) -> Result<RawObject> {
        let path = self.object_fs_path(bucket, op)?;
        stat_path(&path, op.is_dir)
    }

    /// Opens an object's body together with the metadata of that same inode.
    fn open_object(&self, bucket: &str, op: &ObjectPath) -> Result<(Option<File>, RawObject)> {
        let path = self.object_fs_path(bucket, op)?;
        if op.is_dir {
            return Ok((None, stat_path(&path, true)?));
        }
        let file = open_nofollow(&path)?;
        let md = file.metadata()?;
        if md.is_dir() {
            return Err(StorageError::NoSuchKey);
        }
        let meta = file.get_xattr(META_XATTR)?;
        let raw = RawObject {
            meta,
            stored_len: md.len(),
            mtime: md.modified()?,
            is_dir: false,
            version: None,
        };
        Ok((Some(file), raw))
    }

    /// Replaces the metadata document of an existing object in place (one atomic setxattr).
    fn set_object_meta(&self, bucket: &str, op: &ObjectPath, meta: &[u8]) -> Result<()> {
        if meta.len() > MAX_XATTR_VALUE {
            return Err(StorageError::MetadataTooLarge(meta.len()));
        }
        let path = self.object_fs_path(bucket, op)?;
        stat_path(&path, op.is_dir)?;
        xattr::set(&path, META_XATTR, meta).map_err(map_xattr_err(meta.len()))?;
        Ok(())
    }

    /// Deletes an object; a missing object is not an error (S3 semantics).
    /// Empty parent directories without a directory object are pruned.
    pub fn delete_object(&self, bucket: &str, op: &ObjectPath) -> Result<()> {
        let bucket_dir = self.existing_bucket_dir(bucket)?;
        let path = beneath(&bucket_dir, &op.rel)?;
        if op.is_dir {
            match xattr::remove(&path, META_XATTR) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound || is_enotdir(&e) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            self.prune_empty(&bucket_dir, &path);
            return Ok(());
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound || is_enotdir(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = path.parent() {
            let _ = fsync_dir(parent);
            self.prune_empty(&bucket_dir, parent);
        }
        Ok(())
    }

    /// Removes empty directories from `dir` up to (not including) the bucket
    /// directory, stopping at the first that is not empty or is a directory object.
    fn prune_empty(&self, bucket_dir: &Path, mut dir: &Path) {
        while dir != bucket_dir && dir.starts_with(bucket_dir) {
            if matches!(xattr::get(dir, META_XATTR), Ok(Some(_))) {
                return;
            }
            if fs::remove_dir(dir).is_err() {
                return;
            }
            match dir.parent() {
                Some(p) => dir = p,
                None => return,
            }
        }
    }

    /// Walks a bucket's objects in S3 key order (UTF-8 byte order), calling `f`
    /// for each object whose key starts with `prefix` and sorts after
    /// `start_after`. With `roll_up_slash`, directories below the prefix are
    /// reported once as `Prefix("dir/")` instead of being descended into.
    fn walk_bucket(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        roll_up_slash: bool,
        f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
    ) -> Result<()> {
        let dir = self.existing_bucket_dir(bucket)?;
        let ctx = WalkCtx {
            prefix,
            start_after,
            roll_up_slash,
        };
        let _ = walk_dir(&dir, String::new(), &ctx, f)?;
        Ok(())
    }

    // ------------------------------------------------------ delta references

    /// The directory of one deltaspace's reference (`ds` is a hex digest of
    /// the key prefix) in the internal area, never visible as an object.
    fn refs_dir(&self, bucket: &str, ds: &str) -> PathBuf {
        self.internal_dir().join("refs").join(bucket).join(ds)
    }

    /// Where reference `id` of a deltaspace lives (whether or not it exists).
    fn ref_path(&self, bucket: &str, ds: &str, id: &str) -> PathBuf {
        self.refs_dir(bucket, ds).join(id)
    }

    /// The reference files of a deltaspace: (id, path). At most one exists
    /// outside a crash window.
    fn read_refs(&self, bucket: &str, ds: &str) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.refs_dir(bucket, ds);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for e in rd {
            let e = e?;
            if let Some(name) = e.file_name().to_str()
                && name.starts_with("ref-")
            {
                out.push((name.to_owned(), e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every reference of the backend: (bucket, deltaspace, id, path).
    fn every_ref(&self) -> Result<Vec<(String, String, String, PathBuf)>> {
        let mut out = Vec::new();
        let base = self.internal_dir().join("refs");
        let Ok(buckets) = fs::read_dir(&base) else {
            return Ok(out);
        };
        for b in buckets {
            let b = b?;
            let Some(bucket) = b.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for d in fs::read_dir(b.path())? {
                let d = d?;
                let Some(ds) = d.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                for (id, path) in self.read_refs(&bucket, &ds)? {
                    out.push((bucket.clone(), ds.clone(), id, path));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Atomically makes `temp` the reference `id` of a deltaspace.
    fn publish_ref(
        &self,
        bucket: &str,
        ds: &str,
        id: &str,
        mut temp: TempFile,
        meta: &[u8],
    ) -> Result<()> {
        if meta.len() > MAX_XATTR_VALUE {
            return Err(StorageError::MetadataTooLarge(meta.len()));
        }
        let dir = self.refs_dir(bucket, ds);
        fs::create_dir_all(&dir)?;
        set_meta_fd(temp.file(), meta)?;
        temp.file().sync_all()?;
        let target = dir.join(id);
        fs::rename(&temp.path, &target)?;
        temp.disarm();
        fsync_dir(&dir)?;
        Ok(())
    }

    /// Removes a reference (and its deltaspace directory when empty).
    fn remove_ref(&self, bucket: &str, ds: &str, id: &str) -> Result<()> {
        let dir = self.refs_dir(bucket, ds);
        match fs::remove_file(dir.join(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let _ = fsync_dir(&dir);
        let _ = fs::remove_dir(&dir);
        Ok(())
    }

    fn has_uploads_for(&self, _bucket: &str) -> Result<bool> {
        // Upload state is opaque here; the engine aborts a bucket's uploads
        // before deleting it. An empty bucket directory is all we check.
        Ok(false)
    }
}

/// An open object file as a [`StoredBody`]: positional reads of one inode.
pub struct FileBody {
    file: File,
    len: u64,
}

impl FileBody {
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(FileBody { file, len })
    }
}

impl StoredBody for FileBody {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buf, offset)
    }
    fn as_file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn will_read(&self, offset: u64, len: u64) {
        // The kernel doubles its read-ahead for sequential files and starts
        // fetching the range now, so disk reads overlap with the network.
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::Sequential,
        );
        let _ = rustix::fs::fadvise(
            &self.file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
    }
}

pub(super) fn file_body(file: File) -> Result<Body> {
    Ok(std::sync::Arc::new(FileBody::new(file)?))
}

fn parse(key: &str) -> Result<ObjectPath> {
    Ok(object_path(key)?)
}

impl Backend for FsBackend {
    fn kind(&self) -> &'static str {
        "filesystem"
    }

    fn space(&self) -> Result<(u64, u64)> {
        self.disk_space()
    }

    fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        self.read_buckets()
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        Ok(self.has_bucket(bucket))
    }

    fn bucket_created(&self, bucket: &str) -> Result<SystemTime> {
        self.created(bucket)
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        self.make_bucket(bucket)
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        self.remove_bucket(bucket)
    }

    fn new_temp(&self) -> Result<TempFile> {
        self.temp_file()
    }

    fn publish(&self, at: &Loc, temp: TempFile, meta: &[u8]) -> Result<()> {
        match at {
            Loc::Object { bucket, key } => self.publish_object(bucket, &parse(key)?, temp, meta),
            Loc::Ref { bucket, ds, id } => self.publish_ref(bucket, ds, id, temp, meta),
        }
    }

    fn stat(&self, at: &Loc) -> Result<RawObject> {
        match at {
            Loc::Object { bucket, key } => self.stat_object(bucket, &parse(key)?),
            Loc::Ref { bucket, ds, id } => stat_path(&self.ref_path(bucket, ds, id), false),
        }
    }

    fn open(&self, at: &Loc) -> Result<(Option<Body>, RawObject)> {
        let (file, raw) = match at {
            Loc::Object { bucket, key } => self.open_object(bucket, &parse(key)?)?,
            Loc::Ref { bucket, ds, id } => {
                let path = self.ref_path(bucket, ds, id);
                let file = open_nofollow(&path)?;
                let raw = stat_path(&path, false)?;
                (Some(file), raw)
            }
        };
        let body = match file {
            Some(f) => Some(file_body(f)?),
            None => None,
        };
        Ok((body, raw))
    }

    fn set_meta(&self, at: &Loc, meta: &[u8]) -> Result<()> {
        match at {
            Loc::Object { bucket, key } => self.set_object_meta(bucket, &parse(key)?, meta),
            Loc::Ref { bucket, ds, id } => {
                if meta.len() > MAX_XATTR_VALUE {
                    return Err(StorageError::MetadataTooLarge(meta.len()));
                }
                let path = self.ref_path(bucket, ds, id);
                stat_path(&path, false)?;
                xattr::set(&path, META_XATTR, meta).map_err(map_xattr_err(meta.len()))?;
                Ok(())
            }
        }
    }

    fn update_meta(
        &self,
        at: &Loc,
        f: &mut dyn FnMut(&RawObject) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let Loc::Object { bucket, key } = at else {
            let raw = self.stat(at)?;
            return self.set_meta(at, &f(&raw)?);
        };
        let op = parse(key)?;
        if op.is_dir {
            // A directory object is never replaced by a rename.
            let raw = self.stat(at)?;
            return self.set_object_meta(bucket, &op, &f(&raw)?);
        }
        // Read and write through one descriptor: a PUT that renames a new
        // file over the path meanwhile leaves this (now unlinked) file to
        // take the write, never the new object.
        let (file, raw) = self.open_object(bucket, &op)?;
        let file = file.ok_or(StorageError::NoSuchKey)?;
        let meta = f(&raw)?;
        if meta.len() > MAX_XATTR_VALUE {
            return Err(StorageError::MetadataTooLarge(meta.len()));
        }
        file.set_xattr(META_XATTR, &meta)
            .map_err(map_xattr_err(meta.len()))?;
        Ok(())
    }

    fn delete(&self, at: &Loc) -> Result<()> {
        match at {
            Loc::Object { bucket, key } => self.delete_object(bucket, &parse(key)?),
            Loc::Ref { bucket, ds, id } => self.remove_ref(bucket, ds, id),
        }
    }

    fn walk(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        roll_up_slash: bool,
        f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
    ) -> Result<()> {
        self.walk_bucket(bucket, prefix, start_after, roll_up_slash, f)
    }

    fn stat_found(&self, bucket: &str, items: &[(String, Found)]) -> Vec<Result<RawObject>> {
        items
            .iter()
            .map(|(key, found)| match found {
                Found::Path(p) => stat_for_list(p),
                Found::Listed(_) => self.stat(&Loc::object(bucket, key)),
            })
            .collect()
    }

    fn list_refs(&self, bucket: &str, ds: &str) -> Result<Vec<String>> {
        Ok(self
            .read_refs(bucket, ds)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    fn all_refs(&self) -> Result<Vec<(String, String, String)>> {
        Ok(self
            .every_ref()?
            .into_iter()
            .map(|(b, ds, id, _)| (b, ds, id))
            .collect())
    }
}

pub(super) fn set_meta_fd(file: &File, meta: &[u8]) -> Result<()> {
    file.set_xattr(META_XATTR, meta)
        .map_err(map_xattr_err(meta.len()))
}

fn map_xattr_err(len: usize) -> impl Fn(io::Error) -> StorageError {
    move |e| match e.raw_os_error() {
        Some(libc::E2BIG) | Some(libc::ENOSPC) | Some(libc::ERANGE) => {
            StorageError::MetadataTooLarge(len)
        }
        _ => StorageError::Io(e),
    }
}

fn symlink_met(path: PathBuf) -> StorageError {
    tracing::warn!(path = %path.display(), "refusing an object path through a symbolic link in the data directory");
    StorageError::Symlink(path)
}

/// `dir/rel`, after checking with `lstat` that no existing component below
/// `dir` is a symbolic link. Components that do not exist yet end the check
/// (a write creates them as directories).
fn beneath(dir: &Path, rel: &Path) -> Result<PathBuf> {
    let mut path = dir.to_path_buf();
    for c in rel.components() {
        path.push(c);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => return Err(symlink_met(path)),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(dir.join(rel)),
            // A file where a directory would be: the operation itself says
            // what that means (a miss for reads, a key conflict for writes).
            Err(e) if is_enotdir(&e) => return Ok(dir.join(rel)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(path)
}

/// Opens a file for reading without following a symbolic link in its last component.
fn open_nofollow(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                symlink_met(path.to_path_buf())
            } else {
                map_open_err(e)
            }
        })
}

fn map_open_err(e: io::Error) -> StorageError {
    if e.kind() == ErrorKind::NotFound || is_enotdir(&e) {
        StorageError::NoSuchKey
    } else {
        StorageError::Io(e)
    }
}

fn stat_path(path: &Path, want_dir: bool) -> Result<RawObject> {
    let md = fs::symlink_metadata(path).map_err(map_open_err)?;
    if md.file_type().is_symlink() {
        return Err(symlink_met(path.to_path_buf()));
    }
    if md.is_dir() != want_dir {
        return Err(StorageError::NoSuchKey);
    }
    let meta = xattr::get(path, META_XATTR)?;
    if want_dir && meta.is_none() {
        // A plain directory is a prefix, not an object.
        return Err(StorageError::NoSuchKey);
    }
    Ok(RawObject {
        meta,
        stored_len: if md.is_dir() { 0 } else { md.len() },
        mtime: md.modified()?,
        is_dir: md.is_dir(),
        version: None,
    })
}

/// Metadata of an object found by `walk` (a file, or a directory object).
fn stat_for_list(path: &Path) -> Result<RawObject> {
    let is_dir = fs::symlink_metadata(path).map_err(map_open_err)?.is_dir();
    stat_path(path, is_dir)
}

fn read_created(dir: &Path) -> Option<SystemTime> {
    let raw = xattr::get(dir, BUCKET_XATTR).ok()??;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    let ms = v.get("created_ms")?.as_u64()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// Writes a small file atomically (temp + fsync + rename) next to its target.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

struct WalkCtx<'a> {
    prefix: &'a str,
    start_after: &'a str,
    roll_up_slash: bool,
}

/// The smallest string greater than every key that starts with `p` (p ends in '/').
fn after_all_under(p: &str) -> String {
    // '/' + 1 == '0': every key under "a/" sorts below "a0".
    let mut s = p[..p.len() - 1].to_owned();
    s.push('0');
    s
}

fn walk_dir(
    dir: &Path,
    key_prefix: String,
    ctx: &WalkCtx<'_>,
    f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
) -> Result<ControlFlow<()>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        // Removed under us by a concurrent delete: nothing to list.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ControlFlow::Continue(())),
        Err(e) => return Err(e.into()),
    };
    let mut entries: Vec<(String, bool, PathBuf)> = Vec::new();
    for e in rd {
        let e = e?;
        let name: &OsStr = &e.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(path = %e.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        let ft = e.file_type()?;
        if ft.is_symlink() {
            // Never followed: listing it would let GET reach outside the root.
            tracing::warn!(path = %e.path().display(), "skipping a symbolic link in the data directory; links are not objects");
            continue;
        }
        let is_dir = ft.is_dir();
        if !is_dir && !ft.is_file() {
            continue;
        }
        // Sort key: a directory sorts as "name/" so the walk yields keys in S3 order.
        let mut sort = name.to_owned();
        if is_dir {
            sort.push('/');
        }
        entries.push((sort, is_dir, e.path()));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (sort, is_dir, path) in entries {
        let key = format!("{key_prefix}{sort}");
        if is_dir {
            let relevant = key.starts_with(ctx.prefix) || ctx.prefix.starts_with(&key);
            if !relevant || ctx.start_after >= after_all_under(&key).as_str() {
                continue;
            }
            if ctx.roll_up_slash && key.len() > ctx.prefix.len() && key.starts_with(ctx.prefix) {
                if key.as_str() > ctx.start_after
                    && let ControlFlow::Break(()) = f(WalkItem::Prefix(key))
                {
                    return Ok(ControlFlow::Break(()));
                }
                continue;
            }
            let is_marker = matches!(xattr::get(&path, META_XATTR), Ok(Some(_)));
            if is_marker
                && key.starts_with(ctx.prefix)
                && key.as_str() > ctx.start_after
                && let ControlFlow::Break(()) = f(WalkItem::Object {
                    key: key.clone(),
                    found: Found::Path(path.clone()),
                })
            {
                return Ok(ControlFlow::Break(()));
            }
            if let ControlFlow::Break(()) = walk_dir(&path, key, ctx, f)? {
                return Ok(ControlFlow::Break(()));
            }
        } else if key.starts_with(ctx.prefix)
            && key.as_str() > ctx.start_after
            && let ControlFlow::Break(()) = f(WalkItem::Object {
                key,
                found: Found::Path(path),
            })
        {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

#[cfg(test)]
mod tests {
    use super::super::keypath::object_path;
    use super::*;
    use std::io::Write;

    fn put(b: &FsBackend, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
        let mut t = b.new_temp()?;
        t.file().write_all(body)?;
        b.publish_object(bucket, &object_path(key).unwrap(), t, b"{\"v\":1}")
    }

    fn keys(b: &FsBackend, prefix: &str, start: &str, roll: bool) -> Vec<String> {
        let mut out = Vec::new();
        b.walk("bkt", prefix, start, roll, &mut |i| {
            out.push(match i {
                WalkItem::Object { key, .. } => key,
                WalkItem::Prefix(p) => format!("P:{p}"),
            });
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn walk_is_in_s3_key_order() {
        let d = tempfile::tempdir().unwrap();
        let b = FsBackend::open(d.path()).unwrap();
        b.create_bucket("bkt").unwrap();
        for k in ["a/x", "a-b", "a/y/z", "b", "a0", "a/"] {
            put(&b, "bkt", k, if k.ends_with('/') { b"" } else { b"data" }).unwrap();
        }
        let all = keys(&b, "", "", false);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all, vec!["a-b", "a/", "a/x", "a/y/z", "a0", "b"]);
        assert_eq!(keys(&b, "", "", true), vec!["a-b", "P:a/", "a0", "b"]);
        assert_eq!(keys(&b, "a/", "", true), vec!["a/", "a/x", "P:a/y/"]);
        assert_eq!(keys(&b, "", "a/x", false), vec!["a/y/z", "a0", "b"]);
        assert_eq!(keys(&b, "a/y", "", false), vec!["a/y/z"]);
    }

    #[test]
    fn conflicts_and_pruning() {
        let d = tempfile::tempdir().unwrap();
        let b = FsBackend::open(d.path()).unwrap();
        b.create_bucket("bkt").unwrap();
        put(&b, "bkt", "a", b"x").unwrap();
        assert!(matches!(
            put(&b, "bkt", "a/b", b"x"),
            Err(StorageError::KeyConflict(_))
        ));
        put(&b, "bkt", "d/e/f", b"x").unwrap();
        assert!(matches!(
            put(&b, "bkt", "d/e", b"x"),
            Err(StorageError::KeyConflict(_))
        ));
        b.delete_object("bkt", &object_path("d/e/f").unwrap())
            .unwrap();
        assert!(!d.path().join("bkt/d").exists(), "empty parents pruned");
        assert!(matches!(
            b.delete_bucket("bkt"),
            Err(StorageError::BucketNotEmpty)
        ));
        b.delete_object("bkt", &object_path("a").unwrap()).unwrap();
        b.delete_bucket("bkt").unwrap();
        assert!(
            fs::read_dir(d.path().join(".dg/tmp"))
                .unwrap()
                .next()
                .is_none()
        );
    }
}
