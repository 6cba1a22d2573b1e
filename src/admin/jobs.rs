//! Bucket migrate jobs run by the server: `POST /_/api/migrate` starts one,
//! `GET /_/api/migrate` lists them; an interrupted one resumes at startup.
//! When a job is done the server reloads its configuration, which applies
//! the job's route switch (`open::gateway`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use super::config::ConfigControl;
use super::{deny, require_admin};
use crate::engine::ObjectStore;
use crate::engine::migrate;
use crate::s3::S3State;

/// Jobs running in this process, by (source backend, source bucket).
fn running() -> &'static Mutex<BTreeSet<(String, String)>> {
    static RUNNING: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    &RUNNING
}

/// Runs the job of `from_bucket` on `src` to the end in the background,
/// then reloads (the route switches). Does nothing if it already runs here.
pub fn spawn_migration(
    config: Option<Arc<dyn ConfigControl>>,
    src: Arc<ObjectStore>,
    dst: Arc<ObjectStore>,
    from_bucket: String,
) {
    let id = (src.name.clone(), from_bucket.clone());
    if !running().lock().expect("job table").insert(id.clone()) {
        return;
    }
    tokio::spawn(async move {
        let res = migrate::run(&src, &dst, &from_bucket, Duration::ZERO, &mut |j| {
            tracing::info!(bucket = %j.bucket, copied = j.copied, bytes = j.bytes, phase = ?j.phase, "migrate job progress")
        })
        .await;
        running().lock().expect("job table").remove(&id);
        match res {
            Ok(j) => {
                tracing::info!(bucket = %j.bucket, to = %j.to_backend, copied = j.copied, bytes = j.bytes, "migrate job finished and verified; switching the route");
                let Some(config) = config else { return };
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || config.reload()).await {
                    tracing::error!(error = %e, "the route of the migrated bucket switches at the next successful reload or restart; until then writes to it stay paused");
                }
            }
            Err(e) => {
                tracing::error!(bucket = %from_bucket, error = %e, "migrate job stopped; writes to the bucket stay paused; start it again to resume")
            }
        }
    });
}

/// Resumes the migrate jobs that an earlier process left unfinished.
pub fn resume_migrations(st: &S3State) {
    let gw = st.gateway.load_full();
    for src in gw.stores() {
        for j in src.migrations() {
            if j.phase == migrate::Phase::Done {
                continue;
            }
            let Some(dst) = gw.store(&j.to_backend) else {
                tracing::error!(bucket = %j.bucket, backend = %j.to_backend, "an unfinished migrate job names a backend that is not configured; writes to the bucket stay paused");
                continue;
            };
            tracing::warn!(bucket = %j.bucket, to = %j.to_backend, copied = j.copied, "resuming an interrupted migrate job; writes to the bucket get 503 SlowDown until it finishes");
            spawn_migration(st.config.clone(), src.clone(), dst.clone(), j.from_bucket);
        }
    }
}

fn query(req: &Request<Body>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// `POST /_/api/migrate?bucket=B&to=BACKEND[&as=NAME]`: starts (or resumes)
/// moving bucket B to BACKEND (as bucket NAME there; default: its current
/// name on its backend). 202 with the job.
pub async fn start(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let (Some(bucket), Some(to)) = (query(&req, "bucket"), query(&req, "to")) else {
        return deny(StatusCode::BAD_REQUEST, "give bucket= and to=");
    };
    let gw = st.gateway.load_full();
    let (src, from_bucket) = gw.route(&bucket);
    let Some(dst) = gw.store(&to).cloned() else {
        return deny(StatusCode::NOT_FOUND, &format!("no backend named '{to}'"));
    };
    let to_bucket = query(&req, "as").unwrap_or_else(|| from_bucket.clone());
    if !crate::storage::keypath::valid_bucket_name(&to_bucket) {
        return deny(StatusCode::BAD_REQUEST, "invalid destination bucket name");
    }
    match migrate::start(&bucket, &src, &from_bucket, &dst, &to_bucket).await {
        Ok(j) => {
            spawn_migration(st.config.clone(), src, dst, from_bucket);
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "job": j }))).into_response()
        }
        Err(crate::engine::EngineError::Storage(crate::storage::StorageError::NoSuchBucket)) => {
            deny(StatusCode::NOT_FOUND, "no such bucket")
        }
        // The job's refusals are plain messages: no "storage I/O error" in front.
        Err(crate::engine::EngineError::Storage(crate::storage::StorageError::Io(io)))
            if io.kind() == std::io::ErrorKind::Other =>
        {
            deny(StatusCode::CONFLICT, &io.to_string())
        }
        Err(e) => deny(StatusCode::CONFLICT, &e.to_string()),
    }
}

/// `GET /_/api/migrate`: every migrate job recorded on the backends.
pub async fn list(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let stores: Vec<_> = st.gateway.load().stores().cloned().collect();
    let jobs = tokio::task::spawn_blocking(move || {
        stores
            .iter()
            .flat_map(|s| s.migrations())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "jobs": jobs })).into_response()
}
