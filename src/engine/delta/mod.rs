//! Transparent delta compression: the delta stage between the protocol and
//! storage (docs/delta.md).
//!
//! The deltaspace of an object is its key prefix up to the last `/`. The
//! first eligible object in a deltaspace becomes its *reference*: its body is
//! moved (not copied) into the backend's internal area
//! (`.dg/refs/<bucket>/<hash of prefix>/ref-<id>`) and the object's own file
//! holds a tiny delta against it. Later eligible objects are stored as a
//! VCDIFF delta against the reference when that is small enough, else whole.
//! References are immutable; a deltaspace has at most one; it is removed
//! when the last object that needs it is deleted or overwritten.
//!
//! With encryption on, deltas are computed on plaintext, and the reference
//! and every delta body are DGE1 bodies like any object. Every reconstruction
//! is checked against the object's recorded size and SHA-256 before the first
//! byte is returned.

pub mod codec;
pub mod policy;
pub mod stats;

use std::borrow::BorrowMut;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use sha2::Digest as _;

use super::crypto::{Decryptor, Dek};
use super::meta::{NOTE_DELTA, NOTE_PASSTHROUGH, NOTE_REFERENCE};
use super::put::BodyWriter;
use super::{EngineError, ObjectInfo, ObjectMeta, ObjectStore, OpenBody, OpenObject, Result};
use super::{info_from_raw, parse_key};
use crate::storage::{FileBody, Loc, StorageError, TempFile};
pub use policy::BucketPolicy;

/// Reconstructions up to this size are held in memory; larger ones spool
/// to an encrypted temp file in the internal area.
const MEMORY_SPOOL: u64 = 16 * 1024 * 1024;

/// The delta settings of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaConfig {
    /// Policy of buckets without their own entry.
    pub default_policy: BucketPolicy,
    /// By bucket name on this backend.
    pub buckets: HashMap<String, BucketPolicy>,
    /// Larger objects are stored whole (the encoder indexes the whole
    /// reference in memory: about 4x its size).
    pub max_object_size: u64,
    /// Bytes of decrypted references kept in memory.
    pub cache_bytes: u64,
    /// Encodes running at once (each holds a reference and its index).
    pub concurrency: usize,
}

/// One lock per deltaspace, by (bucket, deltaspace id).
type SpaceLocks = Mutex<HashMap<(String, String), Arc<Mutex<()>>>>;

/// Delta state of one backend: configuration, per-deltaspace locks, the
/// reference cache and the codec slots. The state is shared with the
/// successor a config reload makes ([`Delta::reconfigured`]), so writes on
/// the old and the new configuration still take the same locks.
#[derive(Debug)]
pub struct Delta {
    cfg: DeltaConfig,
    locks: Arc<SpaceLocks>,
    cache: Arc<Mutex<RefCache>>,
    slots: Arc<(Mutex<usize>, Condvar)>,
}

#[derive(Debug, Default)]
struct RefCache {
    bytes: u64,
    /// (id, content), most recently used last.
    order: VecDeque<(String, Arc<Vec<u8>>)>,
}

impl Delta {
    pub fn new(cfg: DeltaConfig) -> Delta {
        Delta {
            cfg,
            locks: Default::default(),
            cache: Default::default(),
            slots: Default::default(),
        }
    }

    /// The same locks and codec slots under a new configuration; the same
    /// reference cache too when the backend is the same (`same_backend`).
    pub fn reconfigured(&self, cfg: DeltaConfig, same_backend: bool) -> Delta {
        Delta {
            cfg,
            locks: self.locks.clone(),
            cache: if same_backend {
                self.cache.clone()
            } else {
                Default::default()
            },
            slots: self.slots.clone(),
        }
    }

    pub fn policy(&self, bucket: &str) -> &BucketPolicy {
        self.cfg
            .buckets
            .get(bucket)
            .unwrap_or(&self.cfg.default_policy)
    }

    fn wants(&self, bucket: &str, key: &str, size: u64) -> bool {
        size > 0 && size <= self.cfg.max_object_size && self.policy(bucket).eligible(key)
    }

