//! Object operations: PutObject, GetObject, HeadObject, DeleteObject,
//! DeleteObjects and CopyObject, plus the body intake shared with UploadPart
//! (Content-MD5, x-amz-content-sha256 and x-amz-checksum-* verification).

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode};
use md5::Digest as _;

use super::auth::PayloadMode;
use super::error::S3Error;
use super::headers::{self, check_conditions, get, parse_range, put_meta_headers};
use super::xml::{self, S3_NS};
use super::{Ctx, sha256_mismatch};
use crate::engine::checksum::{ChecksumAlgorithm, b64, unb64};
use crate::engine::meta::{ObjectMeta, StoredChecksum, to_ms};
use crate::engine::multipart::UploadState;
use crate::engine::{ObjectStore, StageOptions, Staged, WriteCondition};
use crate::gateway::policy;

/// S3's limit for a single PUT.
pub const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Where the expected value of a checksum comes from.
enum Expected {
    Header(Vec<u8>),
    Trailer,
    /// The SDK named the algorithm but sends no value: compute and store it.
    None,
}

/// The `x-amz-checksum-*` the request asks for, if any.
fn requested_checksum(h: &HeaderMap) -> Result<Option<(ChecksumAlgorithm, Expected)>, S3Error> {
    let mut found = None;
    for alg in ChecksumAlgorithm::ALL {
        if let Some(v) = get(h, alg.header()) {
            if found.is_some() {
                return Err(S3Error::invalid_request(
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
                ));
            }
            let raw = unb64(v)
                .filter(|r| r.len() == alg.digest_len())
                .ok_or_else(|| {
                    S3Error::invalid_request(format!(
                        "Value for {} header is invalid.",
                        alg.header()
                    ))
                })?;
            found = Some((alg, Expected::Header(raw)));
        }
    }
    if found.is_some() {
        return Ok(found);
    }
    if let Some(t) = get(h, "x-amz-trailer") {
        let alg = ChecksumAlgorithm::ALL
            .into_iter()
            .find(|a| t.trim().eq_ignore_ascii_case(a.header()))
            .ok_or_else(|| {
                S3Error::invalid_request(format!(
                    "The value specified in the x-amz-trailer header is not supported: {t}"
                ))
            })?;
        return Ok(Some((alg, Expected::Trailer)));
    }
    if let Some(a) = get(h, "x-amz-sdk-checksum-algorithm") {
        let alg = ChecksumAlgorithm::parse(a).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
        })?;
        return Ok(Some((alg, Expected::None)));
    }
    Ok(None)
}

fn content_md5(h: &HeaderMap) -> Result<Option<[u8; 16]>, S3Error> {
    let Some(v) = get(h, "content-md5") else {
        return Ok(None);
    };
    let raw = unb64(v).filter(|r| r.len() == 16).ok_or_else(|| {
        S3Error::new(
            "InvalidDigest",
            400,
            "The Content-MD5 you specified is not valid.",
        )
    })?;
    Ok(Some(raw.try_into().expect("16 bytes")))
}

/// Checks a small body (an XML document) against Content-MD5.
pub(super) fn verify_content_md5(h: &HeaderMap, body: &[u8]) -> Result<(), S3Error> {
    if let Some(want) = content_md5(h)?
        && md5::Md5::digest(body).as_slice() != want
    {
        return Err(S3Error::bad_digest());
    }
    Ok(())
}

