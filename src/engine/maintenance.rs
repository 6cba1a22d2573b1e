//! Whole-backend operator work on the engine's objects: the encryption
//! status census, the audit, key-encryption-key rotation (rewrapping data
//! keys in place, never touching bodies) and the plaintext export for
//! disaster recovery. Blocking; run from the command line tools.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::storage::{BodyReader, Loc};

use serde::Serialize;

use super::crypto::{self, Decryptor};
use super::{EngineError, ObjectInfo, ObjectStore, Result, info_from_raw};

/// What the census found in one backend.
#[derive(Debug, Default, Serialize)]
pub struct Census {
    pub objects: u64,
    pub encrypted: u64,
    pub plaintext: u64,
    /// Encrypted objects whose key id is not configured, or whose data key does not unwrap.
    pub undecryptable: u64,
    /// Objects per key id.
    pub key_ids: BTreeMap<String, u64>,
}

/// The encryption state of one backend, as `encryption status` and the
/// admin API report it. Never key material.
#[derive(Debug, Serialize)]
pub struct EncryptionStatus {
    pub backend: String,
    pub mode: &'static str,
    pub current_key_id: Option<String>,
    pub legacy_key_id: Option<String>,
    #[serde(flatten)]
    pub census: Census,
}

/// What a backend's objects say about one key id (see [`ObjectStore::probe_keys`]).
#[derive(Debug, Default, Clone)]
pub struct KeyEvidence {
    /// Encrypted objects, references and parts stamped with the key id.
    pub objects: u64,
    /// Data keys of a sample that the configured key was tried on...
    pub tried: u32,
    /// ...and how many of them it opened.
    pub opened: u32,
}

/// Data keys tried per key id by the probe: a wrong key opens none of them
/// (AES-GCM key wrap), so a few are proof enough either way.
const PROBE_SAMPLE: u32 = 8;

/// One problem found by the audit.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub bucket: String,
    pub key: String,
    pub problem: String,
}

/// A visitor of objects: (where, info) → continue or stop.
type ObjectVisitor<'a> = dyn FnMut(&Loc, Result<ObjectInfo>) -> ControlFlow<()> + 'a;

/// Every object of every bucket of a backend, then every delta reference
/// (its `key` is the identity its data key is bound to, which starts with NUL).
fn for_each_object(store: &ObjectStore, f: &mut ObjectVisitor<'_>) -> Result<()> {
    let b = &store.backend;
    if for_each_bucket_object(store, f)?.is_break() {
        return Ok(());
    }
    for (bucket, ds, id) in b.all_refs()? {
        let key = super::delta::ref_identity(&ds, &id);
        let at = Loc::reference(&bucket, &ds, &id);
        let info = b
            .stat(&at)
            .map_err(EngineError::from)
            .and_then(|raw| info_from_raw(&key, &raw));
        if f(&at, info).is_break() {
            break;
        }
    }
    Ok(())
}