    fn lock(&self, bucket: &str, ds: &str) -> Arc<Mutex<()>> {
        let mut m = self.locks.lock().expect("deltaspace locks");
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry((bucket.to_owned(), ds.to_owned()))
            .or_default()
            .clone()
    }

    /// Waits for a codec slot; the slot is freed when the guard drops.
    fn slot(&self) -> SlotGuard<'_> {
        let (m, cv) = &*self.slots;
        let mut busy = m.lock().expect("codec slots");
        while *busy >= self.cfg.concurrency.max(1) {
            busy = cv.wait(busy).expect("codec slots");
        }
        *busy += 1;
        SlotGuard(self)
    }

    fn cached(&self, id: &str) -> Option<Arc<Vec<u8>>> {
        let mut c = self.cache.lock().expect("reference cache");
        let i = c.order.iter().position(|(k, _)| k == id)?;
        let e = c.order.remove(i)?;
        let v = e.1.clone();
        c.order.push_back(e);
        Some(v)
    }

    fn remember(&self, id: &str, content: Arc<Vec<u8>>) {
        let len = content.len() as u64;
        if len > self.cfg.cache_bytes {
            return;
        }
        let mut c = self.cache.lock().expect("reference cache");
        if c.order.iter().any(|(k, _)| k == id) {
            return;
        }
        while c.bytes + len > self.cfg.cache_bytes {
            match c.order.pop_front() {
                Some((_, v)) => c.bytes -= v.len() as u64,
                None => break,
            }
        }
        c.bytes += len;
        c.order.push_back((id.to_owned(), content));
    }

    /// Drops every cached version of reference `id`.
    fn forget(&self, id: &str) {
        let mut c = self.cache.lock().expect("reference cache");
        let prefix = format!("{id}:");
        let mut freed = 0;
        c.order.retain(|(k, v)| {
            let keep = !k.starts_with(&prefix);
            if !keep {
                freed += v.len() as u64;
            }
            keep
        });
        c.bytes -= freed;
    }
}

struct SlotGuard<'a>(&'a Delta);
impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let (m, cv) = &*self.0.slots;
        *m.lock().expect("codec slots") -= 1;
        cv.notify_one();
    }
}

/// The deltaspace of a key: its prefix up to and including the last `/`.
pub fn deltaspace(key: &str) -> &str {
    match key.rfind('/') {
        Some(i) => &key[..=i],
        None => "",
    }
}

/// The directory name of a deltaspace in the internal area.
pub fn deltaspace_id(prefix: &str) -> String {
    hex::encode(&sha2::Sha256::digest(prefix.as_bytes())[..16])
}

/// The identity a reference's data key is bound to (a string no object key
/// can be: object keys never contain NUL).
pub(crate) fn ref_identity(ds: &str, id: &str) -> String {
    format!("\0refs/{ds}/{id}")
}

fn broken(key: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::DeltaBroken {
        key: key.to_owned(),
        reason: why.to_string(),
    }
}

/// A `Write` that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.sha.update(&b[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Read` that hashes what passes through it.
struct HashingRead<R> {
    inner: R,
    sha: sha2::Sha256,
}

impl<R: Read> Read for HashingRead<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(b)?;
        self.sha.update(&b[..n]);
        Ok(n)
    }
}

/// `BodyWriter` as an `io::Write` that counts plaintext bytes.
struct BodyOut<'a> {
    w: BodyWriter<'a>,
    n: u64,
}

impl Write for BodyOut<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.w.write(b).map_err(io::Error::other)?;
        self.n += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sequential reads of an opened body (plain, DGE1 or in memory), from
/// offset 0; owns the object or borrows it.
pub(crate) struct BodyReader<O> {
    obj: O,
    pos: u64,
}

