//! `POST /_/api/backends` and `DELETE /_/api/backends/{name}`: adding and
//! removing backends from the admin UI.
//!
//! Both edit `storage.backends` in the config file and apply it as a
//! `PUT /_/api/config` would (validated, hot-reloaded, refused with the
//! problems `config lint` reports). A file that names a singleton backend
//! (`filesystem:`, `s3:`, `backend:` or nothing at all) is first written in
//! the list form, the singleton becoming the backend `default`, with every
//! implicit setting it had spelled out so it keeps storing where and how it
//! did. Removing a backend never deletes data: its buckets stay where they
//! are and come back when the backend is added again.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{Request, StatusCode};
use serde_json::{Map, Value, json};

use super::config::{admin_control, apply};
use super::deny;
use crate::config::{DEFAULT_DATA_DIR, EncryptionMode, SINGLETON_BACKEND_NAME, SINGLETON_KEY_VAR};
use crate::s3::S3State;

/// Fields the add form may give; encryption is set afterwards through
/// `POST /_/api/backends/{name}/encryption`, which handles key files.
const FIELDS: &[&str] = &[
    "name",
    "type",
    "path",
    "endpoint",
    "region",
    "force_path_style",
    "access_key_id",
    "secret_access_key",
];

/// `storage` in the list form, converting a singleton backend (see the
/// module comment). `data_dir` is where the embedded default stores.
fn list_form<'a>(doc: &'a mut Value, data_dir: &FsPath) -> Result<&'a mut Vec<Value>, String> {
    let root = doc
        .as_object_mut()
        .ok_or("the configuration is not a mapping")?;
    let storage = root
        .entry("storage")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("storage is not a mapping")?;
    if !storage.get("backends").is_some_and(Value::is_array) {
        let mut single = Map::new();
        single.insert("name".into(), json!(SINGLETON_BACKEND_NAME));
        if let Some(Value::Object(b)) = storage.remove("backend") {
            single.extend(b);
        } else if let Some(path) = storage.remove("filesystem") {
            single.insert("type".into(), json!("filesystem"));
            single.insert("path".into(), path);
        } else if let Some(url) = storage.remove("s3") {
            single.insert("type".into(), json!("s3"));
            single.insert("endpoint".into(), url);
            for f in [
                "region",
                "force_path_style",
                "access_key_id",
                "secret_access_key",
            ] {
                if let Some(v) = storage.remove(f) {
                    single.insert(f.into(), v);
                }
            }
        } else {
            single.insert("type".into(), json!("filesystem"));
            single.insert("path".into(), json!(data_dir.display().to_string()));
        }
        if let Some(mut enc) = storage.remove("backend_encryption")
            && !enc.is_null()
        {
            // A singleton's proxy key defaults to DGP_ENCRYPTION_KEY, a
            // named backend's to DGP_BACKEND_<NAME>_ENCRYPTION_KEY: keep
            // the one it was started with.
            let mode = enc
                .get("mode")
                .and_then(Value::as_str)
                .and_then(|m| crate::config::expanded(m, &super::config::env))
                .and_then(|m| EncryptionMode::parse(m.trim()));
            if let Some(e) = enc.as_object_mut()
                && mode == Some(EncryptionMode::Aes256GcmProxy)
                && !e.contains_key("key")
                && !e.contains_key("key_file")
            {
                e.insert("key".into(), json!(format!("${{env:{SINGLETON_KEY_VAR}}}")));
            }
            single.insert("encryption".into(), enc);
        }
        storage.insert("backends".into(), json!([single]));
        storage
            .entry("default_backend")
            .or_insert_with(|| json!(SINGLETON_BACKEND_NAME));
    }
    Ok(storage
        .get_mut("backends")
        .and_then(Value::as_array_mut)
        .expect("made above"))
}

/// The document with `new` added as a backend.
fn with_added(doc: &Value, new: &Map<String, Value>, data_dir: &FsPath) -> Result<Value, String> {
    let mut doc = doc.clone();
    let list = list_form(&mut doc, data_dir)?;
    let name = new.get("name");
    if list.iter().any(|b| b.get("name") == name) {
        return Err(format!(
            "a backend named {} exists already",
            name.cloned().unwrap_or_default()
        ));
    }
    list.push(Value::Object(new.clone()));
    Ok(doc)
}

/// The document without backend `name`, or why not.
fn without(doc: &Value, name: &str, data_dir: &FsPath) -> Result<Value, (StatusCode, String)> {
    let mut doc = doc.clone();
    let storage_default = doc
        .pointer("/storage/default_backend")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let list = list_form(&mut doc, data_dir).map_err(|e| (StatusCode::CONFLICT, e))?;
    let before = list.len();
    list.retain(|b| b.get("name").and_then(Value::as_str) != Some(name));
    if list.len() == before {
        return Err((StatusCode::NOT_FOUND, format!("no backend named '{name}'")));
    }
    if list.is_empty() {
        return Err((
            StatusCode::CONFLICT,
            "the last backend cannot be removed".into(),
        ));
    }
    let is_default = storage_default.as_deref() == Some(name)
        || (storage_default.is_none() && name == SINGLETON_BACKEND_NAME);
    if is_default {
        return Err((
            StatusCode::CONFLICT,
            format!("'{name}' is the default backend; make another backend the default first"),
        ));
    }
    // One backend left needs no default_backend, but naming it is harmless.
    Ok(doc)
}

fn bad(status: StatusCode, why: &str) -> Response {
    deny(status, why)
}

