//! The validated, typed configuration the server runs on ([`Settings`] and
//! everything in it), the redacting [`Secret`] wrapper, and the defaults.
//!
//! Values here are final: `${env:...}` references are expanded, shorthands
//! are normalised (`filesystem:`/`s3:`/`backend:` become one backend named
//! `default`; `public: true` becomes `public_prefixes: [""]`), bucket backends
//! are resolved, and overrides (CLI/env) are applied. Key material is *not*
//! here: only where to find it ([`KeySource`]); see `keys.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Default `advanced.listen_addr`.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:9000";
/// Default `advanced.log_level`.
pub const DEFAULT_LOG_LEVEL: &str = "deltaglider_proxy=info";
/// Default `advanced.cache_size_mb`.
pub const DEFAULT_CACHE_SIZE_MB: u64 = 1024;
/// Default `advanced.max_delta_ratio`.
pub const DEFAULT_MAX_DELTA_RATIO: f64 = 0.75;
/// Default `advanced.max_object_size_for_delta_mb`.
pub const DEFAULT_MAX_OBJECT_SIZE_FOR_DELTA_MB: u64 = 512;
/// Default `advanced.delta_concurrency`.
pub const DEFAULT_DELTA_CONCURRENCY: u64 = 1;
/// Default `advanced.max_request_body_mb` (S3's own single-PUT limit, 5 GiB).
pub const DEFAULT_MAX_REQUEST_BODY_MB: u64 = 5 * 1024;
/// Default `advanced.min_free_space_mb`.
pub const DEFAULT_MIN_FREE_SPACE_MB: u64 = 1024;
/// Default `advanced.region`.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default `advanced.header_read_timeout_secs`.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECS: u64 = 30;
/// Default `advanced.idle_timeout_secs`.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 20;
/// Default `advanced.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
/// Default `advanced.shutdown_grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Default `advanced.s3_domains`.
pub const DEFAULT_S3_DOMAIN: &str = "localhost";
/// Data directory of the embedded default backend when neither the config
/// nor `--data-dir`/`DGP_DATA_DIR` gives one (relative to the working dir).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default `advanced.spool_dir` (relative to the working directory, like the data dir).
pub const DEFAULT_SPOOL_DIR: &str = "./spool";
/// Name of the singleton backend (`backend:`, `filesystem:`, `s3:`, or the
/// embedded default).
pub const SINGLETON_BACKEND_NAME: &str = "default";

/// A secret string (secret access keys). Zeroed on drop; `Debug` never shows
/// it; read it with [`Secret::expose`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Constant time: a reload compares the new secret with the running one.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The fully validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `advanced.listen_addr`, or the override.
    pub listen_addr: SocketAddr,
    /// `advanced.log_level` (a `tracing` filter string), or the override.
    pub log_level: String,
    /// Admin / root S3 credentials: `access:`, each field overridden by
    /// CLI/env. `None` when neither gives them (the server decides whether
    /// that is fatal).
    pub credentials: Option<AdminCredentials>,
    pub iam_mode: IamMode,
    /// `access.iam_users` / `access.iam_groups` (only with `iam_mode: declarative`).
    pub iam: super::iam::IamSettings,
    /// `access.config_db_path` / `access.config_db_key_file`.
    pub config_db: super::iam::ConfigDbSettings,
    /// `access.auth_providers` / `access.group_mapping_rules` (admin UI single sign-on).
    pub sso: super::sso::SsoSettings,
    /// At least one backend, in file order.
    pub backends: Vec<BackendSettings>,
    /// Always the name of one of `backends`.
    pub default_backend: String,
    /// Virtual bucket name -> routing and policy.
    pub buckets: BTreeMap<String, BucketSettings>,
    /// `admission.blocks`, in file order (first match wins is the server's
    /// business; they are only parsed and validated here).
    pub admission: Vec<AdmissionBlock>,
    pub advanced: AdvancedSettings,
    /// `fuse:` the read-only view `serve` mounts; `None` without the section.
    pub fuse: Option<FuseSettings>,
    /// Non-fatal findings to log at startup (e.g. an ignored `--data-dir`).
    pub warnings: Vec<String>,
}

