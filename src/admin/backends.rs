//! `POST /_/api/backends/{name}/encryption`: the UI's encryption widget.
//!
//! The browser generates the key (`crypto.getRandomValues`) and sends it
//! here once, on Apply. Keys never live in the config file, so the server
//! writes the key to a key file (32 raw bytes, mode 0600) in `keys/` beside
//! the config file and points the backend's `encryption.key_file` at it.
//! The key that encrypted the backend until now becomes its `legacy_key`
//! (so its objects stay readable) and the answer proposes the re-encrypt
//! job that rewrites them. The change is validated and applied exactly as a
//! `PUT /_/api/config` is; if it is refused, the new key file is removed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::config::{ConfigControl, admin_control, current, env, refused};
use super::deny;
use crate::config::{EncryptionMode, KeySource, document};
use crate::engine::crypto::{Kek, KeyId};
use crate::reload::Refusal;
use crate::s3::S3State;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    mode: String,
    /// 64 hex characters; required for `aes256-gcm-proxy`.
    key: Option<String>,
    kms_key_id: Option<String>,
}

type Answer = Result<Value, Box<Response>>;

fn fail(status: StatusCode, message: &str) -> Box<Response> {
    Box::new(deny(status, message))
}

/// Writes `kek` to `path` (new file, 0600, synced, then its directory).
fn write_key_file(path: &FsPath, kek: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a key file has a directory");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = f.write_all(kek).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path); // never a torn key file
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// A key source as the config file writes it, under `field` or `field_file`.
fn source_fields(out: &mut serde_json::Map<String, Value>, field: &str, s: &KeySource) {
    match s {
        KeySource::Env { var } => out.insert(field.into(), json!(format!("${{env:{var}}}"))),
        KeySource::File { path } => out.insert(format!("{field}_file"), json!(path)),
    };
}

/// Where in `doc` the encryption of backend `name` lives.
fn section<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    let storage = doc
        .as_object_mut()?
        .entry("storage")
        .or_insert_with(|| json!({}));
    if storage.get("backends").is_some_and(Value::is_array) {
        let list = storage.get_mut("backends")?.as_array_mut()?;
        let b = list
            .iter_mut()
            .find(|b| b.get("name").and_then(Value::as_str) == Some(name))?;
        return Some(
            b.as_object_mut()?
                .entry("encryption")
                .or_insert(Value::Null),
        );
    }
    (name == "default").then(|| {
        storage
            .as_object_mut()
            .expect("storage is a mapping")
            .entry("backend_encryption")
            .or_insert(Value::Null)
    })
}

