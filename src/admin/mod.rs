//! The operator API under `/_/api/` on the S3 port. It reads through the
//! engine (never storage directly) and answers only requests signed with the
//! admin credential (SigV4 or SigV2, as S3 requests are). The admin web UI
//! arrives in a later change; these JSON endpoints are what it will call.

pub mod audit;
pub mod backend_list;
pub mod backends;
pub mod can;
pub mod config;
pub mod docs;
pub mod files;
pub mod history;
pub mod iam;
pub mod jobs;
pub mod metrics;
pub mod oidc;
pub mod password;
pub mod reencrypt;
pub mod session;
pub mod sso;
pub mod ui;

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use crate::gateway::{Decision, Probe};
use crate::s3::S3State;
use crate::s3::auth::{AuthOutcome, AuthRequest, authenticate};

/// The request's query parameters by name (the last of a repeated one).
pub(crate) fn query(req: &Request<Body>) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn deny(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// A signed request is judged by its signature, even with a cookie.
fn signed(req: &Request<Body>) -> bool {
    req.headers().contains_key(http::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("Signature="))
}

/// Checks that the request carries a valid admin signature.
pub(crate) fn require_admin(st: &S3State, req: &Request<Body>) -> Result<(), Box<Response>> {
    let proto = st.protocol.load();
    let source =
        crate::s3::admit::client_addr(req.extensions(), req.headers(), proto.trust_proxy_headers);
    let now = std::time::Instant::now();
    if let Err(wait) = st.lockout.check(source, now) {
        let mut r = deny(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many failed authentications from this address; try again later",
        );
        if let Ok(v) = http::HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
            r.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        return Err(Box::new(r));
    }
    if !signed(req) && session::presented(req) {
        return by_session(st, req, source);
    }
    let auth = AuthRequest {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query().unwrap_or(""),
        headers: req.headers(),
        now: time::OffsetDateTime::now_utc(),
        region: Some(&proto.region),
    };
    match authenticate(&auth, proto.credentials.as_ref()) {
        Ok(AuthOutcome::Authenticated { .. }) => {
            st.lockout.succeeded(source);
            Ok(())
        }
        Ok(AuthOutcome::Anonymous) => Err(Box::new(deny(
            StatusCode::UNAUTHORIZED,
            "sign the request with the admin credential",
        ))),
        Err(e) => {
            if crate::s3::auth::is_credential_failure(&e) {
                // No delay here (this check is synchronous); the lockout applies.
                st.lockout.failed(source, &proto.lockout, now);
            }
            Err(Box::new(deny(StatusCode::FORBIDDEN, &e.to_string())))
        }
    }
}

/// The admin UI's way in: a live session (see `session`), with the CSRF
/// token on every state-changing call.
fn by_session(
    st: &S3State,
    req: &Request<Body>,
    source: std::net::IpAddr,
) -> Result<(), Box<Response>> {
    let active = st
        .sessions
        .as_ref()
        .and_then(|s| s.check(st, req, source))
        .ok_or_else(|| {
            Box::new(deny(
                StatusCode::UNAUTHORIZED,
                "the session has ended; log in again",
            ))
        })?;
    if session::needs_csrf(req.method()) && !session::csrf_ok(&active, req) {
        return Err(Box::new(deny(
            StatusCode::FORBIDDEN,
            "missing or wrong X-CSRF-Token",
        )));
    }
    Ok(())
}

/// The value of a blocking engine task, or the 500 answer (logged as `what`).
fn blocking_result<T>(
    res: Result<crate::engine::Result<T>, tokio::task::JoinError>,
    what: &str,
) -> Result<T, Box<Response>> {
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{what} failed");
            Err(Box::new(deny(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not read the backends; see the server log",
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "{what} task failed");
            Err(Box::new(deny(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )))
        }
    }
}

/// `GET /_/api/encryption/status`: per backend, the mode, key ids and object
/// counts (encrypted, plaintext, undecryptable, per key id). Never key material.
pub async fn encryption_status(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let stores: Vec<_> = st.gateway.load().stores().cloned().collect();
    let res = tokio::task::spawn_blocking(move || {
        stores
            .iter()
            .map(|s| s.encryption_status())
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match blocking_result(res, "encryption status") {
        Ok(backends) => Json(serde_json::json!({ "backends": backends })).into_response(),
        Err(r) => *r,
    }
}

/// `GET /_/api/stats[?bucket=B]`: logical and stored bytes and the savings
/// of delta compression, per bucket and per deltaspace (key prefix).
pub async fn stats(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let only = req.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "bucket")
            .map(|(_, v)| v.into_owned())
    });
    let gw = st.gateway.load_full();
    let res = tokio::task::spawn_blocking(move || gw.stats_blocking(only.as_deref())).await;
    match blocking_result(res, "stats") {
        Ok(Some(buckets)) => Json(serde_json::json!({ "buckets": buckets })).into_response(),
        Ok(None) => deny(StatusCode::NOT_FOUND, "no such bucket"),
        Err(r) => *r,
    }
}

