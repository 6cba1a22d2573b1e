//! Multipart uploads: state and parts live in the backend's internal area and
//! survive restarts; completion concatenates the parts into a temp file and
//! publishes it atomically like any other object.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime};

use md5::Digest as _;
use serde::{Deserialize, Serialize};

use super::checksum::{ChecksumAlgorithm, b64, unb64};
use super::conditional::WriteCondition;
use super::meta::{ObjectMeta, StoredChecksum, to_ms};
use std::sync::Arc;

use super::crypto::{self, Dek};
use super::put::BodyWriter;
use super::{EngineError, ObjectStore, Result, Staged, blocking, parse_key};
use crate::storage::{Loc, StorageError};

/// How long a completed upload's id is remembered, so that a retried
/// CompleteMultipartUpload gets the same answer instead of NoSuchUpload.
pub const COMPLETED_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// S3's minimum size for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PART_NUMBER: u32 = 10_000;

/// The durable state of an upload in progress (`upload.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    pub v: u32,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: u64,
    /// Metadata given at CreateMultipartUpload (size and ETag filled at completion).
    pub template: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_alg: Option<String>,
    /// FULL_OBJECT or COMPOSITE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Parts go to the backend as they arrive (an S3 upstream's own
    /// multipart upload); the object is their concatenation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct: bool,
    /// A direct upload's data key (every part is a DGE1 segment under it),
    /// wrapped for the object's identity, and its key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

impl UploadState {
    pub fn decode(raw: &[u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }
    pub fn checksum_algorithm(&self) -> Option<ChecksumAlgorithm> {
        self.checksum_alg
            .as_deref()
            .and_then(ChecksumAlgorithm::parse)
    }
    pub fn is_full_object(&self) -> bool {
        self.checksum_type.as_deref() == Some("FULL_OBJECT")
    }
}

/// A stored part's metadata (in the part file's xattr).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartMeta {
    pub etag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Key id and wrapped data key when the part file is a DGE1 body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_key: Option<String>,
}

/// The identity a part's data key is bound to.
fn part_identity(id: &str, number: u32) -> String {
    format!("{id}/part-{number}")
}
pub(super) const PART_BUCKET: &str = ".dg-multipart";

/// For a part of an upload in progress (its metadata document `doc`): the
/// identity its data key is bound to and its encryption fields, when the
/// part is sealed.
pub(super) fn part_key_info(id: &str, number: u32, doc: &[u8]) -> Option<(String, ObjectMeta)> {
    let pm: PartMeta = serde_json::from_slice(doc).ok()?;
    pm.wrapped_key.as_ref()?;
    let mut meta = ObjectMeta::new(pm.size, String::new(), SystemTime::now());
    meta.encrypted = Some(super::meta::ENCRYPTED_MARKER.to_owned());
    meta.key_id = pm.key_id;
    meta.wrapped_key = pm.wrapped_key;
    Some((part_identity(id, number), meta))
}

#[derive(Debug, Clone)]
pub struct PartInfo {
    pub number: u32,
    pub meta: PartMeta,
    pub mtime: SystemTime,
}

/// What a completion publishes (`complete.json`): written before the
/// object is published, kept after it as the answer to retried Completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompletionRecord {
    pub v: u32,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    /// (part number, ETag) of every part named by the completion.
    pub parts: Vec<(u32, String)>,
    pub completed_ms: u64,
    /// A direct upload's final document (recovery writes it if a crash
    /// came between the upstream completion and the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_meta: Option<ObjectMeta>,
}

impl CompletionRecord {
    fn same_request(&self, bucket: &str, key: &str, wanted: &[CompletePart]) -> bool {
        self.bucket == bucket
            && self.key == key
            && self.parts.len() == wanted.len()
            && self
                .parts
                .iter()
                .zip(wanted)
                .all(|((n, e), w)| *n == w.number && e == w.etag.trim_matches('"'))
    }

    fn answer(&self) -> ObjectMeta {
        let mut m = ObjectMeta::new(self.size, self.etag.clone(), SystemTime::now());
        m.parts = Some(self.parts.len() as u32);
        m.checksum = self.checksum.clone();
        m
    }
}

