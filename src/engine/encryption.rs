//! Encryption at rest for one backend: which key (KEK) wraps new objects'
//! data keys, which keys can unwrap existing ones, and the startup checks
//! that refuse a wrong key or a silent switch to plaintext.
//!
//! Key check records live in `<internal>/keys/<key-id>.json`: a MAC of a
//! fixed label under the KEK (no key material), written the first time a key
//! id is used. See `docs/encryption.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::crypto::{self, Kek, KeyId};
use super::maintenance::KeyEvidence;
use crate::storage::StateStore;

/// A key with its id.
#[derive(PartialEq)]
pub struct NamedKey {
    pub id: KeyId,
    pub kek: Kek,
}

/// The keys of one backend.
#[derive(Default, PartialEq)]
pub struct Encryption {
    /// The key that encrypts new objects; `None` writes plaintext (mode `none`).
    pub current: Option<NamedKey>,
    /// An older key that still decrypts objects stamped with its id.
    pub legacy: Option<NamedKey>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field(
                "current",
                &self.current.as_ref().map(|k| k.id.as_str().to_owned()),
            )
            .field(
                "legacy",
                &self.legacy.as_ref().map(|k| k.id.as_str().to_owned()),
            )
            .finish()
    }
}

impl Encryption {
    pub fn none() -> Self {
        Encryption::default()
    }

    /// The KEK for objects stamped with `id`, if configured.
    pub fn kek_for(&self, id: &str) -> Option<&Kek> {
        [&self.current, &self.legacy]
            .into_iter()
            .flatten()
            .find(|k| k.id.as_str() == id)
            .map(|k| &k.kek)
    }

    pub fn encrypts(&self) -> bool {
        self.current.is_some()
    }
}

#[derive(Serialize, Deserialize)]
struct CheckRecord {
    v: u32,
    key_id: String,
    /// hex HMAC-SHA256(KEK, "deltaglider key check v1")
    check: String,
    created_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "key mismatch on backend '{backend}': the key given for key id '{key_id}' ({source_name}) is not the key this backend's objects were encrypted with; use the original key (or restore it from your off-box copy)"
    )]
    Mismatch {
        backend: String,
        key_id: String,
        source_name: String,
    },
    #[error(
        "cannot disable encryption on backend '{backend}': it holds objects encrypted with key id(s) {ids}; configure the key (mode aes256-gcm-proxy), or keep it as legacy_key/legacy_key_id while `deltaglider_proxy encryption reencrypt` rewrites the objects as plaintext"
    )]
    CannotDisable { backend: String, ids: String },
    #[error(
        "backend '{backend}' holds objects encrypted with key id(s) {ids} which are not configured; set legacy_key and legacy_key_id for the previous key, or use the original key"
    )]
    UnknownKeys { backend: String, ids: String },
    #[error(
        "key mismatch on backend '{backend}': its key check record for key id '{key_id}' is missing, and the key given ({source_name}) opens none of the {tried} sampled data keys of the objects stamped with that id; use the original key (or restore it from your off-box copy). Nothing was written"
    )]
    NoRecordMismatch {
        backend: String,
        key_id: String,
        source_name: String,
        tried: u32,
    },
    #[error("key check record {0}: {1}")]
    Io(String, String),
}

/// What happened at startup, for the log.
pub enum KeyringNotice {
    /// Encryption was enabled for the first time: the operator must store the key off-box.
    FirstEnabled(String),
    /// A new key id was recorded (rotation).
    NewKeyId(String),
    /// A key's check record was missing; the key opened the data keys of
    /// objects stamped with its id, so the record was written again.
    Recreated { key_id: String, objects: u64 },
}

/// Key ids found on a backend's objects, with the evidence for each
/// (see `ObjectStore::probe_keys`).
pub type KeyProbe = BTreeMap<String, KeyEvidence>;

/// Where key check records live in the backend's state.
const KEYS: &str = "keys";

fn io_err(name: &str) -> impl Fn(crate::storage::StorageError) -> KeyringError + '_ {
    move |e| KeyringError::Io(name.to_owned(), e.to_string())
}

fn read_records(state: &dyn StateStore) -> Result<Vec<CheckRecord>, KeyringError> {
    let mut out = Vec::new();
    for name in state.list_state(KEYS).map_err(io_err(KEYS))? {
        if !name.ends_with(".json") {
            continue;
        }
        let full = format!("{KEYS}/{name}");
        if let Some(raw) = state.read_state(&full).map_err(io_err(&full))?
            && let Ok(r) = serde_json::from_slice::<CheckRecord>(&raw)
        {
            out.push(r);
        }
    }
    Ok(out)
}

fn record_name(id: &str) -> String {
    // Key ids are [A-Za-z0-9._-] (crypto::check_key_id): safe as a name.
    format!("{KEYS}/{id}.json")
}