impl Settings {
    /// The built-in configuration: an empty file with no overrides.
    pub fn embedded_default(data_dir: Option<PathBuf>) -> Settings {
        Settings {
            listen_addr: DEFAULT_LISTEN_ADDR.parse().expect("valid constant"),
            log_level: DEFAULT_LOG_LEVEL.to_string(),
            credentials: None,
            iam_mode: IamMode::Gui,
            iam: Default::default(),
            config_db: Default::default(),
            sso: Default::default(),
            backends: vec![BackendSettings::embedded_default(data_dir)],
            default_backend: SINGLETON_BACKEND_NAME.to_string(),
            buckets: BTreeMap::new(),
            admission: Vec::new(),
            advanced: AdvancedSettings::default(),
            fuse: None,
            warnings: Vec::new(),
        }
    }

    /// The backend with this name.
    pub fn backend(&self, name: &str) -> Option<&BackendSettings> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The backend a bucket is routed to: its own, or the default backend
    /// for buckets not listed in `storage.buckets`.
    pub fn backend_for_bucket(&self, bucket: &str) -> Option<&BackendSettings> {
        match self.buckets.get(bucket) {
            Some(b) => self.backend(&b.backend),
            None => self.backend(&self.default_backend),
        }
    }
}

/// Admin credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// `access.iam_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IamMode {
    /// The encrypted IAM database (edited from the admin GUI) is the source
    /// of truth. Default.
    #[default]
    Gui,
    /// YAML owns IAM; admin-API mutations are refused.
    Declarative,
}

impl IamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IamMode::Gui => "gui",
            IamMode::Declarative => "declarative",
        }
    }
}

/// One storage backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendSettings {
    pub name: String,
    pub kind: BackendKind,
    pub encryption: EncryptionSettings,
}

impl BackendSettings {
    /// The embedded default: filesystem backend `default` at the data dir.
    pub fn embedded_default(data_dir: Option<PathBuf>) -> BackendSettings {
        BackendSettings {
            name: SINGLETON_BACKEND_NAME.to_string(),
            kind: BackendKind::Filesystem {
                path: data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            },
            encryption: EncryptionSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BackendKind {
    Filesystem {
        /// Used as written: a relative path is relative to the working dir.
        path: PathBuf,
    },
    S3 {
        /// `http(s)://host[:port][/...]`; `None` means AWS's regional endpoint.
        endpoint: Option<String>,
        region: Option<String>,
        force_path_style: bool,
        /// Both or neither: `None` means the SDK's default credential chain.
        access_key_id: Option<String>,
        secret_access_key: Option<Secret>,
    },
}

impl BackendKind {
    /// `filesystem` or `s3`.
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendKind::Filesystem { .. } => "filesystem",
            BackendKind::S3 { .. } => "s3",
        }
    }
}

/// At-rest encryption of one backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionSettings {
    pub mode: EncryptionMode,
    /// Stamped on objects as `dg-encryption-key-id` (aes256-gcm-proxy only).
    pub key_id: Option<String>,
    /// Where the proxy-AES key comes from. `Some` exactly when mode is
    /// `aes256-gcm-proxy` (defaults to the backend's env var).
    pub key_source: Option<KeySource>,
    /// A previous key still used to decrypt old objects (rotation shim);
    /// only when `legacy_key`/`legacy_key_file` is configured.
    pub legacy_key_source: Option<KeySource>,
    pub legacy_key_id: Option<String>,
    /// KMS key for `sse-kms` (required there, refused elsewhere).
    pub kms_key_id: Option<String>,
    /// S3 Bucket Key for `sse-kms`.
    pub bucket_key_enabled: bool,
}

