//! Multipart uploads on the filesystem backend. The documents are opaque
//! here (the engine owns their schema); this file owns where they live and
//! which steps are atomic.
//!
//! ```text
//! .dg/multipart/<id>/upload.json          upload state
//! .dg/multipart/<id>/part-NNNNN           parts (metadata in user.dg.metadata)
//! .dg/multipart/<id>/complete.json        completion intent: written before the
//!                                         object is published
//! .dg/multipart-done/<id>/complete.json   a completed upload, remembered so a
//!                                         retried Complete gets the same answer
//! .dg/multipart-trash/<id>-<uuid>/        an aborted upload's leftovers being deleted
//! ```
//!
//! Leaving `multipart/` is always one `rename(2)` of the upload directory
//! (to `multipart-done/` on completion, to `multipart-trash/` on abort), so an
//! upload is either entirely listed or entirely gone, whatever a crash
//! interrupts; the slow recursive delete happens afterwards, out of sight,
//! and [`FsBackend::sweep_uploads`] finishes it at the next start.

use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

use std::time::{Duration, SystemTime};

use super::backend::{Body, StoredPart, UploadStore};
use super::fs::{
    FsBackend, META_XATTR, TempFile, file_body, fsync_dir, not_found_to, set_meta_fd, write_atomic,
};
use super::{Result, StorageError};

const STATE: &str = "upload.json";
const COMPLETE: &str = "complete.json";

fn part_name(number: u32) -> String {
    format!("part-{number:05}")
}

fn not_found_to_upload(e: io::Error) -> StorageError {
    not_found_to(e, StorageError::NoSuchUpload)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// What [`FsBackend::sweep_uploads`] cleaned up.
#[derive(Debug, Default)]
pub struct UploadSweep {
    /// Aborted uploads whose deletion a crash interrupted.
    pub trash: usize,
    /// Upload directories without a state document (a crash during create).
    pub orphans: usize,
    /// Completed-upload records older than the retention, removed.
    pub expired: usize,
}

impl FsBackend {
    fn done_dir(&self) -> PathBuf {
        self.internal_dir().join("multipart-done")
    }

    fn trash_dir(&self) -> PathBuf {
        self.internal_dir().join("multipart-trash")
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(StorageError::NoSuchUpload);
        }
        Ok(self.uploads.join(id))
    }
}

impl FsBackend {
    /// A small file of a backend's own beside an upload's state (the S3
    /// backend keeps its upstream upload id and part ETags this way).
    pub(super) fn write_upload_file(&self, id: &str, name: &str, data: &[u8]) -> Result<()> {
        let dir = self.upload_dir(id)?;
        if !dir.join(STATE).exists() {
            return Err(StorageError::NoSuchUpload);
        }
        write_atomic(&dir.join(name), data).map_err(not_found_to_upload)
    }

