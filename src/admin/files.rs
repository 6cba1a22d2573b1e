//! The admin UI's file browser: buckets, prefixes and objects through the
//! gateway's routing and the engine (so encryption, delta and the write
//! gates apply exactly as for S3 clients), never the backend directly.
//!
//! * `GET /_/api/files?bucket=B&prefix=P`: one level (delimiter `/`).
//! * `GET|PUT|DELETE /_/api/files/object?bucket=B&key=K`: download
//!   (`&inline=1` for a preview), upload one body, delete.
//! * `POST /_/api/files/delete` `{"bucket": B, "keys": [...]}`: bulk delete.
//! * Multipart for large files: `POST /_/api/files/uploads?bucket=B&key=K`
//!   → `{upload_id}`; `PUT /_/api/files/uploads/{id}?bucket=B&key=K&part=N`
//!   → `{etag}`; `POST /_/api/files/uploads/{id}/complete?bucket=B&key=K`
//!   with `{"parts": [{"number": N, "etag": E}, ...]}`.
//! * `GET /_/api/files/zip?bucket=B&prefix=P`: the prefix as a ZIP stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use http::{HeaderValue, Request, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::{deny, require_admin};
use crate::engine::list::ListParams;
use crate::engine::meta::{ObjectMeta, to_ms};
use crate::engine::multipart::CompletePart;
use crate::engine::{ByteStream, EngineError, ObjectStore, StageOptions};
use crate::s3::S3State;
use crate::storage::StorageError;

type Answer = Result<Response, Box<Response>>;

fn params(req: &Request<Body>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn need<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Box<Response>> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Box::new(deny(StatusCode::BAD_REQUEST, &format!("give {name}="))))
}

