//! The object engine: what an object *is* (its metadata document, its
//! logical body) on top of a storage backend. The protocol layer calls it;
//! the FUSE view and the admin API read through it. Encryption and delta
//! compression are stages added here, between the protocol and storage.
//!
//! This room knows no S3 error codes; `EngineError` says what happened and
//! the protocol layer decides how to tell the client.

pub mod body;
pub mod checksum;
pub mod list;
pub mod meta;
pub mod multipart;
pub mod put;

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use md5::Digest as _;

use crate::storage::fs::{BucketEntry, RawObject};
use crate::storage::keypath::{ObjectPath, object_path};
use crate::storage::{FsBackend, StorageError};
pub use body::ByteStream;
pub use meta::ObjectMeta;
pub use put::{StageOptions, Staged};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("corrupt metadata document on {0}: {1}")]
    CorruptMeta(String, meta::MetaError),
    /// The request body stream failed (client went away, bad signature, bad framing).
    #[error("request body: {0}")]
    Body(io::Error),
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("part list not in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum")]
    EntityTooSmall(u32),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl From<io::Error> for EngineError {
    fn from(e: io::Error) -> Self {
        EngineError::Storage(StorageError::Io(e))
    }
}

/// An object's key and metadata, as GET/HEAD/LIST present it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub meta: ObjectMeta,
    /// The object has no `user.dg.metadata`: a file placed in the tree by hand.
    pub unmanaged: bool,
}

/// An object opened for reading: a consistent snapshot of one version.
pub struct OpenObject {
    pub info: ObjectInfo,
    file: Option<std::fs::File>,
}

impl OpenObject {
    /// The bytes `[start, start+len)` of the logical body.
    pub fn into_stream(self, start: u64, len: u64) -> ByteStream {
        match self.file {
            Some(f) if len > 0 => body::file_stream(f, start, len),
            _ => body::empty(),
        }
    }
}

/// The engine for one backend.
#[derive(Debug)]
pub struct ObjectStore {
    pub name: String,
    backend: Arc<FsBackend>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(put::join_err)?
}

/// ETag of a file placed by hand: derived from size and mtime so it changes
/// when the file does, with a "-1" suffix so no client mistakes it for an MD5.
fn unmanaged_etag(size: u64, mtime: SystemTime) -> String {
    let ns = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let d = md5::Md5::digest(format!("dg-unmanaged:{size}:{ns}").as_bytes());
    format!("{}-1", hex::encode(d))
}

fn info_from_raw(key: &str, raw: &RawObject) -> Result<ObjectInfo> {
    match &raw.meta {
        Some(doc) => {
            let meta =
                ObjectMeta::decode(doc).map_err(|e| EngineError::CorruptMeta(key.to_owned(), e))?;
            Ok(ObjectInfo {
                key: key.to_owned(),
                meta,
                unmanaged: false,
            })
        }
        None => {
            let mut meta = ObjectMeta::new(
                raw.stored_len,
                unmanaged_etag(raw.stored_len, raw.mtime),
                raw.mtime,
            );
            meta.content_type = Some("application/octet-stream".into());
            Ok(ObjectInfo {
                key: key.to_owned(),
                meta,
                unmanaged: true,
            })
        }
    }
}

fn parse_key(key: &str) -> Result<ObjectPath> {
    object_path(key).map_err(|e| EngineError::Storage(StorageError::InvalidKey(e)))
}

impl ObjectStore {
    pub fn new(name: String, backend: Arc<FsBackend>) -> Self {
        ObjectStore { name, backend }
    }

    pub fn backend(&self) -> &Arc<FsBackend> {
        &self.backend
    }

    // ---------------------------------------------------------------- buckets

    pub async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let b = self.backend.clone();
        blocking(move || Ok(b.list_buckets()?)).await
    }

    pub async fn bucket_created(&self, bucket: &str) -> Result<SystemTime> {
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || Ok(b.bucket_created(&bucket)?)).await
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || Ok(b.create_bucket(&bucket)?)).await
    }

    /// Deletes an empty bucket; uploads in progress for it are aborted first.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<()> {
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || {
            if !b.bucket_exists(&bucket) {
                return Err(StorageError::NoSuchBucket.into());
            }
            let mut probe = false;
            b.walk(&bucket, "", "", false, &mut |_| {
                probe = true;
                std::ops::ControlFlow::Break(())
            })?;
            if probe {
                return Err(StorageError::BucketNotEmpty.into());
            }
            for (id, state) in b.list_uploads()? {
                if multipart::UploadState::decode(&state).is_some_and(|s| s.bucket == bucket) {
                    let _ = b.remove_upload(&id);
                }
            }
            Ok(b.delete_bucket(&bucket)?)
        })
        .await
    }

    // ---------------------------------------------------------------- objects

    /// Streams a body into the backend's temp area with its digests.
    pub async fn stage(&self, body: ByteStream, opts: StageOptions) -> Result<Staged> {
        put::stage(self.backend.clone(), body, opts).await
    }

    /// Makes a staged body the object `key`, with `meta` (size and ETag are
    /// taken from the staged body).
    pub async fn commit(
        &self,
        bucket: &str,
        key: &str,
        staged: Staged,
        mut meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        let op = parse_key(key)?;
        meta.size = staged.size;
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        let doc = meta.encode();
        blocking(move || Ok(b.publish(&bucket, &op, staged.temp, &doc)?)).await?;
        Ok(meta)
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        let op = parse_key(key)?;
        let (b, bucket, key) = (self.backend.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || info_from_raw(&key, &b.stat(&bucket, &op)?)).await
    }

    pub async fn open(&self, bucket: &str, key: &str) -> Result<OpenObject> {
        let op = parse_key(key)?;
        let (b, bucket, key) = (self.backend.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || {
            let (file, raw) = b.open_object(&bucket, &op)?;
            let info = info_from_raw(&key, &raw)?;
            if info.meta.size != raw.stored_len {
                return Err(EngineError::Storage(StorageError::Io(io::Error::other(
                    format!(
                        "object {key}: file holds {} bytes, metadata says {}",
                        raw.stored_len, info.meta.size
                    ),
                ))));
            }
            Ok(OpenObject { info, file })
        })
        .await
    }

    /// Rewrites the metadata of an existing object in place (CopyObject onto itself).
    pub async fn replace_meta(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<()> {
        let op = parse_key(key)?;
        let (b, bucket, doc) = (self.backend.clone(), bucket.to_owned(), meta.encode());
        blocking(move || Ok(b.set_meta(&bucket, &op, &doc)?)).await
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let op = parse_key(key)?;
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || Ok(b.delete(&bucket, &op)?)).await
    }
}