/// This process's resident memory (current and peak), in KiB, from
/// `/proc/self/status` (visible even under `ProcSubset=pid`).
fn memory_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `GET /_/api/status`: version, uptime, each backend's data filesystem
/// (total and free bytes), memory, requests in flight.
pub async fn status(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let gateway = st.gateway.load_full();
    let default = gateway.default_store().to_owned();
    let stores: Vec<_> = gateway.stores().cloned().collect();
    // Health asks each upstream once: off the async workers.
    let backends = tokio::task::spawn_blocking(move || {
        stores
            .iter()
            .map(|s| {
                let (total, free) = s.space().unwrap_or((0, 0));
                let health = s.health();
                serde_json::json!({
                    "name": s.name,
                    "kind": s.backend_kind(),
                    "default": s.name == default,
                    "healthy": health.is_ok(),
                    "error": health.err(),
                    "disk_total_bytes": total,
                    "disk_free_bytes": free,
                    "encryption": s.encryption_mode(),
                    "reencrypt_job_running": s.pending_reencrypt().is_some(),
                    "writes_held": s.writes_held(),
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let (rss, peak) = memory_kib();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.started.elapsed().as_secs(),
        "memory_rss_bytes": rss * 1024,
        "memory_peak_rss_bytes": peak * 1024,
        "requests_in_flight": st.in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "backends": backends,
        "history_step_secs": history::STEP.as_secs(),
        "history": history::samples(),
    }))
    .into_response()
}

/// `POST /_/api/config/reload`: re-reads the configuration file and applies
/// it (as SIGHUP does). 200 with what changed, or 422 with why the running
/// configuration was kept.
pub async fn reload(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let Some(ctl) = st.config.clone() else {
        return deny(
            StatusCode::NOT_IMPLEMENTED,
            "this server has no configuration to re-read",
        );
    };
    match tokio::task::spawn_blocking(move || ctl.reload()).await {
        Ok(Ok(report)) => {
            Json(serde_json::json!({ "reloaded": true, "report": report })).into_response()
        }
        Ok(Err(why)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "reloaded": false, "error": why })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reload task failed");
            deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Admission for the operator endpoints: `deny` and `reject` blocks that
/// match by address and method (a block naming a bucket or a path never
/// matches here) apply before the signature is checked.
pub async fn admission(
    State(st): State<Arc<S3State>>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let trust = st.protocol.load().trust_proxy_headers;
    let source = crate::s3::admit::client_addr(req.extensions(), req.headers(), trust);
    let started = std::time::Instant::now();
    let mut audit = crate::audit::Record {
        time: crate::audit::now(),
        request_id: format!("{:016X}", rand::random::<u64>()),
        source_ip: source.to_string(),
        user: "anonymous".into(),
        operation: "Admin".into(),
        method: req.method().to_string(),
        key: Some(req.uri().path().to_owned()),
        decision: "none",
        bytes_in: req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0),
        ..Default::default()
    };
    // The route's pattern (`/_/api/iam/users/{name}`), never the raw path:
    // metric labels must stay few.
    let operation = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("/_/{*rest}".to_owned(), |m| m.as_str().to_owned());
    let decision = st.gateway.load().admit(&Probe {
        source,
        method: req.method().as_str(),
        bucket: None,
        path: None,
    });
    audit.rule = decision.block().map(|b| format!("admission block {b}"));
    // A session names its user (the bootstrap admin or an IAM operator).
    let session_user = (!signed(&req) && session::presented(&req))
        .then(|| st.sessions.as_ref()?.check(&st, &req, source))
        .flatten()
        .map(|a| a.user);
    let resp = admitted(decision, source, req, next).await;
    audit.status = resp.status().as_u16();
    if resp.status().is_success() {
        // Only an operator gets a success under /_/api/: the admin
        // credential, or a session.
        audit.user = session_user.unwrap_or_else(|| "admin".into());
        audit.decision = "allow";
    } else if matches!(
        resp.status(),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED
    ) {
        audit.decision = "deny";
    }
    audit.bytes_out = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let took = started.elapsed();
    audit.duration_ms = took.as_millis() as u64;
    crate::audit::emit(&audit);
    crate::metrics::request(
        "admin",
        &operation,
        audit.status,
        took,
        audit.bytes_in,
        audit.bytes_out,
    );
    resp
}

async fn admitted(
    decision: Decision,
    source: std::net::IpAddr,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    match decision {
        Decision::Deny { block } => {
            tracing::debug!(%source, block, "admission: denied an operator request");
            deny(StatusCode::FORBIDDEN, "access denied")
        }
        Decision::Reject {
            block,
            status,
            message,
        } => {
            tracing::debug!(%source, block, status, "admission: rejected an operator request");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            deny(
                status,
                message
                    .as_deref()
                    .unwrap_or("rejected by the admission rules"),
            )
        }
        Decision::Pass | Decision::AllowAnonymous { .. } => next.run(req).await,
    }
}

/// `GET /_/api/admission/trace?source_ip=IP[&method=GET][&path=/bucket/key]`
/// (or `bucket=` and `key=`/`prefix=`): which admission block a request
/// like that would hit, without sending it.
pub async fn admission_trace(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let q = query(&req);
    let Some(source) = q.get("source_ip").and_then(|v| v.trim().parse().ok()) else {
        return deny(
            StatusCode::BAD_REQUEST,
            "source_ip=<an IP address> is required",
        );
    };
    let method = q
        .get("method")
        .map_or("GET".to_owned(), |m| m.trim().to_ascii_uppercase());
    let (mut bucket, mut path) = (
        q.get("bucket").cloned(),
        q.get("key").or(q.get("prefix")).cloned(),
    );
    if let Some(p) = q.get("path") {
        let p = p.strip_prefix('/').unwrap_or(p);
        let (b, k) = p.split_once('/').unwrap_or((p, ""));
        bucket = (!b.is_empty()).then(|| b.to_owned());
        path = (!k.is_empty()).then(|| k.to_owned());
    }
    let d = st.gateway.load().admit(&Probe {
        source,
        method: &method,
        bucket: bucket.as_deref(),
        path: path.as_deref(),
    });
    let (decision, status) = match &d {
        Decision::Pass => ("pass", None),
        Decision::Deny { .. } => ("deny", Some(403)),
        Decision::AllowAnonymous { .. } => ("allow-anonymous", None),
        Decision::Reject { status, .. } => ("reject", Some(*status)),
    };
    Json(serde_json::json!({
        "source_ip": source.to_string(),
        "method": method,
        "bucket": bucket,
        "path": path,
        "decision": decision,
        "block": d.block(),
        "status": status,
    }))
    .into_response()
}
