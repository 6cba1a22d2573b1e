//! The config API for GitOps and the UI (docs/config-api.md):
//!
//! * `GET /_/api/config`: the configuration file in canonical form (fields at
//!   their default omitted, literal secrets redacted) as YAML, or as JSON
//!   with `?format=json` or `Accept: application/json`.
//! * `PUT /_/api/config`: a whole new document (YAML or JSON), validated,
//!   applied as a reload is, and written to the file; all or nothing.
//! * `PATCH /_/api/config/{section}`: an RFC 7396 merge patch on one section.
//! * `POST /_/api/config/validate`: a dry run; says what would change.
//! * `GET /_/api/config/schema`: the JSON Schema of the file.
//!
//! A redacted secret sent back unchanged keeps the file's value. Every
//! request here is audited by the admin middleware; applied changes are also
//! logged.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Request, StatusCode, header};
use serde_json::{Value, json};

use super::{deny, require_admin};
use crate::config::Problem;
use crate::config::document;
use crate::reload::Refusal;
use crate::s3::S3State;

/// Held from reading the file to applying a change, so two edits (the UI's
/// encryption widget, a PUT) never overwrite each other.
pub(super) static EDIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The largest config document accepted.
const MAX_DOCUMENT: usize = 1 << 20;

/// What the admin API may do with the server's configuration (implemented
/// by `reload::Reloader`).
pub trait ConfigControl: Send + Sync {
    /// Re-reads the file and applies it: the report, or why it was refused.
    fn reload(&self) -> Result<Value, String>;
    /// The configuration file (`None`: the server runs on defaults).
    fn path(&self) -> Option<PathBuf>;
    /// Checks a new file and, unless `dry_run`, applies and writes it.
    fn apply(&self, text: &str, dry_run: bool) -> Result<Value, Refusal>;
    /// Where the embedded default backend stores (`--data-dir`), if given.
    fn data_dir(&self) -> Option<PathBuf> {
        None
    }
}

impl ConfigControl for crate::reload::Reloader {
    fn reload(&self) -> Result<Value, String> {
        crate::reload::Reloader::reload(self)
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .map_err(|e| format!("{e:#}"))
    }
    fn path(&self) -> Option<PathBuf> {
        crate::reload::Reloader::path(self).map(|p| p.to_path_buf())
    }
    fn apply(&self, text: &str, dry_run: bool) -> Result<Value, Refusal> {
        self.apply_text(text, dry_run)
            .map(|r| serde_json::to_value(r).unwrap_or_default())
    }
    fn data_dir(&self) -> Option<PathBuf> {
        crate::reload::Reloader::data_dir(self).map(std::path::Path::to_path_buf)
    }
}

pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The admin check, then the configuration the request may manage.
pub(super) fn admin_control(
    st: &S3State,
    req: &Request<Body>,
) -> Result<Arc<dyn ConfigControl>, Box<Response>> {
    require_admin(st, req)?;
    st.config.clone().ok_or_else(|| {
        Box::new(deny(
            StatusCode::NOT_IMPLEMENTED,
            "this server has no configuration to manage",
        ))
    })
}

/// The file as it is now, as a document (unredacted), or the answer.
pub(super) fn current(ctl: &dyn ConfigControl) -> Result<Value, Box<Response>> {
    let Some(path) = ctl.path() else {
        return Ok(json!({}));
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Box::new(deny(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read {}: {e}", path.display()),
        ))
    })?;
    document::read(&text, &path.display().to_string()).map_err(|e| {
        Box::new(deny(
            StatusCode::CONFLICT,
            &format!("the configuration file on disk does not parse: {e}"),
        ))
    })
}

fn wants_json(req: &Request<Body>) -> bool {
    let q = req.uri().query().unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "format" && v == "json")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("json"))
}

