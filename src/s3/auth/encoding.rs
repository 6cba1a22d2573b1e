//! Owns the byte-level encoding rules shared by SigV4 and SigV2: AWS URI
//! encoding (RFC 3986 unreserved characters kept, everything else `%XX` with
//! uppercase hex), lenient percent-decoding, raw query-string splitting, the
//! canonical URI and canonical query string, and the date formats.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Everything but `A-Za-z0-9-._~` is encoded.
const AWS_URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// ISO 8601 basic format used by SigV4: `20130524T000000Z`.
pub(super) const AMZ_DATE_FORMAT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// Appends the AWS URI encoding of `bytes` to `out`.
pub(super) fn uri_encode_into(out: &mut String, bytes: &[u8]) {
    for piece in percent_encode(bytes, AWS_URI_ENCODE) {
        out.push_str(piece);
    }
}

/// The AWS URI encoding of `bytes` (a `/` is encoded too).
pub(super) fn uri_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    uri_encode_into(&mut s, bytes);
    s
}

/// Percent-decodes leniently: a `%` not followed by two hex digits is kept
/// literally. With `plus_as_space`, `+` decodes to a space (form encoding, as
/// S3 treats query strings).
pub(super) fn decode(raw: &[u8], plus_as_space: bool) -> Vec<u8> {
    if plus_as_space && raw.contains(&b'+') {
        let replaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&replaced).collect()
    } else {
        percent_decode(raw).collect()
    }
}

/// One `name[=value]` item of a raw query string.
#[derive(Debug, Clone)]
pub(super) struct RawParam<'a> {
    /// Raw (still encoded) name.
    pub name: &'a str,
    /// Raw (still encoded) value; `None` when the item had no `=`.
    pub value: Option<&'a str>,
}

/// Splits a raw query string (without `?`) into its items, skipping empty ones.
pub(super) fn split_query(query: &str) -> Vec<RawParam<'_>> {
    query
        .split('&')
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((name, value)) => RawParam {
                name,
                value: Some(value),
            },
            None => RawParam {
                name: item,
                value: None,
            },
        })
        .collect()
}

/// Decoded `(name, value)` pairs of a raw query string, `+` meaning space.
pub(super) fn decoded_query(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    split_query(query)
        .into_iter()
        .map(|p| {
            (
                decode(p.name.as_bytes(), true),
                decode(p.value.unwrap_or("").as_bytes(), true),
            )
        })
        .collect()
}

