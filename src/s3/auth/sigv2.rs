//! Owns AWS Signature Version 2 for S3: the string to sign (method,
//! Content-MD5, Content-Type, Date or Expires, canonicalized `x-amz-*`
//! headers, canonicalized resource with the S3 sub-resources), the
//! HMAC-SHA1/base64 signature, and the verification of header
//! (`Authorization: AWS AKID:signature`) and query-string
//! (`AWSAccessKeyId`/`Signature`/`Expires`) requests.
//!
//! The canonicalized resource is the raw request path exactly as received
//! (`/bucket/key` for path-style requests); for virtual-hosted-style requests
//! the caller passes the bucket taken from the Host header and the resource
//! is `/bucket` + path.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::encoding::{decode, parse_http_date, split_query};
use super::sigv4::MAX_SKEW;
use super::{AuthError, AuthOutcome, AuthRequest, CredentialStore, PayloadMode};

/// Query parameters that are part of the SigV2 canonicalized resource
/// (the union of the lists used by the AWS documentation, botocore and minio).
pub const SUB_RESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

const MISSING_DATE: &str = "AWS authentication requires a valid Date or x-amz-date header";

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> &'h [u8] {
    headers
        .get(name)
        .map(|v| v.as_bytes().trim_ascii())
        .unwrap_or(b"")
}

/// `CanonicalizedAmzHeaders`: every `x-amz-*` header, lowercased, sorted by
/// name, values trimmed and joined with `,`, one `name:value\n` line each.
fn canonicalized_amz_headers(headers: &HeaderMap, out: &mut Vec<u8>) {
    let mut names: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(value.as_bytes().trim_ascii());
        }
        out.push(b'\n');
    }
}

/// `CanonicalizedResource`: the raw path, then the sub-resources present in
/// the query, sorted by name, values percent-decoded (`+` kept).
fn canonicalized_resource(path: &str, query: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(if path.is_empty() {
        b"/"
    } else {
        path.as_bytes()
    });
    let mut subs: Vec<(&str, Option<Vec<u8>>)> = split_query(query)
        .into_iter()
        .filter(|p| SUB_RESOURCES.contains(&p.name))
        .map(|p| (p.name, p.value.map(|v| decode(v.as_bytes(), false))))
        .collect();
    subs.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (name, value)) in subs.iter().enumerate() {
        out.push(if i == 0 { b'?' } else { b'&' });
        out.extend_from_slice(name.as_bytes());
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
}

