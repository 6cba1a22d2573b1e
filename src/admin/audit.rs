//! `GET /_/api/audit`: the recent audit records (newest first) for the admin
//! UI's viewer, filtered by `user`, `bucket`, `operation` and `status` (a
//! code such as `403`, or a class: `2xx`, `4xx`, `5xx`, `error` = 4xx and
//! 5xx), at most `limit` (default 200). The server keeps the last
//! `audit::RECENT` in memory; the journal keeps them all.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use super::{deny, require_admin};
use crate::audit::{RECENT, Record, recent};
use crate::s3::S3State;

fn status_matches(want: &str, got: u16) -> Option<bool> {
    Some(match want {
        "error" => got >= 400,
        class if class.len() == 3 && class.ends_with("xx") => {
            let d = class[..1].parse::<u16>().ok()?;
            got / 100 == d
        }
        code => code.parse::<u16>().ok()? == got,
    })
}

pub async fn list(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let mut q = super::query(&req);
    q.retain(|_, v| !v.trim().is_empty());
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 200,
        Some(Ok(n)) if n >= 1 => n.min(RECENT),
        Some(_) => return deny(StatusCode::BAD_REQUEST, "limit= is a positive number"),
    };
    let status = q.get("status").map(|s| s.trim().to_ascii_lowercase());
    if let Some(s) = &status
        && status_matches(s, 200).is_none()
    {
        return deny(
            StatusCode::BAD_REQUEST,
            "status= is a code (403), a class (2xx, 4xx, 5xx) or error",
        );
    }
    let field = |name: &str| q.get(name).map(|v| v.trim().to_owned());
    let (user, bucket, op) = (field("user"), field("bucket"), field("operation"));
    let keep = |r: &Record| {
        user.as_ref().is_none_or(|u| &r.user == u)
            && bucket.as_ref().is_none_or(|b| r.bucket.as_ref() == Some(b))
            && op
                .as_ref()
                .is_none_or(|o| r.operation.eq_ignore_ascii_case(o))
            && status
                .as_ref()
                .is_none_or(|s| status_matches(s, r.status) == Some(true))
    };
    let records = recent(limit, &keep);
    Json(serde_json::json!({ "records": records, "kept_in_memory": RECENT })).into_response()
}