/// `encryption.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncryptionMode {
    #[default]
    None,
    /// The proxy encrypts with AES-256-GCM before the backend sees the bytes.
    Aes256GcmProxy,
    /// Native S3 SSE with S3-managed keys (S3 backends only).
    SseS3,
    /// Native S3 SSE with a KMS key (S3 backends only).
    SseKms,
}

impl EncryptionMode {
    pub const ALL: [EncryptionMode; 4] = [
        EncryptionMode::None,
        EncryptionMode::Aes256GcmProxy,
        EncryptionMode::SseS3,
        EncryptionMode::SseKms,
    ];

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMode::None => "none",
            EncryptionMode::Aes256GcmProxy => "aes256-gcm-proxy",
            EncryptionMode::SseS3 => "sse-s3",
            EncryptionMode::SseKms => "sse-kms",
        }
    }

    pub fn parse(s: &str) -> Option<EncryptionMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// `sse-s3` and `sse-kms`: done by the S3 backend itself.
    pub fn is_native(self) -> bool {
        matches!(self, EncryptionMode::SseS3 | EncryptionMode::SseKms)
    }
}

impl fmt::Display for EncryptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a 32-byte key is read from by `resolve_encryption_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An environment variable holding 64 hex characters.
    Env { var: String },
    /// A file holding exactly 32 raw bytes, mode 0600 or stricter.
    File { path: PathBuf },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env { var } => write!(f, "environment variable {var}"),
            KeySource::File { path } => write!(f, "key file {}", path.display()),
        }
    }
}

/// Routing and policy of one virtual bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSettings {
    /// Backend name, resolved (`default_backend` when not given).
    pub backend: String,
    /// The bucket name on the backend: `alias`, or the virtual name.
    pub real_name: String,
    /// `None`: follow the global default (compression on).
    pub compression: Option<bool>,
    /// `None`: `advanced.max_delta_ratio`.
    pub max_delta_ratio: Option<f64>,
    /// Key prefixes readable anonymously (`""` = whole bucket).
    pub public_prefixes: Vec<String>,
    /// File-name suffixes that go through the delta path in this bucket, on
    /// top of the built-in table (lowercase, with the dot: `.fw`).
    pub delta_types: Vec<String>,
    /// Suffixes stored whole in this bucket whatever the table says.
    pub passthrough_types: Vec<String>,
}

/// One admission rule (parsed and validated; enforced by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionBlock {
    pub name: String,
    pub matcher: AdmissionMatch,
    pub action: AdmissionAction,
}

/// Conditions of an admission block; all given conditions must hold, and an
/// empty list / `None` means "any".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdmissionMatch {
    pub source_ips: Vec<IpNet>,
    /// Upper-case HTTP methods.
    pub methods: Vec<String>,
    pub bucket: Option<String>,
    pub path_glob: Option<String>,
}

/// The one glob dialect of the config (admission `path_glob`, and IAM
/// resources): `*` and `?` match any characters including `/` (S3 keys are
/// flat; as in IAM resource patterns), `[...]` classes, `{a,b}` alternatives.
pub fn compile_glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionAction {
    Deny,
    AllowAnonymous,
    Reject {
        status: u16,
        message: Option<String>,
    },
}

/// An IP network (`203.0.113.0/24`, `2001:db8::/32`; a bare address is a
/// /32 or /128). Host bits are cleared when parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/LEN`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr_part, len_part) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part
            .parse()
            .map_err(|_| format!("`{addr_part}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_part {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(format!("prefix length `{l}` must be 0..={max}")),
            },
        };
        Ok(IpNet {
            addr: mask(addr, prefix_len),
            prefix_len,
        })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses match
    /// IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix_len) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// `fuse:` where `serve` mounts the read-only view of the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseSettings {
    /// An absolute path; must be an empty directory when the mount starts.
    pub mountpoint: PathBuf,
    /// Let users other than the one running the server read the mount
    /// (files 0444 instead of 0440; non-root needs `user_allow_other` in
    /// /etc/fuse.conf).
    pub allow_other: bool,
    /// Show only this bucket (its keys at the top of the mount).
    pub bucket: Option<String>,
}