/// Streams the request body into `store`'s temp area and verifies every
/// digest the client declared. Nothing is visible until the caller commits.
/// Receives a request body into the engine's staging; `upload`: the body
/// is a part of that multipart upload.
pub(super) async fn receive_body(
    ctx: &mut Ctx,
    store: &ObjectStore,
    upload: Option<(&UploadState, u32)>,
) -> Result<Staged, S3Error> {
    let want = requested_checksum(&ctx.headers)?;
    let md5 = content_md5(&ctx.headers)?;
    let declared = get(&ctx.headers, "x-amz-decoded-content-length")
        .or_else(|| get(&ctx.headers, "content-length"));
    let limit = ctx.proto.max_body.min(MAX_PUT_SIZE);
    if let Some(n) = declared.and_then(|v| v.parse::<u64>().ok())
        && n > limit
    {
        return Err(S3Error::new(
            "EntityTooLarge",
            400,
            "Your proposed upload exceeds the maximum allowed object size.",
        ));
    }
    let incoming = declared.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let opts = StageOptions {
        sha256: matches!(ctx.payload, PayloadMode::Sha256(_)),
        checksum: want.as_ref().map(|(a, _)| *a),
        expected_size: incoming,
    };
    let (stream, trailers) = ctx.body_stream();
    let (bucket, key) = (ctx.bucket().to_owned(), ctx.key().to_owned());
    let staged = match upload {
        Some((state, n)) => store.stage_part(state, n, stream, opts).await,
        None => store.stage(stream, opts).await,
    }
    .map_err(|e| S3Error::from_engine(e, &bucket, &key))?;
    if let PayloadMode::Sha256(expected) = &ctx.payload
        && staged.sha256.as_ref() != Some(expected)
    {
        return Err(sha256_mismatch());
    }
    if staged.size > limit {
        return Err(S3Error::new(
            "EntityTooLarge",
            400,
            "Your proposed upload exceeds the maximum allowed object size.",
        ));
    }
    if let Some(m) = md5
        && m != staged.md5
    {
        return Err(S3Error::bad_digest());
    }
    if let Some((alg, expected)) = want {
        let expected = match expected {
            Expected::Header(v) => Some(v),
            Expected::Trailer => {
                let t = trailers.get().unwrap_or_default();
                let v = get(&t, alg.header()).ok_or_else(|| {
                    S3Error::invalid_request(format!(
                        "The {} trailer was declared but not sent",
                        alg.header()
                    ))
                })?;
                Some(
                    unb64(v)
                        .filter(|r| r.len() == alg.digest_len())
                        .ok_or_else(|| {
                            S3Error::invalid_request(format!(
                                "Value for {} trailing header is invalid.",
                                alg.header()
                            ))
                        })?,
                )
            }
            Expected::None => None,
        };
        let got = staged.checksum.as_ref().map(|(_, v)| v);
        if let Some(exp) = expected
            && got != Some(&exp)
        {
            return Err(S3Error::new(
                "BadDigest",
                400,
                format!(
                    "The {} you specified did not match the calculated checksum.",
                    alg.name()
                ),
            ));
        }
    }
    Ok(staged)
}

fn stored_checksum(staged: &Staged) -> Option<StoredChecksum> {
    staged.checksum.as_ref().map(|(a, v)| StoredChecksum {
        alg: a.name().into(),
        value: b64(v),
        kind: "FULL_OBJECT".into(),
    })
}

fn checksum_header(resp: &mut HeaderMap, c: &StoredChecksum) {
    if let Some(alg) = ChecksumAlgorithm::parse(&c.alg) {
        if let Ok(v) = HeaderValue::from_str(&c.value) {
            resp.insert(alg.header(), v);
        }
        if let Ok(v) = HeaderValue::from_str(&c.kind) {
            resp.insert("x-amz-checksum-type", v);
        }
    }
}

/// S3's conditional writes (`If-None-Match: *`, `If-Match`) on PUT, copy
/// and multipart completion: the condition, checked once now (412, or 404
/// for `If-Match` on no object) and again by the engine as it publishes.
pub(super) async fn write_condition(
    ctx: &Ctx,
    store: &Arc<ObjectStore>,
    real: &str,
) -> Result<Option<WriteCondition>, S3Error> {
    let cond = parse_write_condition(ctx)?;
    if let Some(c) = &cond {
        store
            .check_condition(real, ctx.key(), c)
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    }
    Ok(cond)
}

/// The request's write condition, unchecked (501 for one S3 does not offer).
pub(super) fn parse_write_condition(ctx: &Ctx) -> Result<Option<WriteCondition>, S3Error> {
    WriteCondition::from_headers(ctx.header("if-none-match"), ctx.header("if-match")).map_err(|h| {
        S3Error::new(
            "NotImplemented",
            501,
            "A header you provided implies functionality that is not implemented.",
        )
        .with("Header", h)
    })
}

pub async fn put_object(mut ctx: Ctx) -> Result<Response, S3Error> {
    let mut meta = headers::meta_from_request(&ctx.headers)?;
    meta.acl = super::acl::for_new_object(&ctx)?;
    let (store, real) = ctx.write_route()?;
    let cond = write_condition(&ctx, &store, &real).await?;
    let staged = receive_body(&mut ctx, &store, None).await?;
    meta.etag = hex::encode(staged.md5);
    meta.checksum = stored_checksum(&staged);
    meta.sha256 = staged.sha256.map(hex::encode);
    meta.mtime_ms = to_ms(SystemTime::now());
    let meta = store
        .commit_if(&real, ctx.key(), staged, meta, cond)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(
        "etag",
        HeaderValue::from_str(&format!("\"{}\"", meta.etag)).expect("hex etag"),
    );
    if let Some(c) = &meta.checksum {
        checksum_header(h, c);
    }
    Ok(resp)
}