/// `POST /_/api/backends` with `{"name", "type", "path" | "endpoint", ...}`.
pub async fn add(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return bad(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large");
    };
    let new: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        _ => {
            return bad(
                StatusCode::BAD_REQUEST,
                "send a JSON object: {\"name\", \"type\": filesystem | s3, \"path\" or \"endpoint\", ...}",
            );
        }
    };
    if let Some(k) = new.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let hint = if k == "encryption" {
            "; add the backend, then set its encryption on the Backends page (POST /_/api/backends/{name}/encryption)"
        } else {
            ""
        };
        return bad(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown field '{k}' (the fields are {}){hint}",
                FIELDS.join(", ")
            ),
        );
    }
    if !new.get("name").is_some_and(Value::is_string) {
        return bad(StatusCode::BAD_REQUEST, "'name' is required");
    }
    let data_dir = data_dir(&st);
    apply(ctl, false, move |cur| {
        with_added(cur, &new, &data_dir).map_err(|why| bad(StatusCode::CONFLICT, &why))
    })
    .await
}

/// `DELETE /_/api/backends/{name}` (`?force=true` even while it holds
/// buckets: they stay on it, unreachable until it is added again).
pub async fn remove(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let force = super::query(&req).get("force").map(String::as_str) == Some("true");
    if !force && let Some(store) = st.gateway.load().store(&name).cloned() {
        // The buckets it holds, and those a migrate job moved onto it (the
        // job's record routes them there; an S3 backend lists only the
        // buckets routed to it).
        let stores: Vec<_> = st.gateway.load().stores().cloned().collect();
        let target = name.clone();
        let held = tokio::task::spawn_blocking(move || {
            let mut names: Vec<String> = store
                .list_buckets_blocking()?
                .into_iter()
                .map(|b| b.name)
                .collect();
            for j in stores.iter().flat_map(|s| s.migrations()) {
                if j.to_backend == target && !names.contains(&j.to_bucket) {
                    names.push(j.to_bucket);
                }
            }
            Ok::<_, crate::engine::EngineError>(names)
        })
        .await;
        match held {
            Ok(Ok(names)) if !names.is_empty() => {
                return bad(
                    StatusCode::CONFLICT,
                    &format!(
                        "backend '{name}' holds buckets ({}); migrate or delete them first, or remove it with force=true (its data stays where it is)",
                        names.join(", ")
                    ),
                );
            }
            Ok(Ok(_)) => {}
            _ => {
                return bad(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "cannot list the buckets of backend '{name}'; remove it with force=true to remove it anyway"
                    ),
                );
            }
        }
    }
    let data_dir = data_dir(&st);
    apply(ctl, false, move |cur| {
        without(cur, &name, &data_dir).map_err(|(status, why)| bad(status, &why))
    })
    .await
}

/// Where the embedded default backend stores on this server.
fn data_dir(st: &S3State) -> PathBuf {
    st.config
        .as_ref()
        .and_then(|c| c.data_dir())
        .map(|d| std::path::absolute(&d).unwrap_or(d))
        .unwrap_or_else(|| {
            std::path::absolute(DEFAULT_DATA_DIR).unwrap_or_else(|_| DEFAULT_DATA_DIR.into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/srv/data")
    }

    fn added(doc: Value) -> Value {
        let new = json!({"name": "nas2", "type": "filesystem", "path": "/srv/two"});
        with_added(&doc, new.as_object().unwrap(), &dir()).unwrap()
    }

    #[test]
    fn a_filesystem_singleton_becomes_the_backend_default() {
        let doc = added(
            json!({"storage": {"filesystem": "/srv/one", "backend_encryption":
            {"mode": " aes256-gcm-proxy "}, "buckets": {"b": {"alias": "x"}}}}),
        );
        assert_eq!(
            doc["storage"],
            json!({"backends": [
                {"name": "default", "type": "filesystem", "path": "/srv/one",
                 "encryption": {"mode": " aes256-gcm-proxy ", "key": "${env:DGP_ENCRYPTION_KEY}"}},
                {"name": "nas2", "type": "filesystem", "path": "/srv/two"}],
             "default_backend": "default", "buckets": {"b": {"alias": "x"}}})
        );
    }

    #[test]
    fn the_s3_shorthand_and_the_embedded_default_keep_their_settings() {
        let doc = added(json!({"storage": {"s3": "http://up:9000", "region": "eu",
            "access_key_id": "${env:K}", "secret_access_key": "s"}}));
        assert_eq!(
            doc["storage"]["backends"][0],
            json!({"name": "default", "type": "s3", "endpoint": "http://up:9000",
                   "region": "eu", "access_key_id": "${env:K}", "secret_access_key": "s"})
        );
        let doc = added(json!({"advanced": {"log_level": "info"}}));
        assert_eq!(doc["storage"]["backends"][0]["path"], "/srv/data");
        let doc = added(json!({"storage": {"backend": {"type": "filesystem", "path": "/p"}}}));
        assert_eq!(doc["storage"]["backends"][0]["path"], "/p");
        assert!(doc["storage"].get("backend").is_none());
    }

    #[test]
    fn names_are_unique_and_the_default_stays() {
        let doc = added(json!({"storage": {"filesystem": "/srv/one"}}));
        let again = json!({"name": "nas2", "type": "filesystem", "path": "/x"});
        assert!(with_added(&doc, again.as_object().unwrap(), &dir()).is_err());
        let (status, why) = without(&doc, "default", &dir()).unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT, "{why}");
        assert_eq!(
            without(&doc, "nope", &dir()).unwrap_err().0,
            StatusCode::NOT_FOUND
        );
        let left = without(&doc, "nas2", &dir()).unwrap();
        assert_eq!(left["storage"]["backends"].as_array().unwrap().len(), 1);
        let single = json!({"storage": {"filesystem": "/srv/one"}});
        assert_eq!(
            without(&single, "default", &dir()).unwrap_err().0,
            StatusCode::CONFLICT
        );
    }
}