/// One lock per upload id: UploadPart's final rename holds it shared,
/// Complete and Abort hold it exclusive, so a part either lands before a
/// completion reads the part list or finds the upload gone (NoSuchUpload).
#[derive(Debug, Default)]
pub struct UploadLocks(Mutex<HashMap<String, Weak<tokio::sync::RwLock<()>>>>);

impl UploadLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut m = self.0.lock().expect("upload lock table");
        if let Some(l) = m.get(id).and_then(Weak::upgrade) {
            return l;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::RwLock::new(()));
        m.insert(id.to_owned(), Arc::downgrade(&l));
        l
    }
}

/// A part as named in CompleteMultipartUpload.
#[derive(Debug, Clone)]
pub struct CompletePart {
    pub number: u32,
    pub etag: String,
    pub checksum: Option<String>,
}

impl ObjectStore {
    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        template: ObjectMeta,
        checksum: Option<(ChecksumAlgorithm, bool)>,
    ) -> Result<String> {
        parse_key(key)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        // Straight to the backend part by part when it can take them and
        // the object will not be delta-encoded (which needs it whole).
        let direct = self.backend.supports_direct()
            && !self.delta_policy(bucket).is_some_and(|p| p.eligible(key));
        let mut pending = template.clone();
        pending.pending_upload = Some(id.clone());
        if direct && let Some(dek) = self.enc.encrypts().then(Dek::generate) {
            self.seal_meta(bucket, key, &dek, &mut pending);
        }
        let mut state = UploadState {
            v: 1,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            initiated_ms: to_ms(SystemTime::now()),
            template,
            checksum_alg: checksum.map(|(a, _)| a.name().to_owned()),
            checksum_type: checksum
                .map(|(_, full)| if full { "FULL_OBJECT" } else { "COMPOSITE" }.to_owned()),
            direct,
            key_id: None,
            wrapped_key: None,
        };
        if direct {
            state.key_id = pending.key_id.clone();
            state.wrapped_key = pending.wrapped_key.clone();
        }
        let (b, idc, bucket, keyc) = (
            self.backend.clone(),
            id.clone(),
            bucket.to_owned(),
            key.to_owned(),
        );
        let doc = serde_json::to_vec(&state).expect("state serializes");
        blocking(move || {
            if !b.bucket_exists(&bucket)? {
                return Err(StorageError::NoSuchBucket.into());
            }
            b.create_upload(&idc, &doc)?;
            if direct
                && let Err(e) =
                    b.begin_direct(&idc, &Loc::object(&bucket, &keyc), &pending.encode())
            {
                let _ = b.remove_upload(&idc);
                return Err(e.into());
            }
            Ok(())
        })
        .await?;
        Ok(id)
    }

    pub async fn upload_state(&self, id: &str) -> Result<UploadState> {
        let (b, id) = (self.backend.clone(), id.to_owned());
        blocking(move || {
            let raw = b.read_upload(&id)?;
            UploadState::decode(&raw).ok_or(EngineError::Storage(StorageError::NoSuchUpload))
        })
        .await
    }

    /// Stages part `number`'s body: for a direct upload sealed with the
    /// upload data key's segment key for that number (its parts are the
    /// segments of one object), else like any body (the part gets a data
    /// key of its own).
    pub async fn stage_part(
        &self,
        state: &UploadState,
        number: u32,
        body: super::ByteStream,
        opts: super::StageOptions,
    ) -> Result<Staged> {
        if !state.direct {
            return self.stage(body, opts).await;
        }
        self.ensure_space(opts.expected_size)?;
        let dek = match &state.wrapped_key {
            Some(w) => {
                let mut m = ObjectMeta::new(0, String::new(), SystemTime::now());
                m.encrypted = Some(super::meta::ENCRYPTED_MARKER.to_owned());
                m.key_id = state.key_id.clone();
                m.wrapped_key = Some(w.clone());
                // Each part under its own segment key: a part moved to
                // another position does not authenticate.
                Some(
                    self.unwrap_meta(&state.bucket, &state.key, &m)?
                        .segment_key(number),
                )
            }
            None => None,
        };
        super::put::stage(self.backend.clone(), body, opts, dek).await
    }

    pub async fn upload_part(&self, id: &str, number: u32, mut staged: Staged) -> Result<PartMeta> {
        let state = self.upload_state(id).await?;
        let mut sealed = ObjectMeta::new(0, String::new(), SystemTime::now());
        if state.direct {
            // Sealed with the upload's key (`stage_part`), nothing to wrap.
            staged.dek = None;
        } else if let Some(dek) = staged.dek.take() {
            self.seal_meta(PART_BUCKET, &part_identity(id, number), &dek, &mut sealed);
        }
        let pm = PartMeta {
            key_id: sealed.key_id,
            wrapped_key: sealed.wrapped_key,
            etag: hex::encode(staged.md5),
            size: staged.size,
            checksum: staged
                .checksum
                .as_ref()
                .filter(|(a, _)| Some(*a) == state.checksum_algorithm())
                .map(|(_, v)| b64(v)),
        };
        let doc = serde_json::to_vec(&pm).expect("part meta serializes");
        let guard = self.upload_locks.get(id).read_owned().await;
        let (b, id) = (self.backend.clone(), id.to_owned());
        blocking(move || {
            let _guard = guard;
            Ok(b.put_part(&id, number, staged.temp, &doc)?)
        })
        .await?;
        Ok(pm)
    }

    pub async fn list_parts(&self, id: &str) -> Result<Vec<PartInfo>> {
        let (b, id) = (self.backend.clone(), id.to_owned());
        blocking(move || {
            let mut out = Vec::new();
            for p in b.list_parts(&id)? {
                let Ok(meta) = serde_json::from_slice::<PartMeta>(&p.meta) else {
                    continue;
                };
                out.push(PartInfo {
                    number: p.number,
                    meta,
                    mtime: p.mtime,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn abort_upload(&self, id: &str) -> Result<()> {
        let guard = self.upload_locks.get(id).write_owned().await;
        let (b, id) = (self.backend.clone(), id.to_owned());
        blocking(move || {
            let _guard = guard;
            Ok(b.remove_upload(&id)?)
        })
        .await
    }

    /// Finishes what a crash interrupted (startup, before serving): a
    /// completion whose object was published is retired; one whose object
    /// was not published loses its intent and stays an open upload. Then
    /// half-deleted uploads and expired completion records are removed.
    pub fn recover_uploads(&self) -> Result<()> {
        let b = &self.backend;
        for (id, doc) in b.list_completing()? {
            let rec: Option<CompletionRecord> = serde_json::from_slice(&doc).ok();
            let published = rec.as_ref().is_some_and(|r| {
                self.head_blocking(&r.bucket, &r.key)
                    .is_ok_and(|o| o.meta.upload_id.as_deref() == Some(id.as_str()))
            });
            // A direct upload completed upstream whose final document was
            // not written yet: write it now.
            if !published
                && let Some(r) = &rec
                && let Some(fm) = &r.final_meta
                && self.pending_for(&r.bucket, &r.key, &id)
            {
                b.set_meta(&Loc::object(&r.bucket, &r.key), &fm.encode())?;
                b.retire_upload(&id)?;
                tracing::info!(backend = %self.name, upload = %id, "finished a direct multipart completion interrupted before its final document was written");
                continue;
            }
            if published {
                b.retire_upload(&id)?;
                tracing::info!(backend = %self.name, upload = %id, "finished a multipart completion interrupted after its object was published");
            } else {
                b.cancel_complete(&id)?;
                tracing::warn!(backend = %self.name, upload = %id, "a multipart completion was interrupted before its object was published; the upload stays open for a retry");
            }
        }
        let sweep = b.sweep_uploads(COMPLETED_RETENTION)?;
        if sweep.trash + sweep.orphans + sweep.expired > 0 {
            tracing::info!(backend = %self.name, aborted = sweep.trash, orphans = sweep.orphans, expired_records = sweep.expired, "cleaned multipart leftovers");
        }
        Ok(())
    }

    /// Whether `bucket/key` is the pending result of upload `id`.
    fn pending_for(&self, bucket: &str, key: &str, id: &str) -> bool {
        self.backend
            .stat(&Loc::object(bucket, key))
            .ok()
            .and_then(|r| r.meta)
            .and_then(|d| ObjectMeta::decode(&d).ok())
            .is_some_and(|m| m.pending_upload.as_deref() == Some(id))
    }

    /// Uploads in progress for `bucket`, oldest first.
    pub async fn list_uploads(&self, bucket: &str) -> Result<Vec<(String, UploadState)>> {
        let (b, bucket) = (self.backend.clone(), bucket.to_owned());
        blocking(move || {
            let mut out: Vec<(String, UploadState)> = b
                .list_uploads()?
                .into_iter()
                .filter_map(|(id, raw)| UploadState::decode(&raw).map(|s| (id, s)))
                .filter(|(_, s)| s.bucket == bucket)
                .collect();
            out.sort_by(|a, b| (&a.1.key, a.1.initiated_ms).cmp(&(&b.1.key, b.1.initiated_ms)));
            Ok(out)
        })
        .await
    }

    /// Feeds one part's plaintext into `out`, decrypting it if it is sealed.
    fn copy_part_plaintext(&self, id: &str, p: &PartInfo, out: &mut BodyWriter<'_>) -> Result<()> {
        let part = self.backend.open_part(id, p.number)?;
        let stored_len = part.len();
        let part = crate::storage::BodyReader::new(part);
        let ident = part_identity(id, p.number);
        let crypto_err = |err| EngineError::Crypto {
            key: ident.clone(),
            err,
        };
        let mut failed: Option<EngineError> = None;
        let mut sink = |b: bytes::Bytes| match out.write(&b) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                std::ops::ControlFlow::Break(())
            }
        };
        if p.meta.wrapped_key.is_some() {
            let mut pm = ObjectMeta::new(p.meta.size, String::new(), SystemTime::now());
            pm.key_id = p.meta.key_id.clone();
            pm.wrapped_key = p.meta.wrapped_key.clone();
            let dek = self.unwrap_meta(PART_BUCKET, &ident, &pm)?;
            let mut d = crypto::Decryptor::open(part, &dek, stored_len).map_err(crypto_err)?;
            if d.plaintext_len() != p.meta.size {
                return Err(crypto_err(crypto::CryptoError::InvalidLength));
            }
            d.read_range(0, p.meta.size, &mut sink)
                .map_err(crypto_err)?;
        } else {
            let mut part = part;
            let mut buf = vec![0u8; 1024 * 1024];
            let mut left = p.meta.size;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = std::io::Read::read(&mut part, &mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::other(format!(
                        "part {} changed size on disk",
                        p.number
                    ))
                    .into());
                }
                left -= n as u64;
                if sink(bytes::Bytes::copy_from_slice(&buf[..n])).is_break() {
                    break;
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Assembles the named parts into the object `bucket/key` and retires
    /// the upload, as one durable step (see `storage::uploads`). A retry of a
    /// completion that already happened gets the same answer.
    pub async fn complete_upload(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        id: &str,
        wanted: Vec<CompletePart>,
    ) -> Result<ObjectMeta> {
        self.complete_upload_if(bucket, key, id, wanted, None).await
    }

    /// `complete_upload` when `cond` holds as the object is published
    /// (under the key's lock, see `conditional`).
    pub async fn complete_upload_if(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        id: &str,
        wanted: Vec<CompletePart>,
        cond: Option<WriteCondition>,
    ) -> Result<ObjectMeta> {
        let guard = self.upload_locks.get(id).write_owned().await;
        let no_upload = || EngineError::Storage(StorageError::NoSuchUpload);
        let state = match self.upload_state(id).await {
            Ok(s) if s.bucket == bucket && s.key == key => s,
            Ok(_) => return Err(no_upload()),
            Err(EngineError::Storage(StorageError::NoSuchUpload)) => {
                let (b, idc) = (self.backend.clone(), id.to_owned());
                let rec = blocking(move || Ok(b.read_completed(&idc)?)).await?;
                let rec = rec.and_then(|d| serde_json::from_slice::<CompletionRecord>(&d).ok());
                return match rec {
                    Some(r) if r.same_request(bucket, key, &wanted) => Ok(r.answer()),
                    _ => Err(no_upload()),
                };
            }
            Err(e) => return Err(e),
        };
        parse_key(&state.key)?;
        if let Some(c) = &cond {
            // 412 (or 404) now; checked again as the object is published.
            self.check_condition(bucket, key, c).await?;
        }
        let stored = self.list_parts(id).await?;
        if wanted.is_empty() {
            return Err(EngineError::InvalidPart("the part list is empty".into()));
        }
        if wanted.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(EngineError::InvalidPartOrder);
        }
        let mut chosen = Vec::with_capacity(wanted.len());
        for (i, w) in wanted.iter().enumerate() {
            let p = stored
                .iter()
                .find(|p| p.number == w.number)
                .ok_or_else(|| {
                    EngineError::InvalidPart(format!("part {} was not uploaded", w.number))
                })?;
            if w.etag.trim_matches('"') != p.meta.etag {
                return Err(EngineError::InvalidPart(format!(
                    "part {}: ETag does not match",
                    w.number
                )));
            }
            if let (Some(given), Some(have)) = (&w.checksum, &p.meta.checksum)
                && given != have
            {
                return Err(EngineError::InvalidPart(format!(
                    "part {}: checksum does not match",
                    w.number
                )));
            }
            if i + 1 < wanted.len() && p.meta.size < MIN_PART_SIZE {
                return Err(EngineError::EntityTooSmall(w.number));
            }
            chosen.push(p.clone());
        }

        let mut md5s = Vec::with_capacity(chosen.len() * 16);
        for p in &chosen {
            md5s.extend(hex::decode(&p.meta.etag).unwrap_or_default());
        }
        let n = chosen.len();
        let etag = format!("{}-{n}", hex::encode(md5::Md5::digest(&md5s)));
        let mut meta = state.template.clone();
        meta.etag = etag;
        meta.parts = Some(n as u32);
        meta.mtime_ms = to_ms(SystemTime::now());
        meta.size = chosen.iter().map(|p| p.meta.size).sum();
        meta.checksum = multipart_checksum(&state, &chosen);
        if state.direct {
            return self
                .complete_direct(id, state, chosen, meta, guard, cond)
                .await;
        }

        // The assembled object is written in full before the parts go.
        self.ensure_space(meta.size)?;
        let this = self.clone();
        let (idc, bucket) = (id.to_owned(), state.bucket.clone());
        blocking(move || {
            let b = &this.backend;
            let mut meta = meta;
            let dek = this.enc.encrypts().then(Dek::generate);
            let mut temp = b.new_temp()?;
            let plain_copy = dek.is_none() && chosen.iter().all(|p| p.meta.wrapped_key.is_none());
            if plain_copy {
                for p in &chosen {
                    let part = b.open_part(&idc, p.number)?;
                    // std::io::copy uses copy_file_range between files: no bytes through user space.
                    let copied = match part.as_file() {
                        Some(mut f) => io::copy(&mut f, temp.file())?,
                        None => io::copy(&mut crate::storage::BodyReader::new(part.clone()), temp.file())?,
                    };
                    if copied != p.meta.size {
                        return Err(io::Error::other(format!(
                            "part {} changed size on disk",
                            p.number
                        ))
                        .into());
                    }
                }
                temp.file().flush()?;
            } else {
                // Encrypted parts are sealed one by one (each with its own data
                // key): decrypt them in order and seal the object as one body.
                let mut out = BodyWriter::new(temp.file(), dek.as_ref())?;
                for p in &chosen {
                    this.copy_part_plaintext(&idc, p, &mut out)?;
                }
                out.finish()?;
            }
            let record = CompletionRecord {
                v: 1,
                bucket: bucket.clone(),
                key: state.key.clone(),
                etag: meta.etag.clone(),
                size: meta.size,
                checksum: meta.checksum.clone(),
                parts: chosen.iter().map(|p| (p.number, p.meta.etag.clone())).collect(),
                completed_ms: to_ms(SystemTime::now()),
                final_meta: None,
            };
            b.begin_complete(&idc, &serde_json::to_vec(&record).expect("record serializes"))?;
            crate::failpoint::hit("complete-before-publish");
            meta.upload_id = Some(idc.clone());
            let published = this.publish_locked(&bucket, &state.key, cond.as_ref(), || {
                this.publish_body(&bucket, &state.key, temp, dek, meta)
            });
            let meta = match published {
                Ok(m) => m,
                Err(e) => {
                    let _ = b.cancel_complete(&idc);
                    return Err(e);
                }
            };
            crate::failpoint::hit("complete-after-publish");
            // The object is published: from here the completion has happened,
            // and the answer is 200 whatever the cleanup meets.
            if let Err(e) = b.retire_upload(&idc) {
                tracing::error!(upload = %idc, error = %e, "could not retire a completed upload; the next start finishes it");
            }
            drop(guard);
            Ok(meta)
        })
        .await
    }
}

impl ObjectStore {
    /// Completes a direct upload: the backend joins the parts it already
    /// holds; the document records the segments (encrypted) and the
    /// upload, with the usual intent first.
    async fn complete_direct(
        self: &Arc<Self>,
        id: &str,
        state: UploadState,
        chosen: Vec<PartInfo>,
        mut meta: ObjectMeta,
        guard: tokio::sync::OwnedRwLockWriteGuard<()>,
        cond: Option<WriteCondition>,
    ) -> Result<ObjectMeta> {
        meta.upload_id = Some(id.to_owned());
        meta.pending_upload = None;
        if state.wrapped_key.is_some() {
            meta.encrypted = Some(super::meta::ENCRYPTED_MARKER.to_owned());
            meta.key_id = state.key_id.clone();
            meta.wrapped_key = state.wrapped_key.clone();
            let segs: Vec<(u32, u64)> = chosen.iter().map(|p| (p.number, p.meta.size)).collect();
            meta.segments = Some(super::meta::encode_segments(
                crypto::DEFAULT_CHUNK_EXP,
                &segs,
            ));
        }
        let record = CompletionRecord {
            v: 1,
            bucket: state.bucket.clone(),
            key: state.key.clone(),
            etag: meta.etag.clone(),
            size: meta.size,
            checksum: meta.checksum.clone(),
            parts: chosen
                .iter()
                .map(|p| (p.number, p.meta.etag.clone()))
                .collect(),
            completed_ms: to_ms(SystemTime::now()),
            final_meta: Some(meta.clone()),
        };
        let (this, b, idc) = (self.clone(), self.backend.clone(), id.to_owned());
        blocking(move || {
            let at = Loc::object(&state.bucket, &state.key);
            b.begin_complete(&idc, &serde_json::to_vec(&record).expect("record serializes"))?;
            let numbers: Vec<u32> = chosen.iter().map(|p| p.number).collect();
            let joined = this.publish_locked(&state.bucket, &state.key, cond.as_ref(), || {
                Ok(b.complete_direct(&idc, &at, &numbers, &meta.encode())?)
            });
            if let Err(e) = joined {
                let _ = b.cancel_complete(&idc);
                return Err(e);
            }
            if let Err(e) = b.retire_upload(&idc) {
                tracing::error!(upload = %idc, error = %e, "could not retire a completed upload; the next start finishes it");
            }
            drop(guard);
            Ok(meta)
        })
        .await
    }
}

/// The object checksum from the parts': a full-object CRC combined from the
/// part CRCs, or S3's composite "checksum of checksums-N".
fn multipart_checksum(state: &UploadState, parts: &[PartInfo]) -> Option<StoredChecksum> {
    let alg = state.checksum_algorithm()?;
    let raws: Option<Vec<(Vec<u8>, u64)>> = parts
        .iter()
        .map(|p| Some((unb64(p.meta.checksum.as_deref()?)?, p.meta.size)))
        .collect();
    let raws = raws?;
    if state.is_full_object() && alg.is_crc() {
        let v = alg.combine(&raws)?;
        return Some(StoredChecksum {
            alg: alg.name().into(),
            value: b64(&v),
            kind: "FULL_OBJECT".into(),
        });
    }
    let concat: Vec<u8> = raws.iter().flat_map(|(r, _)| r.iter().copied()).collect();
    Some(StoredChecksum {
        alg: alg.name().into(),
        value: format!("{}-{}", b64(&alg.digest(&concat)), parts.len()),
        kind: "COMPOSITE".into(),
    })
}
