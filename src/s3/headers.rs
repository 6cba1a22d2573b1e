//! Request and response headers shared by the object operations: metadata
//! headers in and out, Range, conditional requests, HTTP dates.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::error::S3Error;
use crate::engine::meta::{ObjectMeta, STORED_HEADERS};

/// S3's limit on user metadata (names + values of `x-amz-meta-*`), in bytes.
pub const MAX_USER_META: usize = 2048;

pub fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Content type, standard headers and user metadata of a request, as a
/// metadata template (size, ETag and time are filled in later).
pub fn meta_from_request(h: &HeaderMap) -> Result<ObjectMeta, S3Error> {
    let mut m = ObjectMeta::new(0, String::new(), SystemTime::now());
    m.content_type = Some(
        get(h, "content-type")
            .unwrap_or("binary/octet-stream")
            .to_owned(),
    );
    for name in STORED_HEADERS {
        if let Some(v) = get(h, name) {
            let v = if *name == "content-encoding" {
                strip_aws_chunked(v)
            } else {
                v.to_owned()
            };
            if !v.is_empty() {
                m.headers.insert((*name).to_owned(), v);
            }
        }
    }
    for (name, value) in h {
        if let Some(k) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            m.user.insert(k.to_owned(), v);
        }
    }
    if m.user_meta_len() > MAX_USER_META {
        return Err(S3Error::new(
            "MetadataTooLarge",
            400,
            format!(
                "Your metadata headers exceed the maximum allowed metadata size of {MAX_USER_META} bytes"
            ),
        ));
    }
    Ok(m)
}

/// `aws-chunked` describes the transfer, not the object: it is not stored.
fn strip_aws_chunked(v: &str) -> String {
    v.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes an object's metadata as response headers.
pub fn put_meta_headers(out: &mut HeaderMap, m: &ObjectMeta) {
    let mut set = |name: &str, v: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            out.insert(n, v);
        }
    };
    set("etag", &format!("\"{}\"", m.etag));
    set("last-modified", &http_date(m.mtime()));
    if let Some(ct) = &m.content_type {
        set("content-type", ct);
    }
    for (k, v) in &m.headers {
        set(k, v);
    }
    for (k, v) in &m.user {
        set(&format!("x-amz-meta-{k}"), v);
    }
    if let Some(n) = m.parts {
        set("x-amz-mp-parts-count", &n.to_string());
    }
}

/// A satisfiable byte range: `start` and `len` within the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub len: u64,
}

/// Parses a `Range` header against an object of `size` bytes. `Ok(None)`
/// means serve the whole object (no header, or one S3 ignores).
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<ByteRange>, S3Error> {
    let Some(v) = value else { return Ok(None) };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multiple ranges: S3 serves the whole object
    }
    let unsatisfiable = || {
        S3Error::new(
            "InvalidRange",
            416,
            "The requested range is not satisfiable",
        )
        .with("RangeRequested", v.to_owned())
        .with("ActualObjectSize", size.to_string())
        .with_header(http::header::CONTENT_RANGE, format!("bytes */{size}"))
    };
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| S3Error::invalid_argument("Invalid Range header"))?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b
            .parse()
            .map_err(|_| S3Error::invalid_argument("Invalid Range header"))?;
        if n == 0 || size == 0 {
            return Err(unsatisfiable());
        }
        let n = n.min(size);
        ByteRange {
            start: size - n,
            len: n,
        }
    } else {
        let start: u64 = a
            .parse()
            .map_err(|_| S3Error::invalid_argument("Invalid Range header"))?;
        let end = if b.is_empty() {
            u64::MAX
        } else {
            b.parse()
                .map_err(|_| S3Error::invalid_argument("Invalid Range header"))?
        };
        if end < start {
            return Ok(None); // syntactically invalid per RFC 7233: ignored
        }
        if start >= size {
            return Err(unsatisfiable());
        }
        let end = end.min(size - 1);
        ByteRange {
            start,
            len: end - start + 1,
        }
    };
    Ok(Some(range))
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == etag)
}

fn parse_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

/// Truncates to whole seconds, the precision of HTTP dates.
fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Evaluates If-Match / If-Unmodified-Since (412) and If-None-Match /
/// If-Modified-Since (304) in the order RFC 7232 and S3 define.
/// `prefix` is "" for GET/HEAD and "x-amz-copy-source-" for copies, where
/// every failure is 412.
pub fn check_conditions(
    h: &HeaderMap,
    prefix: &str,
    etag: &str,
    mtime: SystemTime,
) -> Result<(), S3Error> {
    let name = |n: &str| format!("{prefix}{n}");
    let not_modified = if prefix.is_empty() {
        S3Error::new("NotModified", 304, "Not Modified")
            .with_header(http::header::ETAG, format!("\"{etag}\""))
            .with_header(http::header::LAST_MODIFIED, http_date(mtime))
    } else {
        S3Error::precondition_failed()
    };
    let if_match = get(h, &name("if-match"));
    if let Some(list) = if_match {
        if !etag_matches(list, etag) {
            return Err(S3Error::precondition_failed());
        }
    } else if let Some(d) = get(h, &name("if-unmodified-since")).and_then(parse_date)
        && secs(mtime) > secs(d)
    {
        return Err(S3Error::precondition_failed());
    }
    let if_none = get(h, &name("if-none-match"));
    if let Some(list) = if_none {
        if etag_matches(list, etag) {
            return Err(not_modified);
        }
    } else if let Some(d) = get(h, &name("if-modified-since")).and_then(parse_date)
        && secs(mtime) <= secs(d)
    {
        return Err(not_modified);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str| parse_range(Some(s), 100);
        assert_eq!(
            r("bytes=0-9").unwrap(),
            Some(ByteRange { start: 0, len: 10 })
        );
        assert_eq!(
            r("bytes=90-").unwrap(),
            Some(ByteRange { start: 90, len: 10 })
        );
        assert_eq!(
            r("bytes=-10").unwrap(),
            Some(ByteRange { start: 90, len: 10 })
        );
        assert_eq!(
            r("bytes=-1000").unwrap(),
            Some(ByteRange { start: 0, len: 100 })
        );
        assert_eq!(
            r("bytes=50-1000").unwrap(),
            Some(ByteRange { start: 50, len: 50 })
        );
        assert_eq!(r("bytes=100-").unwrap_err().status, 416);
        assert_eq!(r("bytes=0-1,5-6").unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-"), 0).unwrap_err().status, 416);
    }

    #[test]
    fn conditions() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert("if-none-match", "\"abc\"".parse().unwrap());
        assert_eq!(check_conditions(&h, "", "abc", t).unwrap_err().status, 304);
        let mut h = HeaderMap::new();
        h.insert("if-match", "\"nope\"".parse().unwrap());
        assert_eq!(check_conditions(&h, "", "abc", t).unwrap_err().status, 412);
        let mut h = HeaderMap::new();
        h.insert("if-match", "\"abc\"".parse().unwrap());
        h.insert(
            "if-unmodified-since",
            http_date(t - std::time::Duration::from_secs(99))
                .parse()
                .unwrap(),
        );
        assert!(
            check_conditions(&h, "", "abc", t).is_ok(),
            "If-Match true wins over If-Unmodified-Since"
        );
        let mut h = HeaderMap::new();
        h.insert("if-modified-since", http_date(t).parse().unwrap());
        assert_eq!(check_conditions(&h, "", "abc", t).unwrap_err().status, 304);
    }
}
