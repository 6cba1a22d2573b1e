//! `/_/api/iam/...`: IAM in the config database as JSON, for the admin UI
//! and scripts. Signed with the admin credential. Mutations answer 403 in
//! declarative mode (the config file owns IAM there). A secret appears in
//! exactly two answers: creating a user and creating or rotating a key.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};

use super::{deny, require_admin};
use crate::config::PermissionSpec;
use crate::configdb::{DbError, LiveIam, Owner};
use crate::s3::S3State;

fn db_error(e: DbError) -> Response {
    let status = match &e {
        DbError::Invalid(_) => StatusCode::BAD_REQUEST,
        DbError::NotFound(_) => StatusCode::NOT_FOUND,
        DbError::Conflict(_) => StatusCode::CONFLICT,
        DbError::Declarative => StatusCode::FORBIDDEN,
        _ => {
            tracing::error!(error = %e, "config database operation failed");
            return deny(
                StatusCode::INTERNAL_SERVER_ERROR,
                "config database error; see the server log",
            );
        }
    };
    deny(status, &e.to_string())
}

/// Checks the signature, then runs `f` on the config database off the
/// async workers; `Ok` becomes `status` with the value as JSON.
fn run<T: serde::Serialize + Send + 'static>(
    st: &S3State,
    req: &Request<Body>,
    status: StatusCode,
    f: impl FnOnce(&LiveIam) -> crate::configdb::Result<T> + Send + 'static,
) -> impl std::future::Future<Output = Response> + Send + 'static {
    // Checked now: the future must not hold the request (its body is not Sync).
    let ready = match require_admin(st, req) {
        Err(r) => Err(*r),
        Ok(()) => st.iam.clone().ok_or_else(|| {
            deny(
                StatusCode::NOT_IMPLEMENTED,
                "this server has no config database",
            )
        }),
    };
    async move {
        match ready {
            Ok(iam) => blocking(iam, status, f).await,
            Err(r) => r,
        }
    }
}

async fn blocking<T: serde::Serialize + Send + 'static>(
    iam: Arc<LiveIam>,
    status: StatusCode,
    f: impl FnOnce(&LiveIam) -> crate::configdb::Result<T> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&iam)).await {
        Ok(Ok(v)) => (status, Json(v)).into_response(),
        Ok(Err(e)) => db_error(e),
        Err(e) => {
            tracing::error!(error = %e, "IAM task failed");
            deny(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A JSON body (at most 64 KiB) after the signature check.
async fn body<T: serde::de::DeserializeOwned>(
    req: Request<Body>,
) -> Result<(Request<Body>, T), Response> {
    let (parts, b) = req.into_parts();
    let bytes = axum::body::to_bytes(b, 64 * 1024)
        .await
        .map_err(|_| deny(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 64 KiB"))?;
    let v = serde_json::from_slice(&bytes).map_err(|e| {
        deny(
            StatusCode::BAD_REQUEST,
            &format!("the body is not the expected JSON: {e}"),
        )
    })?;
    // The signature covers the body hash header, not the bytes themselves
    // (for a signed payload `x-amz-content-sha256` is compared here).
    if let Some(want) = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        && want.len() == 64
    {
        use sha2::Digest as _;
        if hex::encode(sha2::Sha256::digest(&bytes)) != want {
            return Err(deny(
                StatusCode::BAD_REQUEST,
                "x-amz-content-sha256 does not match the body",
            ));
        }
    }
    Ok((Request::from_parts(parts, Body::empty()), v))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    enabled: bool,
}

pub async fn list_users(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(&st, &req, StatusCode::OK, |i| {
        i.read(|db| db.users())
            .map(|u| serde_json::json!({"mode": mode(i), "users": u}))
    })
    .await
}

fn mode(i: &LiveIam) -> &'static str {
    match i.mode() {
        crate::config::IamMode::Gui => "gui",
        crate::config::IamMode::Declarative => "declarative",
    }
}

pub async fn create_user(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let (req, u): (_, NewUser) = match body(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    run(&st, &req, StatusCode::CREATED, move |i| {
        i.mutate(|db| db.create_user(&u.name, &u.groups))
    })
    .await
}

pub async fn show_user(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.read(|db| db.user(&name))
    })
    .await
}

pub async fn delete_user(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| db.delete_user(&name))
            .map(|()| serde_json::json!({"deleted": name}))
    })
    .await
}

