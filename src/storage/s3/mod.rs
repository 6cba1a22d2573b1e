//! The S3 backend: buckets and objects live in an upstream S3 service
//! (AWS, Hetzner, MinIO, Ceph RGW, another proxy). The engine above it is
//! unchanged: it encrypts, delta-compresses and checksums; this file only
//! moves stored bytes and metadata documents.
//!
//! Mapping (`docs/on-disk-format.md`, "S3 backends"):
//! - object `bucket/key` is the upstream object `bucket/key`; its metadata
//!   document is the user metadata field `dg-meta` (base64 of the JSON
//!   document), and the markers `dg-encrypted`, `dg-encryption-key-id` and
//!   `dg-note` are also stamped as their own user metadata fields, so an
//!   operator looking at the raw upstream sees them;
//! - delta references are `bucket/.dg/refs/<deltaspace>/<id>`; keys under
//!   `.dg/` are never listed and refused to clients;
//! - key check records are `bucket/.dg/keys/<key-id>.json` in every bucket
//!   (`state.rs`);
//! - bodies are staged in a local spool directory (`advanced.spool_dir`),
//!   which also holds multipart uploads in progress, the engine's jobs and
//!   a copy of the key check records for this backend.
//!
//! Publishing is atomic upstream: one PutObject, or a multipart upload that
//! becomes visible at CompleteMultipartUpload. The SDK is async; every call
//! here blocks on this backend's own small runtime, from the engine's
//! blocking jobs (never from an async task).

mod body;
mod list;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use base64::Engine as _;

use super::backend::{
    Backend, Body, BucketEntry, Found, Loc, RawObject, StoredPart, UploadStore, WalkItem,
};
use super::keypath::{KeyError, valid_bucket_name};
use super::uploads::UploadSweep;
use super::{FsBackend, Result, StorageError, TempFile};

/// The user metadata field holding the metadata document.
const META_FIELD: &str = "dg-meta";
/// Top-level fields of the document that are also stamped as their own
/// user metadata fields, for an operator's spot check of the raw upstream
/// (the markers `docs/encryption.md` documents). Copies only: the document
/// in `dg-meta` is what is read back. S3 caps user metadata at 2 KiB, so
/// long fields (the wrapped key, digests) are not repeated.
const MARKERS: &[&str] = &["dg-encrypted", "dg-encryption-key-id", "dg-note"];
/// The hidden prefix of the proxy's own objects in each upstream bucket.
pub const INTERNAL_PREFIX: &str = ".dg/";
/// S3's limit on user metadata (names and values, UTF-8 bytes).
const MAX_USER_META: usize = 2048;
/// Bodies up to this size are one PutObject; larger ones a multipart upload.
const SINGLE_PUT_MAX: u64 = 64 * 1024 * 1024;
/// Part size of the multipart uploads this backend makes.
const PART_SIZE: u64 = 64 * 1024 * 1024;
/// Parts uploaded at once.
const PART_CONCURRENCY: usize = 4;

/// How to reach one upstream.
#[derive(Debug, Clone)]
pub struct S3Config {
    pub name: String,
    /// `None`: AWS's regional endpoint.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub force_path_style: bool,
    /// `None`: the SDK's default credential chain (env, profile, IMDS...).
    pub credentials: Option<(String, String)>,
    /// Local spool directory of this backend.
    pub spool: PathBuf,
    /// Native server-side encryption asked of the upstream on every write.
    pub sse: Option<Sse>,
    /// The upstream buckets clients reach through this backend: where its
    /// key check records live (an account may hold other buckets, served
    /// by another backend with other keys, or not by the proxy at all).
    pub scope: BucketScope,
}

/// Which upstream buckets belong to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketScope {
    /// The default backend: every bucket but these (names routed elsewhere).
    AllExcept(Vec<String>),
    /// A routed backend: exactly the buckets routed to it.
    Only(Vec<String>),
}

impl BucketScope {
    pub fn contains(&self, bucket: &str) -> bool {
        match self {
            BucketScope::AllExcept(v) => !v.iter().any(|b| b == bucket),
            BucketScope::Only(v) => v.iter().any(|b| b == bucket),
        }
    }
}