/// An engine error as the UI's answer (only `s3` speaks S3 error codes).
fn failed(e: EngineError) -> Box<Response> {
    let (status, msg) = match &e {
        EngineError::Storage(StorageError::NoSuchBucket) => {
            (StatusCode::NOT_FOUND, "no such bucket".into())
        }
        EngineError::Storage(StorageError::NoSuchKey) => {
            (StatusCode::NOT_FOUND, "no such object".into())
        }
        EngineError::Storage(StorageError::NoSuchUpload) => {
            (StatusCode::NOT_FOUND, "no such upload".into())
        }
        EngineError::Storage(StorageError::InvalidKey(k)) => {
            (StatusCode::BAD_REQUEST, format!("invalid key: {k}"))
        }
        EngineError::Storage(StorageError::KeyConflict(w)) => {
            (StatusCode::CONFLICT, (*w).to_owned())
        }
        EngineError::InvalidPart(_)
        | EngineError::InvalidPartOrder
        | EngineError::EntityTooSmall(_) => (StatusCode::BAD_REQUEST, e.to_string()),
        EngineError::InsufficientSpace { .. } => (StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        _ => {
            tracing::error!(error = %e, "file browser request failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    };
    Box::new(deny(status, &msg))
}

/// The admin check, then the backend and real name of `bucket=`.
fn target(
    st: &S3State,
    req: &Request<Body>,
) -> Result<(Arc<ObjectStore>, String, HashMap<String, String>), Box<Response>> {
    require_admin(st, req)?;
    let q = params(req);
    let bucket = need(&q, "bucket")?.to_owned();
    let (store, real) = st.gateway.load().route(&bucket);
    Ok((store, real, q))
}

/// What every write to one object starts with: `target`, `key=`, and the
/// write gate.
fn write_target(
    st: &S3State,
    req: &Request<Body>,
) -> Result<(Arc<ObjectStore>, String, HashMap<String, String>, String), Box<Response>> {
    let (store, real, q) = target(st, req)?;
    let key = need(&q, "key")?.to_owned();
    writable(&store, &real)?;
    Ok((store, real, q, key))
}

/// Writes wait, as S3 writes do, while a job gates the bucket.
fn writable(store: &ObjectStore, real: &str) -> Result<(), Box<Response>> {
    match store.write_gate(real) {
        None => Ok(()),
        Some(_) => {
            let mut r = deny(
                StatusCode::SERVICE_UNAVAILABLE,
                "a job is rewriting this bucket; writes resume when it is done",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            Err(Box::new(r))
        }
    }
}

fn body_stream(req: Request<Body>) -> ByteStream {
    Box::pin(
        req.into_body()
            .into_data_stream()
            .map_err(std::io::Error::other),
    )
}

fn expected(req: &Request<Body>) -> u64 {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

fn content_type(req: &Request<Body>) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn run(f: impl Future<Output = Answer>) -> Response {
    f.await.unwrap_or_else(|r| *r)
}

/// `GET /_/api/files[?bucket=B&prefix=P]`: the buckets, or one level of one.
pub async fn list(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        if params(&req).get("bucket").is_none() {
            require_admin(&st, &req)?;
            let gw = st.gateway.load_full();
            let buckets = gw.list_buckets().await.map_err(failed)?;
            let names: Vec<_> = buckets.into_iter().map(|(n, _)| n).collect();
            return Ok(Json(json!({ "buckets": names })).into_response());
        }
        let (store, real, q) = target(&st, &req)?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        let page = store
            .list(
                &real,
                ListParams {
                    prefix: prefix.clone(),
                    delimiter: Some("/".into()),
                    start_after: q.get("after").cloned().unwrap_or_default(),
                    max_keys: 1000,
                },
            )
            .await
            .map_err(failed)?;
        let objects: Vec<_> = page
            .objects
            .iter()
            .map(|o| {
                json!({
                    "key": o.key,
                    "size": o.meta.size,
                    "mtime_ms": o.meta.mtime_ms,
                    "etag": o.meta.etag,
                    "content_type": o.meta.content_type,
                })
            })
            .collect();
        Ok(Json(json!({
            "bucket": q["bucket"],
            "prefix": prefix,
            "prefixes": page.prefixes,
            "objects": objects,
            "truncated": page.truncated,
            "next_after": page.truncated.then_some(page.last),
        }))
        .into_response())
    })
    .await
}

/// `GET /_/api/files/object?bucket=B&key=K[&inline=1]`: the object's bytes.
pub async fn download(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, q) = target(&st, &req)?;
        let key = need(&q, "key")?;
        let obj = store.open(&real, key).await.map_err(failed)?;
        let meta = obj.info.meta.clone();
        let stream = obj.into_stream(0, meta.size).await.map_err(failed)?;
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
        let name = key.rsplit('/').next().unwrap_or(key);
        let inline = q.get("inline").is_some_and(|v| v == "1");
        // A preview shows text as text and images as images, nothing that
        // runs: anything else is downloaded (and the UI's CSP applies).
        let ct = meta
            .content_type
            .as_deref()
            .unwrap_or("application/octet-stream");
        let safe = ct.starts_with("text/plain")
            || ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(&ct);
        let shown = if inline && !safe && ct.starts_with("text/") {
            "text/plain; charset=utf-8"
        } else {
            ct
        };
        if let Ok(v) = HeaderValue::from_str(shown) {
            h.insert(header::CONTENT_TYPE, v);
        }
        let disposition = if inline && (safe || ct.starts_with("text/")) {
            "inline".to_owned()
        } else {
            let ascii: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let encoded: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            format!(
                "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
                encoded.replace('+', "%20")
            )
        };
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; img-src 'self'; sandbox"),
        );
        Ok(resp)
    })
    .await
}

/// `PUT /_/api/files/object?bucket=B&key=K`: one body, streamed.
pub async fn upload(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, _, key) = write_target(&st, &req)?;
        let (size, ct) = (expected(&req), content_type(&req));
        let opts = StageOptions {
            expected_size: size,
            ..Default::default()
        };
        let staged = store.stage(body_stream(req), opts).await.map_err(failed)?;
        let mut meta = ObjectMeta::new(0, hex::encode(staged.md5), SystemTime::now());
        meta.content_type = ct;
        meta.mtime_ms = to_ms(SystemTime::now());
        let meta = store
            .commit(&real, &key, staged, meta)
            .await
            .map_err(failed)?;
        Ok(Json(json!({ "key": key, "size": meta.size, "etag": meta.etag })).into_response())
    })
    .await
}