fn for_each_bucket_object(
    store: &ObjectStore,
    f: &mut ObjectVisitor<'_>,
) -> Result<ControlFlow<()>> {
    for bucket in store.backend.list_buckets()? {
        let mut stop = false;
        store.each_object(&bucket.name, "", "", false, &mut |key, raw| {
            let info = raw
                .map_err(EngineError::from)
                .and_then(|raw| info_from_raw(key, &raw));
            let flow = f(&Loc::object(&bucket.name, key), info);
            stop = flow.is_break();
            flow
        })?;
        if stop {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// How an audit finding names a place: the object key, or the reference.
fn finding_key(at: &Loc) -> String {
    match at {
        Loc::Object { key, .. } => key.clone(),
        Loc::Ref { ds, id, .. } => format!(".dg/refs/{ds}/{id}"),
    }
}

impl ObjectStore {
    /// Checks one encrypted object's envelope and header (and with `deep`,
    /// every chunk). `Ok` means a GET would succeed.
    fn check_encrypted(&self, bucket: &str, info: &ObjectInfo, at: &Loc, deep: bool) -> Result<()> {
        let dek = self.unwrap_meta(bucket, &info.key, &info.meta)?;
        let (body, _) = self.backend.open(at)?;
        let body = body.ok_or(crate::storage::StorageError::NoSuchKey)?;
        let len = body.len();
        let file = BodyReader::new(body);
        let crypto_err = |err| EngineError::Crypto {
            key: info.key.clone(),
            err,
        };
        let mut d = Decryptor::open(file, &dek, len).map_err(crypto_err)?;
        if d.plaintext_len() != info.meta.body_size() {
            return Err(crypto_err(crypto::CryptoError::InvalidLength));
        }
        if deep {
            d.read_range(0, info.meta.body_size(), |_| ControlFlow::Continue(()))
                .map_err(crypto_err)?;
        } else {
            d.verify_first(0).map_err(crypto_err)?;
        }
        Ok(())
    }

    /// Counts objects by encryption state and key id.
    pub fn census(&self) -> Result<Census> {
        let mut c = Census::default();
        for_each_object(self, &mut |at, info| {
            let bucket = at.bucket();
            c.objects += 1;
            match info {
                Ok(info) if info.meta.encrypted.is_some() => {
                    c.encrypted += 1;
                    let id = info.meta.key_id.clone().unwrap_or_default();
                    *c.key_ids.entry(id).or_default() += 1;
                    if self.unwrap_meta(bucket, &info.key, &info.meta).is_err() {
                        c.undecryptable += 1;
                    }
                }
                Ok(_) => c.plaintext += 1,
                Err(_) => c.undecryptable += 1,
            }
            ControlFlow::Continue(())
        })?;
        Ok(c)
    }

    /// Every key id the backend's encrypted objects, references and
    /// multipart parts are stamped with, and for the ids that have a
    /// configured key, whether that key opens a sample of their data keys.
    /// Used at startup when a key check record is missing.
    pub fn probe_keys(&self) -> Result<BTreeMap<String, KeyEvidence>> {
        let mut out: BTreeMap<String, KeyEvidence> = BTreeMap::new();
        let mut note = |id: String, opens: &dyn Fn() -> bool| {
            let configured = self.enc.kek_for(&id).is_some();
            let ev = out.entry(id).or_default();
            ev.objects += 1;
            if configured && ev.tried < PROBE_SAMPLE {
                ev.tried += 1;
                ev.opened += u32::from(opens());
            }
        };
        for_each_object(self, &mut |at, info| {
            let bucket = at.bucket();
            if let Ok(info) = info
                && info.meta.encrypted.is_some()
            {
                let id = info.meta.key_id.clone().unwrap_or_default();
                note(id, &|| {
                    self.unwrap_meta(bucket, &info.key, &info.meta).is_ok()
                });
            }
            ControlFlow::Continue(())
        })?;
        for (upload, number, doc) in self.backend.all_parts()? {
            let Some((ident, meta)) = super::multipart::part_key_info(&upload, number, &doc) else {
                continue;
            };
            let id = meta.key_id.clone().unwrap_or_default();
            note(id, &|| {
                self.unwrap_meta(super::multipart::PART_BUCKET, &ident, &meta)
                    .is_ok()
            });
        }
        Ok(out)
    }

    /// Mode, key ids and the census of this backend.
    pub fn encryption_status(&self) -> Result<EncryptionStatus> {
        Ok(EncryptionStatus {
            backend: self.name.clone(),
            mode: self.encryption_mode(),
            current_key_id: self.enc.current.as_ref().map(|k| k.id.as_str().to_owned()),
            legacy_key_id: self.enc.legacy.as_ref().map(|k| k.id.as_str().to_owned()),
            census: self.census()?,
        })
    }

    /// Read-only check of every object's marker, envelope and header.
    pub fn audit(&self, deep: bool) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        for_each_object(self, &mut |at, info| {
            let bucket = at.bucket();
            let problem = match info {
                Err(e) => Some(e.to_string()),
                Ok(info) if info.meta.encrypted.is_some() => self
                    .check_encrypted(bucket, &info, at, deep)
                    .err()
                    .map(|e| e.to_string()),
                Ok(info) if !info.unmanaged => None,
                Ok(_) => {
                    // Plaintext objects are fine (mixed mode); `status` counts them.
                    let mut magic = [0u8; 4];
                    let starts = matches!(self.backend.open(at), Ok((Some(body), _))
                        if crate::storage::read_full_at(body.as_ref(), &mut magic, 0).ok() == Some(4));
                    (starts && crypto::looks_encrypted(&magic))
                        .then(|| "file is DGE1 ciphertext but has no encryption marker".to_owned())
                }
            };
            if let Some(problem) = problem {
                out.push(Finding {
                    bucket: bucket.to_owned(),
                    key: finding_key(at),
                    problem,
                });
            }
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Rewraps the data key of every object stamped with a key id other than
    /// the current one (its key must be configured, e.g. as legacy_key) under
    /// the current key. Bodies are not read or written. Returns (rewrapped,
    /// failures).
    pub fn rotate_kek(&self) -> Result<(u64, Vec<Finding>)> {
        let Some(current) = &self.enc.current else {
            return Ok((0, Vec::new()));
        };
        let mut done = 0u64;
        let mut failed = Vec::new();
        for_each_object(self, &mut |at, info| {
            let bucket = at.bucket();
            let Ok(info) = info else {
                return ControlFlow::Continue(());
            };
            let Some(old_id) = info
                .meta
                .key_id
                .clone()
                .filter(|_| info.meta.encrypted.is_some())
            else {
                return ControlFlow::Continue(());
            };
            if old_id == current.id.as_str() {
                return ControlFlow::Continue(());
            }
            let res = (|| -> Result<()> {
                let dek = self.unwrap_meta(bucket, &info.key, &info.meta)?;
                let mut meta = info.meta.clone();
                self.seal_meta(bucket, &info.key, &dek, &mut meta);
                // One metadata replace: the object switches keys atomically.
                self.backend.set_meta(at, &meta.encode())?;
                Ok(())
            })();
            match res {
                Ok(()) => done += 1,
                Err(e) => failed.push(Finding {
                    bucket: bucket.into(),
                    key: info.key.clone(),
                    problem: e.to_string(),
                }),
            }
            ControlFlow::Continue(())
        })?;
        Ok((done, failed))
    }

    /// Multipart parts still sealed under a key id other than the current one.
    pub fn parts_under_old_keys(&self) -> Result<u64> {
        let current = self.enc.current.as_ref().map(|k| k.id.as_str().to_owned());
        let mut n = 0;
        for (upload, number, doc) in self.backend.all_parts()? {
            if super::multipart::part_key_info(&upload, number, &doc)
                .is_some_and(|(_, m)| m.key_id != current)
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes the plaintext of every object of `bucket` under `target`
    /// (which must not exist), as `target/<key>`. Returns the object count.
    pub fn export(&self, bucket: &str, target: &Path) -> Result<u64> {
        std::fs::create_dir(target)?;
        let mut n = 0u64;
        let mut err: Option<EngineError> = None;
        self.each_object(bucket, "", "", false, &mut |key, raw| {
            let res = (|| -> Result<()> {
                info_from_raw(key, &raw?)?;
                let out_path: PathBuf = target.join(key.trim_end_matches('/'));
                if key.ends_with('/') {
                    std::fs::create_dir_all(&out_path)?;
                    return Ok(());
                }
                if let Some(parent) = out_path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut out = std::fs::File::create(&out_path)?;
                // Through the engine: decrypted, and reconstructed when a delta.
                let mut obj = self.open_blocking(bucket, key)?;
                std::io::copy(&mut obj.reader(), &mut out)?;
                out.sync_all()?;
                Ok(())
            })();
            match res {
                Ok(()) => {
                    n += 1;
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    err = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}