/// `encryption.mode: sse-s3 | sse-kms`: the upstream encrypts; the proxy
/// never sees key material. Objects get the `dg-encrypted-native` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    S3,
    Kms { key_id: String, bucket_key: bool },
}

impl Sse {
    fn marker(&self) -> &'static str {
        match self {
            Sse::S3 => "sse-s3",
            Sse::Kms { .. } => "sse-kms",
        }
    }
}

/// Sets the SSE request fields on any write request builder.
macro_rules! with_sse {
    ($req:expr, $sse:expr) => {{
        use aws_sdk_s3::types::ServerSideEncryption;
        let req = $req;
        match $sse {
            None => req,
            Some(Sse::S3) => req.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms { key_id, bucket_key }) => req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key_id.clone())
                .bucket_key_enabled(*bucket_key),
        }
    }};
}

mod multipart;
mod state;
mod timing;

pub struct S3Backend {
    cfg: S3Config,
    client: Client,
    rt: Option<tokio::runtime::Runtime>,
    /// Staging, multipart uploads in progress and state documents.
    local: FsBackend,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("name", &self.cfg.name)
            .field("endpoint", &self.cfg.endpoint)
            .finish()
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Maps an SDK error: 404s to the caller's "missing" error, the rest to
/// `Upstream` with the service's code.
fn upstream<E>(e: SdkError<E>, missing: StorageError) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    tracing::debug!(error = ?e, "upstream request failed");
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    match (status, code.as_deref()) {
        (Some(404), _) | (_, Some("NoSuchKey" | "NotFound" | "NoSuchBucket")) => missing,
        _ => {
            let message = match &e {
                SdkError::ServiceError(_) => e.message().unwrap_or("").to_owned(),
                other => format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(other)
                ),
            };
            StorageError::Upstream {
                status,
                code: code.unwrap_or_else(|| "ConnectionError".into()),
                message,
            }
        }
    }
}

