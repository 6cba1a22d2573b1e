//! Owns AWS Signature Version 4: the canonical request, string to sign,
//! signing key and signature (exposed, with a service name and a
//! path-normalization flag, so AWS's generic test-suite vectors can be checked
//! against the same code S3 verification uses), and the verification of
//! header-signed (`Authorization: AWS4-HMAC-SHA256 ...`) and presigned
//! (`X-Amz-Algorithm=...` in the query) S3 requests.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::chunked::StreamingSigned;
use super::encoding::{
    canonical_query, canonical_uri, decoded_query, format_amz_date, parse_amz_date, parse_http_date,
};
use super::{AuthError, AuthOutcome, AuthRequest, CredentialStore, PayloadMode};

/// The only SigV4 algorithm S3 accepts (SigV4a is not supported).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `x-amz-content-sha256` value: the payload is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// `x-amz-content-sha256` value: aws-chunked with chunk signatures.
pub const STREAMING_PAYLOAD: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// `x-amz-content-sha256` value: aws-chunked with chunk signatures and a signed trailer.
pub const STREAMING_PAYLOAD_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// `x-amz-content-sha256` value: aws-chunked without signatures, with a trailer.
pub const STREAMING_UNSIGNED_PAYLOAD_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// Hex SHA-256 of the empty string.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Maximum allowed distance between the request time and the server clock
/// for header-signed requests (and how far in the future a presigned URL's
/// `X-Amz-Date` may be).
pub const MAX_SKEW: Duration = Duration::minutes(15);
/// Maximum `X-Amz-Expires` of a presigned URL: 7 days.
pub const MAX_PRESIGN_EXPIRES: i64 = 604_800;

const MISSING_DATE: &str = "AWS authentication requires a valid Date or x-amz-date header";
const UNSIGNED_HEADERS: &str = "There were headers present in the request which were not signed";

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the
    // fallback keeps the function total without a panic path.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SigV4 signing key: `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let k_secret = Zeroizing::new(format!("AWS4{secret}"));
    let k_date = Zeroizing::new(hmac_sha256(k_secret.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac_sha256(&*k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac_sha256(&*k_region, service.as_bytes()));
    Zeroizing::new(hmac_sha256(&*k_service, b"aws4_request"))
}

/// What goes into a canonical request. `path` and `query` are raw (as
/// received, still percent-encoded).
#[derive(Debug, Clone, Copy)]
pub struct CanonicalRequestInput<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// Lowercase header names, in the order of the `SignedHeaders` list.
    pub signed_headers: &'a [&'a str],
    /// Last line of the canonical request (hex SHA-256, `UNSIGNED-PAYLOAD`, `STREAMING-...`).
    pub payload_hash: &'a str,
    /// Normalize the URI path (`.`/`..`/`//`). `false` for S3, `true` for the
    /// generic AWS test suite.
    pub normalize_path: bool,
    /// Query parameter (decoded name) left out of the canonical query
    /// (`X-Amz-Signature` for presigned requests).
    pub exclude_param: Option<&'a str>,
}

/// Canonical header value: all values of the header in order, each trimmed
/// with runs of spaces/tabs collapsed to one space, joined with `,`.
fn canonical_header_value(headers: &HeaderMap, name: &str, out: &mut Vec<u8>) {
    let mut first = true;
    for value in headers.get_all(name) {
        if !first {
            out.push(b',');
        }
        first = false;
        let bytes = value.as_bytes();
        let mut pending_space = false;
        let mut wrote_any = false;
        for &b in bytes {
            if b == b' ' || b == b'\t' {
                pending_space = wrote_any;
                continue;
            }
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            wrote_any = true;
        }
    }
}

/// The canonical request, as bytes (header values may carry non-UTF-8 bytes).
pub fn canonical_request(input: &CanonicalRequestInput<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(input.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(input.path, input.normalize_path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(input.query, input.exclude_param).as_bytes());
    out.push(b'\n');
    for name in input.signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        canonical_header_value(input.headers, name, &mut out);
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(input.signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(input.payload_hash.as_bytes());
    out
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request)
    )
}