/// Builds and applies the change; returns the answer and the key file it
/// created (removed again when the change is refused).
fn change(st: &S3State, ctl: &dyn ConfigControl, name: &str, c: Change) -> Answer {
    let key = c.key.map(Zeroizing::new);
    // Read, change and apply as one step against other config edits.
    let _edit = super::config::EDIT
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let Some(cfg_path) = ctl.path() else {
        return Err(Box::new(refused(Refusal::NoFile)));
    };
    let mut doc = current(ctl)?;
    let settings = document::settings_of(&doc, &env).ok_or_else(|| {
        fail(
            StatusCode::CONFLICT,
            "the configuration file does not validate now; fix it on the configuration page first",
        )
    })?;
    let Some(b) = settings.backends.iter().find(|b| b.name == name) else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            &format!("no backend named '{name}'"),
        ));
    };
    let Some(mode) = EncryptionMode::parse(c.mode.trim()) else {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            &format!("unknown encryption mode '{}'", c.mode),
        ));
    };
    let old = &b.encryption;
    let store = st.gateway.load().store(name).cloned();
    if store
        .as_ref()
        .is_some_and(|s| s.pending_reencrypt().is_some())
        || super::reencrypt::is_running(name)
    {
        return Err(fail(
            StatusCode::CONFLICT,
            "a re-encrypt job runs on this backend; change its encryption when the job is done",
        ));
    }
    let mut enc = serde_json::Map::new();
    enc.insert("mode".into(), json!(mode.as_str()));
    let mut created: Option<PathBuf> = None;
    let mut new_id = None;
    if mode == EncryptionMode::Aes256GcmProxy {
        let Some(hex) = key.as_ref() else {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "aes256-gcm-proxy needs a key: 64 hex characters",
            ));
        };
        // Never echo the input: it is a key.
        let bad = || {
            fail(
                StatusCode::BAD_REQUEST,
                "the key must be 64 hex characters (32 bytes)",
            )
        };
        let raw = Zeroizing::new(hex::decode(hex.trim()).map_err(|_| bad())?);
        let kek = Kek::from_slice(&raw).map_err(|_| bad())?;
        let id = KeyId::derive(&kek);
        let running = store.as_ref().and_then(|s| s.encryption().current.as_ref());
        if running.is_some_and(|k| k.id.as_str() == id.as_str()) {
            return Err(fail(
                StatusCode::CONFLICT,
                "the backend already encrypts with this key",
            ));
        }
        let dir = cfg_path.parent().unwrap_or(FsPath::new(".")).join("keys");
        let file = dir.join(format!("{name}.{}.key", id.as_str()));
        write_key_file(&file, &raw).map_err(|e| {
            fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("cannot write the key file {}: {e}", file.display()),
            )
        })?;
        enc.insert("key_file".into(), json!(file));
        created = Some(file);
        new_id = Some(id.as_str().to_owned());
    } else if key.is_some() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "a key is only used with mode aes256-gcm-proxy",
        ));
    }
    if let Some(k) = &c.kms_key_id {
        enc.insert("kms_key_id".into(), json!(k));
    }
    // The key in use until now decrypts the objects it wrote: it becomes
    // the legacy key. An earlier legacy key may go only if nothing is left
    // under its id.
    let legacy = match (&old.key_source, &old.legacy_key_source) {
        (Some(cur), Some(_)) => {
            let legacy_id = store
                .as_ref()
                .and_then(|s| s.encryption().legacy.as_ref())
                .map(|k| k.id.as_str().to_owned());
            let Some(s) = &store else {
                return Err(fail(
                    StatusCode::CONFLICT,
                    "the backend is not running; its old key cannot be checked",
                ));
            };
            if let Some(id) = legacy_id {
                let census = s
                    .census()
                    .and_then(|c| Ok((c, s.parts_under_old_keys()?)))
                    .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()));
                let left =
                    census.map(|(c, parts)| c.key_ids.get(&id).copied().unwrap_or(0) + parts);
                match left {
                    Ok(0) => {}
                    Ok(n) => {
                        drop_created(&created);
                        return Err(fail(
                            StatusCode::CONFLICT,
                            &format!(
                                "{n} objects are still encrypted with the earlier key {id}; run the re-encrypt job to the end first"
                            ),
                        ));
                    }
                    Err(e) => {
                        drop_created(&created);
                        return Err(e);
                    }
                }
            }
            Some((cur, old.key_id.as_ref()))
        }
        (Some(cur), None) => Some((cur, old.key_id.as_ref())),
        (None, Some(l)) => Some((l, old.legacy_key_id.as_ref())),
        (None, None) => None,
    };
    if let Some((source, id)) = legacy {
        source_fields(&mut enc, "legacy_key", source);
        if let Some(id) = id {
            enc.insert("legacy_key_id".into(), json!(id));
        }
    }
    let Some(slot) = section(&mut doc, name) else {
        drop_created(&created);
        return Err(fail(
            StatusCode::NOT_FOUND,
            &format!("backend '{name}' is not in the configuration file"),
        ));
    };
    let changed = *slot != Value::Object(enc.clone());
    *slot = Value::Object(enc);
    match ctl.apply(&document::to_yaml(&doc), false) {
        Ok(report) => {
            tracing::info!(backend = %name, mode = %mode.as_str(), key_id = ?new_id, "backend encryption changed from the admin UI");
            Ok(json!({
                "applied": true,
                "changed": changed,
                "report": report,
                "key_id": new_id,
                "key_file": created,
                "reencrypt_proposed": changed,
            }))
        }
        Err(r) => {
            // A refusal after the file was written (a later step failed)
            // leaves the file naming the key: then the key file stays.
            let named = created.as_ref().is_some_and(|f| {
                std::fs::read_to_string(&cfg_path).is_ok_and(|t| t.contains(&*f.to_string_lossy()))
            });
            if !named {
                drop_created(&created);
            }
            Err(Box::new(refused(r)))
        }
    }
}

fn drop_created(created: &Option<PathBuf>) {
    if let Some(f) = created {
        let _ = std::fs::remove_file(f);
    }
}

/// `POST /_/api/backends/{name}/encryption` with `{"mode": ..., "key": HEX}`.
pub async fn set_encryption(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return deny(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large");
    };
    // The body holds the key: parsed, then wiped (the key itself moves
    // into a `Zeroizing` in `change`).
    let mut body = body
        .try_into_mut()
        .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
    let parsed = serde_json::from_slice::<Change>(&body);
    zeroize::Zeroize::zeroize(&mut body[..]);
    let c: Change = match parsed {
        Ok(c) => c,
        Err(_) => {
            return deny(
                StatusCode::BAD_REQUEST,
                "send {\"mode\": MODE, \"key\": 64 hex characters (aes256-gcm-proxy), \"kms_key_id\": ID (sse-kms)}",
            );
        }
    };
    let res = tokio::task::spawn_blocking(move || change(&st, ctl.as_ref(), &name, c)).await;
    match res {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(r)) => *r,
        Err(_) => deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}