impl<O: BorrowMut<OpenObject>> Read for BodyReader<O> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .obj
            .borrow_mut()
            .read_at(self.pos, buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl OpenObject {
    pub(crate) fn reader(&mut self) -> BodyReader<&mut OpenObject> {
        BodyReader { obj: self, pos: 0 }
    }
}

/// The plaintext of a staged temp file (its length `len`).
fn temp_reader<'a>(
    temp: &'a mut TempFile,
    dek: Option<&Dek>,
    len: u64,
) -> Result<Box<dyn Read + 'a>> {
    use std::io::Seek;
    let f = temp.file();
    f.rewind()?;
    let Some(dek) = dek else {
        return Ok(Box::new(io::BufReader::with_capacity(256 * 1024, f)));
    };
    let key = "(staged body)";
    let stored = f.metadata()?.len();
    let body = crate::storage::BodyReader::new(Arc::new(FileBody::new(f.try_clone()?)?));
    let d = Decryptor::open(body, dek, stored).map_err(|err| EngineError::Crypto {
        key: key.into(),
        err,
    })?;
    let obj = OpenObject {
        info: ObjectInfo {
            key: key.into(),
            meta: ObjectMeta::new(len, String::new(), std::time::SystemTime::now()),
            unmanaged: false,
        },
        body: OpenBody::Encrypted(Box::new(d)),
    };
    Ok(Box::new(BodyReader { obj, pos: 0 }))
}

/// The reference a delta points at: its id and content SHA-256.
struct RefLink<'a> {
    id: &'a str,
    sha: &'a str,
}

/// A delta body written to a temp file (sealed with `dek` when the backend
/// encrypts), `len` bytes of plaintext.
struct Encoded {
    temp: TempFile,
    dek: Option<Dek>,
    len: u64,
}

impl ObjectStore {
    fn delta_cfg(&self) -> Option<&Delta> {
        self.delta.as_deref()
    }

    /// The delta policy of a bucket (None: this backend has no delta stage).
    pub fn delta_policy(&self, bucket: &str) -> Option<&BucketPolicy> {
        self.delta_cfg().map(|d| d.policy(bucket))
    }

    /// Publishes a body (a temp file, sealed with `dek` when the backend
    /// encrypts) as the object `key`: through the delta stage when the
    /// object is eligible, else whole. `meta.size` is the logical size.
    pub(super) fn publish_body(
        &self,
        bucket: &str,
        key: &str,
        temp: TempFile,
        dek: Option<Dek>,
        meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        let m = self.publish_staged(bucket, key, temp, dek, meta)?;
        let (outcome, stored) = match m.note.as_deref() {
            // The object is a delta against itself; its reference holds the bytes.
            Some(NOTE_REFERENCE) => ("reference", m.size + m.stored_size.unwrap_or(0)),
            Some(NOTE_DELTA) => ("delta", m.stored_size.unwrap_or(m.size)),
            Some(NOTE_PASSTHROUGH) => ("passthrough", m.size),
            _ => ("whole", m.size),
        };
        crate::metrics::written(outcome, m.size, stored);
        Ok(m)
    }

