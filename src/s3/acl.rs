//! ACLs: canned ACLs on buckets and objects (`x-amz-acl` on PutObject,
//! CopyObject, CreateMultipartUpload and CreateBucket; Put/GetBucketAcl and
//! Put/GetObjectAcl), judged by the policy engine (`gateway::policy::acl`).
//! Every bucket and object belongs to the single owner with FULL_CONTROL;
//! an ACL document or `x-amz-grant-*` headers are taken when they say the
//! same as a canned ACL (grants to everyone or to every IAM user), and
//! refused when they say more than this server can honour (grants to
//! another account, by e-mail, to the log-delivery group, of ACP rights):
//! never stored half understood.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::Ctx;
use super::error::S3Error;
use super::xml::{self, Owner, S3_NS};
use crate::gateway::policy::{self, acl::Canned, acl::Grantee, acl::Permission};

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const GRANT_HEADERS: &[&str] = &[
    "x-amz-grant-read",
    "x-amz-grant-write",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
];

/// One grant as a request states it.
enum Asked<'a> {
    /// To the owner: they have FULL_CONTROL anyway.
    Owner,
    Group(&'a str),
    Other(String),
}

/// The canned ACL equal to a list of grants (permission name, grantee).
fn canned_from(grants: &[(&str, Asked<'_>)]) -> Result<Canned, S3Error> {
    let mut out = Vec::new();
    for (perm, who) in grants {
        let permission = match *perm {
            "READ" => Some(Permission::Read),
            "WRITE" => Some(Permission::Write),
            "READ_ACP" | "WRITE_ACP" | "FULL_CONTROL" => None,
            other => {
                return Err(S3Error::new(
                    "MalformedACLError",
                    400,
                    format!(
                        "The XML you provided was not well-formed or did not validate against our published schema: unknown permission {other}"
                    ),
                ));
            }
        };
        match who {
            Asked::Owner => {}
            Asked::Other(what) => {
                return Err(S3Error::not_implemented(&format!(
                    "ACL grants to {what} (this box has one owner: grant to everyone or to every IAM user, or use IAM permissions, docs/iam.md)"
                )));
            }
            Asked::Group(uri) => {
                let g = Grantee::from_uri(uri).ok_or_else(|| {
                    S3Error::not_implemented(&format!("ACL grants to the group {uri}"))
                })?;
                let p = permission
                    .ok_or_else(|| S3Error::not_implemented(&format!("{perm} grants to {uri}")))?;
                out.push((g, p));
            }
        }
    }
    Canned::from_grants(&out).ok_or_else(|| {
        S3Error::not_implemented(
            "this combination of grants (only those of the canned ACLs private, public-read, public-read-write and authenticated-read)",
        )
    })
}

fn asked_id(id: &str) -> Asked<'static> {
    if id.trim() == Owner::proxy().id {
        Asked::Owner
    } else {
        Asked::Other(format!("the account {}", id.trim()))
    }
}

/// `x-amz-grant-*` headers: `id="..."`, `uri="..."`, `emailAddress="..."`, comma separated.
fn from_grant_headers(ctx: &Ctx) -> Result<Option<Canned>, S3Error> {
    let mut grants = Vec::new();
    let mut any = false;
    for name in GRANT_HEADERS {
        let Some(value) = ctx.header(name) else {
            continue;
        };
        any = true;
        let perm = match *name {
            "x-amz-grant-read" => "READ",
            "x-amz-grant-write" => "WRITE",
            "x-amz-grant-read-acp" => "READ_ACP",
            "x-amz-grant-write-acp" => "WRITE_ACP",
            _ => "FULL_CONTROL",
        };
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, v) = part.split_once('=').ok_or_else(|| {
                S3Error::invalid_argument(format!("Invalid grant {part}"))
                    .with("ArgumentName", *name)
            })?;
            let v = v.trim().trim_matches('"');
            let who = match kind.trim().to_ascii_lowercase().as_str() {
                "id" => asked_id(v),
                "uri" => Asked::Group(v),
                "emailaddress" => Asked::Other(format!("the e-mail address {v}")),
                _ => {
                    return Err(S3Error::invalid_argument(format!("Invalid grantee {part}"))
                        .with("ArgumentName", *name));
                }
            };
            grants.push((perm, who));
        }
    }
    if !any {
        return Ok(None);
    }
    canned_from(&grants).map(Some)
}