/// `<date>/<region>/<service>/aws4_request`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// Every intermediate value of one signature computation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureComputation {
    /// The canonical request (lossy UTF-8 if a header carried other bytes).
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Lowercase hex signature.
    pub signature: String,
}

/// Computes the canonical request, string to sign and signature of a request
/// for any service. S3 verification uses this with `service = "s3"` and
/// `normalize_path = false`; the AWS generic test suite uses `"service"` and
/// `true`.
pub fn compute_signature(
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    input: &CanonicalRequestInput<'_>,
) -> SignatureComputation {
    let date = amz_date.get(..8).unwrap_or(amz_date);
    let creq = canonical_request(input);
    let sts = string_to_sign(amz_date, &credential_scope(date, region, service), &creq);
    let key = signing_key(secret, date, region, service);
    let sig = hmac_sha256(&*key, sts.as_bytes());
    SignatureComputation {
        canonical_request: String::from_utf8_lossy(&creq).into_owned(),
        string_to_sign: sts,
        signature: hex::encode(sig),
    }
}

/// Constant-time comparison of a computed signature with the hex one the
/// client sent (any case). Malformed hex is a mismatch.
pub(super) fn signature_matches(computed: &[u8; 32], provided_hex: &str) -> bool {
    let mut provided = [0u8; 32];
    if provided_hex.len() != 64 || hex::decode_to_slice(provided_hex, &mut provided).is_err() {
        return false;
    }
    computed.ct_eq(&provided).into()
}