fn to_system_time(t: Option<&aws_smithy_types::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The user metadata fields for a metadata document: the document itself,
/// and its top-level `dg-*` string fields as their own fields.
fn meta_fields(doc: &[u8]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    out.insert(
        META_FIELD.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(doc),
    );
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(doc) {
        for (k, v) in map {
            if let serde_json::Value::String(s) = v
                && MARKERS.contains(&k.as_str())
                && s.bytes().all(|c| c.is_ascii_graphic())
            {
                out.insert(k, s);
            }
        }
    }
    let size: usize = out.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_META {
        return Err(StorageError::MetadataTooLarge(doc.len()));
    }
    Ok(out)
}

/// What a HeadObject answer says about a stored object.
fn raw_from_head(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> RawObject {
    RawObject {
        meta: doc_from_fields(out.metadata()),
        stored_len: out.content_length().unwrap_or(0).max(0) as u64,
        mtime: to_system_time(out.last_modified()),
        // Keys ending in '/' are ordinary objects upstream.
        is_dir: false,
        version: out.e_tag().map(str::to_owned),
    }
}

fn doc_from_fields(fields: Option<&HashMap<String, String>>) -> Option<Vec<u8>> {
    let v = fields?.get(META_FIELD)?;
    base64::engine::general_purpose::STANDARD.decode(v).ok()
}

/// The upstream key of a location. Client keys under the hidden prefix are
/// refused (they would collide with the proxy's own objects).
fn upstream_key(at: &Loc) -> Result<(&str, String)> {
    match at {
        Loc::Object { bucket, key } => {
            if key.starts_with(INTERNAL_PREFIX) {
                return Err(StorageError::InvalidKey(KeyError::Reserved));
            }
            Ok((bucket, key.clone()))
        }
        Loc::Ref { bucket, ds, id } => Ok((bucket, format!("{INTERNAL_PREFIX}refs/{ds}/{id}"))),
    }
}

impl S3Backend {
    /// Connects to the upstream (no request is made here) and opens the
    /// local spool. `serving`: see `FsBackend::open`.
    pub fn open(cfg: S3Config, serving: bool) -> Result<Self> {
        std::fs::create_dir_all(&cfg.spool)?;
        let local = if serving {
            FsBackend::open(&cfg.spool)?
        } else {
            FsBackend::open_shared(&cfg.spool)?
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("dg-s3-{}", cfg.name))
            .enable_all()
            .build()?;
        let client = rt.block_on(make_client(&cfg));
        Ok(S3Backend {
            cfg,
            client,
            rt: Some(rt),
            local,
        })
    }

    pub fn endpoint(&self) -> &str {
        self.cfg.endpoint.as_deref().unwrap_or("AWS")
    }

    pub fn spool(&self) -> &std::path::Path {
        self.local.root()
    }

    /// The user metadata of a write: the document, its markers, and the
    /// native-encryption marker when the upstream encrypts.
    fn fields(&self, meta: &[u8]) -> Result<HashMap<String, String>> {
        let mut f = meta_fields(meta)?;
        if let Some(sse) = &self.cfg.sse {
            f.insert("dg-encrypted-native".into(), sse.marker().into());
        }
        Ok(f)
    }

    /// Whether a body may go up without its SHA-256 in the signature
    /// (`UNSIGNED-PAYLOAD`), saving a hash of every byte: over TLS (which
    /// protects it on the way, as AWS SDKs do for S3 over HTTPS), and for
    /// DGE1 bodies, whose every chunk is authenticated, so damage on the way
    /// is an error at the first read, never wrong bytes. Plaintext over
    /// plain HTTP stays signed.
    fn unsigned_payload(&self, fields: &HashMap<String, String>) -> bool {
        fields.contains_key("dg-encrypted")
            || self
                .cfg
                .endpoint
                .as_deref()
                .is_none_or(|e| e.starts_with("https://"))
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("runtime lives as long as the backend")
            .block_on(f)
    }

    /// One cheap request that proves the endpoint and credentials work.
    pub fn check(&self) -> Result<()> {
        self.block_on(self.client.list_buckets().max_buckets(1).send())
            .map(|_| ())
            .map_err(|e| upstream(e, StorageError::NoSuchBucket))
    }

    fn head(&self, bucket: &str, key: &str) -> Result<RawObject> {
        let out = self
            .block_on(self.client.head_object().bucket(bucket).key(key).send())
            .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
        Ok(raw_from_head(&out))
    }

    /// Uploads `temp` as `bucket/key` with `fields` as its user metadata.
    fn put_file(
        &self,
        bucket: &str,
        key: &str,
        temp: &TempFile,
        fields: HashMap<String, String>,
    ) -> Result<()> {
        let len = temp.path().metadata()?.len();
        let path = temp.path().to_path_buf();
        self.block_on(async {
            if len <= SINGLE_PUT_MAX {
                let body = file_range(&path, 0, len).await?;
                let req = self
                    .client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_length(len as i64)
                    .content_type("application/octet-stream")
                    .body(body);
                let unsigned = self.unsigned_payload(&fields);
                let req = with_sse!(req.set_metadata(Some(fields)), &self.cfg.sse).customize();
                let req = if unsigned {
                    req.disable_payload_signing()
                } else {
                    req
                };
                req.send()
                    .await
                    .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
                Ok(())
            } else {
                self.put_multipart(bucket, key, &path, len, fields).await
            }
        })
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
        len: u64,
        fields: HashMap<String, String>,
    ) -> Result<()> {
        let unsigned = self.unsigned_payload(&fields);
        let part = |id: &str, n: i32, off: u64, size: u64| {
            let req = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(n)
                .content_length(size as i64);
            async move {
                let req = req.body(file_range(path, off, size).await?).customize();
                let req = if unsigned {
                    req.disable_payload_signing()
                } else {
                    req
                };
                let out = req
                    .send()
                    .await
                    .map_err(|e| upstream(e, StorageError::NoSuchUpload))?;
                Ok(out.e_tag().map(str::to_owned))
            }
        };
        self.write_multipart(bucket, key, fields, len, PART_SIZE, PART_CONCURRENCY, part)
            .await
    }

    /// Deletes every object under `prefix` (the hidden prefix of a bucket).
    fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<()> {
        let mut keys = Vec::new();
        self.list_keys(bucket, prefix, &mut |k| keys.push(k.to_owned()))?;
        for k in keys {
            self.block_on(self.client.delete_object().bucket(bucket).key(&k).send())
                .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
        }
        Ok(())
    }
}

/// A retryable body of `len` bytes of a local file from `offset`.
async fn file_range(
    path: &std::path::Path,
    offset: u64,
    len: u64,
) -> Result<aws_sdk_s3::primitives::ByteStream> {
    aws_sdk_s3::primitives::ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(aws_sdk_s3::primitives::Length::Exact(len))
        .build()
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))
}

