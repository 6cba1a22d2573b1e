//! Multipart upload operations: Create, UploadPart, UploadPartCopy, Complete,
//! Abort, ListParts, ListMultipartUploads.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use tracing::Instrument as _;

use super::Ctx;
use super::error::S3Error;
use super::headers::{self, check_conditions};
use super::object::{copy_source, receive_body};
use super::xml::{self, ChecksumFields, S3_NS};
use crate::engine::checksum::ChecksumAlgorithm;
use crate::engine::meta::ObjectMeta;
use crate::engine::multipart::{CompletePart, MAX_PART_NUMBER, UploadState};
use crate::engine::{EngineError, ObjectStore, StageOptions};
use crate::gateway::policy;

/// A completion still running after this answers 200 at once and sends
/// whitespace until its result (S3's behaviour for long completions).
const COMPLETE_KEEPALIVE_AFTER: Duration = Duration::from_secs(2);
/// Interval of the whitespace sent while a completion runs.
const COMPLETE_KEEPALIVE_EVERY: Duration = Duration::from_secs(2);

fn upload_id(ctx: &Ctx) -> Result<String, S3Error> {
    ctx.q("uploadId")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(S3Error::no_such_upload)
}

/// The upload named by the request, which must belong to its bucket and key.
async fn upload_for(
    ctx: &Ctx,
    write: bool,
) -> Result<(Arc<ObjectStore>, String, UploadState), S3Error> {
    let id = upload_id(ctx)?;
    let (store, real) = if write {
        ctx.write_route()?
    } else {
        ctx.gateway.route(ctx.bucket())
    };
    let state = store
        .upload_state(&id)
        .await
        .map_err(|_| S3Error::no_such_upload())?;
    if state.bucket != real || state.key != ctx.key() {
        return Err(S3Error::no_such_upload());
    }
    Ok((store, id, state))
}

fn part_number(ctx: &Ctx) -> Result<u32, S3Error> {
    ctx.q("partNumber")
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            S3Error::invalid_argument(
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

fn checksum_fields(state: &UploadState, value: Option<&String>) -> ChecksumFields {
    match (state.checksum_alg.as_deref(), value) {
        (Some(alg), Some(v)) => ChecksumFields::from_alg(alg, v.clone()),
        _ => ChecksumFields::default(),
    }
}

pub async fn create(ctx: Ctx) -> Result<Response, S3Error> {
    let mut template = headers::meta_from_request(&ctx.headers)?;
    template.acl = super::acl::for_new_object(&ctx)?;
    let alg = match ctx.header("x-amz-checksum-algorithm") {
        Some(a) => Some(ChecksumAlgorithm::parse(a).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
        })?),
        None => None,
    };
    let full = match ctx
        .header("x-amz-checksum-type")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("FULL_OBJECT") => true,
        Some("COMPOSITE") => false,
        Some(other) => {
            return Err(S3Error::invalid_request(format!(
                "Invalid x-amz-checksum-type: {other}"
            )));
        }
        None => alg == Some(ChecksumAlgorithm::Crc64Nvme),
    };
    if full && alg.is_some_and(|a| !a.is_crc()) {
        return Err(S3Error::invalid_request(
            "The FULL_OBJECT checksum type is only supported with CRC algorithms",
        ));
    }
    if !full && alg == Some(ChecksumAlgorithm::Crc64Nvme) {
        return Err(S3Error::invalid_request(
            "The COMPOSITE checksum type is not supported with CRC64NVME",
        ));
    }
    let (store, real) = ctx.write_route()?;
    let id = store
        .create_upload(&real, ctx.key(), template, alg.map(|a| (a, full)))
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    let doc = xml::InitiateMultipartUploadResult {
        xmlns: S3_NS,
        bucket: ctx.bucket().into(),
        key: ctx.key().into(),
        upload_id: id,
    };
    let mut resp = xml::response("InitiateMultipartUploadResult", &doc);
    if let Some(a) = alg {
        let h = resp.headers_mut();
        h.insert(
            "x-amz-checksum-algorithm",
            HeaderValue::from_static(a.name()),
        );
        h.insert(
            "x-amz-checksum-type",
            HeaderValue::from_static(if full { "FULL_OBJECT" } else { "COMPOSITE" }),
        );
    }
    Ok(resp)
}

pub async fn upload_part(mut ctx: Ctx) -> Result<Response, S3Error> {
    let n = part_number(&ctx)?;
    let (store, id, state) = upload_for(&ctx, true).await?;
    let staged = receive_body(&mut ctx, &store, Some((&state, n))).await?;
    let pm = store
        .upload_part(&id, n, staged)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(
        "etag",
        HeaderValue::from_str(&format!("\"{}\"", pm.etag)).expect("hex"),
    );
    if let (Some(alg), Some(v)) = (state.checksum_algorithm(), &pm.checksum)
        && let Ok(v) = HeaderValue::from_str(v)
    {
        h.insert(alg.header(), v);
    }
    Ok(resp)
}

