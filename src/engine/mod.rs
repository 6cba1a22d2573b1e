//! The object engine: what an object *is* (its metadata document, its
//! logical body) on top of a storage backend. The protocol layer calls it;
//! the FUSE view and the admin API read through it. Encryption and delta
//! compression are stages added here, between the protocol and storage.
//!
//! This room knows no S3 error codes; `EngineError` says what happened and
//! the protocol layer decides how to tell the client.

pub mod body;
pub mod checksum;
pub mod conditional;
pub mod crypto;
pub mod delta;
pub mod encryption;
pub mod list;
pub mod maintenance;
pub mod meta;
pub mod migrate;
pub mod multipart;
pub mod put;
pub mod reencrypt;
pub mod segments;

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use md5::Digest as _;

use crate::storage::keypath::{ObjectPath, object_path};
use crate::storage::{
    Backend, Body, BodyReader, BucketEntry, Loc, RawObject, StorageError, read_full_at,
};
pub use body::ByteStream;
pub use conditional::WriteCondition;
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
    /// Accepting the write would leave less free space than the configured minimum.
    #[error(
        "not enough free space: {free} bytes free, {needed} needed plus a reserve of {reserve}"
    )]
    InsufficientSpace {
        free: u64,
        needed: u64,
        reserve: u64,
    },
    /// A conditional write's condition is false (412).
    #[error("the write's precondition does not hold")]
    PreconditionFailed,
    /// A conditional write's condition held when it started and not when it
    /// was published: a concurrent write came between (409, retried).
    #[error("a concurrent write changed the object during this conditional write")]
    ConditionalConflict,
    #[error("part {0} is smaller than the 5 MiB minimum")]
    EntityTooSmall(u32),
    /// The object is encrypted with a key id this backend has no key for.
    #[error("object {key} is encrypted with key id '{key_id}', which is not configured")]
    KeyUnavailable { key: String, key_id: String },
    /// The file is a DGE1 body but its metadata has no encryption marker.
    #[error(
        "object {0}: the file is ciphertext (DGE1) but its metadata has no encryption marker; refusing to serve it as plaintext"
    )]
    UnmarkedCiphertext(String),
    /// A delta object cannot be rebuilt (missing or damaged reference,
    /// damaged delta, reconstruction that does not match its SHA-256).
    #[error("object {key}: cannot reconstruct: {reason}")]
    DeltaBroken { key: String, reason: String },
    /// Decryption failed: wrong key, damaged or moved file.
    #[error("object {key}: {err}")]
    Crypto {
        key: String,
        err: crypto::CryptoError,
    },
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

enum OpenBody {
    Empty,
    /// A reconstructed object small enough to hold in memory.
    Memory(bytes::Bytes),
    Plain(Body),
    Encrypted(Box<crypto::Decryptor<BodyReader>>),
    /// DGE1 segments under one data key (`dg-segments`).
    Segmented(Box<segments::Segmented>),
}

impl OpenBody {
    /// Decrypts `[start, start+len)` of an encrypted body (whole or
    /// segmented) into `out`; nothing for the other kinds.
    fn decrypt_range(
        &mut self,
        start: u64,
        len: u64,
        out: &mut dyn FnMut(bytes::Bytes) -> std::ops::ControlFlow<()>,
    ) -> std::result::Result<(), crypto::CryptoError> {
        match self {
            OpenBody::Encrypted(d) => d.read_range(start, len, out),
            OpenBody::Segmented(s) => s.read_range(start, len, out),
            _ => Ok(()),
        }
    }
}

/// An object opened for reading: a consistent snapshot of one version.
pub struct OpenObject {
    pub info: ObjectInfo,
    body: OpenBody,
}

impl OpenObject {
    /// Logical size of the object.
    pub fn size(&self) -> u64 {
        self.info.meta.size
    }