    pub(super) fn read_upload_file(&self, id: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let dir = self.upload_dir(id)?;
        match fs::read(dir.join(name)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl UploadStore for FsBackend {
    /// Records a new upload with its state document (written atomically).
    fn create_upload(&self, id: &str, state: &[u8]) -> Result<()> {
        let dir = self.upload_dir(id)?;
        fs::create_dir(&dir)?;
        write_atomic(&dir.join(STATE), state)?;
        fsync_dir(&self.uploads)?;
        Ok(())
    }

    /// The state document of an upload in progress.
    fn read_upload(&self, id: &str) -> Result<Vec<u8>> {
        let dir = self.upload_dir(id)?;
        fs::read(dir.join(STATE)).map_err(not_found_to_upload)
    }

    /// Stores a part: its body is `temp`, its metadata goes in the part
    /// file's xattr. An upload that completed or was aborted meanwhile is
    /// `NoSuchUpload` (its directory is gone, so the rename finds no target).
    fn put_part(&self, id: &str, number: u32, mut temp: TempFile, meta: &[u8]) -> Result<()> {
        let dir = self.upload_dir(id)?;
        if !dir.join(STATE).exists() {
            return Err(StorageError::NoSuchUpload);
        }
        set_meta_fd(temp.file(), meta)?;
        temp.file().sync_all()?;
        temp.rename_to(&dir.join(part_name(number)))
            .map_err(not_found_to_upload)?;
        fsync_dir(&dir)?;
        Ok(())
    }

    /// All parts of an upload, in part-number order.
    fn list_parts(&self, id: &str) -> Result<Vec<StoredPart>> {
        let dir = self.upload_dir(id)?;
        let mut parts = Vec::new();
        for e in fs::read_dir(&dir).map_err(not_found_to_upload)? {
            let e = e?;
            let name = e.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_prefix("part-"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let md = e.metadata()?;
            let meta = xattr::get(e.path(), META_XATTR)?.unwrap_or_default();
            parts.push(StoredPart {
                number: n,
                meta,
                mtime: md.modified()?,
            });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    fn open_part(&self, id: &str, number: u32) -> Result<Body> {
        let dir = self.upload_dir(id)?;
        let file = File::open(dir.join(part_name(number))).map_err(not_found_to_upload)?;
        file_body(file)
    }

    /// Aborts an upload: one rename takes it out of `multipart/`, then its
    /// files are deleted (a crash in between leaves trash that the next
    /// start removes, never a half-listed upload).
    fn remove_upload(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let trash = self.trash_dir();
        fs::create_dir_all(&trash)?;
        let dest = trash.join(format!("{id}-{}", uuid::Uuid::new_v4().simple()));
        fs::rename(&dir, &dest).map_err(not_found_to_upload)?;
        fsync_dir(&self.uploads)?;
        if let Err(e) = fs::remove_dir_all(&dest) {
            tracing::warn!(upload = id, error = %e, "could not delete an aborted upload's files; the next start retries");
        }
        Ok(())
    }

    /// Records the intent to complete an upload (`doc` says what object the
    /// completion publishes). Written durably before the object is published.
    fn begin_complete(&self, id: &str, doc: &[u8]) -> Result<()> {
        let dir = self.upload_dir(id)?;
        if !dir.join(STATE).exists() {
            return Err(StorageError::NoSuchUpload);
        }
        write_atomic(&dir.join(COMPLETE), doc)?;
        Ok(())
    }

    /// Drops a completion intent whose object was never published.
    fn cancel_complete(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        match fs::remove_file(dir.join(COMPLETE)) {
            Ok(()) => Ok(fsync_dir(&dir)?),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// After the object is published: one rename moves the upload to
    /// `multipart-done/`, where its completion record stays (for retried
    /// Completes) and its parts are deleted. Errors after the rename are
    /// logged, not returned: the upload is complete either way.
    fn retire_upload(&self, id: &str) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let done = self.done_dir();
        fs::create_dir_all(&done)?;
        let dest = done.join(id);
        if dest.exists() {
            let _ = fs::remove_dir_all(&dest);
        }
        fs::rename(&dir, &dest).map_err(not_found_to_upload)?;
        fsync_dir(&self.uploads)?;
        fsync_dir(&done)?;
        crate::failpoint::hit("complete-after-retire");
        if let Err(e) = clear_except_record(&dest) {
            tracing::warn!(upload = id, error = %e, "could not delete a completed upload's parts; the next start retries");
        }
        Ok(())
    }

    /// The completion record of an upload that completed (kept for a while).
    fn read_completed(&self, id: &str) -> Result<Option<Vec<u8>>> {
        if !valid_id(id) {
            return Ok(None);
        }
        match fs::read(self.done_dir().join(id).join(COMPLETE)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads in progress: (id, state document). Uploads that are being
    /// completed (a completion intent exists) are not listed.
    fn list_uploads(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.uploads)? {
            let e = e?;
            let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_id(&id) || e.path().join(COMPLETE).exists() {
                continue;
            }
            if let Ok(state) = fs::read(e.path().join(STATE)) {
                out.push((id, state));
            }
        }
        Ok(out)
    }

    /// Uploads with a completion intent (a crash interrupted their
    /// completion): (id, intent document). For recovery at startup.
    fn list_completing(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.uploads)? {
            let e = e?;
            let Some(id) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            match fs::read(e.path().join(COMPLETE)) {
                Ok(doc) => out.push((id, doc)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Startup cleanup of what crashes leave: aborted uploads half deleted,
    /// completed uploads whose parts are still there, upload directories
    /// without state, and completion records older than `keep_done`.
    fn sweep_uploads(&self, keep_done: Duration) -> Result<UploadSweep> {
        let mut sweep = UploadSweep::default();
        if let Ok(rd) = fs::read_dir(self.trash_dir()) {
            for e in rd.flatten() {
                if fs::remove_dir_all(e.path()).is_ok() {
                    sweep.trash += 1;
                }
            }
        }
        for e in fs::read_dir(&self.uploads)?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && !e.path().join(STATE).exists() {
                let name = e.file_name().to_string_lossy().into_owned();
                if valid_id(&name) && self.remove_upload(&name).is_ok() {
                    sweep.orphans += 1;
                }
            }
        }
        let now = SystemTime::now();
        if let Ok(rd) = fs::read_dir(self.done_dir()) {
            for e in rd.flatten() {
                let record = e.path().join(COMPLETE);
                let age = fs::metadata(&record)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok());
                if age.is_none_or(|a| a > keep_done) {
                    if fs::remove_dir_all(e.path()).is_ok() {
                        sweep.expired += 1;
                    }
                } else {
                    let _ = clear_except_record(&e.path());
                }
            }
        }
        Ok(sweep)
    }

    /// Every part of every upload in progress, with its metadata document.
    fn all_parts(&self) -> Result<Vec<(String, u32, Vec<u8>)>> {
        let mut out = Vec::new();
        for u in fs::read_dir(&self.uploads)? {
            let u = u?;
            if !u.file_type()?.is_dir() {
                continue;
            }
            let id = u.file_name().to_string_lossy().into_owned();
            for p in fs::read_dir(u.path())? {
                let p = p?;
                let number = p
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("part-"))
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(number) = number
                    && let Ok(Some(meta)) = xattr::get(p.path(), META_XATTR)
                {
                    out.push((id.clone(), number, meta));
                }
            }
        }
        Ok(out)
    }
}

/// Deletes every file of a retired upload but its completion record.
fn clear_except_record(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() != COMPLETE {
            fs::remove_file(e.path())?;
        }
    }
    fsync_dir(dir)
}