pub async fn upload_part_copy(ctx: Ctx) -> Result<Response, S3Error> {
    let n = part_number(&ctx)?;
    let (store, id, state) = upload_for(&ctx, true).await?;
    let (src_bucket, src_key) = copy_source(&ctx)?;
    ctx.authorize(policy::GET_OBJECT, &src_bucket, Some(&src_key))?;
    let (src_store, src_real) = ctx.gateway.route(&src_bucket);
    let src = src_store
        .open(&src_real, &src_key)
        .await
        .map_err(|e| S3Error::from_engine(e, &src_bucket, &src_key))?;
    let size = src.info.meta.size;
    check_conditions(
        &ctx.headers,
        "x-amz-copy-source-",
        &src.info.meta.etag,
        src.info.meta.mtime(),
    )?;
    let (start, len) = match ctx.header("x-amz-copy-source-range") {
        None => (0, size),
        Some(r) => {
            let bad = || {
                S3Error::invalid_argument(format!(
                    "Range specified is not valid for source object of size: {size}"
                ))
            };
            let spec = r.trim().strip_prefix("bytes=").ok_or_else(bad)?;
            let (a, b) = spec.split_once('-').ok_or_else(bad)?;
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a > b || b >= size {
                return Err(bad());
            }
            (a, b - a + 1)
        }
    };
    let body = src
        .into_stream(start, len)
        .await
        .map_err(|e| S3Error::from_engine(e, &src_bucket, &src_key))?;
    let staged = store
        .stage_part(
            &state,
            n,
            body,
            StageOptions {
                sha256: false,
                checksum: state.checksum_algorithm(),
                expected_size: len,
            },
        )
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    let pm = store
        .upload_part(&id, n, staged)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ctx.key()))?;
    let doc = xml::CopyPartResult {
        xmlns: S3_NS,
        last_modified: xml::iso8601(std::time::SystemTime::now()),
        etag: format!("\"{}\"", pm.etag),
        checksum: checksum_fields(&state, pm.checksum.as_ref()),
    };
    Ok(xml::response("CopyPartResult", &doc))
}

pub async fn complete(mut ctx: Ctx) -> Result<Response, S3Error> {
    let id = upload_id(&ctx)?;
    let (store, real) = ctx.write_route()?;
    // Checked by the engine once it knows this is not a retry of a
    // completion that already happened (that one answers 200 again).
    let cond = super::object::parse_write_condition(&ctx)?;
    let body = ctx.body_bytes(4 * 1024 * 1024).await?;
    let req: xml::CompleteMultipartUpload = xml::parse(&body, "CompleteMultipartUpload")?;
    let parts = req
        .parts
        .into_iter()
        .map(|p| CompletePart {
            number: p.part_number,
            checksum: p.checksum(),
            etag: p.etag,
        })
        .collect();
    // A completion can take long (assembling the parts on a filesystem,
    // server-side copies upstream). Like S3, answer 200 early and keep the
    // connection alive with whitespace, then send the result or an <Error>
    // document; quick completions answer as usual, errors with their status.
    let (bucket, key) = (ctx.bucket().to_owned(), ctx.key().to_owned());
    // A JoinHandle is Unpin: it can be polled by reference, then moved.
    let mut task = {
        let (bucket, key) = (real.clone(), key.clone());
        tokio::spawn(
            async move {
                store
                    .complete_upload_if(&bucket, &key, &id, parts, cond)
                    .await
            }
            .instrument(tracing::Span::current()),
        )
    };
    let early = tokio::time::timeout(COMPLETE_KEEPALIVE_AFTER, &mut task).await;
    let result_xml = move |res: Result<Result<ObjectMeta, EngineError>, tokio::task::JoinError>| {
        let meta = match res {
            Ok(r) => r.map_err(|e| S3Error::from_engine(e, &bucket, &key))?,
            Err(e) => {
                tracing::error!(error = %e, "multipart completion task failed");
                return Err(S3Error::internal());
            }
        };
        tracing::debug!(bucket, key, size = meta.size, "multipart upload completed");
        let checksum = meta
            .checksum
            .as_ref()
            .map(|c| ChecksumFields::from_alg(&c.alg, c.value.clone()))
            .unwrap_or_default();
        let doc = xml::CompleteMultipartUploadResult {
            xmlns: S3_NS,
            location: format!("/{bucket}/{key}"),
            bucket: bucket.clone(),
            key: key.clone(),
            etag: format!("\"{}\"", meta.etag),
            checksum,
            checksum_type: meta.checksum.as_ref().map(|c| c.kind.clone()),
        };
        xml::element("CompleteMultipartUploadResult", &doc).ok_or_else(S3Error::internal)
    };
    if let Ok(res) = early {
        let el = result_xml(res)?;
        let mut resp = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{el}").into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        return Ok(resp);
    }
    let request_id = ctx.request_id.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let decl = bytes::Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if tx.send(Ok(decl)).await.is_err() {
            return; // the completion goes on; the client may retry it
        }
        let mut tick = tokio::time::interval(COMPLETE_KEEPALIVE_EVERY);
        tick.tick().await;
        let res = loop {
            tokio::select! {
                r = &mut task => break r,
                _ = tick.tick() => {
                    if tx.send(Ok(bytes::Bytes::from_static(b" "))).await.is_err() {
                        return;
                    }
                }
            }
        };
        let el = match result_xml(res) {
            Ok(el) => el,
            Err(e) => e.error_element(&request_id),
        };
        let _ = tx.send(Ok(bytes::Bytes::from(el))).await;
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Ok(resp)
}