async fn make_client(cfg: &S3Config) -> Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::timeout::TimeoutConfig;
    use aws_sdk_s3::config::{
        RequestChecksumCalculation, ResponseChecksumValidation, StalledStreamProtectionConfig,
    };
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let region = Region::new(cfg.region.clone().unwrap_or_else(|| "us-east-1".into()));
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http.clone())
        .region(region.clone());
    if let Some((id, secret)) = &cfg.credentials {
        loader = loader.credentials_provider(Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "deltaglider-config",
        ));
    }
    let shared = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&shared)
        .http_client(http)
        .region(region)
        .force_path_style(cfg.force_path_style)
        // Our bodies carry their own integrity (AES-GCM, SHA-256 for deltas);
        // aws-chunked trailers are refused by several S3-compatible servers.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // A client reading slowly through us must not fail our upstream read.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(200)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(ep) = &cfg.endpoint {
        b = b.endpoint_url(ep);
    }
    b = b.interceptor(timing::Timing {
        backend: cfg.name.clone(),
    });
    Client::from_conf(b.build())
}

impl Backend for S3Backend {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn space(&self) -> Result<(u64, u64)> {
        // Writes land on the spool first: that is the disk to guard.
        self.local.disk_space()
    }

    fn health(&self) -> std::result::Result<(), String> {
        self.check().map_err(|e| e.to_string())
    }