/// The SigV4 canonical query string: every parameter decoded then
/// re-encoded with the AWS rules (space => `%20`), sorted by encoded name
/// then encoded value, `name=value` joined with `&`. A parameter whose
/// decoded name equals `exclude` (the presign `X-Amz-Signature`) is left out.
pub(super) fn canonical_query(query: &str, exclude: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = decoded_query(query)
        .into_iter()
        .filter(|(name, _)| exclude.is_none_or(|ex| name.as_slice() != ex.as_bytes()))
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The SigV4 canonical URI of a raw (percent-encoded) request path: each
/// `/`-separated segment is percent-decoded and re-encoded with the AWS rules,
/// so the path is encoded exactly once whatever escaping the client chose.
/// With `normalize` (every AWS service except S3), empty and `.` segments are
/// dropped and `..` removes the previous segment first (RFC 3986 section 5.2.4);
/// a trailing `/` survives. An empty path is `/`.
pub(super) fn canonical_uri(raw_path: &str, normalize: bool) -> String {
    let segments: Vec<&str> = raw_path.split('/').collect();
    let mut out = String::with_capacity(raw_path.len() + 8);
    if normalize {
        let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
        for seg in &segments {
            match *seg {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                s => kept.push(s),
            }
        }
        let trailing_slash =
            raw_path.ends_with('/') || raw_path.ends_with("/.") || raw_path.ends_with("/..");
        for seg in &kept {
            out.push('/');
            uri_encode_into(&mut out, &decode(seg.as_bytes(), false));
        }
        if out.is_empty() || (trailing_slash && !kept.is_empty()) {
            out.push('/');
        }
        return out;
    }
    if raw_path.is_empty() {
        return "/".to_owned();
    }
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode_into(&mut out, &decode(seg.as_bytes(), false));
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// Parses a SigV4 `YYYYMMDDTHHMMSSZ` timestamp.
pub(super) fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    if s.len() != 16 {
        return None;
    }
    PrimitiveDateTime::parse(s, AMZ_DATE_FORMAT)
        .ok()
        .map(|p| p.assume_utc())
}

/// Formats a time as a SigV4 `YYYYMMDDTHHMMSSZ` timestamp.
pub(super) fn format_amz_date(t: OffsetDateTime) -> Option<String> {
    t.to_offset(time::UtcOffset::UTC)
        .format(AMZ_DATE_FORMAT)
        .ok()
}

/// Parses an HTTP `Date`-style header: IMF-fixdate / RFC 850 / asctime (what
/// `httpdate` accepts) or RFC 2822 with a numeric zone (`+0000`), as used by
/// the SigV2 documentation examples.
pub(super) fn parse_http_date(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = httpdate::parse_http_date(s) {
        return Some(OffsetDateTime::from(t));
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_rules() {
        assert_eq!(uri_encode(b"a b+c/~-._"), "a%20b%2Bc%2F~-._");
        assert_eq!(uri_encode("ሴ".as_bytes()), "%E1%88%B4");
        assert_eq!(uri_encode(b"$"), "%24");
    }

    #[test]
    fn canonical_uri_s3_encodes_once() {
        assert_eq!(canonical_uri("/test$file.text", false), "/test%24file.text");
        assert_eq!(
            canonical_uri("/test%24file.text", false),
            "/test%24file.text"
        );
        assert_eq!(canonical_uri("/bucket/my%20key", false), "/bucket/my%20key");
        assert_eq!(canonical_uri("/bucket/a+b", false), "/bucket/a%2Bb");
        assert_eq!(canonical_uri("/bucket/a%2Fb", false), "/bucket/a%2Fb");
        assert_eq!(canonical_uri("//example//", false), "//example//");
        assert_eq!(canonical_uri("/./", false), "/./");
        assert_eq!(canonical_uri("", false), "/");
        assert_eq!(canonical_uri("/100%", false), "/100%25");
        assert_eq!(canonical_uri("/%e1%88%b4", false), "/%E1%88%B4");
    }

    #[test]
    fn canonical_uri_normalized() {
        assert_eq!(canonical_uri("//", true), "/");
        assert_eq!(canonical_uri("//example//", true), "/example/");
        assert_eq!(canonical_uri("/example/..", true), "/");
        assert_eq!(canonical_uri("/example1/example2/../..", true), "/");
        assert_eq!(canonical_uri("/./", true), "/");
        assert_eq!(canonical_uri("/./example", true), "/example");
        assert_eq!(canonical_uri("/a/b/../c/", true), "/a/c/");
    }

    #[test]
    fn canonical_query_rules() {
        assert_eq!(
            canonical_query("Param2=value2&Param1=value1", None),
            "Param1=value1&Param2=value2"
        );
        assert_eq!(canonical_query("lifecycle", None), "lifecycle=");
        assert_eq!(
            canonical_query("b=2&a=x+y&a=%2B&c=", None),
            "a=%2B&a=x%20y&b=2&c="
        );
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&X-Amz-Date=1", Some("X-Amz-Signature")),
            "X-Amz-Date=1"
        );
        assert_eq!(canonical_query("", None), "");
    }

    #[test]
    fn dates() {
        let t = parse_amz_date("20130524T000000Z").expect("valid");
        assert_eq!(t.unix_timestamp(), 1_369_353_600);
        assert_eq!(format_amz_date(t).as_deref(), Some("20130524T000000Z"));
        assert!(parse_amz_date("2013-05-24T00:00:00Z").is_none());
        let a = parse_http_date("Tue, 27 Mar 2007 19:36:42 +0000").expect("rfc2822");
        let b = parse_http_date("Tue, 27 Mar 2007 19:36:42 GMT").expect("imf-fixdate");
        assert_eq!(a, b);
        assert!(parse_http_date("yesterday").is_none());
    }
}
