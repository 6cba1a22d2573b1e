//! The S3 protocol room: HTTP requests in, S3 responses out. It resolves
//! path- or virtual-hosted-style addressing, verifies signatures, asks the
//! gateway for permission and routes, and calls the engine. Only this room
//! knows S3 error codes and XML.

mod access;
mod acl;
pub mod admit;
pub mod auth;
mod bucket;
pub mod error;
pub mod headers;
mod list;
pub mod lockout;
mod multipart;
mod object;
mod policy;
pub mod router;
pub mod xml;

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, Request};
use sha2::Digest as _;

use self::auth::{AuthOutcome, AuthRequest, CredentialStore, PayloadMode, Trailers};
use self::error::S3Error;
use self::router::Endpoint;
use crate::engine::ByteStream;
use crate::gateway::{Gateway, Identity};

/// The protocol settings a config reload may change, swapped as one.
pub struct Protocol {
    pub credentials: Arc<dyn CredentialStore>,
    /// Base domains for virtual-hosted-style requests (`bucket.<domain>`).
    pub domains: Vec<String>,
    pub region: String,
    /// Largest request body (one PUT or one part), bytes: `advanced.max_request_body_mb`.
    pub max_body: u64,
    /// The client address is the last `X-Forwarded-For` entry.
    pub trust_proxy_headers: bool,
    /// Brute-force thresholds (`advanced.auth_*`).
    pub lockout: lockout::LockoutSettings,
    /// `advanced.metrics_allow_from`: may scrape `/_/metrics` unsigned.
    pub metrics_allow_from: Vec<crate::config::IpNet>,
    /// Admin UI session rules (`advanced.session_*`).
    pub sessions: crate::admin::session::SessionSettings,
    /// `access.auth_providers` / `access.group_mapping_rules`.
    pub sso: Arc<crate::config::sso::SsoSettings>,
}

/// Everything the S3 handlers share. A request takes one snapshot of the
/// gateway and of the protocol settings when it starts and keeps it to the
/// end, so a reload never changes the rules under a request in flight.
pub struct S3State {
    pub gateway: crate::gateway::Shared,
    pub protocol: Arc<arc_swap::ArcSwap<Protocol>>,
    /// `None` when there is no configuration to re-read (tests).
    pub config: Option<Arc<dyn crate::admin::config::ConfigControl>>,
    /// The config database (`None` in tests without one).
    pub iam: Option<Arc<crate::configdb::LiveIam>>,
    /// When the server started (for the status endpoint).
    pub started: std::time::Instant,
    /// S3 requests being handled right now.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Failed authentications per client address (kept across reloads).
    pub lockout: lockout::Lockout,
    /// Admin UI sessions (`None` without a config database: no login).
    pub sessions: Option<crate::admin::session::Sessions>,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One request in flight.
pub struct Ctx {
    pub gateway: Arc<Gateway>,
    pub proto: Arc<Protocol>,
    pub request_id: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub identity: Identity,
    /// The config database (bucket policies live there).
    pub iam: Option<Arc<crate::configdb::LiveIam>>,
    /// The client address (see `admit::client_addr`).
    pub source: std::net::IpAddr,
    /// The request came over TLS.
    pub secure: bool,
    /// An `allow-anonymous` admission block matched this unsigned request:
    /// it may read the object or list the prefix it names.
    pub admitted: bool,
    pub payload: PayloadMode,
    /// In a Mutex only so that `&Ctx` is Send across awaits (Body is not Sync).
    body: std::sync::Mutex<Option<Body>>,
}

impl Ctx {
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn has(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        headers::get(&self.headers, name)
    }
    pub fn bucket(&self) -> &str {
        self.bucket.as_deref().unwrap_or("")
    }
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }

    /// The request body as a stream, with aws-chunked framing removed and
    /// chunk signatures verified as it flows.
    pub fn body_stream(&mut self) -> (ByteStream, Trailers) {
        let body = self
            .body
            .get_mut()
            .map(Option::take)
            .ok()
            .flatten()
            .unwrap_or_else(Body::empty);
        let raw: ByteStream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
        auth::decode_body(raw, &self.payload, &self.headers)
    }