    fn native_encryption(&self) -> Option<&'static str> {
        self.cfg.sse.as_ref().map(Sse::marker)
    }

    fn list_buckets(&self) -> Result<Vec<BucketEntry>> {
        let out = self
            .block_on(self.client.list_buckets().send())
            .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
        let mut v: Vec<BucketEntry> = out
            .buckets()
            .iter()
            .filter_map(|b| {
                let name = b.name()?;
                valid_bucket_name(name).then(|| BucketEntry {
                    name: name.to_owned(),
                    created: to_system_time(b.creation_date()),
                })
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool> {
        match self.block_on(self.client.head_bucket().bucket(bucket).send()) {
            Ok(_) => Ok(true),
            Err(e) => match upstream(e, StorageError::NoSuchBucket) {
                StorageError::NoSuchBucket => Ok(false),
                other => Err(other),
            },
        }
    }

    fn bucket_created(&self, bucket: &str) -> Result<SystemTime> {
        self.list_buckets()?
            .into_iter()
            .find(|b| b.name == bucket)
            .map(|b| b.created)
            .ok_or(StorageError::NoSuchBucket)
    }

    fn create_bucket(&self, bucket: &str) -> Result<()> {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        // us-east-1 answers 200 to re-creating one's own bucket; clients of
        // the proxy get BucketAlreadyOwnedByYou on every backend.
        if self.bucket_exists(bucket)? {
            return Err(StorageError::BucketExists);
        }
        let mut req = self.client.create_bucket().bucket(bucket);
        if let Some(r) = self.cfg.region.as_deref().filter(|r| *r != "us-east-1") {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r))
                    .build(),
            );
        }
        match self.block_on(req.send()) {
            // The new bucket carries the key check records from the start.
            Ok(_) => self.seed_bucket_state(bucket),
            Err(e) => match upstream(e, StorageError::NoSuchBucket) {
                StorageError::Upstream { code, .. }
                    if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" =>
                {
                    Err(StorageError::BucketExists)
                }
                other => Err(other),
            },
        }
    }

    fn delete_bucket(&self, bucket: &str) -> Result<()> {
        if !self.bucket_exists(bucket)? {
            return Err(StorageError::NoSuchBucket);
        }
        let mut has_object = false;
        self.walk(bucket, "", "", false, &mut |_| {
            has_object = true;
            ControlFlow::Break(())
        })?;
        if has_object {
            return Err(StorageError::BucketNotEmpty);
        }
        // Only the proxy's own objects are left (references whose last
        // user went): they go with the bucket.
        self.delete_prefix(bucket, INTERNAL_PREFIX)?;
        match self.block_on(self.client.delete_bucket().bucket(bucket).send()) {
            Ok(_) => Ok(()),
            Err(e) => match upstream(e, StorageError::NoSuchBucket) {
                StorageError::Upstream { code, .. } if code == "BucketNotEmpty" => {
                    Err(StorageError::BucketNotEmpty)
                }
                other => Err(other),
            },
        }
    }

    fn new_temp(&self) -> Result<TempFile> {
        self.local.temp_file()
    }

    fn publish(&self, at: &Loc, temp: TempFile, meta: &[u8]) -> Result<()> {
        let (bucket, key) = upstream_key(at)?;
        let fields = self.fields(meta)?;
        // Keys ending in '/' are ordinary objects upstream.
        self.put_file(bucket, &key, &temp, fields)
        // `temp` is removed on drop.
    }

    fn stat(&self, at: &Loc) -> Result<RawObject> {
        let (bucket, key) = upstream_key(at)?;
        self.head(bucket, &key)
    }

    fn open(&self, at: &Loc) -> Result<(Option<Body>, RawObject)> {
        let (bucket, key) = upstream_key(at)?;
        // One ranged GET answers both: the metadata and the first window.
        let (raw, first) = match body::first_window(self, bucket, &key)? {
            Some(v) => v,
            // An empty object has no byte range to ask for.
            None => (self.head(bucket, &key)?, None),
        };
        let body = body::S3Body::new(
            self.client.clone(),
            self.rt.as_ref().expect("runtime").handle().clone(),
            bucket,
            &key,
            raw.version.clone(),
            raw.stored_len,
            first,
        );
        Ok((Some(std::sync::Arc::new(body)), raw))
    }

    fn set_meta(&self, at: &Loc, meta: &[u8]) -> Result<()> {
        let (bucket, key) = upstream_key(at)?;
        let fields = self.fields(meta)?;
        let current = self.head(bucket, &key)?;
        self.copy_replace(bucket, &key, fields, &current)
    }

    fn update_meta(
        &self,
        at: &Loc,
        f: &mut dyn FnMut(&RawObject) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let (bucket, key) = upstream_key(at)?;
        let current = self.head(bucket, &key)?;
        let fields = self.fields(&f(&current)?)?;
        // copy_replace copies only the version read here (If-Match).
        self.copy_replace(bucket, &key, fields, &current)
    }

    fn delete(&self, at: &Loc) -> Result<()> {
        let (bucket, key) = upstream_key(at)?;
        match self.block_on(self.client.delete_object().bucket(bucket).key(&key).send()) {
            Ok(_) => Ok(()),
            Err(e) => match upstream(e, StorageError::NoSuchKey) {
                StorageError::NoSuchKey => Ok(()),
                other => Err(other),
            },
        }
    }

    fn walk(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        roll_up_slash: bool,
        f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
    ) -> Result<()> {
        self.walk_bucket(bucket, prefix, start_after, roll_up_slash, f)
    }

    fn stat_found(&self, bucket: &str, items: &[(String, Found)]) -> Vec<Result<RawObject>> {
        self.head_many(bucket, items)
    }

    fn list_refs(&self, bucket: &str, ds: &str) -> Result<Vec<String>> {
        let prefix = format!("{INTERNAL_PREFIX}refs/{ds}/");
        let mut out = Vec::new();
        match self.list_keys(bucket, &prefix, &mut |k| {
            if let Some(id) = k.strip_prefix(&prefix)
                && id.starts_with("ref-")
                && !id.contains('/')
            {
                out.push(id.to_owned());
            }
        }) {
            Ok(()) | Err(StorageError::NoSuchBucket) => {}
            Err(e) => return Err(e),
        }
        out.sort();
        Ok(out)
    }

    fn all_refs(&self) -> Result<Vec<(String, String, String)>> {
        let prefix = format!("{INTERNAL_PREFIX}refs/");
        let mut out = Vec::new();
        for b in self.list_buckets()? {
            self.list_keys(&b.name, &prefix, &mut |k| {
                let rest = &k[prefix.len()..];
                if let Some((ds, id)) = rest.split_once('/')
                    && id.starts_with("ref-")
                    && !id.contains('/')
                {
                    out.push((b.name.clone(), ds.to_owned(), id.to_owned()));
                }
            })?;
        }
        out.sort();
        Ok(out)
    }
}

