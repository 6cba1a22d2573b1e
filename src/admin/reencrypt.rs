//! Re-encrypt jobs run by the server: `POST /_/api/reencrypt?backend=B`
//! starts one (or picks up the unfinished one), `GET /_/api/reencrypt`
//! shows each backend's job with its progress. The job's state lives on the
//! backend (`engine::reencrypt`), so a job interrupted by a restart resumes
//! at startup and the last finished one is still shown afterwards.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use super::{deny, require_admin};
use crate::engine::ObjectStore;
use crate::s3::S3State;

/// Backends whose job runs in this process.
fn running() -> &'static Mutex<BTreeSet<String>> {
    static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    &RUNNING
}

pub(super) fn is_running(backend: &str) -> bool {
    running()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(backend)
}

/// Runs the pending job of `store` to the end on a blocking thread, with
/// `pause` after each object. Does nothing if this process already runs it.
pub fn spawn_reencrypt(store: Arc<ObjectStore>, pause: Duration) {
    if !running()
        .lock()
        .expect("job table")
        .insert(store.name.clone())
    {
        return;
    }
    /// Takes the backend off the running set however the job ends (a panic too).
    struct Running(String);
    impl Drop for Running {
        fn drop(&mut self) {
            running()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.0);
        }
    }
    let guard = Running(store.name.clone());
    tokio::task::spawn_blocking(move || {
        let _running = guard;
        let res = store.run_reencrypt(pause, &mut |j| {
            tracing::debug!(backend = %store.name, rewritten = j.rewritten, unchanged = j.skipped, failed = j.failed, total = j.total, "re-encrypt job progress")
        });
        match res {
            Ok(j) => {
                let retired = if j.failed == 0 {
                    store.retire_unused_keys().unwrap_or_else(|e| {
                        tracing::warn!(backend = %store.name, error = %e, "could not retire the old key ids");
                        Vec::new()
                    })
                } else {
                    Vec::new()
                };
                tracing::info!(backend = %store.name, rewritten = j.rewritten, unchanged = j.skipped, failed = j.failed, retired_key_ids = ?retired, "re-encrypt job finished")
            }
            Err(e) => {
                tracing::error!(backend = %store.name, error = %e, "re-encrypt job stopped; start it again to resume")
            }
        }
        // Only when `_running` drops: a finished job counts as running until
        // the old keys are retired.
    });
}

/// Resumes the re-encrypt jobs an earlier process left unfinished: their
/// buckets stay write-gated until they finish.
pub fn resume(gateway: &crate::gateway::Gateway) {
    for store in gateway.stores() {
        if let Some(j) = store.pending_reencrypt() {
            tracing::warn!(backend = %store.name, buckets = ?j.buckets, done = j.rewritten, "resuming an interrupted re-encrypt job; writes to its buckets get 503 SlowDown until it finishes");
            spawn_reencrypt(store.clone(), Duration::ZERO);
        }
    }
}

fn job_json(store: &ObjectStore) -> serde_json::Value {
    let (job, pending) = match store.pending_reencrypt() {
        Some(j) => (Some(j), true),
        None => (store.last_reencrypt(), false),
    };
    let percent = job.as_ref().map(|j| {
        if j.finished {
            100
        } else {
            let done = j.rewritten + j.skipped + j.failed;
            (done * 100).checked_div(j.total).unwrap_or(0).min(99)
        }
    });
    serde_json::json!({
        "backend": store.name,
        "encryption": store.encryption_mode(),
        "running": is_running(&store.name),
        "pending": pending,
        "percent": percent,
        "job": job,
    })
}

/// `GET /_/api/reencrypt`: per backend, its unfinished job (or the last
/// finished one), whether it runs now, and how far it is in percent.
pub async fn list(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let stores: Vec<_> = st.gateway.load().stores().cloned().collect();
    let jobs =
        tokio::task::spawn_blocking(move || stores.iter().map(|s| job_json(s)).collect::<Vec<_>>())
            .await
            .unwrap_or_default();
    Json(serde_json::json!({ "jobs": jobs })).into_response()
}

/// The longest pause between objects a job may be given (`pause_ms=`).
const MAX_PAUSE_MS: u64 = 60_000;

/// `POST /_/api/reencrypt?backend=NAME[&bucket=B]...[&pause_ms=N]`: rewrites
/// every object of the backend (or of the named client buckets on it) that
/// does not match its encryption config now, waiting `N` ms after each
/// object (like the CLI's `--pause-ms`). The buckets answer writes with 503
/// SlowDown until the job is done. 202 with the job.
pub async fn start(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let q: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let Some(name) = q
        .iter()
        .find(|(k, _)| k == "backend")
        .map(|(_, v)| v.clone())
    else {
        return deny(StatusCode::BAD_REQUEST, "give backend=");
    };
    let pause_ms = match q.iter().find(|(k, _)| k == "pause_ms") {
        None => 0,
        Some((_, v)) => match v.parse::<u64>() {
            Ok(ms) if ms <= MAX_PAUSE_MS => ms,
            _ => {
                return deny(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "pause_ms must be a whole number of milliseconds up to {MAX_PAUSE_MS}"
                    ),
                );
            }
        },
    };
    let gw = st.gateway.load_full();
    let Some(store) = gw.store(&name).cloned() else {
        return deny(StatusCode::NOT_FOUND, &format!("no backend named '{name}'"));
    };
    let mut buckets = Vec::new();
    for (_, b) in q.iter().filter(|(k, _)| k == "bucket") {
        let (on, real) = gw.route(b);
        if on.name != name {
            return deny(
                StatusCode::BAD_REQUEST,
                &format!("bucket '{b}' is not on backend '{name}'"),
            );
        }
        buckets.push(real);
    }
    if is_running(&name) {
        return deny(
            StatusCode::CONFLICT,
            "a re-encrypt job runs on this backend already",
        );
    }
    let job = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.start_reencrypt(&buckets)).await
    };
    match job {
        Ok(Ok(_)) => {
            spawn_reencrypt(store.clone(), Duration::from_millis(pause_ms));
            let body = tokio::task::spawn_blocking(move || job_json(&store))
                .await
                .unwrap_or_default();
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(backend = %name, error = %e, "could not start the re-encrypt job");
            deny(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Err(_) => deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    }
}