    fn publish_staged(
        &self,
        bucket: &str,
        key: &str,
        mut temp: TempFile,
        mut dek: Option<Dek>,
        mut meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        parse_key(key)?;
        if key.ends_with('/') && meta.size == 0 && dek.is_some() {
            // A folder marker: nothing to encrypt, and a filesystem keeps
            // it as a directory, which holds no body.
            temp = self.backend.new_temp()?;
            dek = None;
        }
        meta.encrypted = None;
        meta.key_id = None;
        meta.wrapped_key = None;
        meta.note = None;
        meta.ref_id = None;
        meta.ref_sha256 = None;
        meta.stored_size = None;
        meta.segments = None;
        meta.pending_upload = None;
        let Some(delta) = self.delta_cfg().filter(|d| d.wants(bucket, key, meta.size)) else {
            // Not eligible: whole. An overwritten delta object may have been
            // the last user of its reference.
            // (Only a deltaspace that has a reference can hold delta objects:
            // one directory lookup spares the metadata read on most PUTs.)
            let prefix = deltaspace(key);
            let old_delta = self.delta_cfg().is_some()
                && !self
                    .backend
                    .list_refs(bucket, &deltaspace_id(prefix))?
                    .is_empty()
                && self
                    .head_blocking(bucket, key)
                    .is_ok_and(|o| o.meta.is_delta());
            if !old_delta {
                self.publish_whole(bucket, key, temp, dek.as_ref(), &mut meta)?;
                return Ok(meta);
            }
            let lock = self
                .delta_cfg()
                .expect("checked")
                .lock(bucket, &deltaspace_id(prefix));
            let _g = lock.lock().expect("deltaspace lock");
            self.publish_whole(bucket, key, temp, dek.as_ref(), &mut meta)?;
            self.collect_refs(bucket, prefix)?;
            return Ok(meta);
        };
        let prefix = deltaspace(key);
        let ds = deltaspace_id(prefix);
        let lock = delta.lock(bucket, &ds);
        let _g = lock.lock().expect("deltaspace lock");
        let _slot = delta.slot();
        let refs = self.backend.list_refs(bucket, &ds)?;
        let size = meta.size;
        let Some(id) = refs.last() else {
            // The first eligible object: its body becomes the reference.
            let mut content = Vec::with_capacity(size as usize);
            temp_reader(&mut temp, dek.as_ref(), size)?.read_to_end(&mut content)?;
            if content.len() as u64 != size {
                return Err(io::Error::other("staged body changed size").into());
            }
            let sha = hex::encode(sha2::Sha256::digest(&content[..]));
            let id = format!("ref-{}", uuid::Uuid::new_v4().simple());
            let mut rmeta = ObjectMeta::new(size, meta.etag.clone(), std::time::SystemTime::now());
            rmeta.sha256 = Some(sha.clone());
            rmeta.user.insert("deltaspace".into(), prefix.to_owned());
            if let Some(dek) = &dek {
                self.seal_meta(bucket, &ref_identity(&ds, &id), dek, &mut rmeta);
            }
            self.backend
                .publish(&Loc::reference(bucket, &ds, &id), temp, &rmeta.encode())?;
            let stored = self
                .encode_delta(&content, &mut &content[..])
                .and_then(|(enc, _)| {
                    let link = RefLink { id: &id, sha: &sha };
                    self.publish_delta(bucket, key, &content, enc, NOTE_REFERENCE, link, &sha, meta)
                });
            if stored.is_err() {
                self.backend.delete(&Loc::reference(bucket, &ds, &id))?;
            }
            return stored;
        };
        let id = id.clone();
        let (reference, ref_sha) = self.load_ref(bucket, &ds, &id, key)?;
        let (enc, read, sha) = {
            let mut src = HashingRead {
                inner: temp_reader(&mut temp, dek.as_ref(), size)?,
                sha: sha2::Sha256::new(),
            };
            let (enc, read) = self.encode_delta(&reference, &mut src)?;
            (enc, read, hex::encode(src.sha.finalize()))
        };
        if read != size {
            return Err(io::Error::other("staged body changed size").into());
        }
        let (dlen, ratio) = (enc.len, enc.len as f64 / size as f64);
        let limit = delta.policy(bucket).max_delta_ratio;
        let old_delta = self
            .head_blocking(bucket, key)
            .is_ok_and(|o| o.meta.is_delta());
        if ratio < limit {
            let link = RefLink {
                id: &id,
                sha: &ref_sha,
            };
            match self.publish_delta(
                bucket,
                key,
                &reference,
                enc,
                NOTE_DELTA,
                link,
                &sha,
                meta.clone(),
            ) {
                Ok(m) => {
                    tracing::debug!(bucket, key, size, delta = dlen, ratio, "stored as a delta");
                    return Ok(m);
                }
                Err(e) => {
                    tracing::warn!(bucket, key, error = %e, "a fresh delta did not reconstruct the object; storing it whole");
                }
            }
        }
        // Too different (or a failed check): whole.
        meta.note = Some(NOTE_PASSTHROUGH.into());
        meta.sha256 = Some(sha);
        self.publish_whole(bucket, key, temp, dek.as_ref(), &mut meta)?;
        tracing::debug!(
            bucket,
            key,
            size,
            delta = dlen,
            ratio,
            limit,
            "stored whole: the delta is not small enough"
        );
        if old_delta {
            self.collect_refs(bucket, prefix)?;
        }
        Ok(meta)
    }