/// The ACL a request asks for in its headers: `x-amz-acl` or `x-amz-grant-*`.
fn from_headers(ctx: &Ctx) -> Result<Option<Canned>, S3Error> {
    let grants = from_grant_headers(ctx)?;
    let Some(v) = ctx.header("x-amz-acl").map(str::trim) else {
        return Ok(grants);
    };
    if grants.is_some() {
        return Err(S3Error::invalid_request(
            "Specifying both Canned ACLs and Header Grants is not allowed",
        ));
    }
    match Canned::parse(v) {
        Some(c) => Ok(Some(c)),
        None if matches!(v, "aws-exec-read" | "log-delivery-write") => Err(
            S3Error::not_implemented(&format!("The canned ACL {v} (no EC2 or log delivery here)")),
        ),
        None => Err(S3Error::invalid_argument(format!("Unknown canned ACL {v}"))
            .with("ArgumentName", "x-amz-acl")),
    }
}

/// The ACL a write (PutObject, CopyObject, CreateMultipartUpload) gives its
/// object, as stored in the object's metadata. An ACL that grants needs
/// `s3:PutObjectAcl` besides the write itself.
pub fn for_new_object(ctx: &Ctx) -> Result<Option<String>, S3Error> {
    let canned = from_headers(ctx)?.unwrap_or(Canned::Private);
    if canned.grants_more() {
        ctx.authorize(policy::PUT_OBJECT_ACL, ctx.bucket(), ctx.key.as_deref())?;
    }
    Ok(canned.stored().map(str::to_owned))
}

/// The ACL CreateBucket gives its bucket (needs `s3:PutBucketAcl` if it grants).
pub fn for_new_bucket(ctx: &Ctx) -> Result<Canned, S3Error> {
    let canned = from_headers(ctx)?.unwrap_or(Canned::Private);
    if canned.grants_more() {
        ctx.authorize(policy::PUT_BUCKET_ACL, ctx.bucket(), None)?;
        need_db(ctx)?;
    }
    Ok(canned)
}

fn need_db(ctx: &Ctx) -> Result<std::sync::Arc<crate::configdb::LiveIam>, S3Error> {
    ctx.iam
        .clone()
        .ok_or_else(|| S3Error::not_implemented("Bucket ACLs without a config database"))
}

/// Stores the ACL of a bucket just created or set (private: nothing stored).
pub async fn store_bucket_acl(ctx: &Ctx, canned: Canned) -> Result<(), S3Error> {
    let Some(iam) = ctx.iam.clone() else {
        return if canned.grants_more() {
            need_db(ctx).map(|_| ())
        } else {
            Ok(())
        };
    };
    let b = ctx.bucket().to_owned();
    super::policy::blocking(iam, move |i| {
        i.mutate_policies(|d| d.put_bucket_acl(&b, canned.stored()))
    })
    .await?;
    tracing::info!(
        bucket = ctx.bucket(),
        acl = canned.as_str(),
        "bucket ACL set"
    );
    Ok(())
}

// ------------------------------------------------------------------ documents

