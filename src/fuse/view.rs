//! The read-only FUSE file system: buckets as top-level directories, the key
//! hierarchy below them, file contents and attributes read through the
//! object engine (so a file shows exactly what an S3 GET returns).
//!
//! Inodes are derived from the object's location (a hash of bucket and key)
//! and remembered only while the kernel holds a lookup on them, so memory
//! grows with what is in use, not with the number of objects.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use crate::engine::list::ListParams;
use crate::engine::{EngineError, ObjectInfo, ObjectStore, OpenObject};
use crate::gateway::Shared;
use crate::storage::StorageError;

/// How long the kernel may cache an entry (name → inode) or attributes
/// (size, mtime) before asking again: objects written or deleted through S3
/// show up in the mount after at most this long.
pub const TTL: Duration = Duration::from_secs(1);

/// Objects per listing call when a directory is read.
const LIST_PAGE: usize = 1000;

/// `st_blksize`: the I/O size tools like `cp` and `cat` use.
const BLKSIZE: u32 = 128 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Loc {
    /// The mount's top: the list of buckets.
    Root,
    /// A bucket (prefix "") or a directory in it (prefix ends in '/').
    Dir {
        bucket: String,
        prefix: String,
    },
    File {
        bucket: String,
        key: String,
    },
}

impl Loc {
    fn child(&self, name: &str) -> Option<(String, String)> {
        match self {
            Loc::Root => None,
            Loc::Dir { bucket, prefix } => Some((bucket.clone(), format!("{prefix}{name}"))),
            Loc::File { .. } => None,
        }
    }
}

struct Node {
    loc: Loc,
    /// Lookups the kernel holds (released by `forget`).
    lookups: u64,
}

#[derive(Default)]
struct Nodes {
    by_ino: HashMap<u64, Node>,
    by_loc: HashMap<Loc, u64>,
}

fn hash_ino(loc: &Loc) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    loc.hash(&mut h);
    // 0 is invalid and 1 is the root.
    h.finish().max(2)
}

impl Nodes {
    /// The inode of `loc`, taking one lookup reference.
    fn acquire(&mut self, loc: Loc) -> u64 {
        if let Some(&ino) = self.by_loc.get(&loc) {
            if let Some(n) = self.by_ino.get_mut(&ino) {
                n.lookups += 1;
            }
            return ino;
        }
        let mut ino = hash_ino(&loc);
        // A 64-bit hash collision is improbable; if it happens, probe.
        while self.by_ino.contains_key(&ino) || ino < 2 {
            ino = ino.wrapping_add(1);
        }
        self.by_loc.insert(loc.clone(), ino);
        self.by_ino.insert(ino, Node { loc, lookups: 1 });
        ino
    }

    /// The inode a directory listing shows for `loc` (no reference taken).
    fn peek(&self, loc: &Loc) -> u64 {
        self.by_loc
            .get(loc)
            .copied()
            .unwrap_or_else(|| hash_ino(loc))
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if ino == 1 {
            return;
        }
        if let Entry::Occupied(mut e) = self.by_ino.entry(ino) {
            let node = e.get_mut();
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                let node = e.remove();
                self.by_loc.remove(&node.loc);
            }
        }
    }
}

struct DirEntry {
    ino: u64,
    kind: FileType,
    name: String,
    loc: Loc,
    /// Logical size and Last-Modified of a file (from the listing's metadata).
    size: u64,
    mtime: Option<SystemTime>,
}

/// Options of one mount.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// Show only this bucket, its keys at the top of the mount.
    pub bucket: Option<String>,
    /// Files 0444 / directories 0555 instead of 0440 / 0550.
    pub allow_other: bool,
}

pub struct View {
    /// Follows config reloads: each call reads the gateway in force.
    gateway: Shared,
    root: Loc,
    uid: u32,
    gid: u32,
    file_perm: u16,
    dir_perm: u16,
    started: SystemTime,
    nodes: Mutex<Nodes>,
    files: Mutex<HashMap<u64, Arc<Mutex<OpenObject>>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
}