    /// Blocking random read of the logical body into `buf` at `offset`;
    /// returns the bytes read (0 at or past the end). An encrypted object
    /// decrypts only the chunks under the range (the last one is kept, so
    /// small sequential reads decrypt each chunk once); a damaged chunk is an
    /// error, never wrong bytes.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let size = match &self.body {
            OpenBody::Memory(b) => b.len() as u64,
            OpenBody::Encrypted(d) => d.plaintext_len(),
            OpenBody::Segmented(s) => s.plaintext_len(),
            _ => self.info.meta.body_size(),
        };
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(size - offset) as usize;
        match &mut self.body {
            OpenBody::Empty => Ok(0),
            OpenBody::Memory(b) => {
                let o = offset as usize;
                buf[..want].copy_from_slice(&b[o..o + want]);
                Ok(want)
            }
            OpenBody::Plain(f) => Ok(read_full_at(f.as_ref(), &mut buf[..want], offset)?),
            OpenBody::Encrypted(_) | OpenBody::Segmented(_) => {
                let mut done = 0;
                self.body
                    .decrypt_range(offset, want as u64, &mut |piece| {
                        buf[done..done + piece.len()].copy_from_slice(&piece);
                        done += piece.len();
                        std::ops::ControlFlow::Continue(())
                    })
                    .map_err(|err| EngineError::Crypto {
                        key: self.info.key.clone(),
                        err,
                    })?;
                Ok(done)
            }
        }
    }

    /// The bytes `[start, start+len)` of the logical body. For an encrypted
    /// object the first chunk the range needs is authenticated before this
    /// returns, so a wrong key or a damaged start is an error here, before
    /// any status line; damage found later ends the stream with an error.
    pub async fn into_stream(self, start: u64, len: u64) -> Result<ByteStream> {
        if len == 0 {
            return Ok(body::empty());
        }
        match self.body {
            OpenBody::Empty => Ok(body::empty()),
            OpenBody::Memory(b) => Ok(body::once(b.slice(start as usize..(start + len) as usize))),
            OpenBody::Plain(f) => Ok(body::file_stream(f, start, len)),
            OpenBody::Encrypted(mut d) => {
                let key = self.info.key.clone();
                let d = blocking(move || {
                    d.verify_first(start)
                        .map_err(|err| EngineError::Crypto { key, err })?;
                    Ok(d)
                })
                .await?;
                Ok(body::log_errors(
                    crypto::range_stream(*d, start, len),
                    self.info.key,
                ))
            }
            OpenBody::Segmented(mut s) => {
                let key = self.info.key.clone();
                let s = blocking(move || {
                    s.verify_first(start)
                        .map_err(|err| EngineError::Crypto { key, err })?;
                    Ok(s)
                })
                .await?;
                Ok(body::log_errors(s.into_stream(start, len), self.info.key))
            }
        }
    }
}

/// Why writes to a bucket are refused for now (reads continue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteGate {
    /// A re-encrypt job is rewriting the bucket.
    Reencrypt,
    /// A migrate job is copying the bucket to another backend (or has, and
    /// the route switched away from this copy).
    Migrating,
    /// The backend's keys could not be checked against its key check
    /// records yet (the upstream was unreachable), or failed the check.
    KeysUnchecked(String),
}

/// The engine for one backend.
#[derive(Debug)]
pub struct ObjectStore {
    pub name: String,
    backend: Arc<dyn Backend>,
    enc: Arc<encryption::Encryption>,
    /// Free space (bytes) that writes must leave on the backend's filesystem.
    min_free: u64,
    /// The delta stage (None: every object is stored whole).
    delta: Option<Arc<delta::Delta>>,
    /// Shared with the successor a config reload makes.
    upload_locks: Arc<multipart::UploadLocks>,
    /// Held while an object's current version changes (see `conditional`);
    /// shared with the successor too.
    key_locks: Arc<conditional::KeyLocks>,
    /// Why every write is refused, while the keys are not checked.
    held: std::sync::Mutex<Option<String>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
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
            if meta.pending_upload.is_some() {
                // A multipart completion still writing its final document.
                return Err(StorageError::NoSuchKey.into());
            }
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
    pub fn new(name: String, backend: Arc<dyn Backend>, enc: encryption::Encryption) -> Self {
        ObjectStore {
            name,
            backend,
            enc: Arc::new(enc),
            min_free: 0,
            delta: None,
            upload_locks: Default::default(),
            key_locks: Default::default(),
            held: Default::default(),
        }
    }

    /// Turns on the delta stage with `cfg`.
    pub fn with_delta(mut self, cfg: delta::DeltaConfig) -> Self {
        self.delta = Some(Arc::new(delta::Delta::new(cfg)));
        self
    }

    /// This engine's successor after a config reload (`self` keeps serving
    /// the requests already running on it). It shares the upload locks and
    /// the delta locks and codec slots, so requests on both never race; on
    /// the same backend (`backend: None`) also the reference cache.
    pub fn reconfigured(
        &self,
        backend: Option<Arc<dyn Backend>>,
        enc: encryption::Encryption,
        min_free: u64,
        delta: delta::DeltaConfig,
    ) -> ObjectStore {
        let same = backend.is_none();
        let delta = match &self.delta {
            Some(d) => d.reconfigured(delta, same),
            None => delta::Delta::new(delta),
        };
        ObjectStore {
            name: self.name.clone(),
            backend: backend.unwrap_or_else(|| self.backend.clone()),
            enc: Arc::new(enc),
            min_free,
            delta: Some(Arc::new(delta)),
            upload_locks: self.upload_locks.clone(),
            key_locks: self.key_locks.clone(),
            held: Default::default(),
        }
    }