/// `DELETE /_/api/files/object?bucket=B&key=K`.
pub async fn delete(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, _, key) = write_target(&st, &req)?;
        let key = key.as_str();
        store.delete(&real, key).await.map_err(failed)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[derive(Deserialize)]
struct Bulk {
    keys: Vec<String>,
}

/// `POST /_/api/files/delete?bucket=B` with `{"keys": [...]}`: every key is
/// tried; the answer lists what was deleted and what failed, and why.
pub async fn delete_many(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, _) = target(&st, &req)?;
        writable(&store, &real)?;
        let body = axum::body::to_bytes(req.into_body(), 4 << 20)
            .await
            .map_err(|_| Box::new(deny(StatusCode::PAYLOAD_TOO_LARGE, "too many keys")))?;
        let bulk: Bulk = serde_json::from_slice(&body)
            .map_err(|_| Box::new(deny(StatusCode::BAD_REQUEST, "send {\"keys\": [...]}")))?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for k in bulk.keys {
            match store.delete(&real, &k).await {
                Ok(()) | Err(EngineError::Storage(StorageError::NoSuchKey)) => deleted.push(k),
                Err(e) => errors.push(json!({ "key": k, "error": e.to_string() })),
            }
        }
        Ok(Json(json!({ "deleted": deleted, "errors": errors })).into_response())
    })
    .await
}

/// `POST /_/api/files/uploads?bucket=B&key=K`: starts a multipart upload.
pub async fn create_upload(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, q, key) = write_target(&st, &req)?;
        let key = key.as_str();
        let mut template = ObjectMeta::new(0, String::new(), SystemTime::now());
        template.content_type = q.get("content_type").cloned().filter(|c| !c.is_empty());
        let id = store
            .create_upload(&real, key, template, None)
            .await
            .map_err(failed)?;
        Ok(Json(json!({ "upload_id": id })).into_response())
    })
    .await
}

/// The upload `id` if it belongs to `bucket`/`key`.
async fn upload_of(
    store: &ObjectStore,
    real: &str,
    key: &str,
    id: &str,
) -> Result<crate::engine::multipart::UploadState, Box<Response>> {
    match store.upload_state(id).await {
        Ok(s) if s.bucket == real && s.key == key => Ok(s),
        Ok(_) => Err(failed(EngineError::Storage(StorageError::NoSuchUpload))),
        Err(e) => Err(failed(e)),
    }
}

/// `PUT /_/api/files/uploads/{id}?bucket=B&key=K&part=N`: one part.
pub async fn upload_part(
    State(st): State<Arc<S3State>>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response {
    run(async move {
        let (store, real, q) = target(&st, &req)?;
        let key = need(&q, "key")?.to_owned();
        let number: u32 = need(&q, "part")?
            .parse()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| Box::new(deny(StatusCode::BAD_REQUEST, "part= is 1 to 10000")))?;
        writable(&store, &real)?;
        let state = upload_of(&store, &real, &key, &id).await?;
        let opts = StageOptions {
            expected_size: expected(&req),
            ..Default::default()
        };
        let staged = store
            .stage_part(&state, number, body_stream(req), opts)
            .await
            .map_err(failed)?;
        let part = store
            .upload_part(&id, number, staged)
            .await
            .map_err(failed)?;
        Ok(Json(json!({ "part": number, "etag": part.etag, "size": part.size })).into_response())
    })
    .await
}

#[derive(Deserialize)]
struct Parts {
    parts: Vec<PartRef>,
}

#[derive(Deserialize)]
struct PartRef {
    number: u32,
    etag: String,
}

/// `POST /_/api/files/uploads/{id}/complete?bucket=B&key=K`.
pub async fn complete_upload(
    State(st): State<Arc<S3State>>,
    Path(id): Path<String>,
    req: Request<Body>,
) -> Response {
    run(async move {
        let (store, real, _, key) = write_target(&st, &req)?;
        let body = axum::body::to_bytes(req.into_body(), 4 << 20)
            .await
            .map_err(|_| Box::new(deny(StatusCode::PAYLOAD_TOO_LARGE, "too many parts")))?;
        let parts: Parts = serde_json::from_slice(&body).map_err(|_| {
            Box::new(deny(
                StatusCode::BAD_REQUEST,
                "send {\"parts\": [{\"number\": N, \"etag\": E}, ...]}",
            ))
        })?;
        let wanted = parts
            .parts
            .into_iter()
            .map(|p| CompletePart {
                number: p.number,
                etag: p.etag,
                checksum: None,
            })
            .collect();
        let meta = store
            .complete_upload(&real, &key, &id, wanted)
            .await
            .map_err(failed)?;
        Ok(Json(json!({ "key": key, "size": meta.size, "etag": meta.etag })).into_response())
    })
    .await
}