/// Query parameters that override response headers on GET.
const RESPONSE_OVERRIDES: &[(&str, &str)] = &[
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

/// Buckets are unversioned: every object is version `null`, any other id is unknown.
fn only_null_version(ctx: &Ctx) -> Result<(), S3Error> {
    match ctx.q("versionId") {
        Some(v) if v != "null" => Err(S3Error::new(
            "NoSuchVersion",
            404,
            "The specified version does not exist.",
        )
        .with("Key", ctx.key())),
        _ => Ok(()),
    }
}

pub async fn get_object(ctx: Ctx, head: bool) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    only_null_version(&ctx)?;
    // HEAD answers from the metadata: no body is opened (a delta object is
    // not reconstructed for it).
    let (meta, obj) = if head {
        let info = store
            .head(&real, ctx.key())
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
        (info.meta, None)
    } else {
        let obj = store
            .open(&real, ctx.key())
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
        (obj.info.meta.clone(), Some(obj))
    };
    check_conditions(&ctx.headers, "", &meta.etag, meta.mtime())?;
    let range = parse_range(ctx.header("range"), meta.size)?;
    let (status, start, len) = match range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.len),
        None => (StatusCode::OK, 0, meta.size),
    };
    let body = match obj {
        None => Body::empty(),
        Some(obj) => {
            let stream = obj
                .into_stream(start, len)
                .await
                .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
            Body::from_stream(stream)
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    put_meta_headers(h, &meta);
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    h.insert("content-length", HeaderValue::from(len));
    if range.is_some() {
        let cr = format!("bytes {}-{}/{}", start, start + len - 1, meta.size);
        h.insert("content-range", HeaderValue::from_str(&cr).expect("ascii"));
    }
    if ctx
        .header("x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"))
        && range.is_none()
        && let Some(c) = &meta.checksum
    {
        checksum_header(h, c);
    }
    if !matches!(ctx.identity, crate::gateway::Identity::Anonymous) {
        for (q, hname) in RESPONSE_OVERRIDES {
            if let Some(v) = ctx.q(q).and_then(|v| HeaderValue::from_str(v).ok()) {
                h.insert(*hname, v);
            }
        }
    }
    Ok(resp)
}