    /// Seals `meta` for `key` (when `dek`) and publishes `temp` as the object.
    fn publish_whole(
        &self,
        bucket: &str,
        key: &str,
        temp: TempFile,
        dek: Option<&Dek>,
        meta: &mut ObjectMeta,
    ) -> Result<()> {
        if let Some(dek) = dek {
            self.seal_meta(bucket, key, dek, meta);
        }
        parse_key(key)?;
        Ok(self
            .backend
            .publish(&Loc::object(bucket, key), temp, &meta.encode())?)
    }

    /// Encodes `target` against `reference` into a new delta body; also
    /// returns how many target bytes were read.
    fn encode_delta(&self, reference: &[u8], target: &mut dyn Read) -> Result<(Encoded, u64)> {
        let mut temp = self.backend.new_temp()?;
        let dek = self.enc.encrypts().then(Dek::generate);
        let (read, len) = {
            let mut out = BodyOut {
                w: BodyWriter::new(temp.file(), dek.as_ref())?,
                n: 0,
            };
            let started = std::time::Instant::now();
            let read = codec::encode(reference, target, &mut out)?;
            crate::metrics::delta_encoded(started.elapsed());
            let n = out.n;
            out.w.finish()?;
            (read, n)
        };
        Ok((Encoded { temp, dek, len }, read))
    }

    /// Checks that a fresh delta reconstructs the object (size and SHA-256
    /// `sha`), then publishes it as `key` with `note` and its reference link.
    #[allow(clippy::too_many_arguments)]
    fn publish_delta(
        &self,
        bucket: &str,
        key: &str,
        reference: &[u8],
        mut enc: Encoded,
        note: &str,
        link: RefLink<'_>,
        sha: &str,
        mut meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        self.verify_delta(reference, &mut enc, meta.size, sha)?;
        meta.note = Some(note.into());
        meta.ref_id = Some(link.id.into());
        meta.ref_sha256 = Some(link.sha.into());
        meta.sha256 = Some(sha.into());
        meta.stored_size = Some(enc.len);
        self.publish_whole(bucket, key, enc.temp, enc.dek.as_ref(), &mut meta)?;
        Ok(meta)
    }

    /// Decodes a freshly written delta once and compares size and SHA-256.
    fn verify_delta(
        &self,
        reference: &[u8],
        enc: &mut Encoded,
        size: u64,
        sha: &str,
    ) -> Result<()> {
        let (dek, dlen) = (enc.dek.as_ref(), enc.len);
        codec::check_framing(&mut temp_reader(&mut enc.temp, dek, dlen)?, dlen, size)?;
        let mut sink = Hashing {
            inner: io::sink(),
            sha: sha2::Sha256::new(),
            n: 0,
        };
        codec::decode(
            reference,
            &mut temp_reader(&mut enc.temp, dek, dlen)?,
            &mut sink,
        )?;
        if sink.n != size || hex::encode(sink.sha.finalize()) != sha {
            return Err(io::Error::other("the delta does not reconstruct the object").into());
        }
        Ok(())
    }

