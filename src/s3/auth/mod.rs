//! S3 request authentication: decides who sent a request and how its body is
//! protected.
//!
//! [`authenticate`] verifies header-signed and presigned AWS Signature
//! Version 4 requests and header / query-string Signature Version 2 requests
//! against a [`CredentialStore`], and returns the access key id plus a
//! [`PayloadMode`]; [`decode_body`] then wraps the request body for that mode
//! (aws-chunked decoding with per-chunk signature verification, trailer
//! collection). The module only depends on its siblings through `super::` /
//! `self::` paths, so it can be moved anywhere in a crate.
//!
//! Submodules: `error` ([`AuthError`]), `secret` ([`SecretKey`],
//! [`CredentialStore`]), `encoding` (URI encoding, canonical URI/query, dates),
//! [`sigv4`], [`sigv2`], `chunked` (aws-chunked decoding).

mod chunked;
mod encoding;
mod error;
mod secret;
pub mod sigv2;
pub mod sigv4;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

use subtle::ConstantTimeEq;

pub use self::chunked::{MAX_CHUNK_SIZE, StreamingSigned, decode_body};
pub use self::error::AuthError;
pub use self::secret::{CredentialStore, SecretKey};

/// A request body as a stream of byte chunks.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// Everything about the request the verifier needs.
///
/// `headers` must contain `host` (for HTTP/2 requests, copy the `:authority`
/// into a `host` header first) and all other headers exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub method: &'a http::Method,
    /// Raw, still percent-encoded request path exactly as received (e.g. `/bucket/my%20key`).
    pub path: &'a str,
    /// Raw query string without `?` (may be empty).
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The server clock, for skew and expiry checks.
    pub now: time::OffsetDateTime,
    /// The region this endpoint answers as: a SigV4 credential scope naming
    /// another is refused (`None`: any region, for tests against published
    /// vectors).
    pub region: Option<&'a str>,
}

/// A failure that guessing produces (a wrong signature or an unknown key),
/// as opposed to a malformed request or a skewed clock.
pub fn is_credential_failure(e: &AuthError) -> bool {
    matches!(
        e,
        AuthError::SignatureDoesNotMatch | AuthError::InvalidAccessKeyId
    )
}

/// The result of a successful [`authenticate`].
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// No Authorization header and no presign query parameters.
    Anonymous,
    Authenticated {
        access_key_id: String,
        payload: PayloadMode,
    },
}

/// How the request body is protected.
#[derive(Debug, Clone)]
pub enum PayloadMode {
    /// UNSIGNED-PAYLOAD, presigned URLs, SigV2, or a request with no body expectations.
    Unsigned,
    /// `x-amz-content-sha256` is a hex digest: the caller hashes the body and
    /// calls [`PayloadMode::check_sha256`].
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`: aws-chunked with chunk
    /// signatures; [`decode_body`] verifies them.
    StreamingSigned(StreamingSigned),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked without signatures,
    /// trailer at the end; [`decode_body`] decodes it.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Compares the SHA-256 the caller computed over the whole body with the
    /// declared `x-amz-content-sha256` (constant time). Always `Ok` for modes
    /// other than [`PayloadMode::Sha256`].
    pub fn check_sha256(&self, computed: &[u8; 32]) -> Result<(), AuthError> {
        match self {
            PayloadMode::Sha256(expected) if !bool::from(expected.ct_eq(computed)) => {
                Err(AuthError::XAmzContentSHA256Mismatch)
            }
            _ => Ok(()),
        }
    }

    /// `true` for the two aws-chunked modes (the body must go through
    /// [`decode_body`]; its length is `x-amz-decoded-content-length`, not
    /// `Content-Length`).
    pub fn is_aws_chunked(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned(_) | PayloadMode::StreamingUnsignedTrailer
        )
    }
}

/// The trailer headers of an aws-chunked body (e.g. `x-amz-checksum-crc32` ->
/// base64 value), filled in when the decoded stream has ended successfully.
/// Cheap to clone: clones share the same slot.
#[derive(Debug, Clone, Default)]
pub struct Trailers(Arc<OnceLock<http::HeaderMap>>);

impl Trailers {
    /// The trailers once the stream has ended successfully (an empty map if
    /// the body carried none); `None` before that, after a failure, or when
    /// the body was not aws-chunked.
    pub fn get(&self) -> Option<http::HeaderMap> {
        self.0.get().cloned()
    }

    pub(super) fn set(&self, headers: http::HeaderMap) {
        // Set exactly once, by the decoder that owns this slot.
        let _ = self.0.set(headers);
    }
}

/// Verifies the request signature.
///
/// * `Authorization: AWS4-HMAC-SHA256 ...`: header SigV4 (requires
///   `x-amz-content-sha256`; request time within 15 minutes of `now`).
/// * `X-Amz-Algorithm` & co. in the query: presigned SigV4 (`X-Amz-Expires`
///   in 1..=604800; expired => `AccessDenied`).
/// * `Authorization: AWS AKID:signature`: header SigV2 (path-style resource;
///   see [`authenticate_virtual_hosted`]).
/// * `AWSAccessKeyId`, `Signature`, `Expires` in the query: presigned SigV2.
/// * none of these: [`AuthOutcome::Anonymous`].
///
/// Every signature comparison is constant-time.
pub fn authenticate(
    req: &AuthRequest<'_>,
    creds: &dyn CredentialStore,
) -> Result<AuthOutcome, AuthError> {
    authenticate_impl(req, creds, None)
}

/// [`authenticate`] for a virtual-hosted-style request, whose bucket the
/// caller took from the Host header (`req.path` is then the key part,
/// e.g. `/photos/puppy.jpg`). Only SigV2 differs: its signed resource is
/// `/bucket` + path. SigV4 signs the path as sent either way.
pub fn authenticate_virtual_hosted(
    req: &AuthRequest<'_>,
    bucket: &str,
    creds: &dyn CredentialStore,
) -> Result<AuthOutcome, AuthError> {
    authenticate_impl(req, creds, Some(bucket))
}

fn authenticate_impl(
    req: &AuthRequest<'_>,
    creds: &dyn CredentialStore,
    v2_bucket: Option<&str>,
) -> Result<AuthOutcome, AuthError> {
    let auth_header = req.headers.get(http::header::AUTHORIZATION);
    let v4_query = sigv4::has_presign_params(req.query);
    let v2_query = sigv2::has_query_params(req.query);
    if u8::from(auth_header.is_some()) + u8::from(v4_query) + u8::from(v2_query) > 1 {
        return Err(AuthError::InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query \
             string parameter or the Authorization header should be specified"
                .to_owned(),
        ));
    }
    if let Some(value) = auth_header {
        let value = value
            .to_str()
            .map_err(|_| AuthError::InvalidArgument("Unsupported Authorization Type".to_owned()))?
            .trim();
        if value.starts_with(sigv4::ALGORITHM) {
            return sigv4::verify_header(req, value, creds);
        }
        if let Some(rest) = value.strip_prefix("AWS ") {
            return sigv2::verify_header(req, rest, creds, v2_bucket);
        }
        return Err(AuthError::InvalidArgument(
            "Unsupported Authorization Type".to_owned(),
        ));
    }
    if v4_query {
        return sigv4::verify_presigned(req, creds);
    }
    if v2_query {
        return sigv2::verify_query(req, creds, v2_bucket);
    }
    Ok(AuthOutcome::Anonymous)
}