pub async fn delete_object(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.write_route()?;
    only_null_version(&ctx)?;
    store
        .delete(&real, ctx.key())
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The most keys one DeleteObjects request may name.
const MAX_DELETE_KEYS: usize = 1000;

pub async fn delete_objects(mut ctx: Ctx) -> Result<Response, S3Error> {
    let body = ctx.body_bytes(2 * 1024 * 1024).await?;
    verify_content_md5(&ctx.headers, &body)?;
    let req: xml::DeleteRequest = xml::parse(&body, "Delete")?;
    if req.objects.is_empty() || req.objects.len() > MAX_DELETE_KEYS {
        return Err(S3Error::malformed_xml());
    }
    // s3:DeleteObject per key; a caller allowed none of them gets one
    // AccessDenied for the request.
    let allowed: Vec<bool> = req
        .objects
        .iter()
        .map(|o| {
            ctx.authorize(policy::DELETE_OBJECT, ctx.bucket(), Some(&o.key))
                .is_ok()
        })
        .collect();
    if !allowed.contains(&true) {
        return Err(S3Error::access_denied());
    }
    let (store, real) = ctx.write_route()?;
    if !store
        .bucket_exists(&real)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))?
    {
        return Err(S3Error::no_such_bucket(ctx.bucket()));
    }
    let quiet = req.quiet.unwrap_or(false);
    let mut out = xml::DeleteResult {
        xmlns: S3_NS,
        deleted: Vec::new(),
        errors: Vec::new(),
    };
    for (o, allowed) in req.objects.into_iter().zip(allowed) {
        if !allowed {
            let err = S3Error::access_denied();
            out.errors.push(xml::DeleteErrorXml {
                key: o.key,
                version_id: o.version_id,
                code: err.code.into(),
                message: err.message,
            });
            continue;
        }
        if o.version_id.as_deref().is_some_and(|v| v != "null") {
            out.errors.push(xml::DeleteErrorXml {
                key: o.key,
                version_id: o.version_id,
                code: "NoSuchVersion".into(),
                message: "The specified version does not exist.".into(),
            });
            continue;
        }
        match store.delete(&real, &o.key).await {
            Ok(()) => {
                if !quiet {
                    out.deleted.push(xml::DeletedXml {
                        key: o.key,
                        version_id: o.version_id,
                    });
                }
            }
            Err(e) => {
                let err = S3Error::from_engine(e, ctx.bucket(), &o.key);
                out.errors.push(xml::DeleteErrorXml {
                    key: o.key,
                    version_id: o.version_id,
                    code: err.code.into(),
                    message: err.message,
                });
            }
        }
    }
    Ok(xml::response("DeleteResult", &out))
}

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=null]`, URL-encoded.
pub(super) fn copy_source(ctx: &Ctx) -> Result<(String, String), S3Error> {
    let raw = ctx.header("x-amz-copy-source").unwrap_or("");
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    if let Some(v) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "versionId")
        .map(|(_, v)| v)
        && v != "null"
    {
        return Err(S3Error::new(
            "NoSuchVersion",
            404,
            "The specified version does not exist.",
        ));
    }
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| S3Error::invalid_argument("Invalid copy source encoding"))?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (b, k) = decoded
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| {
            S3Error::invalid_argument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
        })?;
    if !crate::storage::keypath::valid_bucket_name(b) {
        return Err(S3Error::no_such_bucket(b));
    }
    Ok((b.to_owned(), k.to_owned()))
}

pub async fn copy_object(ctx: Ctx) -> Result<Response, S3Error> {
    // The copy gets the ACL the request gives (private by default), never the source's.
    let acl = super::acl::for_new_object(&ctx)?;
    let (src_bucket, src_key) = copy_source(&ctx)?;
    ctx.authorize(policy::GET_OBJECT, &src_bucket, Some(&src_key))?;
    let replace = match ctx.header("x-amz-metadata-directive").unwrap_or("COPY") {
        "COPY" => false,
        "REPLACE" => true,
        other => {
            return Err(S3Error::invalid_argument(format!(
                "Unknown metadata directive: {other}"
            )));
        }
    };
    let (src_store, src_real) = ctx.gateway.route(&src_bucket);
    let (dst_store, dst_real) = ctx.write_route()?;
    let cond = write_condition(&ctx, &dst_store, &dst_real).await?;
    let src = src_store
        .open(&src_real, &src_key)
        .await
        .map_err(|e| S3Error::from_engine(e, &src_bucket, &src_key))?;
    let src_meta = src.info.meta.clone();
    check_conditions(
        &ctx.headers,
        "x-amz-copy-source-",
        &src_meta.etag,
        src_meta.mtime(),
    )?;

    let mut meta = if replace {
        headers::meta_from_request(&ctx.headers)?
    } else {
        let mut m = ObjectMeta::new(0, String::new(), SystemTime::now());
        m.content_type = src_meta.content_type.clone();
        m.headers = src_meta.headers.clone();
        m.user = src_meta.user.clone();
        m
    };
    meta.mtime_ms = to_ms(SystemTime::now());
    meta.acl = acl;
    let same = std::sync::Arc::ptr_eq(&src_store, &dst_store)
        && src_real == dst_real
        && src_key == ctx.key();
    let meta = if same {
        if !replace {
            return Err(S3Error::invalid_request(
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        drop(src);
        // The metadata edit applies to the version the source conditions
        // were checked on, or conflicts (409).
        let same_version = Some(WriteCondition::Matches(vec![src_meta.etag.clone()]));
        let _ = cond;
        dst_store
            .replace_meta(&dst_real, ctx.key(), &meta, same_version)
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?
    } else {
        let alg = get(&ctx.headers, "x-amz-checksum-algorithm")
            .and_then(ChecksumAlgorithm::parse)
            .or_else(|| {
                src_meta
                    .checksum
                    .as_ref()
                    .and_then(|c| ChecksumAlgorithm::parse(&c.alg))
            });
        let size = src_meta.size;
        let body = src
            .into_stream(0, size)
            .await
            .map_err(|e| S3Error::from_engine(e, &src_bucket, &src_key))?;
        let staged = dst_store
            .stage(
                body,
                StageOptions {
                    sha256: src_meta.sha256.is_some(),
                    checksum: alg,
                    expected_size: size,
                },
            )
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
        meta.etag = hex::encode(staged.md5);
        meta.checksum = stored_checksum(&staged);
        meta.sha256 = staged.sha256.map(hex::encode);
        dst_store
            .commit_if(&dst_real, ctx.key(), staged, meta, cond)
            .await
            .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?
    };
    let res = xml::CopyObjectResult {
        xmlns: S3_NS,
        last_modified: xml::iso8601(meta.mtime()),
        etag: format!("\"{}\"", meta.etag),
        checksum: meta
            .checksum
            .as_ref()
            .map(|c| xml::ChecksumFields::from_alg(&c.alg, c.value.clone()))
            .unwrap_or_default(),
    };
    Ok(xml::response("CopyObjectResult", &res))
}