/// The SigV2 string to sign. `date` is the `Date` header value (empty when
/// `x-amz-date` is present) for header auth, or the `Expires` value for query auth.
pub fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    date: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(header_str(headers, "content-md5"));
    out.push(b'\n');
    out.extend_from_slice(header_str(headers, "content-type"));
    out.push(b'\n');
    out.extend_from_slice(date.as_bytes());
    out.push(b'\n');
    canonicalized_amz_headers(headers, &mut out);
    canonicalized_resource(path, query, &mut out);
    out
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub fn sign(secret: &str, string_to_sign: &[u8]) -> String {
    let digest: [u8; 20] = match Hmac::<Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(string_to_sign);
            mac.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; unreachable, kept total.
        Err(_) => [0u8; 20],
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn check(secret: &str, sts: &[u8], provided: &[u8]) -> Result<(), AuthError> {
    let computed = sign(secret, sts);
    if bool::from(computed.as_bytes().ct_eq(provided)) {
        Ok(())
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

/// The resource path that is signed: the raw path, prefixed with `/bucket`
/// for a virtual-hosted-style request.
fn resource_path(path: &str, bucket: Option<&str>) -> String {
    match bucket {
        Some(b) if path.is_empty() => format!("/{b}/"),
        Some(b) => format!("/{b}{path}"),
        None => path.to_owned(),
    }
}

/// Verifies `Authorization: AWS <rest>` where `rest` is `AKID:signature`.
pub(super) fn verify_header(
    req: &AuthRequest<'_>,
    rest: &str,
    creds: &dyn CredentialStore,
    bucket: Option<&str>,
) -> Result<AuthOutcome, AuthError> {
    let (akid, signature) = rest
        .trim()
        .split_once(':')
        .filter(|(a, s)| !a.is_empty() && !s.is_empty())
        .ok_or_else(|| {
            AuthError::InvalidArgument(
                "AWS authorization header is invalid. Expected AwsAccessKeyId:signature".to_owned(),
            )
        })?;

    let amz_date = req.headers.get("x-amz-date");
    let date_header = amz_date.or_else(|| req.headers.get(http::header::DATE));
    let date_str = date_header
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::AccessDenied(MISSING_DATE.to_owned()))?;
    let ts = parse_http_date(date_str)
        .ok_or_else(|| AuthError::AccessDenied(MISSING_DATE.to_owned()))?;
    if (req.now - ts).abs() > MAX_SKEW {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    let date_line = if amz_date.is_some() {
        ""
    } else {
        date_str.trim()
    };

    verify(req, bucket, creds, akid, date_line, signature.as_bytes())
}

/// Whether the raw query carries SigV2 query-authentication parameters.
pub(super) fn has_query_params(query: &str) -> bool {
    split_query(query)
        .iter()
        .any(|p| p.name == "AWSAccessKeyId" || p.name == "Signature")
}

/// Verifies a presigned SigV2 request (`AWSAccessKeyId`, `Signature`, `Expires`).
pub(super) fn verify_query(
    req: &AuthRequest<'_>,
    creds: &dyn CredentialStore,
    bucket: Option<&str>,
) -> Result<AuthOutcome, AuthError> {
    let missing = || {
        AuthError::AccessDenied("Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters".to_owned())
    };
    let params = split_query(req.query);
    let get = |name: &str| -> Result<Vec<u8>, AuthError> {
        let mut found = params.iter().filter(|p| p.name == name);
        let first = found.next().ok_or_else(missing)?;
        if found.next().is_some() {
            return Err(AuthError::InvalidArgument(format!(
                "The {name} parameter must be given only once."
            )));
        }
        Ok(decode(first.value.unwrap_or("").as_bytes(), false))
    };
    let akid =
        String::from_utf8(get("AWSAccessKeyId")?).map_err(|_| AuthError::InvalidAccessKeyId)?;
    let signature = get("Signature")?;
    let expires_raw = get("Expires")?;
    let expires_str = std::str::from_utf8(&expires_raw)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            AuthError::AccessDenied("Invalid date (should be seconds since epoch)".to_owned())
        })?;
    // Too many digits to be an i64: so far in the future it never expires.
    let expires = expires_str.parse::<i64>().unwrap_or(i64::MAX);
    if akid.is_empty() || signature.is_empty() {
        return Err(missing());
    }
    if req.now.unix_timestamp() > expires {
        return Err(AuthError::AccessDenied("Request has expired".to_owned()));
    }
    verify(req, bucket, creds, &akid, expires_str, &signature)
}

/// The common end of header and query SigV2: the string to sign over the
/// resource with `date_line` (Date or Expires), checked against `signature`.
fn verify(
    req: &AuthRequest<'_>,
    bucket: Option<&str>,
    creds: &dyn CredentialStore,
    akid: &str,
    date_line: &str,
    signature: &[u8],
) -> Result<AuthOutcome, AuthError> {
    let secret = creds
        .secret_for(akid)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let path = resource_path(req.path, bucket);
    let sts = string_to_sign(
        req.method.as_str(),
        &path,
        req.query,
        req.headers,
        date_line,
    );
    check(secret.expose(), &sts, signature)?;
    Ok(AuthOutcome::Authenticated {
        access_key_id: akid.to_owned(),
        payload: PayloadMode::Unsigned,
    })
}
