//! "What can this user do here?": `GET /_/api/iam/users/{name}/can?bucket=B
//! [&key=K][&source_ip=IP][&secure=true]` judges every S3 action of the
//! level asked about (the object when `key` is given, the bucket when
//! `bucket` is, the service without either) exactly as a request would be
//! judged (`Gateway::authorize`: the user's and its groups' permissions and
//! the bucket's policy; an explicit Deny wins). An object's ACL, which can
//! still allow what nothing matched, is not looked at: `explicit` says
//! whether a denial is final.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use super::{deny, require_admin};
use crate::gateway::Identity;
use crate::gateway::policy::{self, ALL_ACTIONS, Level};
use crate::s3::S3State;

fn group_name(g: policy::Group) -> String {
    format!("{g:?}").to_ascii_lowercase()
}

pub async fn can(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    if let Err(r) = require_admin(&st, &req) {
        return *r;
    }
    let q = super::query(&req);
    let nonempty = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let (bucket, key) = (nonempty("bucket"), nonempty("key"));
    if key.is_some() && bucket.is_none() {
        return deny(StatusCode::BAD_REQUEST, "key= needs bucket=");
    }
    let source = match nonempty("source_ip").map(str::parse) {
        None => std::net::IpAddr::from([127, 0, 0, 1]),
        Some(Ok(ip)) => ip,
        Some(Err(_)) => return deny(StatusCode::BAD_REQUEST, "source_ip must be an IP address"),
    };
    let secure = nonempty("secure") == Some("true");
    let gw = st.gateway.load();
    let dir = gw.directory();
    let Some(user) = dir.user(&name) else {
        return deny(StatusCode::NOT_FOUND, &format!("no user `{name}`"));
    };
    let who = Identity::User {
        name: name.clone(),
        access_key_id: String::new(),
    };
    let level = match (bucket, key) {
        (Some(_), Some(_)) => Level::Object,
        (Some(_), None) => Level::Bucket,
        _ => Level::Service,
    };
    let actions: Vec<_> = ALL_ACTIONS
        .iter()
        .filter(|a| a.level == level)
        .map(|a| {
            let r = policy::Request {
                action: *a,
                bucket,
                key,
                prefix: None,
                delimiter: None,
                source,
                secure,
                username: Some(&name),
            };
            let z = gw.authorize(&who, false, &r);
            serde_json::json!({
                "action": a.name,
                "group": group_name(a.group),
                "allowed": z.allowed,
                "rule": z.rule,
                "explicit": z.explicit,
            })
        })
        .collect();
    Json(serde_json::json!({
        "user": name,
        "enabled": user.enabled,
        "operator": user.is_operator(),
        "bucket": bucket,
        "key": key,
        "source_ip": source.to_string(),
        "secure": secure,
        "actions": actions,
    }))
    .into_response()
}
