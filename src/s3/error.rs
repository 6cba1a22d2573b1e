//! S3 errors: the code, HTTP status and XML document a client sees. Only this
//! layer knows S3 error codes; lower layers' errors are mapped here, and
//! anything unexpected becomes `InternalError` with the detail in the log
//! (tagged with the request id), never in the response.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::engine::EngineError;
use crate::storage::StorageError;

#[derive(Debug, Clone)]
pub struct S3Error {
    pub code: &'static str,
    pub message: String,
    pub status: StatusCode,
    /// Extra elements for the XML (`BucketName`, `Key`, ...).
    pub extra: Vec<(&'static str, String)>,
    /// Response headers the error carries (e.g. Content-Range on 416, Retry-After on 503).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl S3Error {
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        S3Error {
            code,
            message: message.into(),
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }
    pub fn with_header(mut self, name: http::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// An admission `reject`: the operator's status, and their message or
    /// a generic one; the code is the S3 (or HTTP) name of that status.
    pub fn rejected(status: u16, message: Option<String>) -> Self {
        let code = match status {
            400 => "InvalidRequest",
            401 => "Unauthorized",
            403 => "AccessDenied",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "RequestRejected",
        };
        let message = message
            .unwrap_or_else(|| "The request was rejected by the server's admission rules.".into());
        Self::new(code, status, message)
    }

    pub fn access_denied() -> Self {
        Self::new("AccessDenied", 403, "Access Denied")
    }
    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new("NoSuchBucket", 404, "The specified bucket does not exist")
            .with("BucketName", bucket)
    }
    pub fn no_such_key(key: &str) -> Self {
        Self::new("NoSuchKey", 404, "The specified key does not exist.").with("Key", key)
    }
    pub fn no_such_upload() -> Self {
        Self::new(
            "NoSuchUpload",
            404,
            "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.",
        )
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::new("InvalidArgument", 400, msg)
    }
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::new("InvalidRequest", 400, msg)
    }
    pub fn malformed_xml() -> Self {
        Self::new(
            "MalformedXML",
            400,
            "The XML you provided was not well-formed or did not validate against our published schema.",
        )
    }
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            "NotImplemented",
            501,
            format!("{what} is not implemented by this server"),
        )
    }
    pub fn precondition_failed() -> Self {
        Self::new(
            "PreconditionFailed",
            412,
            "At least one of the pre-conditions you specified did not hold",
        )
    }
    pub fn bad_digest() -> Self {
        Self::new(
            "BadDigest",
            400,
            "The Content-MD5 you specified did not match what we received.",
        )
    }
    pub fn internal() -> Self {
        Self::new(
            "InternalError",
            500,
            "We encountered an internal error. Please try again.",
        )
    }

    /// Maps an engine error; `key` names the object for NoSuchKey.
    pub fn from_engine(e: EngineError, bucket: &str, key: &str) -> Self {
        match e {
            EngineError::Storage(s) => Self::from_storage(s, bucket, key),
            EngineError::CorruptMeta(k, err) => {
                tracing::error!(key = %k, error = %err, "object metadata document is unreadable");
                Self::internal()
            }
            EngineError::Body(io) => body_error(io),
            EngineError::InvalidPart(m) => Self::new(
                "InvalidPart",
                400,
                format!(
                    "One or more of the specified parts could not be found or did not match: {m}"
                ),
            ),
            EngineError::InvalidPartOrder => Self::new(
                "InvalidPartOrder",
                400,
                "The list of parts was not in ascending order.",
            ),
            EngineError::InsufficientSpace { .. } => Self::new(
                "InsufficientStorage",
                507,
                "The storage backend is too full to accept this object (the server keeps a free-space reserve; see advanced.min_free_space_mb).",
            ),
            EngineError::KeyUnavailable { key, key_id } => {
                tracing::error!(key = %key, key_id = %key_id, "object is encrypted with a key id that is not configured (set legacy_key/legacy_key_id?)");
                Self::internal()
            }
            EngineError::UnmarkedCiphertext(key) => {
                tracing::error!(key = %key, "{}", EngineError::UnmarkedCiphertext(key.clone()));
                Self::internal()
            }
            EngineError::DeltaBroken { key, reason } => {
                tracing::error!(key = %key, reason = %reason, "delta object cannot be reconstructed; refusing to serve it");
                Self::internal()
            }
            EngineError::Crypto { key, err } => {
                tracing::error!(key = %key, error = %err, "cannot decrypt object: wrong key, damaged file, or a file moved on disk");
                Self::internal()
            }
            EngineError::PreconditionFailed => Self::precondition_failed(),
            EngineError::ConditionalConflict => Self::new(
                "ConditionalRequestConflict",
                409,
                "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.",
            ),
            EngineError::EntityTooSmall(n) => Self::new(
                "EntityTooSmall",
                400,
                "Your proposed upload is smaller than the minimum allowed object size.",
            )
            .with("PartNumber", n.to_string()),
        }
    }

    pub fn from_storage(e: StorageError, bucket: &str, key: &str) -> Self {
        match e {
            StorageError::NoSuchBucket => Self::no_such_bucket(bucket),
            StorageError::NoSuchKey => Self::no_such_key(key),
            StorageError::NoSuchUpload => Self::no_such_upload(),
            StorageError::BucketExists => Self::new(
                "BucketAlreadyOwnedByYou",
                409,
                "Your previous request to create the named bucket succeeded and you already own it.",
            )
            .with("BucketName", bucket),
            StorageError::BucketNotEmpty => {
                Self::new("BucketNotEmpty", 409, "The bucket you tried to delete is not empty").with("BucketName", bucket)
            }
            StorageError::InvalidKey(k) if k.is_length() => {
                Self::new("KeyTooLongError", 400, format!("Your key is too long: {k}"))
            }
            StorageError::InvalidKey(k) => {
                Self::new("InvalidObjectName", 400, format!("The object key is not accepted by this server: {k}"))
                    .with("Key", key)
            }
            StorageError::KeyConflict(what) => Self::new(
                "KeyConflict",
                409,
                format!("The key collides with an existing {what}: on this filesystem-backed store a key cannot be both an object and a prefix of other objects"),
            )
            .with("Key", key),
            StorageError::MetadataTooLarge(n) => Self::new(
                "MetadataTooLarge",
                400,
                format!("Your metadata headers exceed the maximum allowed metadata size ({n} bytes stored document)"),
            ),
            StorageError::NonEmptyDirectoryObject => Self::invalid_request(
                "A key ending in '/' is a directory object and must have an empty body on this server",
            ),
            StorageError::Symlink(path) => {
                tracing::error!(path = %path.display(), bucket, key, "request refused: the object path crosses a symbolic link in the data directory");
                Self::new(
                    "AccessDenied",
                    403,
                    "The object's path on this server crosses a symbolic link, which is never followed.",
                )
            }
            StorageError::Upstream { status, code, message } => {
                tracing::error!(bucket, key, upstream_status = ?status, upstream_code = %code, upstream_message = %message, "the upstream S3 backend refused or failed a request");
                let retry = |e: Self| e.with_header(http::header::RETRY_AFTER, "1");
                match (status, code.as_str()) {
                    (Some(503), _) | (_, "SlowDown") => retry(Self::new(
                        "SlowDown",
                        503,
                        "The storage backend asks to reduce the request rate; please retry.",
                    )),
                    (None, _) | (Some(500..), _) | (_, "RequestTimeout") => retry(Self::new(
                        "ServiceUnavailable",
                        503,
                        "The storage backend is unavailable; please retry.",
                    )),
                    // The proxy's own credentials or policy upstream: the
                    // client may do this, the upstream refuses the proxy.
                    (Some(403), _) => Self::new(
                        "AccessDenied",
                        403,
                        "The storage backend refused the proxy access to this resource.",
                    ),
                    _ => Self::internal(),
                }
            }
            StorageError::Io(io) => {
                if io.raw_os_error() == Some(libc::ENOSPC) || io.raw_os_error() == Some(libc::EDQUOT) {
                    tracing::error!(error = %io, "backend out of space");
                    return Self::new("InsufficientStorage", 507, "The storage backend is out of space.");
                }
                tracing::error!(error = %io, bucket, key, "storage I/O error");
                Self::internal()
            }
        }
    }

    /// The `<Error>` element (without the XML declaration).
    pub fn error_element(&self, request_id: &str) -> String {
        let mut xml = String::with_capacity(256);
        xml.push_str("<Error><Code>");
        xml.push_str(self.code);
        xml.push_str("</Code><Message>");
        xml.push_str(&escape(&self.message));
        xml.push_str("</Message>");
        for (k, v) in &self.extra {
            xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
        }
        xml.push_str(&format!("<RequestId>{request_id}</RequestId></Error>"));
        xml
    }

    pub fn to_response(&self, request_id: &str, head: bool) -> Response {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.push_str(&self.error_element(request_id));
        let no_body = head || self.status == StatusCode::NOT_MODIFIED;
        let mut resp = if no_body {
            ().into_response()
        } else {
            xml.into_response()
        };
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if !no_body {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
        }
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name.clone(), v);
            }
        }
        resp
    }
}

/// Maps a failed request body: auth errors from the aws-chunked decoder keep
/// their S3 code; a client that went away is reported as IncompleteBody.
pub fn body_error(io: std::io::Error) -> S3Error {
    if let Some(auth) = io
        .get_ref()
        .and_then(|e| e.downcast_ref::<super::auth::AuthError>())
    {
        return S3Error::from_auth(auth);
    }
    if let Some(s3) = io.get_ref().and_then(|e| e.downcast_ref::<BodyS3Error>()) {
        return s3.0.clone();
    }
    tracing::debug!(error = %io, "request body ended early");
    S3Error::new(
        "IncompleteBody",
        400,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.",
    )
}

/// An S3 error raised inside a body stream stage (e.g. a size limit).
#[derive(Debug)]
pub struct BodyS3Error(pub S3Error);
impl std::fmt::Display for BodyS3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.0.code, self.0.message)
    }
}
impl std::error::Error for BodyS3Error {}

impl S3Error {
    pub fn from_auth(e: &super::auth::AuthError) -> Self {
        S3Error::new(e.s3_code(), e.http_status(), e.to_string())
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    super::xml::xml_safe(&out).into_owned()
}