#[derive(Serialize, Deserialize, Default)]
struct GranteeXml {
    #[serde(rename = "@xmlns:xsi", default, skip_deserializing)]
    xsi: &'static str,
    #[serde(rename = "@xsi:type", default, skip_deserializing)]
    kind: &'static str,
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(
        rename = "DisplayName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    display_name: Option<String>,
    #[serde(
        rename = "EmailAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    email: Option<String>,
    #[serde(rename = "URI", default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct GrantXml {
    #[serde(rename = "Grantee")]
    grantee: GranteeXml,
    #[serde(rename = "Permission")]
    permission: String,
}

#[derive(Serialize, Deserialize, Default)]
struct AccessControlList {
    #[serde(rename = "Grant", default)]
    grant: Vec<GrantXml>,
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

#[derive(Deserialize)]
struct AccessControlPolicyIn {
    #[serde(rename = "AccessControlList", default)]
    acl: AccessControlList,
}

fn document(canned: Canned) -> Response {
    let o = Owner::proxy();
    let mut grant = vec![GrantXml {
        grantee: GranteeXml {
            xsi: XSI,
            kind: "CanonicalUser",
            id: Some(o.id.clone()),
            display_name: Some(o.display_name.clone()),
            ..Default::default()
        },
        permission: "FULL_CONTROL".into(),
    }];
    for (g, p) in canned.grants() {
        grant.push(GrantXml {
            grantee: GranteeXml {
                xsi: XSI,
                kind: "Group",
                uri: Some(g.uri().into()),
                ..Default::default()
            },
            permission: p.as_str().into(),
        });
    }
    xml::response(
        "AccessControlPolicy",
        &AccessControlPolicy {
            xmlns: S3_NS,
            acl: AccessControlList { grant },
            owner: o,
        },
    )
}

fn from_document(body: &[u8]) -> Result<Canned, S3Error> {
    let doc: AccessControlPolicyIn = xml::parse(body, "AccessControlPolicy").map_err(|_| {
        S3Error::new(
            "MalformedACLError",
            400,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    })?;
    let grants: Vec<(&str, Asked<'_>)> = doc
        .acl
        .grant
        .iter()
        .map(|g| {
            let who = match (&g.grantee.id, &g.grantee.uri, &g.grantee.email) {
                (Some(id), _, _) => asked_id(id),
                (None, Some(uri), _) => Asked::Group(uri.as_str()),
                (None, None, Some(e)) => Asked::Other(format!("the e-mail address {e}")),
                (None, None, None) => Asked::Other("a grantee without ID, URI or e-mail".into()),
            };
            (g.permission.trim(), who)
        })
        .collect();
    canned_from(&grants)
}

// ------------------------------------------------------------------ handlers

/// The ACL of the request's object, or of its bucket.
async fn current(ctx: &Ctx) -> Result<Canned, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    match &ctx.key {
        None => {
            store
                .bucket_created(&real)
                .await
                .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))?;
            Ok(ctx.gateway.directory().bucket_acl(ctx.bucket()))
        }
        Some(k) => {
            let info = store
                .head(&real, k)
                .await
                .map_err(|e| S3Error::from_engine(e, ctx.bucket(), k))?;
            Ok(info
                .meta
                .acl
                .as_deref()
                .and_then(Canned::parse)
                .unwrap_or(Canned::Private))
        }
    }
}

/// GetBucketAcl / GetObjectAcl: the owner's FULL_CONTROL and the canned ACL's grants.
pub async fn get(ctx: Ctx) -> Result<Response, S3Error> {
    Ok(document(current(&ctx).await?))
}

/// PutBucketAcl / PutObjectAcl: a canned ACL in `x-amz-acl`, grant headers
/// or an AccessControlPolicy document.
pub async fn put(mut ctx: Ctx) -> Result<Response, S3Error> {
    let body = ctx.body_bytes(64 * 1024).await?;
    let in_headers = from_headers(&ctx)?;
    let canned = if body.iter().all(u8::is_ascii_whitespace) {
        in_headers.ok_or_else(|| {
            S3Error::new(
                "MissingSecurityHeader",
                400,
                "Your request was missing a required header: x-amz-acl",
            )
        })?
    } else if in_headers.is_some() {
        return Err(S3Error::new(
            "UnexpectedContent",
            400,
            "This request does not support content when an ACL is given in headers",
        ));
    } else {
        from_document(&body)?
    };
    current(&ctx).await?;
    match ctx.key.clone() {
        None => store_bucket_acl(&ctx, canned).await?,
        Some(k) => {
            let (store, real) = ctx.gateway.route(ctx.bucket());
            store
                .set_acl(&real, &k, canned.stored().map(str::to_owned))
                .await
                .map_err(|e| S3Error::from_engine(e, ctx.bucket(), &k))?;
        }
    }
    Ok(StatusCode::OK.into_response())
}