impl UploadStore for S3Backend {
    fn create_upload(&self, id: &str, state: &[u8]) -> Result<()> {
        self.local.create_upload(id, state)
    }
    fn read_upload(&self, id: &str) -> Result<Vec<u8>> {
        self.local.read_upload(id)
    }
    fn put_part(&self, id: &str, number: u32, temp: TempFile, meta: &[u8]) -> Result<()> {
        self.put_any_part(id, number, temp, meta)
    }
    fn list_parts(&self, id: &str) -> Result<Vec<StoredPart>> {
        self.local.list_parts(id)
    }
    fn open_part(&self, id: &str, number: u32) -> Result<Body> {
        self.local.open_part(id, number)
    }
    fn remove_upload(&self, id: &str) -> Result<()> {
        self.remove_any_upload(id)
    }
    fn begin_complete(&self, id: &str, doc: &[u8]) -> Result<()> {
        self.local.begin_complete(id, doc)
    }
    fn cancel_complete(&self, id: &str) -> Result<()> {
        self.local.cancel_complete(id)
    }
    fn retire_upload(&self, id: &str) -> Result<()> {
        self.local.retire_upload(id)
    }
    fn read_completed(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.local.read_completed(id)
    }
    fn list_uploads(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.local.list_uploads()
    }
    fn list_completing(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.local.list_completing()
    }
    fn sweep_uploads(&self, keep_done: Duration) -> Result<UploadSweep> {
        self.local.sweep_uploads(keep_done)
    }
    fn all_parts(&self) -> Result<Vec<(String, u32, Vec<u8>)>> {
        self.local.all_parts()
    }
    fn supports_direct(&self) -> bool {
        true
    }
    fn begin_direct(&self, id: &str, at: &Loc, meta: &[u8]) -> Result<()> {
        self.begin_direct_upload(id, at, meta)
    }
    fn complete_direct(&self, id: &str, at: &Loc, parts: &[u32], meta: &[u8]) -> Result<()> {
        self.complete_direct_upload(id, at, parts, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_fields_carry_the_document_and_the_markers() {
        let doc = br#"{"v":1,"size":3,"dg-encrypted":"aes-256-gcm-dge1","dg-encryption-key-id":"k1","user":{"a":"b"}}"#;
        let f = meta_fields(doc).unwrap();
        assert_eq!(f["dg-encrypted"], "aes-256-gcm-dge1");
        assert_eq!(f["dg-encryption-key-id"], "k1");
        assert!(!f.contains_key("user"));
        assert_eq!(doc_from_fields(Some(&f)).unwrap(), doc.to_vec());
        let big = format!(r#"{{"v":1,"user":{{"x":"{}"}}}}"#, "y".repeat(2000));
        assert!(matches!(
            meta_fields(big.as_bytes()),
            Err(StorageError::MetadataTooLarge(_))
        ));
    }

    #[test]
    fn hidden_prefix_is_refused_to_clients() {
        assert!(upstream_key(&Loc::object("b", ".dg/refs/x")).is_err());
        assert_eq!(upstream_key(&Loc::object("b", ".dg")).unwrap().1, ".dg");
        assert_eq!(upstream_key(&Loc::object("b", ".dgx")).unwrap().1, ".dgx");
        assert_eq!(
            upstream_key(&Loc::reference("b", "ab", "ref-1")).unwrap().1,
            ".dg/refs/ab/ref-1"
        );
    }
}