    /// A small request body (an XML document), read whole up to `limit` bytes.
    pub async fn body_bytes(&mut self, limit: usize) -> Result<Bytes, S3Error> {
        let (mut s, _) = self.body_stream();
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(error::body_error)?;
            if buf.len() + chunk.len() > limit {
                return Err(S3Error::new(
                    "MaxMessageLengthExceeded",
                    400,
                    "Your request was too big.",
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        if let PayloadMode::Sha256(want) = &self.payload
            && sha2::Sha256::digest(&buf).as_slice() != want
        {
            return Err(sha256_mismatch());
        }
        Ok(Bytes::from(buf))
    }

    /// The engine and backend bucket name for a write to this request's
    /// bucket: `SlowDown` (503, Retry-After) while a re-encrypt job gates it.
    pub fn write_route(&self) -> Result<(Arc<crate::engine::ObjectStore>, String), S3Error> {
        self.write_route_for(self.bucket())
    }

    pub fn write_route_for(
        &self,
        bucket: &str,
    ) -> Result<(Arc<crate::engine::ObjectStore>, String), S3Error> {
        let (store, real) = self.gateway.route(bucket);
        let retry = |e: S3Error| {
            let secs = crate::engine::reencrypt::RETRY_AFTER_SECS;
            Err(e.with_header(http::header::RETRY_AFTER, secs.to_string()))
        };
        match store.write_gate(&real) {
            None => {}
            Some(crate::engine::WriteGate::Reencrypt) => {
                return retry(S3Error::new(
                    "SlowDown",
                    503,
                    "A re-encrypt job is rewriting this bucket; writes are paused until it finishes (reads continue). Please retry.",
                ));
            }
            Some(crate::engine::WriteGate::Migrating) => {
                return retry(S3Error::new(
                    "SlowDown",
                    503,
                    "This bucket is being moved to another backend; writes are paused until the move finishes and the route switches (reads continue). Please retry.",
                ));
            }
            Some(crate::engine::WriteGate::KeysUnchecked(_)) => {
                return retry(S3Error::new(
                    "ServiceUnavailable",
                    503,
                    "The backend of this bucket has not confirmed its encryption key yet; writes are paused until it does (see the server log). Please retry.",
                ));
            }
        }
        Ok((store, real))
    }
}

/// The answer to a locked-out address.
pub fn locked_out(wait: std::time::Duration) -> S3Error {
    S3Error::new(
        "SlowDown",
        503,
        "Too many failed authentications from this address; try again later.",
    )
    .with_header(http::header::RETRY_AFTER, (wait.as_secs() + 1).to_string())
}

pub fn sha256_mismatch() -> S3Error {
    S3Error::new(
        "XAmzContentSHA256Mismatch",
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
}

/// How to read the body of an unsigned request: unsigned aws-chunked with a
/// trailer (what SDKs send for anonymous uploads), a declared SHA-256 that is
/// still verified, or plain bytes.
fn anonymous_payload(h: &HeaderMap) -> Result<PayloadMode, S3Error> {
    match headers::get(h, "x-amz-content-sha256") {
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER") => Ok(PayloadMode::StreamingUnsignedTrailer),
        Some(v) if v.starts_with("STREAMING-") => Err(S3Error::access_denied()),
        Some(v) if v.len() == 64 => {
            let mut d = [0u8; 32];
            hex::decode_to_slice(v, &mut d)
                .map_err(|_| S3Error::invalid_argument("x-amz-content-sha256 must be hex"))?;
            Ok(PayloadMode::Sha256(d))
        }
        _ => Ok(PayloadMode::Unsigned),
    }
}

fn new_request_id() -> String {
    let id: u64 = rand::random();
    format!("{id:016X}")
}

/// Entry point for every request outside `/_/`.
pub async fn handle(st: Arc<S3State>, req: Request<Body>) -> Response {
    st.in_flight
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let counter = st.clone();
    let _in_flight = InFlight(&counter.in_flight);
    let request_id = new_request_id();
    let head = req.method() == Method::HEAD;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let expects_continue = req
        .headers()
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let empty_body = headers::get(req.headers(), "content-length").is_none_or(|v| v.trim() == "0");
    // Every event of this request (on blocking threads too: see
    // `engine::blocking`) carries the id the client gets back.
    let span = tracing::info_span!("request", id = %request_id);
    let started = std::time::Instant::now();
    let mut audit = crate::audit::Record {
        time: crate::audit::now(),
        request_id: request_id.clone(),
        method: method.to_string(),
        user: "anonymous".into(),
        decision: "none",
        bytes_in: headers::get(req.headers(), "content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        ..Default::default()
    };
    let mut resp = match tracing::Instrument::instrument(
        handle_inner(st, req, &request_id, &mut audit),
        span.clone(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                span.in_scope(|| tracing::warn!(%method, path, code = e.code, "request failed"));
            } else {
                span.in_scope(|| tracing::debug!(%method, path, code = e.code, message = %e.message, "request refused"));
            }
            e.to_response(&request_id, head)
        }
    };
    let refused = !resp.status().is_success();
    let h = resp.headers_mut();
    // A final answer to an `Expect: 100-continue` request that was never told
    // to continue (empty body, or refused before the body) closes the
    // connection: some clients (botocore) otherwise misread the next response
    // on the same connection.
    if expects_continue && (empty_body || refused) {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amz-request-id", v.clone());
        h.insert("x-amz-id-2", v);
    }
    audit.status = resp.status().as_u16();
    audit.bytes_out = headers::get(resp.headers(), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let took = started.elapsed();
    audit.duration_ms = took.as_millis() as u64;
    crate::audit::emit(&audit);
    let operation = match audit.operation.as_str() {
        "" => "Unknown",
        op => op,
    };
    // A HEAD answer announces the object's length but sends no body.
    let sent = if head { 0 } else { audit.bytes_out };
    crate::metrics::request("s3", operation, audit.status, took, audit.bytes_in, sent);
    resp
}

/// Splits a request into bucket and key by Host (virtual-hosted style) or path.
/// Returns (bucket, key, addressed by virtual host).
fn address(
    headers: &HeaderMap,
    path: &str,
    domains: &[String],
) -> Result<(Option<String>, Option<String>, bool), S3Error> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| S3Error::invalid_argument("The request path is not valid UTF-8"))?;
    let host = headers::get(headers, "host").unwrap_or("");
    let host = host
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit()))
        .map_or(host, |(h, _)| h);
    let vhost_bucket = domains.iter().find_map(|d| {
        host.strip_suffix(d.as_str())
            .and_then(|b| b.strip_suffix('.'))
            .filter(|b| !b.is_empty())
    });
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (bucket, key) = match vhost_bucket {
        Some(b) => (Some(b.to_owned()), Some(rest.to_owned())),
        None => match rest.split_once('/') {
            Some((b, k)) => (Some(b.to_owned()), Some(k.to_owned())),
            None => ((!rest.is_empty()).then(|| rest.to_owned()), None),
        },
    };
    let key = key.filter(|k| !k.is_empty());
    Ok((
        bucket.filter(|b| !b.is_empty()),
        key,
        vhost_bucket.is_some(),
    ))
}

async fn handle_inner(
    st: Arc<S3State>,
    req: Request<Body>,
    request_id: &str,
    audit: &mut crate::audit::Record,
) -> Result<Response, S3Error> {
    let (parts, body) = req.into_parts();
    let raw_query = parts.uri.query().unwrap_or("");
    let query: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let gateway = st.gateway.load_full();
    let proto = st.protocol.load_full();
    let (bucket, key, vhost) = address(&parts.headers, parts.uri.path(), &proto.domains)?;
    let source = admit::client_addr(&parts.extensions, &parts.headers, proto.trust_proxy_headers);
    audit.source_ip = source.to_string();
    audit.bucket.clone_from(&bucket);
    audit.key.clone_from(&key);
    // Named before authentication, so refusals are counted by operation
    // too; a request that names none is refused below, after the signature.
    if let Ok(op) = router::route(
        &parts.method,
        bucket.is_some(),
        key.is_some(),
        &query,
        &parts.headers,
    ) {
        audit.operation = format!("{op:?}");
    }
    // A listing is admitted by its prefix, an object request by its key.
    let listed = (key.is_none() && bucket.is_some() && parts.method == Method::GET).then(|| {
        query
            .iter()
            .find(|(k, _)| k == "prefix")
            .map_or("", |(_, v)| v.as_str())
    });
    let admission = gateway.admit(&crate::gateway::Probe {
        source,
        method: parts.method.as_str(),
        bucket: bucket.as_deref(),
        path: key.as_deref().or(listed),
    });
    audit.rule = admission.block().map(|b| format!("admission block {b}"));
    if matches!(
        admission,
        crate::gateway::Decision::Deny { .. } | crate::gateway::Decision::Reject { .. }
    ) {
        audit.decision = "deny";
    }
    let admitted = admit::apply(admission, source)?;

    let auth_req = AuthRequest {
        method: &parts.method,
        path: parts.uri.path(),
        query: raw_query,
        headers: &parts.headers,
        now: time::OffsetDateTime::now_utc(),
        region: Some(&proto.region),
    };
    let now = std::time::Instant::now();
    if let Err(wait) = st.lockout.check(source, now) {
        return Err(locked_out(wait));
    }
    let keys = access::Keys {
        admin: proto.credentials.as_ref(),
        users: gateway.directory(),
    };
    let outcome = match (&bucket, vhost) {
        (Some(b), true) => auth::authenticate_virtual_hosted(&auth_req, b, &keys),
        _ => auth::authenticate(&auth_req, &keys),
    };
    let (identity, payload) = match outcome {
        Ok(AuthOutcome::Authenticated {
            access_key_id,
            payload,
        }) => (keys.identity(access_key_id), payload),
        Ok(AuthOutcome::Anonymous) => (Identity::Anonymous, anonymous_payload(&parts.headers)?),
        Err(e) => {
            if auth::is_credential_failure(&e) {
                let delay = st.lockout.failed(source, &proto.lockout, now);
                tokio::time::sleep(delay).await;
            }
            return Err(S3Error::from_auth(&e));
        }
    };
    if identity != Identity::Anonymous {
        st.lockout.succeeded(source);
    }
    match &identity {
        Identity::Admin { access_key_id } => {
            audit.user = "admin".into();
            audit.access_key_id = Some(access_key_id.clone());
        }
        Identity::User {
            name,
            access_key_id,
        } => {
            audit.user.clone_from(name);
            audit.access_key_id = Some(access_key_id.clone());
        }
        Identity::Anonymous => {}
    }

    if let Some(b) = &bucket
        && !crate::storage::keypath::valid_bucket_name(b)
    {
        return Err(S3Error::new(
            "InvalidBucketName",
            400,
            "The specified bucket is not valid.",
        )
        .with("BucketName", b));
    }
    let endpoint = router::route(
        &parts.method,
        bucket.is_some(),
        key.is_some(),
        &query,
        &parts.headers,
    )?;
    audit.operation = format!("{endpoint:?}");
    let ctx = Ctx {
        gateway: gateway.clone(),
        proto,
        request_id: request_id.to_owned(),
        method: parts.method,
        headers: parts.headers,
        query,
        bucket,
        key,
        identity,
        iam: st.iam.clone(),
        source,
        secure: parts
            .extensions
            .get::<crate::listener::Secure>()
            .is_some_and(|s| s.0),
        admitted,
        payload,
        body: std::sync::Mutex::new(Some(body)),
    };
    // The one authorization step, from the routed operation.
    if let Some(action) = endpoint.action() {
        let r = ctx.facts(
            action,
            ctx.bucket.as_deref(),
            ctx.key.as_deref(),
            endpoint.is_listing(),
        );
        let mut authz = gateway.authorize(&ctx.identity, ctx.admitted, &r);
        if !authz.allowed
            && !authz.explicit
            && action == crate::gateway::policy::GET_OBJECT
            && let Some(granted) = gateway
                .object_acl_allows(&ctx.identity, ctx.bucket(), ctx.key())
                .await
        {
            authz = granted;
        }
        audit.decision = if authz.allowed { "allow" } else { "deny" };
        audit.rule = Some(authz.rule.clone());
        access::enforce(&authz, &ctx.identity, &action)?;
    }
    dispatch(endpoint, ctx).await
}

async fn dispatch(ep: Endpoint, ctx: Ctx) -> Result<Response, S3Error> {
    use Endpoint::*;
    match ep {
        ListBuckets => bucket::list_buckets(ctx).await,
        CreateBucket => bucket::create_bucket(ctx).await,
        HeadBucket => bucket::head_bucket(ctx).await,
        DeleteBucket => bucket::delete_bucket(ctx).await,
        GetBucketLocation => bucket::get_location(ctx).await,
        GetBucketVersioning => bucket::get_versioning(ctx).await,
        ListObjects => list::list_objects(ctx, false).await,
        ListObjectsV2 => list::list_objects(ctx, true).await,
        ListObjectVersions => list::list_versions(ctx).await,
        DeleteObjects => object::delete_objects(ctx).await,
        ListMultipartUploads => multipart::list_uploads(ctx).await,
        GetObject => object::get_object(ctx, false).await,
        HeadObject => object::get_object(ctx, true).await,
        PutObject => object::put_object(ctx).await,
        CopyObject => object::copy_object(ctx).await,
        DeleteObject => object::delete_object(ctx).await,
        CreateMultipartUpload => multipart::create(ctx).await,
        UploadPart => multipart::upload_part(ctx).await,
        UploadPartCopy => multipart::upload_part_copy(ctx).await,
        CompleteMultipartUpload => multipart::complete(ctx).await,
        AbortMultipartUpload => multipart::abort(ctx).await,
        ListParts => multipart::list_parts(ctx).await,
        GetBucketPolicy => policy::get(ctx).await,
        PutBucketPolicy => policy::put(ctx).await,
        DeleteBucketPolicy => policy::delete(ctx).await,
        GetBucketPolicyStatus => policy::status(ctx).await,
        GetBucketAcl | GetObjectAcl => acl::get(ctx).await,
        PutBucketAcl | PutObjectAcl => acl::put(ctx).await,
    }
}