pub async fn abort(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, id, _) = upload_for(&ctx, true).await?;
    store
        .abort_upload(&id)
        .await
        .map_err(|_| S3Error::no_such_upload())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_parts(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, id, state) = upload_for(&ctx, false).await?;
    let marker: u32 = ctx
        .q("part-number-marker")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let max: usize = ctx
        .q("max-parts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let all = store
        .list_parts(&id)
        .await
        .map_err(|_| S3Error::no_such_upload())?;
    let rest: Vec<_> = all.into_iter().filter(|p| p.number > marker).collect();
    let truncated = rest.len() > max;
    let page: Vec<_> = rest.into_iter().take(max).collect();
    let doc = xml::ListPartsResult {
        xmlns: S3_NS,
        bucket: ctx.bucket().into(),
        key: ctx.key().into(),
        upload_id: id,
        part_number_marker: marker,
        next_part_number_marker: page.last().map(|p| p.number),
        max_parts: max,
        is_truncated: truncated,
        checksum_algorithm: state.checksum_alg.clone(),
        checksum_type: state.checksum_type.clone(),
        initiator: xml::Owner::proxy(),
        owner: xml::Owner::proxy(),
        storage_class: "STANDARD",
        parts: page
            .iter()
            .map(|p| xml::PartXml {
                part_number: p.number,
                last_modified: xml::iso8601(p.mtime),
                etag: format!("\"{}\"", p.meta.etag),
                size: p.meta.size,
                checksum: checksum_fields(&state, p.meta.checksum.as_ref()),
            })
            .collect(),
    };
    Ok(xml::response("ListPartsResult", &doc))
}

pub async fn list_uploads(ctx: Ctx) -> Result<Response, S3Error> {
    let (store, real) = ctx.gateway.route(ctx.bucket());
    if !store
        .bucket_exists(&real)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))?
    {
        return Err(S3Error::no_such_bucket(ctx.bucket()));
    }
    let prefix = ctx.q("prefix").unwrap_or("").to_owned();
    let key_marker = ctx.q("key-marker").unwrap_or("").to_owned();
    let id_marker = ctx.q("upload-id-marker").unwrap_or("").to_owned();
    let max: usize = ctx
        .q("max-uploads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    let all = store
        .list_uploads(&real)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))?;
    let rest: Vec<_> = all
        .into_iter()
        .filter(|(id, s)| {
            s.key.starts_with(&prefix)
                && (s.key > key_marker
                    || (s.key == key_marker
                        && !id_marker.is_empty()
                        && id.as_str() > id_marker.as_str()))
        })
        .collect();
    let truncated = rest.len() > max;
    let page: Vec<_> = rest.into_iter().take(max).collect();
    let doc = xml::ListMultipartUploadsResult {
        xmlns: S3_NS,
        bucket: ctx.bucket().into(),
        key_marker,
        upload_id_marker: id_marker,
        next_key_marker: truncated
            .then(|| page.last().map(|(_, s)| s.key.clone()))
            .flatten(),
        next_upload_id_marker: truncated
            .then(|| page.last().map(|(id, _)| id.clone()))
            .flatten(),
        prefix,
        delimiter: ctx.q("delimiter").map(str::to_owned),
        max_uploads: max,
        is_truncated: truncated,
        uploads: page
            .iter()
            .map(|(id, s)| xml::UploadXml {
                key: s.key.clone(),
                upload_id: id.clone(),
                initiator: xml::Owner::proxy(),
                owner: xml::Owner::proxy(),
                storage_class: "STANDARD",
                initiated: xml::iso8601(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(s.initiated_ms),
                ),
            })
            .collect(),
        common_prefixes: Vec::new(),
    };
    Ok(xml::response("ListMultipartUploadsResult", &doc))
}