fn write_record(state: &dyn StateStore, k: &NamedKey) -> Result<(), KeyringError> {
    let rec = CheckRecord {
        v: 1,
        key_id: k.id.as_str().into(),
        check: hex::encode(crypto::key_check(&k.kek)),
        created_ms: super::meta::to_ms(std::time::SystemTime::now()),
    };
    let name = record_name(k.id.as_str());
    state
        .write_state(
            &name,
            &serde_json::to_vec_pretty(&rec).expect("record serializes"),
        )
        .map_err(io_err(&name))
}

/// Checks `enc` against the backend's key check records in `state` and
/// records a key id used for the first time. `source` names where each key
/// came from (an environment variable or file), for messages.
///
/// A configured key without a record is never taken on trust: `probe` walks
/// the backend's objects, and the key must open the data keys of the
/// objects stamped with its id (then its record is written again), every
/// encrypted object's key id must be configured, and "first time" means the
/// backend holds no encrypted object at all. `record`: write records (the
/// server); operator commands only check.
pub fn open_keyring(
    backend: &str,
    state: &dyn StateStore,
    enc: &Encryption,
    sources: (&str, &str),
    record: bool,
    probe: &mut dyn FnMut() -> Result<KeyProbe, String>,
) -> Result<Vec<KeyringNotice>, KeyringError> {
    let records = read_records(state)?;
    let mut notices = Vec::new();
    let mismatch = |k: &NamedKey, source: &str| KeyringError::Mismatch {
        backend: backend.into(),
        key_id: k.id.as_str().into(),
        source_name: source.into(),
    };
    let unknown_err = |ids: Vec<&str>| {
        let ids = ids.join(", ");
        if enc.current.is_none() {
            KeyringError::CannotDisable {
                backend: backend.into(),
                ids,
            }
        } else {
            KeyringError::UnknownKeys {
                backend: backend.into(),
                ids,
            }
        }
    };
    let configured = [(&enc.current, sources.0), (&enc.legacy, sources.1)];
    let mut unrecorded = Vec::new();
    for (key, source) in configured {
        let Some(k) = key else { continue };
        match records.iter().find(|r| r.key_id == k.id.as_str()) {
            Some(r) => {
                let ok = hex::decode(&r.check).is_ok_and(|c| crypto::verify_key_check(&k.kek, &c));
                if !ok {
                    return Err(mismatch(k, source));
                }
            }
            None => unrecorded.push((k, source)),
        }
    }
    let unknown: Vec<&str> = records
        .iter()
        .map(|r| r.key_id.as_str())
        .filter(|id| enc.kek_for(id).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(unknown_err(unknown));
    }
    if unrecorded.is_empty() {
        return Ok(notices);
    }
    let found = probe().map_err(|e| {
        KeyringError::Io(
            KEYS.to_owned(),
            format!("checking the key against the stored objects: {e}"),
        )
    })?;
    let unknown: Vec<&str> = found
        .keys()
        .map(String::as_str)
        .filter(|id| enc.kek_for(id).is_none())
        .collect();
    if !unknown.is_empty() {
        return Err(unknown_err(unknown));
    }
    for (k, source) in unrecorded {
        match found.get(k.id.as_str()) {
            Some(ev) if ev.tried > 0 && ev.opened == 0 => {
                return Err(KeyringError::NoRecordMismatch {
                    backend: backend.into(),
                    key_id: k.id.as_str().into(),
                    source_name: source.into(),
                    tried: ev.tried,
                });
            }
            Some(ev) => {
                if ev.opened < ev.tried {
                    tracing::warn!(backend, key_id = %k.id, tried = ev.tried, opened = ev.opened, "some sampled data keys did not open with this key; run `deltaglider_proxy encryption audit`");
                }
                if record {
                    write_record(state, k)?;
                }
                notices.push(KeyringNotice::Recreated {
                    key_id: k.id.as_str().into(),
                    objects: ev.objects,
                });
            }
            // Nothing is stamped with this id yet: a new key (only the
            // current key encrypts, so only it gets a record here).
            None if enc.current.as_ref().is_some_and(|c| c.id == k.id) && record => {
                write_record(state, k)?;
                notices.push(if records.is_empty() && found.is_empty() {
                    KeyringNotice::FirstEnabled(k.id.as_str().into())
                } else {
                    KeyringNotice::NewKeyId(k.id.as_str().into())
                });
            }
            None => {}
        }
    }
    Ok(notices)
}

/// After a completed rotation or re-encryption: moves the check records of
/// every key id but `keep` to `keys/retired/`, so the old key is no longer
/// required at startup (`None` retires them all: the backend is plaintext).
pub fn retire_other_keys(
    state: &dyn StateStore,
    keep: Option<&KeyId>,
) -> Result<Vec<String>, KeyringError> {
    let mut retired = Vec::new();
    for r in read_records(state)? {
        if keep.is_some_and(|k| r.key_id == k.as_str()) {
            continue;
        }
        let from = record_name(&r.key_id);
        state
            .rename_state(&from, &format!("{KEYS}/retired/{}.json", r.key_id))
            .map_err(io_err(&from))?;
        retired.push(r.key_id);
    }
    Ok(retired)
}