    /// The content of reference `id` (decrypted, SHA-256 checked), from the
    /// cache or the disk. `key` names the object that needs it, for errors.
    fn load_ref(
        &self,
        bucket: &str,
        ds: &str,
        id: &str,
        key: &str,
    ) -> Result<(Arc<Vec<u8>>, String)> {
        let delta = self.delta_cfg();
        let at = Loc::reference(bucket, ds, id);
        let raw = match self.backend.stat(&at) {
            Ok(raw) => raw,
            Err(StorageError::NoSuchKey) => {
                return Err(broken(key, format!("its reference {id} is missing")));
            }
            Err(e) => return Err(e.into()),
        };
        let rinfo = info_from_raw(&ref_identity(ds, id), &raw)?;
        let want_sha = rinfo
            .meta
            .sha256
            .clone()
            .ok_or_else(|| broken(key, "its reference has no SHA-256"))?;
        // Cached per file version: a file changed on disk (damage, restore)
        // is read and checked again.
        let mtime_ns = raw
            .mtime
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let cache_key = format!(
            "{id}:{}:{mtime_ns}:{}",
            raw.stored_len,
            raw.version.as_deref().unwrap_or("")
        );
        if let Some(c) = delta.and_then(|d| d.cached(&cache_key)) {
            crate::metrics::reference_cache(true);
            return Ok((c, want_sha));
        }
        crate::metrics::reference_cache(false);
        let (file, raw) = match self.backend.open(&at) {
            Ok((Some(body), raw)) => (crate::storage::BodyReader::new(body), raw),
            Ok((None, _)) | Err(StorageError::NoSuchKey) => {
                return Err(broken(key, format!("its reference {id} is missing")));
            }
            Err(e) => return Err(e.into()),
        };
        let mut content = Vec::with_capacity(rinfo.meta.size as usize);
        if rinfo.meta.encrypted.is_some() {
            let dek = self.unwrap_meta(bucket, &rinfo.key, &rinfo.meta)?;
            let mut d = Decryptor::open(file, &dek, raw.stored_len)
                .map_err(|err| broken(key, format!("its reference does not decrypt: {err}")))?;
            d.read_range(0, rinfo.meta.size, |b| {
                content.extend_from_slice(&b);
                ControlFlow::Continue(())
            })
            .map_err(|err| broken(key, format!("its reference does not decrypt: {err}")))?;
        } else {
            io::BufReader::new(file).read_to_end(&mut content)?;
        }
        let got = hex::encode(sha2::Sha256::digest(&content));
        if content.len() as u64 != rinfo.meta.size || got != want_sha {
            return Err(broken(
                key,
                format!("its reference {id} is damaged (SHA-256 mismatch)"),
            ));
        }
        let content = Arc::new(content);
        if let Some(d) = delta {
            d.remember(&cache_key, content.clone());
        }
        Ok((content, want_sha))
    }

    /// Rebuilds a delta object from its stored body: reference + delta,
    /// verified against the recorded size and SHA-256 before it is returned.
    pub(super) fn reconstruct(&self, bucket: &str, stored: OpenObject) -> Result<OpenObject> {
        let started = std::time::Instant::now();
        let out = self.reconstruct_inner(bucket, stored);
        if out.is_ok() {
            crate::metrics::delta_reconstructed(started.elapsed());
        }
        out
    }

    fn reconstruct_inner(&self, bucket: &str, mut stored: OpenObject) -> Result<OpenObject> {
        let key = stored.info.key.clone();
        let meta = stored.info.meta.clone();
        let id = meta.ref_id.clone().unwrap_or_default();
        let ds = deltaspace_id(deltaspace(&key));
        let (reference, ref_sha) = self.load_ref(bucket, &ds, &id, &key)?;
        if meta.ref_sha256.as_deref().is_some_and(|s| s != ref_sha) {
            return Err(broken(
                &key,
                "its reference is not the one it was computed against",
            ));
        }
        let body = meta.body_size();
        codec::check_framing(&mut stored.reader(), body, meta.size).map_err(|e| broken(&key, e))?;
        let want = meta.sha256.clone().unwrap_or_default();
        let fail = |e: &dyn std::fmt::Display| broken(&key, e);
        let spooled = if meta.size <= MEMORY_SPOOL {
            let mut out = Hashing {
                inner: Vec::with_capacity(meta.size as usize),
                sha: sha2::Sha256::new(),
                n: 0,
            };
            codec::decode(&reference, &mut stored.reader(), &mut out).map_err(|e| fail(&e))?;
            if out.n != meta.size || hex::encode(out.sha.finalize()) != want {
                return Err(fail(&"the reconstruction does not match its SHA-256"));
            }
            OpenBody::Memory(Bytes::from(out.inner))
        } else {
            // Spooled through an ephemeral key: no plaintext reaches the disk.
            let mut temp = self.backend.new_temp()?;
            let dek = Dek::generate();
            let (n, sha) = {
                let mut out = Hashing {
                    inner: BodyOut {
                        w: BodyWriter::new(temp.file(), Some(&dek))?,
                        n: 0,
                    },
                    sha: sha2::Sha256::new(),
                    n: 0,
                };
                codec::decode(&reference, &mut stored.reader(), &mut out).map_err(|e| fail(&e))?;
                out.inner.w.finish()?;
                (out.n, hex::encode(out.sha.finalize()))
            };
            if n != meta.size || sha != want {
                return Err(fail(&"the reconstruction does not match its SHA-256"));
            }
            let file = FileBody::new(std::fs::File::open(temp.path())?)?;
            let stored_len = crate::storage::StoredBody::len(&file);
            drop(temp); // unlinked; the open handle keeps the data until closed
            let file = crate::storage::BodyReader::new(Arc::new(file));
            let d = Decryptor::open(file, &dek, stored_len).map_err(|err| EngineError::Crypto {
                key: key.clone(),
                err,
            })?;
            OpenBody::Encrypted(Box::new(d))
        };
        Ok(OpenObject {
            info: stored.info,
            body: spooled,
        })
    }

