//! Listing operations: ListObjects (v1), ListObjectsV2 and ListObjectVersions
//! (answered as an unversioned bucket: every object is version `null`).

use axum::response::Response;
use base64::Engine as _;

use super::Ctx;
use super::error::S3Error;
use super::xml::{self, S3_NS};
use crate::engine::list::{ListPage, ListParams};

const MAX_KEYS: usize = 1000;

/// Percent-encodes a key for `encoding-type=url` responses (as S3 does: like
/// a URL path component, keeping '/').
fn url_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

struct Encoder(bool);
impl Encoder {
    fn e(&self, s: &str) -> String {
        if self.0 { url_encode(s) } else { s.to_owned() }
    }
}

fn max_keys(ctx: &Ctx, name: &str) -> Result<usize, S3Error> {
    match ctx.q(name) {
        None => Ok(MAX_KEYS),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| (n as usize).min(MAX_KEYS))
            .ok_or_else(|| {
                S3Error::invalid_argument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
            }),
    }
}

fn encoding(ctx: &Ctx) -> Result<Encoder, S3Error> {
    match ctx.q("encoding-type") {
        None => Ok(Encoder(false)),
        Some(v) if v.eq_ignore_ascii_case("url") => Ok(Encoder(true)),
        Some(_) => Err(S3Error::invalid_argument(
            "Invalid Encoding Method specified in Request",
        )),
    }
}

async fn page(ctx: &Ctx, start_after: String, max: usize) -> Result<ListPage, S3Error> {
    let prefix = ctx.q("prefix").unwrap_or("").to_owned();
    let (store, real) = ctx.gateway.route(ctx.bucket());
    let params = ListParams {
        prefix,
        delimiter: ctx.q("delimiter").map(str::to_owned),
        start_after,
        max_keys: max,
    };
    store
        .list(&real, params)
        .await
        .map_err(|e| S3Error::from_engine(e, ctx.bucket(), ""))
}

fn contents(p: &ListPage, enc: &Encoder, owner: bool) -> Vec<xml::Contents> {
    p.objects
        .iter()
        .map(|o| xml::Contents {
            key: enc.e(&o.key),
            last_modified: xml::iso8601(o.meta.mtime()),
            etag: format!("\"{}\"", o.meta.etag),
            checksum_algorithm: o.meta.checksum.as_ref().map(|c| c.alg.clone()),
            checksum_type: o.meta.checksum.as_ref().map(|c| c.kind.clone()),
            size: o.meta.size,
            owner: owner.then(xml::Owner::proxy),
            storage_class: "STANDARD",
        })
        .collect()
}

fn prefixes(p: &ListPage, enc: &Encoder) -> Vec<xml::CommonPrefix> {
    p.prefixes
        .iter()
        .map(|s| xml::CommonPrefix { prefix: enc.e(s) })
        .collect()
}

fn token_encode(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

fn token_decode(s: &str) -> Result<String, S3Error> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| S3Error::invalid_argument("The continuation token provided is incorrect"))
}

pub async fn list_objects(ctx: Ctx, v2: bool) -> Result<Response, S3Error> {
    let enc = encoding(&ctx)?;
    let max = max_keys(&ctx, "max-keys")?;
    let prefix = ctx.q("prefix").unwrap_or("").to_owned();
    let delimiter = ctx
        .q("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    if v2 {
        let token = ctx.q("continuation-token").map(str::to_owned);
        let start_after = ctx.q("start-after").unwrap_or("").to_owned();
        let mut from = start_after.clone();
        if let Some(t) = &token {
            let k = token_decode(t)?;
            if k > from {
                from = k;
            }
        }
        let p = page(&ctx, from, max).await?;
        let fetch_owner = ctx.q("fetch-owner").is_some_and(|v| v == "true");
        let doc = xml::ListBucketResult {
            xmlns: S3_NS,
            name: ctx.bucket().to_owned(),
            prefix: enc.e(&prefix),
            marker: None,
            next_marker: None,
            start_after: (!start_after.is_empty()).then(|| enc.e(&start_after)),
            continuation_token: token,
            next_continuation_token: if p.truncated {
                p.last.as_deref().map(token_encode)
            } else {
                None
            },
            key_count: Some(p.objects.len() + p.prefixes.len()),
            max_keys: max,
            delimiter: delimiter.as_deref().map(|d| enc.e(d)),
            encoding_type: enc.0.then(|| "url".to_owned()),
            is_truncated: p.truncated,
            contents: contents(&p, &enc, fetch_owner),
            common_prefixes: prefixes(&p, &enc),
        };
        Ok(xml::response("ListBucketResult", &doc))
    } else {
        let marker = ctx.q("marker").unwrap_or("").to_owned();
        let p = page(&ctx, marker.clone(), max).await?;
        let doc = xml::ListBucketResult {
            xmlns: S3_NS,
            name: ctx.bucket().to_owned(),
            prefix: enc.e(&prefix),
            marker: Some(enc.e(&marker)),
            next_marker: if p.truncated {
                p.last.as_deref().map(|l| enc.e(l))
            } else {
                None
            },
            start_after: None,
            continuation_token: None,
            next_continuation_token: None,
            key_count: None,
            max_keys: max,
            delimiter: delimiter.as_deref().map(|d| enc.e(d)),
            encoding_type: enc.0.then(|| "url".to_owned()),
            is_truncated: p.truncated,
            contents: contents(&p, &enc, true),
            common_prefixes: prefixes(&p, &enc),
        };
        Ok(xml::response("ListBucketResult", &doc))
    }
}

pub async fn list_versions(ctx: Ctx) -> Result<Response, S3Error> {
    let enc = encoding(&ctx)?;
    let max = max_keys(&ctx, "max-keys")?;
    let key_marker = ctx.q("key-marker").unwrap_or("").to_owned();
    let p = page(&ctx, key_marker.clone(), max).await?;
    let doc = xml::ListVersionsResult {
        xmlns: S3_NS,
        name: ctx.bucket().to_owned(),
        prefix: enc.e(ctx.q("prefix").unwrap_or("")),
        key_marker: enc.e(&key_marker),
        version_id_marker: ctx.q("version-id-marker").unwrap_or("").to_owned(),
        next_key_marker: if p.truncated {
            p.last.as_deref().map(|l| enc.e(l))
        } else {
            None
        },
        next_version_id_marker: p.truncated.then_some("null"),
        max_keys: max,
        delimiter: ctx
            .q("delimiter")
            .filter(|d| !d.is_empty())
            .map(|d| enc.e(d)),
        encoding_type: enc.0.then(|| "url".to_owned()),
        is_truncated: p.truncated,
        versions: p
            .objects
            .iter()
            .map(|o| xml::Version {
                key: enc.e(&o.key),
                version_id: "null",
                is_latest: true,
                last_modified: xml::iso8601(o.meta.mtime()),
                etag: format!("\"{}\"", o.meta.etag),
                size: o.meta.size,
                owner: xml::Owner::proxy(),
                storage_class: "STANDARD",
            })
            .collect(),
        common_prefixes: prefixes(&p, &enc),
    };
    Ok(xml::response("ListVersionsResult", &doc))
}
