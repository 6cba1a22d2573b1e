//! Owns [`AuthError`]: every way authentication or aws-chunked body decoding
//! can fail, each variant being one S3 error code with its HTTP status.
//!
//! `Display` is the S3 `<Message>` text. Messages never contain secret
//! material (no secret keys, no signing keys); they may contain values the
//! client itself sent (header names, a credential scope).

use thiserror::Error;

/// An authentication failure, already classified as the S3 error the client
/// must receive. Map it with [`AuthError::s3_code`] and
/// [`AuthError::http_status`]; the `Display` text is the S3 message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// HTTP 403: Generic refusal: expired or not-yet-valid presigned URL, missing
    /// date, headers present but not signed, ...
    #[error("{0}")]
    AccessDenied(String),

    /// HTTP 403: The signature (request, chunk or trailer) is wrong.
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your key and signing method."
    )]
    SignatureDoesNotMatch,

    /// HTTP 403: The access key id is not known to the credential store.
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,

    /// HTTP 403: Header-authenticated request whose date is more than 15 minutes
    /// away from the server clock.
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,

    /// HTTP 400: The SigV4 `Authorization` header cannot be parsed or its
    /// credential scope is invalid.
    #[error("The authorization header is malformed; {0}")]
    AuthorizationHeaderMalformed(String),

    /// HTTP 400: The presigned (query string) SigV4 parameters are missing or invalid.
    #[error("{0}")]
    AuthorizationQueryParametersError(String),

    /// HTTP 400: A header S3 requires for this kind of authentication is missing
    /// (e.g. `x-amz-content-sha256` on header-signed SigV4).
    #[error("Your request was missing a required header: {0}")]
    MissingSecurityHeader(String),

    /// HTTP 400: The request is invalid in a way S3 reports as `InvalidRequest`
    /// (e.g. malformed aws-chunked framing, payload longer than declared).
    #[error("{0}")]
    InvalidRequest(String),

    /// HTTP 400: An argument is invalid (unsupported authorization type, bad
    /// `x-amz-content-sha256` value, more than one auth mechanism, ...).
    #[error("{0}")]
    InvalidArgument(String),

    /// HTTP 400: The body's SHA-256 does not match `x-amz-content-sha256`.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    XAmzContentSHA256Mismatch,

    /// HTTP 400: The (decoded) body is shorter than declared, or the aws-chunked
    /// stream ended before its final chunk.
    #[error("You did not provide the number of bytes specified by the Content-Length HTTP header.")]
    IncompleteBody,

    /// HTTP 400: A digest header (e.g. `Content-MD5`) is not a valid digest. Not
    /// produced by this module; provided so callers can report digest syntax
    /// errors with the same error type.
    #[error("The Content-MD5 you specified is not valid.")]
    InvalidDigest,

    /// HTTP 400: An aws-chunked chunk-size line is invalid: not hex, too long, or
    /// announcing a chunk larger than this server accepts.
    #[error("Invalid chunk size: {0}")]
    InvalidChunkSizeError(String),

    /// HTTP 400: The aws-chunked trailer section is malformed, incomplete, or does
    /// not match the trailers announced in `x-amz-trailer`.
    #[error(
        "The request contained trailing data that was not well-formed or did not conform to our published schema. {0}"
    )]
    MalformedTrailerError(String),
}

impl AuthError {
    /// The S3 `<Code>` for this error.
    pub fn s3_code(&self) -> &'static str {
        match self {
            AuthError::AccessDenied(_) => "AccessDenied",
            AuthError::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            AuthError::InvalidAccessKeyId => "InvalidAccessKeyId",
            AuthError::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            AuthError::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthError::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            AuthError::MissingSecurityHeader(_) => "MissingSecurityHeader",
            AuthError::InvalidRequest(_) => "InvalidRequest",
            AuthError::InvalidArgument(_) => "InvalidArgument",
            AuthError::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            AuthError::IncompleteBody => "IncompleteBody",
            AuthError::InvalidDigest => "InvalidDigest",
            AuthError::InvalidChunkSizeError(_) => "InvalidChunkSizeError",
            AuthError::MalformedTrailerError(_) => "MalformedTrailerError",
        }
    }

    /// The HTTP status code S3 uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::AccessDenied(_)
            | AuthError::SignatureDoesNotMatch
            | AuthError::InvalidAccessKeyId
            | AuthError::RequestTimeTooSkewed => 403,
            AuthError::AuthorizationHeaderMalformed(_)
            | AuthError::AuthorizationQueryParametersError(_)
            | AuthError::MissingSecurityHeader(_)
            | AuthError::InvalidRequest(_)
            | AuthError::InvalidArgument(_)
            | AuthError::XAmzContentSHA256Mismatch
            | AuthError::IncompleteBody
            | AuthError::InvalidDigest
            | AuthError::InvalidChunkSizeError(_)
            | AuthError::MalformedTrailerError(_) => 400,
        }
    }

    /// Wraps this error as an `io::Error` (as yielded by the decoded body
    /// stream); `io::Error::get_ref()` + `downcast_ref::<AuthError>()` gets it back.
    pub fn into_io(self) -> std::io::Error {
        let kind = match self {
            AuthError::IncompleteBody => std::io::ErrorKind::UnexpectedEof,
            AuthError::SignatureDoesNotMatch => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }

    pub(super) fn access_denied(msg: &str) -> Self {
        AuthError::AccessDenied(msg.to_owned())
    }
}
