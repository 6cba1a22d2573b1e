//! Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
//! GetBucketLocation, GetBucketVersioning.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use super::Ctx;
use super::error::S3Error;
use super::xml::{self, S3_NS};
use crate::gateway::policy;

fn engine_err(ctx: &Ctx) -> impl Fn(crate::engine::EngineError) -> S3Error + '_ {
    move |e| S3Error::from_engine(e, ctx.bucket(), "")
}

/// ListBuckets: the admin sees every bucket, a user allowed
/// s3:ListAllMyBuckets too; another user sees the buckets they have some
/// permission in; anonymous callers are refused (unless open access).
pub async fn list_buckets(ctx: Ctx) -> Result<Response, S3Error> {
    let all = ctx
        .gateway
        .authorize(
            &ctx.identity,
            false,
            &ctx.facts(policy::LIST_ALL_BUCKETS, None, None, false),
        )
        .allowed;
    if !all && ctx.identity == crate::gateway::Identity::Anonymous {
        return Err(S3Error::access_denied());
    }
    let mut buckets = ctx.gateway.list_buckets().await.map_err(engine_err(&ctx))?;
    buckets.retain(|(name, _)| ctx.gateway.shows_bucket(&ctx.identity, name, all));
    let doc = xml::ListAllMyBucketsResult {
        xmlns: S3_NS,
        owner: xml::Owner::proxy(),
        buckets: xml::Buckets {
            bucket: buckets
                .into_iter()
                .map(|(name, created)| xml::BucketXml {
                    name,
                    creation_date: xml::iso8601(created),
                })
                .collect(),
        },
    };
    Ok(xml::response("ListAllMyBucketsResult", &doc))
}

pub async fn create_bucket(mut ctx: Ctx) -> Result<Response, S3Error> {
    let acl = super::acl::for_new_bucket(&ctx)?;
    // The optional CreateBucketConfiguration body names a region; one box, one region.
    let body = ctx.body_bytes(64 * 1024).await?;
    super::object::verify_content_md5(&ctx.headers, &body)?;
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store.create_bucket(&real).await.map_err(engine_err(&ctx))?;
    tracing::info!(bucket = ctx.bucket(), backend = %store.name, "bucket created");
    // A new bucket starts with no policy and the ACL asked for, whatever a
    // bucket of that name once had (deleted behind the server's back).
    forget(&ctx).await;
    super::acl::store_bucket_acl(&ctx, acl).await?;
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/{}", ctx.bucket())) {
        resp.headers_mut().insert("location", v);
    }
    Ok(resp)
}

pub async fn head_bucket(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store
        .bucket_created(&real)
        .await
        .map_err(engine_err(&ctx))?;
    let mut resp = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&ctx.proto.region) {
        resp.headers_mut().insert("x-amz-bucket-region", v);
    }
    Ok(resp)
}

pub async fn delete_bucket(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store.delete_bucket(&real).await.map_err(engine_err(&ctx))?;
    tracing::info!(bucket = ctx.bucket(), "bucket deleted");
    forget(&ctx).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn get_location(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store
        .bucket_created(&real)
        .await
        .map_err(engine_err(&ctx))?;
    // us-east-1 is written as an empty constraint, as S3 does.
    let region = if ctx.proto.region == "us-east-1" {
        String::new()
    } else {
        ctx.proto.region.clone()
    };
    Ok(xml::response(
        "LocationConstraint",
        &xml::LocationConstraint {
            xmlns: S3_NS,
            region,
        },
    ))
}

pub async fn get_versioning(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    store
        .bucket_created(&real)
        .await
        .map_err(engine_err(&ctx))?;
    // A bucket that never had versioning enabled has no Status element.
    Ok(xml::response(
        "VersioningConfiguration",
        &xml::VersioningConfiguration { xmlns: S3_NS },
    ))
}

/// Drops the stored policy and ACL of the request's bucket (it was just
/// deleted or created). A failure is logged: the bucket operation stands.
async fn forget(ctx: &Ctx) {
    let Some(iam) = ctx.iam.clone() else { return };
    let b = ctx.bucket().to_owned();
    if let Err(e) =
        super::policy::blocking(iam, move |i| i.mutate_policies(|d| d.forget_bucket(&b))).await
    {
        tracing::error!(
            bucket = ctx.bucket(),
            error = e.code,
            "could not forget the bucket's policy and ACL"
        );
    }
}