/// `advanced:` tunables (listen_addr and log_level live on [`Settings`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdvancedSettings {
    /// Reconstruction cache size in MiB.
    pub cache_size_mb: u64,
    /// Global default: store a delta only if `delta_size / original_size`
    /// is at most this (0 < r <= 1). Per-bucket `max_delta_ratio` wins.
    pub max_delta_ratio: f64,
    /// Objects larger than this (MiB) are stored as-is, never delta-encoded.
    pub max_object_size_for_delta_mb: u64,
    /// Delta encodes running at once (each holds its reference and an index
    /// of about 3x its size in memory).
    pub delta_concurrency: u64,
    /// Largest accepted request body (single PUT or one part), in MiB.
    pub max_request_body_mb: u64,
    /// Base domains for virtual-hosted-style requests
    /// (`bucket.<domain>`), lower-case, without port.
    pub s3_domains: Vec<String>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Writes that would leave less free space than this (MiB) on a
    /// filesystem backend are refused; the log warns below twice this.
    pub min_free_space_mb: u64,
    /// The region this endpoint answers as: SigV4 credential scopes must name it.
    pub region: String,
    /// A connection must deliver a request's headers within this many seconds.
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: u64,
    /// Local directory where S3 backends stage bodies and keep multipart
    /// uploads and their state (`<spool_dir>/<backend name>`).
    pub spool_dir: PathBuf,
    /// The client address comes from the last `X-Forwarded-For` entry (set
    /// by a reverse proxy in front) instead of the TCP peer.
    pub trust_proxy_headers: bool,
    /// Failed authentications from one address before answers slow down.
    pub auth_delay_after: u32,
    /// Failed authentications from one address before it is locked out (0: never).
    pub auth_lockout_after: u32,
    /// How long a lockout lasts, and how long failures are remembered.
    pub auth_lockout_secs: u64,
    /// `advanced.tls`: serve HTTPS with this certificate and key (PEM).
    pub tls: Option<TlsSettings>,
    /// Addresses that may scrape `/_/metrics` without the admin signature.
    pub metrics_allow_from: Vec<IpNet>,
    /// Admin UI session lifetime.
    pub session_ttl_secs: u64,
    /// Sessions one user may hold at once (the oldest end first).
    pub session_max_per_user: u64,
    /// A session works only from the address that logged in.
    pub session_bind_ip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for AdvancedSettings {
    fn default() -> Self {
        AdvancedSettings {
            cache_size_mb: DEFAULT_CACHE_SIZE_MB,
            max_delta_ratio: DEFAULT_MAX_DELTA_RATIO,
            max_object_size_for_delta_mb: DEFAULT_MAX_OBJECT_SIZE_FOR_DELTA_MB,
            delta_concurrency: DEFAULT_DELTA_CONCURRENCY,
            max_request_body_mb: DEFAULT_MAX_REQUEST_BODY_MB,
            s3_domains: vec![DEFAULT_S3_DOMAIN.to_string()],
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            min_free_space_mb: DEFAULT_MIN_FREE_SPACE_MB,
            region: DEFAULT_REGION.to_string(),
            header_read_timeout_secs: DEFAULT_HEADER_READ_TIMEOUT_SECS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            spool_dir: PathBuf::from(DEFAULT_SPOOL_DIR),
            trust_proxy_headers: false,
            auth_delay_after: 5,
            auth_lockout_after: 20,
            auth_lockout_secs: 300,
            tls: None,
            metrics_allow_from: Vec::new(),
            session_ttl_secs: 12 * 3600,
            session_max_per_user: 8,
            session_bind_ip: true,
        }
    }
}