/// A parsed `Credential` / `X-Amz-Credential` value.
struct Credential {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

impl Credential {
    fn scope(&self) -> String {
        credential_scope(&self.date, &self.region, &self.service)
    }
}

/// Whether a credential scope's region names `want`. `US` is the legacy
/// name of us-east-1 (s3cmd signs bucket creation with it by default).
fn region_matches(got: &str, want: &str) -> bool {
    got == want || (got == "US" && want == "us-east-1")
}

/// S3's words for a credential scope that names another region.
fn wrong_region(got: &str, want: &str) -> String {
    format!("the region '{got}' is wrong; expecting '{want}'")
}

/// Parses `AKID/YYYYMMDD/region/s3/aws4_request`; the error is the detail
/// text S3 puts after the error's prefix.
fn parse_credential(value: &str) -> Result<Credential, String> {
    const EXPECTED: &str = "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".";
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() < 5 {
        return Err(EXPECTED.to_owned());
    }
    let n = parts.len();
    let (akid_parts, scope) = parts.split_at(n - 4);
    let access_key_id = akid_parts.join("/");
    let (date, region, service, terminal) = (scope[0], scope[1], scope[2], scope[3]);
    if access_key_id.is_empty() || region.is_empty() {
        return Err(EXPECTED.to_owned());
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "incorrect date format \"{date}\". This date in the credential must be in the format \"yyyyMMdd\"."
        ));
    }
    if service != "s3" {
        return Err(format!(
            "incorrect service \"{service}\". This endpoint belongs to \"s3\"."
        ));
    }
    if terminal != "aws4_request" {
        return Err(format!(
            "incorrect terminal \"{terminal}\". This endpoint uses \"aws4_request\"."
        ));
    }
    Ok(Credential {
        access_key_id,
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

/// Splits and validates a `SignedHeaders` list (`a;b;c`).
fn parse_signed_headers(value: &str) -> Option<Vec<String>> {
    if value.is_empty() {
        return None;
    }
    let names: Vec<String> = value.split(';').map(|s| s.to_ascii_lowercase()).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || http::HeaderName::from_bytes(n.as_bytes()).is_err())
    {
        return None;
    }
    Some(names)
}

/// Rejects requests carrying `x-amz-*` headers that are not signed (as S3
/// does): an unsigned `x-amz-copy-source`, `x-amz-acl`, `x-amz-meta-*`, ...
/// could otherwise be added to a presigned URL by whoever holds it.
/// `x-amz-content-sha256` and `x-amz-date` are exempt: for header auth they
/// are bound through the canonical request's payload line and the string to
/// sign, and for presigned requests they are ignored.
fn check_amz_headers_signed(headers: &HeaderMap, signed: &[String]) -> Result<(), AuthError> {
    for name in headers.keys() {
        let n = name.as_str();
        if n.starts_with("x-amz-")
            && n != "x-amz-content-sha256"
            && n != "x-amz-date"
            && !signed.iter().any(|s| s == n)
        {
            return Err(AuthError::access_denied(UNSIGNED_HEADERS));
        }
    }
    Ok(())
}

/// The request timestamp for header auth: `x-amz-date` (ISO 8601 basic), else
/// `Date` (ISO 8601 basic or an HTTP date), returned as the ISO 8601 basic
/// string that goes into the string to sign.
fn request_time(headers: &HeaderMap) -> Result<(String, OffsetDateTime), AuthError> {
    if let Some(v) = headers.get("x-amz-date") {
        let s = v
            .to_str()
            .map_err(|_| AuthError::access_denied(MISSING_DATE))?
            .trim();
        let t = parse_amz_date(s).ok_or_else(|| AuthError::access_denied(MISSING_DATE))?;
        return Ok((s.to_owned(), t));
    }
    if let Some(v) = headers.get(http::header::DATE) {
        let s = v
            .to_str()
            .map_err(|_| AuthError::access_denied(MISSING_DATE))?
            .trim();
        let t = parse_amz_date(s)
            .or_else(|| parse_http_date(s))
            .ok_or_else(|| AuthError::access_denied(MISSING_DATE))?;
        let formatted = format_amz_date(t).ok_or_else(|| AuthError::access_denied(MISSING_DATE))?;
        return Ok((formatted, t));
    }
    Err(AuthError::access_denied(MISSING_DATE))
}

/// How the payload of a header-signed request is protected, from `x-amz-content-sha256`.
enum PayloadKind {
    Unsigned,
    Sha256([u8; 32]),
    StreamingSigned { trailer: bool },
    StreamingUnsignedTrailer,
}

fn classify_payload(value: &str) -> Result<PayloadKind, AuthError> {
    match value {
        UNSIGNED_PAYLOAD => Ok(PayloadKind::Unsigned),
        STREAMING_PAYLOAD => Ok(PayloadKind::StreamingSigned { trailer: false }),
        STREAMING_PAYLOAD_TRAILER => Ok(PayloadKind::StreamingSigned { trailer: true }),
        STREAMING_UNSIGNED_PAYLOAD_TRAILER => Ok(PayloadKind::StreamingUnsignedTrailer),
        hex_value => {
            let mut digest = [0u8; 32];
            if hex_value.len() == 64 && hex::decode_to_slice(hex_value, &mut digest).is_ok() {
                Ok(PayloadKind::Sha256(digest))
            } else {
                Err(AuthError::InvalidArgument(
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                     STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER \
                     or a valid sha256 value."
                        .to_owned(),
                ))
            }
        }
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
struct AuthorizationV4<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<AuthorizationV4<'_>, AuthError> {
    let malformed = |what: &str| AuthError::AuthorizationHeaderMalformed(what.to_owned());
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with([' ', '\t']))
        .ok_or_else(|| {
            malformed("the authorization header requires the AWS4-HMAC-SHA256 algorithm.")
        })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for item in rest.split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue;
        }
        let (k, v) = item.split_once('=').ok_or_else(|| {
            malformed("the authorization header components must be Key=Value pairs.")
        })?;
        let slot = match k.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(malformed(
                    "the authorization header contains an unknown component.",
                ));
            }
        };
        if slot.replace(v.trim()).is_some() {
            return Err(malformed(
                "the authorization header contains a duplicated component.",
            ));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(AuthorizationV4 {
            credential,
            signed_headers,
            signature,
        }),
        _ => Err(malformed(
            "the authorization header requires the Credential, SignedHeaders and Signature components.",
        )),
    }
}

