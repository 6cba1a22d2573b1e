//! ACLs, as far as a single-owner box has them: every bucket and object
//! belongs to the owner with FULL_CONTROL, and access beyond that is given
//! by IAM permissions and bucket policies (`docs/iam.md`). So the canned
//! ACLs that mean exactly that (`private`, `bucket-owner-full-control`,
//! `bucket-owner-read`) are accepted wherever S3 takes them, Get*Acl answer
//! the owner's grant, and an ACL that would grant more (`public-read`,
//! grants in headers or documents) is refused with `NotImplemented`, never
//! silently ignored: a client asking for a public object learns it is not.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

use super::Ctx;
use super::error::S3Error;
use super::xml::{self, Owner, S3_NS};

const SAME_AS_OWNER_ONLY: &[&str] = &["private", "bucket-owner-full-control", "bucket-owner-read"];
const GRANTING: &[&str] = &[
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "log-delivery-write",
];

/// Checks `x-amz-acl` and `x-amz-grant-*` on a request that may carry them.
pub fn check_request(ctx: &Ctx) -> Result<(), S3Error> {
    if let Some((name, _)) = ctx
        .headers
        .iter()
        .find(|(n, _)| n.as_str().starts_with("x-amz-grant-"))
    {
        return Err(S3Error::not_implemented(&format!(
            "The {name} header (ACL grants; use IAM permissions or a bucket policy, docs/iam.md)"
        )));
    }
    match ctx.header("x-amz-acl").map(str::trim) {
        None => Ok(()),
        Some(v) if SAME_AS_OWNER_ONLY.contains(&v) => Ok(()),
        Some(v) if GRANTING.contains(&v) => Err(S3Error::not_implemented(&format!(
            "The canned ACL {v} (use a bucket policy to publish objects, docs/iam.md)"
        ))),
        Some(v) => Err(S3Error::invalid_argument(format!("Unknown canned ACL {v}"))
            .with("ArgumentName", "x-amz-acl")),
    }
}

#[derive(Serialize)]
struct Grantee {
    #[serde(rename = "@xmlns:xsi")]
    xsi: &'static str,
    #[serde(rename = "@xsi:type")]
    kind: &'static str,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "DisplayName")]
    display_name: String,
}

#[derive(Serialize)]
struct Grant {
    #[serde(rename = "Grantee")]
    grantee: Grantee,
    #[serde(rename = "Permission")]
    permission: &'static str,
}

#[derive(Serialize)]
struct AccessControlList {
    #[serde(rename = "Grant")]
    grant: Vec<Grant>,
}

#[derive(Serialize)]
struct AccessControlPolicy {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "Owner")]
    owner: Owner,
    #[serde(rename = "AccessControlList")]
    acl: AccessControlList,
}

fn owner_policy() -> Response {
    let o = Owner::proxy();
    xml::response(
        "AccessControlPolicy",
        &AccessControlPolicy {
            xmlns: S3_NS,
            acl: AccessControlList {
                grant: vec![Grant {
                    grantee: Grantee {
                        xsi: "http://www.w3.org/2001/XMLSchema-instance",
                        kind: "CanonicalUser",
                        id: o.id.clone(),
                        display_name: o.display_name.clone(),
                    },
                    permission: "FULL_CONTROL",
                }],
            },
            owner: o,
        },
    )
}

async fn exists(ctx: &Ctx) -> Result<(), S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    match &ctx.key {
        None => store
            .bucket_created(&real)
            .await
            .map(|_| ())
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), "")),
        Some(k) => store
            .head(&real, k)
            .await
            .map(|_| ())
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), k)),
    }
}

/// GetBucketAcl / GetObjectAcl: the owner's FULL_CONTROL.
pub async fn get(ctx: Ctx) -> Result<Response, S3Error> {
    exists(&ctx).await?;
    Ok(owner_policy())
}

/// PutBucketAcl / PutObjectAcl: only a canned ACL that grants nothing beyond the owner.
pub async fn put(mut ctx: Ctx) -> Result<Response, S3Error> {
    check_request(&ctx)?;
    let body = ctx.body_bytes(64 * 1024).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        return Err(S3Error::not_implemented(
            "ACL documents (send x-amz-acl: private; grant access with IAM permissions or a bucket policy, docs/iam.md)",
        ));
    }
    if ctx.header("x-amz-acl").is_none() {
        return Err(S3Error::new(
            "MissingSecurityHeader",
            400,
            "Your request was missing a required header: x-amz-acl",
        ));
    }
    exists(&ctx).await?;
    Ok(StatusCode::OK.into_response())
}
