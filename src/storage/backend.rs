//! The one trait the engine is written against (ADR 0004). Two
//! implementations: the filesystem backend (`fs.rs`, the primary store) and
//! the S3 backend (`s3/`, an upstream bucket store). Only they know paths,
//! xattrs or upstream keys; the engine names places with [`Loc`] and gets
//! bodies as [`Body`] (positional reads of the stored bytes).
//!
//! Every call is blocking; the engine runs them on the blocking pool.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::state::StateStore;
use super::uploads::UploadSweep;
use super::{Result, StorageError};

/// A stored thing the engine names: an object, or a delta reference of a
/// deltaspace (`ds` is a hex digest of the key prefix; never listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loc {
    Object {
        bucket: String,
        key: String,
    },
    Ref {
        bucket: String,
        ds: String,
        id: String,
    },
}

impl Loc {
    pub fn object(bucket: &str, key: &str) -> Loc {
        Loc::Object {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }
    pub fn reference(bucket: &str, ds: &str, id: &str) -> Loc {
        Loc::Ref {
            bucket: bucket.to_owned(),
            ds: ds.to_owned(),
            id: id.to_owned(),
        }
    }
    pub fn bucket(&self) -> &str {
        match self {
            Loc::Object { bucket, .. } | Loc::Ref { bucket, .. } => bucket,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Object { bucket, key } => write!(f, "{bucket}/{key}"),
            Loc::Ref { bucket, ds, id } => write!(f, "{bucket} reference {ds}/{id}"),
        }
    }
}

/// A stored object's metadata document and stored size, as the backend sees it.
#[derive(Debug, Clone)]
pub struct RawObject {
    /// The metadata document, if the object has one (a file placed by hand,
    /// or an upstream object written by another tool, has none).
    pub meta: Option<Vec<u8>>,
    /// Bytes stored (0 for a directory object).
    pub stored_len: u64,
    pub mtime: SystemTime,
    pub is_dir: bool,
    /// The backend's own version tag of the stored bytes where it has one
    /// (an upstream ETag), so caches can tell versions apart.
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BucketEntry {
    pub name: String,
    pub created: SystemTime,
}

/// A multipart part: its number and its metadata document.
#[derive(Debug, Clone)]
pub struct StoredPart {
    pub number: u32,
    pub meta: Vec<u8>,
    pub mtime: SystemTime,
}

/// Where the walk found an object. Opaque to the engine: it hands it back
/// to [`Backend::stat_found`], which can then skip resolving the key again.
#[derive(Debug, Clone)]
pub enum Found {
    Path(PathBuf),
    /// What an upstream listing said (size, mtime, ETag).
    Listed(RawObject),
}

/// One step of a sorted walk over a bucket.
#[derive(Debug)]
pub enum WalkItem {
    /// An object (a key ending in '/' is a directory object).
    Object { key: String, found: Found },
    /// With `roll_up_slash`: a common prefix below the walk's prefix.
    Prefix(String),
}

/// The stored bytes of one version of an object (ciphertext or delta
/// included): positional reads, shareable between threads. A filesystem body
/// is an open file (one inode, whatever renames happen); an upstream body is
/// pinned to the ETag seen at open, so an overwrite meanwhile is an error,
/// never a mix of two versions.
pub trait StoredBody: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads at most `buf.len()` bytes at `offset`; 0 only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// A hint: `[offset, offset+len)` will be read front to back soon.
    fn will_read(&self, _offset: u64, _len: u64) {}
    /// The local file holding the body, if it is one (lets copies between
    /// files stay in the kernel).
    fn as_file(&self) -> Option<&std::fs::File> {
        None
    }
}

pub type Body = Arc<dyn StoredBody>;

/// Fills `buf` from `offset`; fewer bytes only at the end of the body.
pub fn read_full_at(body: &dyn StoredBody, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match body.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// A `Read + Seek` cursor over a body (for the decryptor and the codecs).
pub struct BodyReader {
    body: Body,
    pos: u64,
}

impl BodyReader {
    pub fn new(body: Body) -> Self {
        BodyReader { body, pos: 0 }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.body.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BodyReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.body.len() as i128;
        let new = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => len + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// Multipart uploads in progress: opaque state documents and parts, with
/// the atomic steps the engine sequences (`docs/on-disk-format.md`).
pub trait UploadStore: Send + Sync {
    fn create_upload(&self, id: &str, state: &[u8]) -> Result<()>;
    fn read_upload(&self, id: &str) -> Result<Vec<u8>>;
    fn put_part(&self, id: &str, number: u32, temp: super::TempFile, meta: &[u8]) -> Result<()>;
    fn list_parts(&self, id: &str) -> Result<Vec<StoredPart>>;
    fn open_part(&self, id: &str, number: u32) -> Result<Body>;
    fn remove_upload(&self, id: &str) -> Result<()>;
    fn begin_complete(&self, id: &str, doc: &[u8]) -> Result<()>;
    fn cancel_complete(&self, id: &str) -> Result<()>;
    fn retire_upload(&self, id: &str) -> Result<()>;
    fn read_completed(&self, id: &str) -> Result<Option<Vec<u8>>>;
    fn list_uploads(&self) -> Result<Vec<(String, Vec<u8>)>>;
    fn list_completing(&self) -> Result<Vec<(String, Vec<u8>)>>;
    fn sweep_uploads(&self, keep_done: Duration) -> Result<UploadSweep>;
    /// Every part of every upload in progress: (upload id, number, metadata document).
    fn all_parts(&self) -> Result<Vec<(String, u32, Vec<u8>)>>;

    /// Whether uploads can go to the backend part by part
    /// ([`UploadStore::begin_direct`]) instead of being assembled locally.
    fn supports_direct(&self) -> bool {
        false
    }
    /// Makes upload `id` (already created) a direct one: its parts go to
    /// the backend as they arrive, as parts of the object at `at`, whose
    /// document meanwhile is `meta` (a pending document).
    fn begin_direct(&self, _id: &str, _at: &Loc, _meta: &[u8]) -> Result<()> {
        Err(StorageError::Io(io::Error::other(
            "this backend has no direct multipart uploads",
        )))
    }
    /// Publishes a direct upload from `parts` (in order), then replaces the
    /// object's document with `meta`. The upload stays listed until
    /// `retire_upload`.
    fn complete_direct(&self, _id: &str, _at: &Loc, _parts: &[u32], _meta: &[u8]) -> Result<()> {
        Err(StorageError::Io(io::Error::other(
            "this backend has no direct multipart uploads",
        )))
    }
}

/// A storage backend: buckets, objects and references with their metadata
/// documents, staging, multipart uploads and the engine's state documents.
pub trait Backend: StateStore + UploadStore + fmt::Debug {
    /// `filesystem` or `s3`.
    fn kind(&self) -> &'static str;
    /// Total and free bytes of the disk that writes are staged on.
    fn space(&self) -> Result<(u64, u64)>;
    /// Whether the backend answers now (an upstream: one cheap request).
    fn health(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    /// `sse-s3` / `sse-kms` when the backend itself encrypts what it stores.
    fn native_encryption(&self) -> Option<&'static str> {
        None
    }

    fn list_buckets(&self) -> Result<Vec<BucketEntry>>;
    fn bucket_exists(&self, bucket: &str) -> Result<bool>;
    fn bucket_created(&self, bucket: &str) -> Result<SystemTime>;
    fn create_bucket(&self, bucket: &str) -> Result<()>;
    /// Removes an empty bucket (`BucketNotEmpty` otherwise).
    fn delete_bucket(&self, bucket: &str) -> Result<()>;

    /// A new local spool file, removed on drop unless published.
    fn new_temp(&self) -> Result<super::TempFile>;
    /// Atomically makes `temp` the thing at `at`, with `meta` as its document.
    fn publish(&self, at: &Loc, temp: super::TempFile, meta: &[u8]) -> Result<()>;
    /// Metadata and stored size without opening the body.
    fn stat(&self, at: &Loc) -> Result<RawObject>;
    /// The body (None for a directory object) and the metadata of one version.
    fn open(&self, at: &Loc) -> Result<(Option<Body>, RawObject)>;
    /// Replaces the metadata document in place, atomically.
    fn set_meta(&self, at: &Loc, meta: &[u8]) -> Result<()>;
    /// Rewrites an object's metadata document from the object as it is:
    /// `f` gets the current object and returns the new document, which is
    /// written to that same stored version only (an object overwritten
    /// meanwhile keeps its own document; the write is then lost, as if it
    /// had come first).
    fn update_meta(&self, at: &Loc, f: &mut dyn FnMut(&RawObject) -> Result<Vec<u8>>)
    -> Result<()>;
    /// Deletes; a missing object is not an error.
    fn delete(&self, at: &Loc) -> Result<()>;

    /// Walks a bucket's objects in S3 key order, calling `f` for each key
    /// that starts with `prefix` and sorts after `start_after`; with
    /// `roll_up_slash`, what lies below the next '/' is one `Prefix`.
    fn walk(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        roll_up_slash: bool,
        f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
    ) -> Result<()>;
    /// The metadata of objects a walk found, in order (a backend may fetch
    /// them concurrently). A deleted object is `NoSuchKey`.
    fn stat_found(&self, bucket: &str, items: &[(String, Found)]) -> Vec<Result<RawObject>>;

    /// Reference ids of a deltaspace (sorted; at most one outside a crash window).
    fn list_refs(&self, bucket: &str, ds: &str) -> Result<Vec<String>>;
    /// Every reference: (bucket, deltaspace, id).
    fn all_refs(&self) -> Result<Vec<(String, String, String)>>;
}

/// `len` bytes of another body from `offset`: one segment of a segmented
/// object, read as a body of its own.
pub struct SliceBody {
    inner: Body,
    offset: u64,
    len: u64,
}

impl SliceBody {
    pub fn new(inner: Body, offset: u64, len: u64) -> Self {
        SliceBody { inner, offset, len }
    }
}

impl StoredBody for SliceBody {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - offset) as usize;
        self.inner.read_at(&mut buf[..n], self.offset + offset)
    }
    fn will_read(&self, offset: u64, len: u64) {
        self.inner.will_read(
            self.offset + offset,
            len.min(self.len.saturating_sub(offset)),
        );
    }
}