/// What the view answers with when the engine fails.
fn errno(e: &EngineError) -> Errno {
    match e {
        EngineError::Storage(StorageError::NoSuchKey | StorageError::NoSuchBucket) => Errno::ENOENT,
        EngineError::Storage(StorageError::InvalidKey(k)) if k.is_length() => Errno::ENAMETOOLONG,
        EngineError::Storage(StorageError::InvalidKey(_)) => Errno::ENOENT,
        _ => Errno::EIO,
    }
}

fn is_missing(e: &EngineError) -> bool {
    errno(e) != Errno::EIO
}

impl View {
    pub fn new(gateway: Shared, opts: ViewOptions) -> View {
        let root = match opts.bucket {
            Some(bucket) => Loc::Dir {
                bucket,
                prefix: String::new(),
            },
            None => Loc::Root,
        };
        let mut nodes = Nodes::default();
        nodes.by_loc.insert(root.clone(), 1);
        nodes.by_ino.insert(
            1,
            Node {
                loc: root.clone(),
                lookups: 1,
            },
        );
        View {
            gateway,
            root,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            file_perm: if opts.allow_other { 0o444 } else { 0o440 },
            dir_perm: if opts.allow_other { 0o555 } else { 0o550 },
            started: SystemTime::now(),
            nodes: Mutex::new(nodes),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    fn loc(&self, ino: INodeNo) -> Option<Loc> {
        let nodes = self.nodes.lock().ok()?;
        nodes.by_ino.get(&ino.0).map(|n| n.loc.clone())
    }

    fn store(&self, bucket: &str) -> (Arc<ObjectStore>, String) {
        self.gateway.load().route(bucket)
    }

    fn attr(&self, ino: u64, kind: FileType, size: u64, mtime: SystemTime) -> FileAttr {
        let dir = kind == FileType::Directory;
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: if dir { self.dir_perm } else { self.file_perm },
            nlink: if dir { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: BLKSIZE,
            flags: 0,
        }
    }

    fn file_attr(&self, ino: u64, info: &ObjectInfo) -> FileAttr {
        self.attr(
            ino,
            FileType::RegularFile,
            info.meta.size,
            info.meta.mtime(),
        )
    }

    fn dir_attr(&self, ino: u64) -> FileAttr {
        self.attr(ino, FileType::Directory, 0, self.started)
    }

    /// Logs an engine failure on one object (the kernel only sees EIO).
    fn log_failure(&self, what: &str, bucket: &str, key: &str, e: &EngineError) {
        tracing::error!(bucket, key, error = %e, "FUSE view: {what} failed");
    }

    fn bucket_visible(&self, name: &str) -> Result<bool, Errno> {
        match self.gateway.load().list_buckets_blocking() {
            Ok(list) => Ok(list.iter().any(|(b, _)| b == name)),
            Err(e) => {
                tracing::error!(error = %e, "FUSE view: listing buckets failed");
                Err(Errno::EIO)
            }
        }
    }

    /// Is there anything stored under `key/` (a directory in the view)?
    fn is_dir(&self, bucket: &str, key: &str) -> Result<bool, Errno> {
        let (store, real) = self.store(bucket);
        let p = ListParams {
            prefix: format!("{key}/"),
            delimiter: Some("/".into()),
            start_after: String::new(),
            max_keys: 1,
        };
        match store.list_blocking(&real, p) {
            Ok(page) => Ok(!page.objects.is_empty() || !page.prefixes.is_empty()),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => {
                self.log_failure("listing", bucket, key, &e);
                Err(Errno::EIO)
            }
        }
    }

    /// What `name` in directory `parent` is: a file with its metadata, a
    /// directory, or nothing.
    fn resolve(&self, parent: &Loc, name: &str) -> Result<(Loc, Option<ObjectInfo>), Errno> {
        if name.is_empty() || name.contains('/') {
            return Err(Errno::ENOENT);
        }
        if *parent == Loc::Root {
            return match self.bucket_visible(name)? {
                true => Ok((
                    Loc::Dir {
                        bucket: name.to_owned(),
                        prefix: String::new(),
                    },
                    None,
                )),
                false => Err(Errno::ENOENT),
            };
        }
        let (bucket, key) = parent.child(name).ok_or(Errno::ENOTDIR)?;
        let (store, real) = self.store(&bucket);
        match store.head_blocking(&real, &key) {
            Ok(info) => Ok((Loc::File { bucket, key }, Some(info))),
            Err(e) if is_missing(&e) => match self.is_dir(&bucket, &key)? {
                true => Ok((
                    Loc::Dir {
                        bucket,
                        prefix: format!("{key}/"),
                    },
                    None,
                )),
                false => Err(errno(&e)),
            },
            Err(e) => {
                self.log_failure("reading metadata", &bucket, &key, &e);
                Err(Errno::EIO)
            }
        }
    }

    /// The entries of a directory, read in full when it is opened.
    fn read_dir(&self, loc: &Loc) -> Result<Vec<DirEntry>, Errno> {
        let nodes_peek = |l: &Loc| self.nodes.lock().map(|n| n.peek(l)).unwrap_or(2);
        let mut out = Vec::new();
        match loc {
            Loc::Root => {
                let buckets = self.gateway.load().list_buckets_blocking().map_err(|e| {
                    tracing::error!(error = %e, "FUSE view: listing buckets failed");
                    Errno::EIO
                })?;
                for (name, _) in buckets {
                    let l = Loc::Dir {
                        bucket: name.clone(),
                        prefix: String::new(),
                    };
                    out.push(DirEntry {
                        ino: nodes_peek(&l),
                        kind: FileType::Directory,
                        name,
                        loc: l,
                        size: 0,
                        mtime: None,
                    });
                }
            }
            Loc::Dir { bucket, prefix } => {
                let (store, real) = self.store(bucket);
                let mut start_after = String::new();
                loop {
                    let p = ListParams {
                        prefix: prefix.clone(),
                        delimiter: Some("/".into()),
                        start_after: start_after.clone(),
                        max_keys: LIST_PAGE,
                    };
                    let page = store.list_blocking(&real, p).map_err(|e| {
                        self.log_failure("listing", bucket, prefix, &e);
                        if is_missing(&e) {
                            Errno::ENOENT
                        } else {
                            Errno::EIO
                        }
                    })?;
                    for pfx in &page.prefixes {
                        let name = &pfx[prefix.len()..pfx.len() - 1];
                        let l = Loc::Dir {
                            bucket: bucket.clone(),
                            prefix: pfx.clone(),
                        };
                        out.push(DirEntry {
                            ino: nodes_peek(&l),
                            kind: FileType::Directory,
                            name: name.to_owned(),
                            loc: l,
                            size: 0,
                            mtime: None,
                        });
                    }
                    for o in &page.objects {
                        // Directory objects ("folder markers") are the directories themselves.
                        let name = &o.key[prefix.len()..];
                        if name.is_empty() || name.contains('/') {
                            continue;
                        }
                        let l = Loc::File {
                            bucket: bucket.clone(),
                            key: o.key.clone(),
                        };
                        out.push(DirEntry {
                            ino: nodes_peek(&l),
                            kind: FileType::RegularFile,
                            name: name.to_owned(),
                            loc: l,
                            size: o.meta.size,
                            mtime: Some(o.meta.mtime()),
                        });
                    }
                    match (page.truncated, page.last) {
                        (true, Some(last)) => start_after = last,
                        _ => break,
                    }
                }
                out.sort_by(|a, b| a.name.cmp(&b.name));
            }
            Loc::File { .. } => return Err(Errno::ENOTDIR),
        }
        Ok(out)
    }

    /// The object's metadata as extended attributes: what a HEAD shows,
    /// named like the response headers, plus the encryption markers. Never
    /// the wrapped data key.
    fn xattrs(&self, loc: &Loc) -> Result<Vec<(String, String)>, Errno> {
        let Loc::File { bucket, key } = loc else {
            return Ok(Vec::new());
        };
        let (store, real) = self.store(bucket);
        let info = store.head_blocking(&real, key).map_err(|e| {
            if !is_missing(&e) {
                self.log_failure("reading metadata", bucket, key, &e);
            }
            errno(&e)
        })?;
        let m = &info.meta;
        let mut out = vec![
            ("user.etag".to_owned(), m.etag.clone()),
            (
                "user.last-modified".to_owned(),
                httpdate::fmt_http_date(m.mtime()),
            ),
        ];
        if let Some(ct) = &m.content_type {
            out.push(("user.content-type".into(), ct.clone()));
        }
        for (h, v) in &m.headers {
            out.push((format!("user.{h}"), v.clone()));
        }
        for (k, v) in &m.user {
            out.push((format!("user.x-amz-meta-{k}"), v.clone()));
        }
        if let Some(c) = &m.checksum {
            out.push((
                format!("user.x-amz-checksum-{}", c.alg.to_ascii_lowercase()),
                c.value.clone(),
            ));
        }
        if let Some(s) = &m.sha256 {
            out.push(("user.dg-sha256".into(), s.clone()));
        }
        if let Some(e) = &m.encrypted {
            out.push(("user.dg-encrypted".into(), e.clone()));
        }
        if let Some(k) = &m.key_id {
            out.push(("user.dg-encryption-key-id".into(), k.clone()));
        }
        Ok(out)
    }

    fn dir_handle(&self, fh: FileHandle) -> Option<Arc<Vec<DirEntry>>> {
        self.dirs.lock().expect("dirs lock").get(&fh.0).cloned()
    }

    fn next_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }
}

/// One position of a directory listing.
enum Slot<'a> {
    Dot,
    DotDot,
    Entry(&'a DirEntry),
}

/// Feeds the listing from `offset` to `add(next_offset, slot)` until it
/// reports a full buffer. Offsets: 0 is ".", 1 is "..", n >= 2 is entry n - 2;
/// each slot carries the offset of the one after it.
fn fill(entries: &[DirEntry], offset: u64, mut add: impl FnMut(u64, Slot<'_>) -> bool) {
    let mut n = offset;
    loop {
        let slot = match n {
            0 => Slot::Dot,
            1 => Slot::DotDot,
            _ => match entries.get((n - 2) as usize) {
                Some(e) => Slot::Entry(e),
                None => return,
            },
        };
        if add(n + 1, slot) {
            return;
        }
        n += 1;
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for View {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger reads from the kernel's read-ahead (capped by the kernel).
        let _ = config.set_max_readahead(1024 * 1024);
        // Directory reads carry each entry's attributes (from the listing's
        // metadata): `ls -l` needs no lookup per file.
        let _ = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(ploc) = self.loc(parent) else {
            return reply.error(Errno::ENOENT);
        };
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.resolve(&ploc, name) {
            Ok((loc, info)) => {
                let ino = self.nodes.lock().expect("nodes lock").acquire(loc);
                let attr = match &info {
                    Some(i) => self.file_attr(ino, i),
                    None => self.dir_attr(ino),
                };
                reply.entry(&TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if let Ok(mut n) = self.nodes.lock() {
            n.forget(ino.0, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.loc(ino) {
            None => reply.error(Errno::ENOENT),
            Some(Loc::File { bucket, key }) => {
                let (store, real) = self.store(&bucket);
                match store.head_blocking(&real, &key) {
                    Ok(info) => reply.attr(&TTL, &self.file_attr(ino.0, &info)),
                    Err(e) => {
                        if !is_missing(&e) {
                            self.log_failure("reading metadata", &bucket, &key, &e);
                        }
                        reply.error(errno(&e))
                    }
                }
            }
            Some(_) => reply.attr(&TTL, &self.dir_attr(ino.0)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let Some(loc) = self.loc(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let Loc::File { bucket, key } = loc else {
            return reply.error(Errno::EISDIR);
        };
        let (store, real) = self.store(&bucket);
        match store.open_blocking(&real, &key) {
            Ok(obj) => {
                let fh = self.next_fh();
                self.files
                    .lock()
                    .expect("files lock")
                    .insert(fh, Arc::new(Mutex::new(obj)));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => {
                if !is_missing(&e) {
                    self.log_failure("opening", &bucket, &key, &e);
                }
                reply.error(errno(&e));
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(obj) = self.files.lock().expect("files lock").get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        let mut obj = obj.lock().expect("object lock");
        let want = (size as u64).min(obj.size().saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; want];
        match obj.read_at(offset, &mut buf) {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => {
                let key = obj.info.key.clone();
                tracing::error!(key = %key, offset, error = %e, "FUSE view: read failed; returning EIO");
                reply.error(Errno::EIO);
            }
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.lock().expect("files lock").remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let Some(loc) = self.loc(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.read_dir(&loc) {
            Ok(entries) => {
                let fh = self.next_fh();
                self.dirs
                    .lock()
                    .expect("dirs lock")
                    .insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(entries) = self.dir_handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        fill(&entries, offset, |next, slot| match slot {
            Slot::Dot => reply.add(ino, next, FileType::Directory, "."),
            Slot::DotDot => reply.add(INodeNo(1), next, FileType::Directory, ".."),
            Slot::Entry(e) => reply.add(INodeNo(e.ino), next, e.kind, &e.name),
        });
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let Some(entries) = self.dir_handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let g = Generation(0);
        fill(&entries, offset, |next, slot| match slot {
            // The kernel takes no lookup reference for "." and "..".
            Slot::Dot => reply.add(ino, next, ".", &TTL, &self.dir_attr(ino.0), g),
            Slot::DotDot => reply.add(INodeNo(1), next, "..", &TTL, &self.dir_attr(1), g),
            Slot::Entry(e) => {
                // Every other entry the kernel accepts is one lookup reference.
                let ino = self
                    .nodes
                    .lock()
                    .expect("nodes lock")
                    .acquire(e.loc.clone());
                let attr = match e.mtime {
                    Some(mtime) => self.attr(ino, FileType::RegularFile, e.size, mtime),
                    None => self.dir_attr(ino),
                };
                let full = reply.add(INodeNo(ino), next, &e.name, &TTL, &attr, g);
                if full {
                    self.nodes.lock().expect("nodes lock").forget(ino, 1);
                }
                full
            }
        });
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().expect("dirs lock").remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let store = match &self.root {
            Loc::Dir { bucket, .. } => self.store(bucket).0,
            _ => self.store("").0,
        };
        let (total, free) = store.space().unwrap_or((0, 0));
        let bs = 4096u64;
        reply.statfs(
            total / bs,
            free / bs,
            free / bs,
            0,
            0,
            bs as u32,
            255,
            bs as u32,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Only user.* attributes exist here (`ls -l` asks for ACLs and
        // security labels on every file: answered without any I/O).
        if !name.as_encoded_bytes().starts_with(b"user.") {
            return reply.error(Errno::NO_XATTR);
        }
        let Some(loc) = self.loc(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.xattrs(&loc) {
            Ok(list) => match list.iter().find(|(n, _)| OsStr::new(n) == name) {
                Some((_, v)) => reply_xattr(reply, size, v.as_bytes()),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let Some(loc) = self.loc(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.xattrs(&loc) {
            Ok(list) => {
                let mut names = Vec::new();
                for (n, _) in &list {
                    names.extend_from_slice(n.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inodes_live_while_looked_up() {
        let mut n = Nodes::default();
        let a = Loc::File {
            bucket: "b".into(),
            key: "x".into(),
        };
        let ino = n.acquire(a.clone());
        assert!(ino >= 2);
        assert_eq!(n.peek(&a), ino);
        assert_eq!(n.acquire(a.clone()), ino);
        n.forget(ino, 1);
        assert!(n.by_ino.contains_key(&ino));
        n.forget(ino, 1);
        assert!(!n.by_ino.contains_key(&ino));
        assert!(n.by_loc.is_empty());
        // The same location gets the same inode again.
        assert_eq!(n.acquire(a), ino);
    }

    #[test]
    fn colliding_inodes_are_probed() {
        let mut n = Nodes::default();
        let a = Loc::File {
            bucket: "b".into(),
            key: "x".into(),
        };
        let b = Loc::File {
            bucket: "b".into(),
            key: "y".into(),
        };
        // Occupy b's hash with another location.
        let hb = hash_ino(&b);
        n.by_ino.insert(hb, Node { loc: a, lookups: 1 });
        let ino = n.acquire(b.clone());
        assert_ne!(ino, hb);
        assert_eq!(n.by_ino[&ino].loc, b);
    }
}