/// Verifies a header-signed SigV4 request; `auth_value` is the `Authorization` header.
pub(super) fn verify_header(
    req: &AuthRequest<'_>,
    auth_value: &str,
    creds: &dyn CredentialStore,
) -> Result<AuthOutcome, AuthError> {
    let auth = parse_authorization(auth_value)?;
    let cred =
        parse_credential(auth.credential).map_err(AuthError::AuthorizationHeaderMalformed)?;
    if let Some(want) = req.region
        && !region_matches(&cred.region, want)
    {
        return Err(AuthError::AuthorizationHeaderMalformed(wrong_region(
            &cred.region,
            want,
        )));
    }
    let signed = parse_signed_headers(auth.signed_headers).ok_or_else(|| {
        AuthError::AuthorizationHeaderMalformed(
            "the SignedHeaders component is invalid.".to_owned(),
        )
    })?;

    let (amz_date, ts) = request_time(req.headers)?;
    if amz_date.get(..8) != Some(cred.date.as_str()) {
        return Err(AuthError::AuthorizationHeaderMalformed(
            "Invalid credential date. Date is not the same as X-Amz-Date.".to_owned(),
        ));
    }
    if (req.now - ts).abs() > MAX_SKEW {
        return Err(AuthError::RequestTimeTooSkewed);
    }

    let content_sha = match req.headers.get("x-amz-content-sha256") {
        Some(v) => v
            .to_str()
            .map_err(|_| {
                AuthError::InvalidArgument(
                    "x-amz-content-sha256 is not a valid header value.".to_owned(),
                )
            })?
            .trim(),
        None => {
            return Err(AuthError::MissingSecurityHeader(
                "x-amz-content-sha256".to_owned(),
            ));
        }
    };
    let kind = classify_payload(content_sha)?;

    if !signed.iter().any(|h| h == "host") {
        return Err(AuthError::AuthorizationHeaderMalformed(
            "the SignedHeaders component must include host.".to_owned(),
        ));
    }
    check_amz_headers_signed(req.headers, &signed)?;

    let secret = creds
        .secret_for(&cred.access_key_id)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let key = signing_key(secret.expose(), &cred.date, &cred.region, &cred.service);
    let scope = cred.scope();
    let signed_refs: Vec<&str> = signed.iter().map(String::as_str).collect();
    let creq = canonical_request(&CanonicalRequestInput {
        method: req.method.as_str(),
        path: req.path,
        query: req.query,
        headers: req.headers,
        signed_headers: &signed_refs,
        payload_hash: content_sha,
        normalize_path: false,
        exclude_param: None,
    });
    let sts = string_to_sign(&amz_date, &scope, &creq);
    let computed = hmac_sha256(&*key, sts.as_bytes());
    if !signature_matches(&computed, auth.signature) {
        return Err(AuthError::SignatureDoesNotMatch);
    }

    let payload = match kind {
        PayloadKind::Unsigned => PayloadMode::Unsigned,
        PayloadKind::Sha256(d) => PayloadMode::Sha256(d),
        PayloadKind::StreamingUnsignedTrailer => PayloadMode::StreamingUnsignedTrailer,
        PayloadKind::StreamingSigned { trailer } => PayloadMode::StreamingSigned(
            StreamingSigned::new(key, hex::encode(computed), scope, amz_date, trailer),
        ),
    };
    Ok(AuthOutcome::Authenticated {
        access_key_id: cred.access_key_id,
        payload,
    })
}

/// The presigned SigV4 query parameters.
const PRESIGN_PARAMS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
];