/// `GET /_/api/config`.
pub async fn get_config(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let json = wants_json(&req);
    let res = tokio::task::spawn_blocking(move || {
        current(ctl.as_ref()).map(|doc| document::redacted(&document::without_defaults(&doc, &env)))
    })
    .await;
    match res {
        Ok(Ok(doc)) if json => Json(doc).into_response(),
        Ok(Ok(doc)) => (
            [(header::CONTENT_TYPE, "application/yaml; charset=utf-8")],
            document::to_yaml(&doc),
        )
            .into_response(),
        Ok(Err(r)) => *r,
        Err(_) => deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

/// `GET /_/api/config/schema`.
pub async fn schema(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    Json(document::schema()).into_response()
}

/// A request body as a document: JSON when the content type says so (or it
/// starts with `{`), YAML otherwise.
fn body_document(headers: &HeaderMap, body: &[u8]) -> Result<Value, Vec<Problem>> {
    let problem = |message: String| {
        vec![Problem {
            field: String::new(),
            location: None,
            message,
        }]
    };
    let text = std::str::from_utf8(body).map_err(|_| problem("the body is not UTF-8".into()))?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.contains("json"))
        || text.trim_start().starts_with('{');
    if is_json {
        return serde_json::from_str(text).map_err(|e| problem(format!("invalid JSON: {e}")));
    }
    document::read(text, "<request>").map_err(|e| match e {
        crate::config::ConfigError::Invalid { problems, .. } => problems,
        e => problem(e.to_string()),
    })
}

fn problems_json(problems: &[Problem]) -> Value {
    Value::Array(
        problems
            .iter()
            .map(|p| {
                json!({
                    "field": p.field,
                    "line": p.location.map(|l| l.0),
                    "column": p.location.map(|l| l.1),
                    "message": p.message,
                })
            })
            .collect(),
    )
}

pub(super) fn refused(r: Refusal) -> Response {
    match r {
        Refusal::NoFile => deny(
            StatusCode::CONFLICT,
            "the server was started without a configuration file (--config or DGP_CONFIG); there is nothing to write the change to",
        ),
        Refusal::Invalid(problems) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "applied": false,
                "error": "the configuration is not valid",
                "problems": problems_json(&problems),
            })),
        )
            .into_response(),
        Refusal::Failed(why) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "applied": false, "error": why, "problems": [] })),
        )
            .into_response(),
    }
}

/// Under the edit lock: reads the file, makes the new document from it
/// (`make`: the whole new document, or the current one patched), restores
/// redacted secrets from the file, then validates and (unless a dry run)
/// applies it.
pub(super) async fn apply(
    ctl: Arc<dyn ConfigControl>,
    dry_run: bool,
    make: impl FnOnce(&Value) -> Result<Value, Response> + Send + 'static,
) -> Response {
    let res = tokio::task::spawn_blocking(move || {
        let _edit = EDIT.lock().unwrap_or_else(|p| p.into_inner());
        let cur = current(ctl.as_ref()).map_err(|r| Ok::<Response, Refusal>(*r))?;
        let mut doc = make(&cur).map_err(Ok)?;
        document::restore_redacted(&mut doc, &cur).map_err(|p| Err(Refusal::Invalid(vec![p])))?;
        let text = document::to_yaml(&doc);
        ctl.apply(&text, dry_run).map_err(Err)
    })
    .await;
    match res {
        Ok(Ok(report)) => {
            if !dry_run {
                tracing::info!("configuration changed through the config API");
            }
            let key = if dry_run { "valid" } else { "applied" };
            Json(json!({ key: true, "report": report })).into_response()
        }
        Ok(Err(Ok(resp))) => resp,
        Ok(Err(Err(r))) => refused(r),
        Err(_) => deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}

async fn whole_document(st: Arc<S3State>, req: Request<Body>, dry_run: bool) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let (parts, body) = req.into_parts();
    let Ok(body): Result<Bytes, _> = axum::body::to_bytes(body, MAX_DOCUMENT).await else {
        return deny(StatusCode::PAYLOAD_TOO_LARGE, "the document is too large");
    };
    match body_document(&parts.headers, &body) {
        Ok(doc) => apply(ctl, dry_run, move |_| Ok(doc)).await,
        Err(p) => refused(Refusal::Invalid(p)),
    }
}

/// `PUT /_/api/config`.
pub async fn put_config(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    whole_document(st, req, false).await
}

/// `POST /_/api/config/validate`.
pub async fn validate(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    whole_document(st, req, true).await
}

/// `PATCH /_/api/config/{section}` (`?dry_run=true` validates only).
pub async fn patch_section(
    State(st): State<Arc<S3State>>,
    Path(section): Path<String>,
    req: Request<Body>,
) -> Response {
    let ctl = match admin_control(&st, &req) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let dry_run = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "dry_run" && v == "true");
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_DOCUMENT).await else {
        return deny(StatusCode::PAYLOAD_TOO_LARGE, "the patch is too large");
    };
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return refused(Refusal::Invalid(vec![Problem {
                field: section,
                location: None,
                message: format!("a merge patch is a JSON document: {e}"),
            }]));
        }
    };
    // The merge reads the file under the same lock as the apply, so two
    // patches of different sections cannot undo each other.
    apply(ctl, dry_run, move |cur| {
        document::patch_section(cur, &section, &patch)
            .map_err(|why| deny(StatusCode::NOT_FOUND, &why))
    })
    .await
}