    /// Refuses every write (503 to clients) until [`Self::release_writes`]:
    /// the keys are not checked yet, or failed the check (`why`).
    pub fn hold_writes(&self, why: String) {
        *self.held.lock().expect("write hold") = Some(why);
    }

    pub fn release_writes(&self) {
        *self.held.lock().expect("write hold") = None;
    }

    /// Why writes are held, if they are.
    pub fn writes_held(&self) -> Option<String> {
        self.held.lock().expect("write hold").clone()
    }

    /// Whether this engine's encryption is `enc` (same keys, same ids).
    pub fn same_keys(&self, enc: &encryption::Encryption) -> bool {
        *self.enc == *enc
    }

    /// Sets the free-space reserve that writes must leave (0: no guard).
    pub fn with_min_free(mut self, bytes: u64) -> Self {
        self.min_free = bytes;
        self
    }

    /// Refuses a write of `incoming` bytes that would eat into the reserve;
    /// warns when free space is below twice the reserve.
    fn ensure_space(&self, incoming: u64) -> Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        let (_, free) = self.backend.space()?;
        if free < incoming.saturating_add(self.min_free) {
            tracing::error!(backend = %self.name, free, incoming, reserve = self.min_free, "refusing a write: the data filesystem is nearly full");
            return Err(EngineError::InsufficientSpace {
                free,
                needed: incoming,
                reserve: self.min_free,
            });
        }
        if free < self.min_free.saturating_mul(2) {
            tracing::warn!(backend = %self.name, free, reserve = self.min_free, "the data filesystem is running out of space");
        }
        Ok(())
    }

    pub fn encryption(&self) -> &encryption::Encryption {
        &self.enc
    }

    /// Checks this backend's keys against its key check records, and
    /// against its objects when a record is missing (see
    /// [`encryption::open_keyring`]); `record` writes new records.
    pub fn open_keyring(
        &self,
        sources: (&str, &str),
        record: bool,
    ) -> std::result::Result<Vec<encryption::KeyringNotice>, encryption::KeyringError> {
        encryption::open_keyring(
            &self.name,
            self.backend.as_ref(),
            &self.enc,
            sources,
            record,
            &mut || self.probe_keys().map_err(|e| e.to_string()),
        )
    }

    /// Retires the key check records of every key id but `keep`.
    pub fn retire_other_keys(
        &self,
        keep: Option<&crypto::KeyId>,
    ) -> std::result::Result<Vec<String>, encryption::KeyringError> {
        encryption::retire_other_keys(self.backend.as_ref(), keep)
    }

    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || Ok(b.bucket_exists(&bucket)?)).await
    }

    /// `bucket_exists` for callers already on a blocking thread.
    pub fn bucket_exists_blocking(&self, bucket: &str) -> Result<bool> {
        Ok(self.backend.bucket_exists(bucket)?)
    }

    /// `filesystem` or `s3`.
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Whether the backend answers now (blocking: an upstream is asked).
    pub fn health(&self) -> std::result::Result<(), String> {
        self.backend.health()
    }

    /// `aes256-gcm-proxy`, `sse-s3`, `sse-kms` or `none`.
    pub fn encryption_mode(&self) -> &'static str {
        if self.enc.encrypts() {
            "aes256-gcm-proxy"
        } else {
            self.backend.native_encryption().unwrap_or("none")
        }
    }

    // ---------------------------------------------------------------- buckets

    pub async fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let b = self.backend.clone();
        blocking(move || Ok(b.list_buckets()?)).await
    }

    /// `list_buckets` for callers already on a blocking thread.
    pub fn list_buckets_blocking(&self) -> Result<Vec<BucketEntry>> {
        Ok(self.backend.list_buckets()?)
    }

    /// Total and available bytes of the disk this backend's writes land on.
    pub fn space(&self) -> Result<(u64, u64)> {
        Ok(self.backend.space()?)
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
            if !b.bucket_exists(&bucket)? {
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
    /// Refused with `InsufficientSpace` before anything is written when
    /// `opts.expected_size` would eat into the free-space reserve.
    pub async fn stage(&self, body: ByteStream, opts: StageOptions) -> Result<Staged> {
        self.ensure_space(opts.expected_size)?;
        let dek = self.enc.encrypts().then(crypto::Dek::generate);
        put::stage(self.backend.clone(), body, opts, dek).await
    }

    /// Stamps `meta` with the encryption marker and the data key wrapped for
    /// this object's identity (bucket and key on this backend).
    fn seal_meta(&self, bucket: &str, key: &str, dek: &crypto::Dek, meta: &mut ObjectMeta) {
        let named = self
            .enc
            .current
            .as_ref()
            .expect("a data key exists only when the backend encrypts");
        let identity = crypto::ObjectIdentity { bucket, key };
        let wrapped = crypto::wrap_dek(&named.kek, &named.id, identity, dek);
        meta.encrypted = Some(meta::ENCRYPTED_MARKER.to_owned());
        meta.key_id = Some(named.id.as_str().to_owned());
        meta.wrapped_key = Some(wrapped.to_base64());
        crate::metrics::sealed(&self.name, named.id.as_str());
    }

    /// The data key of an encrypted object, unwrapped with the key its id names.
    fn unwrap_meta(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<crypto::Dek> {
        let key_id = meta.key_id.clone().unwrap_or_default();
        let kek = self
            .enc
            .kek_for(&key_id)
            .ok_or_else(|| EngineError::KeyUnavailable {
                key: key.to_owned(),
                key_id: key_id.clone(),
            })?;
        let crypto_err = |err| EngineError::Crypto {
            key: key.to_owned(),
            err,
        };
        let wrapped = crypto::WrappedDek::from_base64(meta.wrapped_key.as_deref().unwrap_or(""))
            .map_err(crypto_err)?;
        let id = crypto::KeyId::new(&key_id).map_err(crypto_err)?;
        crypto::unwrap_dek(kek, &id, crypto::ObjectIdentity { bucket, key }, &wrapped)
            .map_err(crypto_err)
    }

    /// Makes a staged body the object `key`, with `meta` (size and ETag are
    /// taken from the staged body), through the delta stage when eligible.
    pub async fn commit(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        staged: Staged,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        self.commit_if(bucket, key, staged, meta, None).await
    }

    /// `commit` when `cond` holds at the moment of publishing (checked
    /// under the key's lock: [`EngineError::ConditionalConflict`] if not).
    pub async fn commit_if(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        mut staged: Staged,
        mut meta: ObjectMeta,
        cond: Option<WriteCondition>,
    ) -> Result<ObjectMeta> {
        parse_key(key)?;
        meta.size = staged.size;
        meta.upload_id = None;
        let dek = staged.dek.take();
        let (this, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || {
            this.publish_locked(&bucket, &key, cond.as_ref(), || {
                this.publish_body(&bucket, &key, staged.temp, dek, meta)
            })
        })
        .await
    }

    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        parse_key(key)?;
        let (b, at, key) = (
            self.backend.clone(),
            Loc::object(bucket, key),
            key.to_owned(),
        );
        blocking(move || info_from_raw(&key, &b.stat(&at)?)).await
    }

    /// `head` for callers already on a blocking thread.
    pub fn head_blocking(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        parse_key(key)?;
        info_from_raw(key, &self.backend.stat(&Loc::object(bucket, key))?)
    }

    pub async fn open(self: &Arc<Self>, bucket: &str, key: &str) -> Result<OpenObject> {
        let (this, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || this.open_blocking(&bucket, &key)).await
    }

    /// `open` for callers already on a blocking thread. A delta object is
    /// reconstructed and verified here.
    pub fn open_blocking(&self, bucket: &str, key: &str) -> Result<OpenObject> {
        let stored = self.open_stored_blocking(bucket, key)?;
        if stored.info.meta.is_delta() {
            return self.reconstruct(bucket, stored);
        }
        Ok(stored)
    }

    /// The stored body of an object as it is on disk, decrypted: for a delta
    /// object, the delta (its length is `meta.body_size()`).
    pub(crate) fn open_stored_blocking(&self, bucket: &str, key: &str) -> Result<OpenObject> {
        parse_key(key)?;
        let (this, bucket, key) = (self, bucket.to_owned(), key.to_owned());
        {
            let (file, raw) = this.backend.open(&Loc::object(&bucket, &key))?;
            let info = info_from_raw(&key, &raw)?;
            let Some(file) = file else {
                return Ok(OpenObject {
                    info,
                    body: OpenBody::Empty,
                });
            };
            if info.meta.encrypted.is_some()
                && let Some(seg) = info.meta.segments.as_deref()
            {
                let dek = this.unwrap_meta(&bucket, &key, &info.meta)?;
                let crypto_err = |err| EngineError::Crypto {
                    key: key.clone(),
                    err,
                };
                let (exp, segs) =
                    meta::decode_segments(seg).ok_or(crypto_err(crypto::CryptoError::BadHeader))?;
                let s = segments::Segmented::new(file, dek, exp, &segs).map_err(crypto_err)?;
                if s.plaintext_len() != info.meta.body_size() {
                    return Err(crypto_err(crypto::CryptoError::InvalidLength));
                }
                return Ok(OpenObject {
                    info,
                    body: OpenBody::Segmented(Box::new(s)),
                });
            }
            if info.meta.encrypted.is_some() {
                let dek = this.unwrap_meta(&bucket, &key, &info.meta)?;
                let d = crypto::Decryptor::open(BodyReader::new(file), &dek, raw.stored_len)
                    .map_err(|err| EngineError::Crypto {
                        key: key.clone(),
                        err,
                    })?;
                if d.plaintext_len() != info.meta.body_size() {
                    return Err(EngineError::Crypto {
                        key,
                        err: crypto::CryptoError::InvalidLength,
                    });
                }
                return Ok(OpenObject {
                    info,
                    body: OpenBody::Encrypted(Box::new(d)),
                });
            }
            // Mixed mode: no marker means plaintext, served as stored, unless
            // the body is in fact ciphertext whose metadata was lost (a file
            // without a document). A managed object's document records the
            // size the client sent, so a lost marker shows as a length
            // mismatch below, while a client's own DGE1 file (a backup of a
            // backup, a chained proxy) is served as the bytes it is.
            let mut magic = [0u8; 4];
            if info.unmanaged
                && raw.stored_len >= 4
                && read_full_at(file.as_ref(), &mut magic, 0)? == 4
                && crypto::looks_encrypted(&magic)
            {
                return Err(EngineError::UnmarkedCiphertext(key));
            }
            if info.meta.body_size() != raw.stored_len {
                return Err(EngineError::Storage(StorageError::Io(io::Error::other(
                    format!(
                        "object {key}: file holds {} bytes, metadata says {}",
                        raw.stored_len, info.meta.size
                    ),
                ))));
            }
            Ok(OpenObject {
                info,
                body: OpenBody::Plain(file),
            })
        }
    }

    /// Replaces the client-visible metadata (content type, headers, user
    /// metadata, ACL, time) of an existing object in place (CopyObject onto
    /// itself); size, ETag, checksums and encryption fields stay.
    pub async fn replace_meta(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        new: &ObjectMeta,
        cond: Option<WriteCondition>,
    ) -> Result<ObjectMeta> {
        let new = new.clone();
        self.update_meta(bucket, key, cond, move |meta| {
            meta.content_type = new.content_type.clone();
            meta.headers = new.headers.clone();
            meta.user = new.user.clone();
            meta.acl = new.acl.clone();
            meta.mtime_ms = new.mtime_ms;
        })
        .await
    }

    /// Sets an existing object's canned ACL (`None`: private).
    pub async fn set_acl(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        acl: Option<String>,
    ) -> Result<ObjectMeta> {
        self.update_meta(bucket, key, None, move |meta| meta.acl = acl.clone())
            .await
    }

    /// Changes the client-visible fields of an object's document with `f`,
    /// on the stored version it reads (`Backend::update_meta`).
    async fn update_meta(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        cond: Option<WriteCondition>,
        f: impl Fn(&mut ObjectMeta) + Send + 'static,
    ) -> Result<ObjectMeta> {
        parse_key(key)?;
        let (this, b, at, keyc, bucketc) = (
            self.clone(),
            self.backend.clone(),
            Loc::object(bucket, key),
            key.to_owned(),
            bucket.to_owned(),
        );
        blocking(move || {
            this.publish_locked(&bucketc, &keyc, cond.as_ref(), || {
                let mut out = None;
                let mut err = None;
                let mut edit = |raw: &RawObject| {
                    let mut meta = match info_from_raw(&keyc, raw) {
                        Ok(i) => i.meta,
                        Err(e) => {
                            err = Some(e);
                            return Err(StorageError::NoSuchKey);
                        }
                    };
                    f(&mut meta);
                    let encoded = meta.encode();
                    out = Some(meta);
                    Ok(encoded)
                };
                let written = b.update_meta(&at, &mut edit);
                if let Some(e) = err {
                    return Err(e);
                }
                written?;
                out.ok_or(EngineError::Storage(StorageError::NoSuchKey))
            })
        })
        .await
    }

    pub async fn delete(self: &Arc<Self>, bucket: &str, key: &str) -> Result<()> {
        parse_key(key)?;
        let (this, bucket, key) = (self.clone(), bucket.to_owned(), key.to_owned());
        blocking(move || {
            this.publish_locked(&bucket, &key, None, || this.delete_blocking(&bucket, &key))
        })
        .await
    }
}