    /// Removes a deltaspace's reference when no object in it needs it any more.
    /// Call with the deltaspace lock held.
    fn collect_refs(&self, bucket: &str, prefix: &str) -> Result<()> {
        let ds = deltaspace_id(prefix);
        let refs = self.backend.list_refs(bucket, &ds)?;
        if refs.is_empty() {
            return Ok(());
        }
        let mut used: Vec<String> = Vec::new();
        self.each_object(bucket, prefix, "", true, &mut |key, raw| {
            if let Ok(raw) = raw
                && let Ok(info) = info_from_raw(key, &raw)
                && info.meta.is_delta()
                && let Some(id) = info.meta.ref_id
                && !used.contains(&id)
            {
                used.push(id);
            }
            ControlFlow::Continue(())
        })?;
        for id in refs {
            if !used.contains(&id) {
                self.backend.delete(&Loc::reference(bucket, &ds, &id))?;
                if let Some(d) = self.delta_cfg() {
                    d.forget(&id);
                }
                tracing::debug!(bucket, prefix, reference = %id, "reference removed: no object needs it");
            }
        }
        Ok(())
    }

    /// Deletes an object; a delta object's reference goes with its last user.
    pub(super) fn delete_blocking(&self, bucket: &str, key: &str) -> Result<()> {
        parse_key(key)?;
        let at = Loc::object(bucket, key);
        let Some(d) = self.delta_cfg() else {
            return Ok(self.backend.delete(&at)?);
        };
        let old = self.head_blocking(bucket, key).ok();
        if !old.is_some_and(|o| o.meta.is_delta()) {
            return Ok(self.backend.delete(&at)?);
        }
        let prefix = deltaspace(key);
        let lock = d.lock(bucket, &deltaspace_id(prefix));
        let _g = lock.lock().expect("deltaspace lock");
        self.backend.delete(&at)?;
        self.collect_refs(bucket, prefix)
    }
}

impl ObjectStore {
    /// Rewrites the references of `bucket` that do not match the current
    /// encryption config (the re-encrypt job). Returns (rewritten, failed).
    pub(super) fn reencrypt_refs(&self, bucket: &str) -> Result<(u64, u64)> {
        let (mut done, mut failed) = (0, 0);
        for (b, ds, id) in self.backend.all_refs()? {
            if b != bucket {
                continue;
            }
            let res = (|| -> Result<bool> {
                let raw = self.backend.stat(&Loc::reference(bucket, &ds, &id))?;
                let ident = ref_identity(&ds, &id);
                let mut m = info_from_raw(&ident, &raw)?.meta;
                if self.matches_config(&m) {
                    return Ok(false);
                }
                let (content, _) = self.load_ref(bucket, &ds, &id, &ident)?;
                let dek = self.enc.encrypts().then(Dek::generate);
                let mut temp = self.backend.new_temp()?;
                {
                    let mut out = BodyWriter::new(temp.file(), dek.as_ref())?;
                    out.write(&content)?;
                    out.finish()?;
                }
                m.encrypted = None;
                m.key_id = None;
                m.wrapped_key = None;
                if let Some(dek) = &dek {
                    self.seal_meta(bucket, &ident, dek, &mut m);
                }
                self.backend
                    .publish(&Loc::reference(bucket, &ds, &id), temp, &m.encode())?;
                Ok(true)
            })();
            match res {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(bucket, reference = %id, error = %e, "re-encrypt: reference left as it was");
                    failed += 1;
                }
            }
        }
        Ok((done, failed))
    }
}