/// Verifies a presigned (query-string) SigV4 request.
pub(super) fn verify_presigned(
    req: &AuthRequest<'_>,
    creds: &dyn CredentialStore,
) -> Result<AuthOutcome, AuthError> {
    let qerr = |m: &str| AuthError::AuthorizationQueryParametersError(m.to_owned());
    let params = decoded_query(req.query);
    let get = |name: &str| -> Result<Option<String>, AuthError> {
        let mut found = params
            .iter()
            .filter(|(k, _)| k.as_slice() == name.as_bytes());
        let first = found.next();
        if found.next().is_some() {
            return Err(qerr(&format!(
                "The {name} parameter must be given only once."
            )));
        }
        first
            .map(|(_, v)| {
                String::from_utf8(v.clone())
                    .map_err(|_| qerr(&format!("The {name} parameter is not valid UTF-8.")))
            })
            .transpose()
    };
    let mut values: [String; 6] = Default::default();
    for (slot, name) in values.iter_mut().zip(PRESIGN_PARAMS) {
        *slot = get(name)?.ok_or_else(|| {
            qerr(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
                 X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
            )
        })?;
    }
    let [
        algorithm,
        credential,
        signature,
        date,
        signed_headers,
        expires,
    ] = values;

    if algorithm != ALGORITHM {
        return Err(qerr("X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\""));
    }
    let cred = parse_credential(&credential).map_err(|m| {
        qerr(&format!(
            "Error parsing the X-Amz-Credential parameter; {m}"
        ))
    })?;
    if let Some(want) = req.region
        && !region_matches(&cred.region, want)
    {
        return Err(qerr(&format!(
            "Error parsing the X-Amz-Credential parameter; {}",
            wrong_region(&cred.region, want)
        )));
    }
    let ts = parse_amz_date(&date).ok_or_else(|| {
        qerr("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    if date.get(..8) != Some(cred.date.as_str()) {
        return Err(qerr(
            "Error parsing the X-Amz-Credential parameter; Invalid credential date. Date is not the same as X-Amz-Date.",
        ));
    }
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(qerr("X-Amz-Expires should be a number"));
    }
    let expires_secs: i64 = expires
        .parse()
        .map_err(|_| qerr("X-Amz-Expires must be less than a week (in seconds) that is 604800"))?;
    if expires_secs < 1 {
        return Err(qerr("X-Amz-Expires must be a positive number of seconds"));
    }
    if expires_secs > MAX_PRESIGN_EXPIRES {
        return Err(qerr(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    let signed = parse_signed_headers(&signed_headers)
        .ok_or_else(|| qerr("X-Amz-SignedHeaders is invalid."))?;

    if ts - req.now > MAX_SKEW {
        return Err(AuthError::access_denied("Request is not valid yet"));
    }
    let expiry = ts.checked_add(Duration::seconds(expires_secs));
    if expiry.is_some_and(|e| req.now > e) {
        return Err(AuthError::access_denied("Request has expired"));
    }
    if !signed.iter().any(|h| h == "host") {
        return Err(qerr("X-Amz-SignedHeaders must include host."));
    }
    check_amz_headers_signed(req.headers, &signed)?;

    let (payload_hash, payload) = match get("X-Amz-Content-Sha256")? {
        None => (UNSIGNED_PAYLOAD.to_owned(), PayloadMode::Unsigned),
        Some(v) => match classify_payload(&v)? {
            PayloadKind::Unsigned => (v, PayloadMode::Unsigned),
            PayloadKind::Sha256(d) => (v, PayloadMode::Sha256(d)),
            _ => {
                return Err(qerr(
                    "X-Amz-Content-Sha256 of a presigned request must be UNSIGNED-PAYLOAD or a sha256 value.",
                ));
            }
        },
    };

    let secret = creds
        .secret_for(&cred.access_key_id)
        .ok_or(AuthError::InvalidAccessKeyId)?;
    let key = signing_key(secret.expose(), &cred.date, &cred.region, &cred.service);
    let signed_refs: Vec<&str> = signed.iter().map(String::as_str).collect();
    let creq = canonical_request(&CanonicalRequestInput {
        method: req.method.as_str(),
        path: req.path,
        query: req.query,
        headers: req.headers,
        signed_headers: &signed_refs,
        payload_hash: &payload_hash,
        normalize_path: false,
        exclude_param: Some("X-Amz-Signature"),
    });
    let sts = string_to_sign(&date, &cred.scope(), &creq);
    let computed = hmac_sha256(&*key, sts.as_bytes());
    if !signature_matches(&computed, &signature) {
        return Err(AuthError::SignatureDoesNotMatch);
    }
    Ok(AuthOutcome::Authenticated {
        access_key_id: cred.access_key_id,
        payload,
    })
}

/// Whether the raw query carries any presigned-SigV4 parameter.
pub(super) fn has_presign_params(query: &str) -> bool {
    super::encoding::split_query(query).iter().any(|p| {
        matches!(
            p.name,
            "X-Amz-Algorithm" | "X-Amz-Credential" | "X-Amz-Signature"
        )
    })
}