/// Hands what the ZIP writer produces to the response, in blocks; a
/// dropped response (the browser went away) stops the writer.
struct ToBody {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

const ZIP_BLOCK: usize = 256 * 1024;

impl ToBody {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let block = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(ZIP_BLOCK),
        ));
        self.tx.blocking_send(Ok(block)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the download was cancelled")
        })
    }
}

impl std::io::Write for ToBody {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= ZIP_BLOCK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes every object under `prefix` into the ZIP stream (names relative
/// to the prefix; entries stored, not compressed: the box's CPU is better
/// spent elsewhere, and most large files are compressed already).
fn write_zip(store: &ObjectStore, real: &str, prefix: &str, out: ToBody) -> anyhow::Result<u64> {
    use std::io::Write;
    use zip::write::SimpleFileOptions;
    let mut z = zip::ZipWriter::new_stream(out);
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let (mut after, mut n) = (String::new(), 0);
    let mut buf = vec![0u8; 1024 * 1024];
    let base = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
    loop {
        let page = store.list_blocking(
            real,
            ListParams {
                prefix: prefix.to_owned(),
                delimiter: None,
                start_after: after.clone(),
                max_keys: 1000,
            },
        )?;
        for o in &page.objects {
            if o.key.ends_with('/') {
                continue;
            }
            // Names relative to the prefix's folder; a backslash would be a
            // path separator to some unzip tools.
            let name = o.key[base.len()..].replace('\\', "_");
            if name.is_empty() {
                continue;
            }
            let mut obj = match store.open_blocking(real, &o.key) {
                Ok(obj) => obj,
                // Deleted since the listing: not in the archive.
                Err(EngineError::Storage(StorageError::NoSuchKey)) => continue,
                Err(e) => return Err(e.into()),
            };
            z.start_file(name, opts)?;
            let mut at = 0;
            loop {
                let got = obj.read_at(at, &mut buf)?;
                if got == 0 {
                    break;
                }
                z.write_all(&buf[..got])?;
                at += got as u64;
            }
            n += 1;
        }
        match (page.truncated, page.last) {
            (true, Some(last)) => after = last,
            _ => break,
        }
    }
    z.finish()?.flush()?;
    Ok(n)
}

/// `GET /_/api/files/zip?bucket=B[&prefix=P]`: every object under the
/// prefix as one ZIP, streamed as it is written (memory stays flat).
pub async fn zip(State(st): State<Arc<S3State>>, req: Request<Body>) -> Response {
    run(async move {
        let (store, real, q) = target(&st, &req)?;
        let prefix = q.get("prefix").cloned().unwrap_or_default();
        if !store.bucket_exists(&real).await.map_err(failed)? {
            return Err(failed(EngineError::Storage(StorageError::NoSuchBucket)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let errors = tx.clone();
        let out = ToBody {
            tx,
            buf: Vec::with_capacity(ZIP_BLOCK),
        };
        let bucket = q["bucket"].clone();
        let name = format!(
            "{bucket}{}",
            if prefix.is_empty() { String::new() } else { format!("-{}", prefix.trim_end_matches('/').replace('/', "-")) }
        );
        tokio::task::spawn_blocking(move || {
            if let Err(e) = write_zip(&store, &real, &prefix, out) {
                tracing::warn!(bucket = %bucket, prefix = %prefix, error = %e, "ZIP download ended early");
                // The response ends with an error: the browser reports a failed download.
                let _ = errors.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) });
        let mut resp = Response::new(Body::from_stream(stream));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
        let ascii: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii}.zip\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        Ok(resp)
    })
    .await
}