pub async fn set_enabled(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    let (req, e): (_, Enabled) = match body(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| {
            db.set_enabled(&name, e.enabled)?;
            db.user(&name)
        })
    })
    .await
}

pub async fn create_key(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::CREATED, move |i| {
        i.mutate(|db| db.create_key(&name))
    })
    .await
}

pub async fn rotate_key(
    State(st): State<Arc<S3State>>,
    Path((name, id)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::CREATED, move |i| {
        i.mutate(|db| db.rotate_key(&name, Some(&id)))
    })
    .await
}

pub async fn delete_key(
    State(st): State<Arc<S3State>>,
    Path((name, id)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| db.delete_key(&name, &id))
            .map(|()| serde_json::json!({"deleted": id}))
    })
    .await
}

pub async fn list_groups(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(&st, &req, StatusCode::OK, |i| {
        i.read(|db| db.groups())
            .map(|g| serde_json::json!({"groups": g}))
    })
    .await
}

pub async fn create_group(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    let (req, g): (_, NewGroup) = match body(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    run(&st, &req, StatusCode::CREATED, move |i| {
        i.mutate(|db| {
            db.create_group(&g.name)?;
            db.group(&g.name)
        })
    })
    .await
}

pub async fn show_group(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.read(|db| db.group(&name))
    })
    .await
}

pub async fn delete_group(
    State(st): State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| db.delete_group(&name))
            .map(|()| serde_json::json!({"deleted": name}))
    })
    .await
}

pub async fn add_member(
    State(st): State<Arc<S3State>>,
    Path((group, user)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| {
            db.add_member(&user, &group)?;
            db.group(&group)
        })
    })
    .await
}

pub async fn remove_member(
    State(st): State<Arc<S3State>>,
    Path((group, user)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| {
            db.remove_member(&user, &group)?;
            db.group(&group)
        })
    })
    .await
}

pub async fn attach_user(
    st: State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    attach(st, "users", name, req).await
}

pub async fn attach_group(
    st: State<Arc<S3State>>,
    Path(name): Path<String>,
    req: Request<Body>,
) -> Response {
    attach(st, "groups", name, req).await
}

pub async fn detach_user(
    st: State<Arc<S3State>>,
    Path((name, i)): Path<(String, usize)>,
    req: Request<Body>,
) -> Response {
    detach(st, "users", name, i, req).await
}

pub async fn detach_group(
    st: State<Arc<S3State>>,
    Path((name, i)): Path<(String, usize)>,
    req: Request<Body>,
) -> Response {
    detach(st, "groups", name, i, req).await
}

/// `POST /_/api/iam/{users|groups}/{name}/permissions` with a permission.
async fn attach(
    State(st): State<Arc<S3State>>,
    kind: &'static str,
    name: String,
    req: Request<Body>,
) -> Response {
    let (req, p): (_, PermissionSpec) = match body(req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    run(&st, &req, StatusCode::CREATED, move |i| {
        i.mutate(|db| {
            let owner = owner(kind, &name)?;
            db.attach(owner, p)
                .map(|index| serde_json::json!({"index": index}))
        })
    })
    .await
}

async fn detach(
    State(st): State<Arc<S3State>>,
    kind: &'static str,
    name: String,
    index: usize,
    req: Request<Body>,
) -> Response {
    run(&st, &req, StatusCode::OK, move |i| {
        i.mutate(|db| db.detach(owner(kind, &name)?, index))
    })
    .await
}

fn owner<'a>(kind: &str, name: &'a str) -> crate::configdb::Result<Owner<'a>> {
    match kind {
        "users" => Ok(Owner::User(name)),
        "groups" => Ok(Owner::Group(name)),
        _ => Err(DbError::NotFound(format!("no IAM collection `{kind}`"))),
    }
}
