//! Bucket policies: GetBucketPolicy, PutBucketPolicy, DeleteBucketPolicy,
//! GetBucketPolicyStatus. The document is kept, as sent, in the config
//! database and judged by the same policy engine as IAM permissions
//! (`gateway::policy::bucket`).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::Ctx;
use super::error::S3Error;
use super::xml::{self, S3_NS};
use crate::configdb::{ConfigDb, LiveIam};
use crate::gateway::policy::bucket;

/// AWS's limit on a bucket policy document.
const MAX_POLICY: usize = 20 * 1024;

fn no_policy(b: &str) -> S3Error {
    S3Error::new(
        "NoSuchBucketPolicy",
        404,
        "The bucket policy does not exist",
    )
    .with("BucketName", b)
}

fn malformed(msg: String) -> S3Error {
    S3Error::new("MalformedPolicy", 400, msg)
}

/// The config database (it holds the policies), after checking the bucket exists.
async fn db(ctx: &Ctx) -> Result<Arc<LiveIam>, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store
        .bucket_created(&real)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))?;
    ctx.iam
        .clone()
        .ok_or_else(|| S3Error::not_implemented("Bucket policies without a config database"))
}

pub(super) async fn blocking<T: Send + 'static>(
    iam: Arc<LiveIam>,
    f: impl FnOnce(&LiveIam) -> crate::configdb::Result<T> + Send + 'static,
) -> Result<T, S3Error> {
    match tokio::task::spawn_blocking(move || f(&iam)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "bucket settings: config database error");
            Err(S3Error::internal())
        }
        Err(_) => Err(S3Error::internal()),
    }
}

pub async fn get(ctx: Ctx) -> Result<Response, S3Error> {
    let iam = db(&ctx).await?;
    let b = ctx.bucket().to_owned();
    let doc = blocking(iam, move |i| i.read(|d: &ConfigDb| d.bucket_policy(&b))).await?;
    let doc = doc.ok_or_else(|| no_policy(ctx.bucket()))?;
    let mut resp = doc.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

pub async fn put(mut ctx: Ctx) -> Result<Response, S3Error> {
    let body = ctx.body_bytes(MAX_POLICY).await?;
    super::object::verify_content_md5(&ctx.headers, &body)?;
    bucket::parse(ctx.bucket(), &body).map_err(malformed)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| malformed("the policy is not UTF-8".into()))?;
    let iam = db(&ctx).await?;
    let b = ctx.bucket().to_owned();
    blocking(iam, move |i| {
        i.mutate_policies(|d| d.put_bucket_policy(&b, &text))
    })
    .await?;
    tracing::info!(bucket = ctx.bucket(), "bucket policy set");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(ctx: Ctx) -> Result<Response, S3Error> {
    let iam = db(&ctx).await?;
    let b = ctx.bucket().to_owned();
    blocking(iam, move |i| {
        i.mutate_policies(|d| d.delete_bucket_policy(&b).map(|_| ()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Serialize)]
struct PolicyStatus {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "IsPublic")]
    is_public: bool,
}

pub async fn status(ctx: Ctx) -> Result<Response, S3Error> {
    let iam = db(&ctx).await?;
    let b = ctx.bucket().to_owned();
    let doc = blocking(iam, move |i| i.read(|d: &ConfigDb| d.bucket_policy(&b))).await?;
    let doc = doc.ok_or_else(|| no_policy(ctx.bucket()))?;
    let stmts = bucket::parse(ctx.bucket(), doc.as_bytes()).map_err(|e| {
        tracing::error!(bucket = ctx.bucket(), error = %e, "stored bucket policy does not parse");
        S3Error::internal()
    })?;
    Ok(xml::response(
        "PolicyStatus",
        &PolicyStatus {
            xmlns: S3_NS,
            is_public: bucket::is_public(&stmts),
        },
    ))
}
