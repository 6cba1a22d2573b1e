//! Raw YAML (`raw.rs`) -> validated [`Settings`]: `${env:...}` expansion,
//! every cross-field rule, normalisation of shorthands, and application of
//! [`Overrides`]. Problems are collected (not returned at the first one) so
//! that `config lint` can list them all, each with a field path and, where
//! known, the line and column.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::raw::Sp as Spanned;

mod admission;
mod iam;
mod sso;

use super::Overrides;
use super::error::Problem;
use super::expand;
use super::iam::{ConfigDbSettings, IamSettings};
use super::raw::{
    Entries, RawAccess, RawAdvanced, RawBucket, RawConfig, RawEncryption, RawFuse, RawStorage, S,
};
use super::rules::{self, env_var_for_backend};
use super::settings::{
    AdminCredentials, AdvancedSettings, BackendKind, BackendSettings, BucketSettings,
    EncryptionMode, EncryptionSettings, FuseSettings, IamMode, IpNet, KeySource,
    SINGLETON_BACKEND_NAME, Secret, Settings,
};

/// The environment variable holding the singleton backend's key.
pub const SINGLETON_KEY_VAR: &str = "DGP_ENCRYPTION_KEY";

/// `load` (strict) or `lint` (an unset variable in an encryption `key:`
/// reference is a warning, and more advisory warnings are produced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Load,
    Lint,
}

pub(super) type Loc = Option<(u64, u64)>;

fn loc<T>(s: &Spanned<T>) -> Loc {
    let l = s.referenced;
    (l.line() > 0).then(|| (l.line(), l.column()))
}

const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"];
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

pub(super) struct Validator<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    mode: Mode,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// Borrowed view of the fields shared by `backend:` and `backends[i]`.
struct BackendSpec<'r> {
    prefix: String,
    at: Loc,
    kind: Option<&'r S>,
    path: Option<&'r S>,
    endpoint: Option<&'r S>,
    region: Option<&'r S>,
    force_path_style: Option<&'r Spanned<bool>>,
    access_key_id: Option<&'r S>,
    secret_access_key: Option<&'r S>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(env: &'a dyn Fn(&str) -> Option<String>, mode: Mode) -> Self {
        Validator {
            env,
            mode,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(&mut self, field: impl Into<String>, at: Loc, message: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            location: at,
            message: message.into(),
        });
    }

    fn warn(&mut self, field: &str, at: Loc, message: impl AsRef<str>) {
        let p = Problem {
            field: field.to_string(),
            location: at,
            message: message.as_ref().to_string(),
        };
        self.warnings.push(p.to_string());
    }

    /// Expands a string value; records a problem and returns `None` on error.
    fn text(&mut self, field: &str, s: &S) -> Option<String> {
        self.text_at(field, &s.value, loc(s))
    }

    fn text_at(&mut self, field: &str, value: &str, at: Loc) -> Option<String> {
        match expand::expand(value, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(field, at, e.to_string());
                None
            }
        }
    }

    fn opt_text(&mut self, field: &str, s: Option<&S>) -> Option<String> {
        s.and_then(|s| self.text(field, s))
    }

    /// Expanded and required to be non-blank.
    fn nonempty(&mut self, field: &str, s: &S) -> Option<String> {
        let v = self.text(field, s)?;
        if v.trim().is_empty() {
            self.problem(field, loc(s), "must not be empty");
            return None;
        }
        Some(v)
    }

    fn opt_nonempty(&mut self, field: &str, s: Option<&S>) -> Option<String> {
        s.and_then(|s| self.nonempty(field, s))
    }

    fn warn_if_literal_secret(&mut self, field: &str, s: Option<&S>) {
        if let Some(s) = s
            && !expand::has_reference(&s.value)
        {
            self.warn(
                field,
                loc(s),
                "secret written literally in the config file; prefer \"${env:NAME}\"",
            );
        }
    }

    // ---------------------------------------------------------------- top

    pub(super) fn build(&mut self, raw: RawConfig, overrides: &Overrides) -> Settings {
        let (listen_addr, log_level, advanced) =
            self.advanced(raw.advanced.unwrap_or_default(), overrides);
        // Seed 004's five-line config (`storage: {s3: URL, access_key_id,
        // secret_access_key}`) runs as written: without `access:`
        // credentials, clients sign with that same pair.
        let shorthand_creds = raw.storage.as_ref().is_some_and(|s| {
            s.s3.is_some() && s.access_key_id.is_some() && s.secret_access_key.is_some()
        });
        let (mut credentials, iam_mode, iam, config_db, sso) =
            self.access(raw.access, overrides, shorthand_creds);
        let (backends, default_backend, buckets) =
            self.storage(raw.storage, overrides.data_dir.as_ref());
        if credentials.is_none()
            && shorthand_creds
            && let [
                BackendSettings {
                    kind:
                        BackendKind::S3 {
                            access_key_id: Some(id),
                            secret_access_key: Some(secret),
                            ..
                        },
                    ..
                },
            ] = backends.as_slice()
        {
            credentials = Some(AdminCredentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
            });
            self.warnings.push(
                "clients sign with the `s3:` shorthand's access_key_id/secret_access_key (the \
                 upstream's credentials); set access.access_key_id and access.secret_access_key \
                 to give clients their own"
                    .to_owned(),
            );
        }
        let admission = self.admission(raw.admission.unwrap_or_default());
        let fuse = raw.fuse.as_ref().and_then(|f| self.fuse(f));
        Settings {
            listen_addr,
            log_level,
            credentials,
            iam_mode,
            iam,
            config_db,
            sso,
            backends,
            default_backend,
            buckets,
            admission,
            advanced,
            fuse,
            warnings: Vec::new(),
        }
    }

    // --------------------------------------------------------------- fuse

    fn fuse(&mut self, f: &Spanned<RawFuse>) -> Option<FuseSettings> {
        let Some(mp) = &f.value.mountpoint else {
            self.problem(
                "fuse.mountpoint",
                loc(f),
                "required when the fuse section is present",
            );
            return None;
        };
        let path = PathBuf::from(self.nonempty("fuse.mountpoint", mp)?.trim());
        if !path.is_absolute() {
            self.problem(
                "fuse.mountpoint",
                loc(mp),
                "must be an absolute path (e.g. /srv/deltaglider)",
            );
            return None;
        }
        let bucket = self.opt_nonempty("fuse.bucket", f.value.bucket.as_ref());
        if let (Some(b), Some(s)) = (&bucket, &f.value.bucket)
            && (b.contains('/') || b.starts_with('.'))
        {
            self.problem("fuse.bucket", loc(s), "not a bucket name");
            return None;
        }
        Some(FuseSettings {
            mountpoint: path,
            allow_other: f.value.allow_other.as_ref().is_some_and(|v| v.value),
            bucket,
        })
    }

    // ----------------------------------------------------------- advanced

    fn advanced(
        &mut self,
        a: RawAdvanced,
        ov: &Overrides,
    ) -> (SocketAddr, String, AdvancedSettings) {
        let default_addr: SocketAddr = super::settings::DEFAULT_LISTEN_ADDR
            .parse()
            .expect("valid constant");
        let mut listen_addr = default_addr;
        if let Some(s) = &a.listen_addr
            && let Some(v) = self.text("advanced.listen_addr", s)
        {
            match parse_addr(&v) {
                Ok(addr) => listen_addr = addr,
                Err(m) => self.problem("advanced.listen_addr", loc(s), m),
            }
        }
        if let Some(v) = &ov.listen_addr {
            match parse_addr(v) {
                Ok(addr) => listen_addr = addr,
                Err(m) => self.problem(
                    "listen_addr override (--listen-addr / DGP_LISTEN_ADDR)",
                    None,
                    m,
                ),
            }
        }

        let mut log_level = super::settings::DEFAULT_LOG_LEVEL.to_string();
        if let Some(s) = &a.log_level
            && let Some(v) = self.nonempty("advanced.log_level", s)
        {
            match check_log_filter(&v) {
                Ok(()) => log_level = v.trim().to_string(),
                Err(m) => self.problem("advanced.log_level", loc(s), m),
            }
        }
        if let Some(v) = &ov.log_level {
            match check_log_filter(v) {
                Ok(()) => log_level = v.trim().to_string(),
                Err(m) => self.problem("log_level override (--log-level / DGP_LOG_LEVEL)", None, m),
            }
        }

        let mut adv = AdvancedSettings::default();
        if let Some(v) = &a.cache_size_mb {
            adv.cache_size_mb = v.value;
        }
        if let Some(r) = &a.max_delta_ratio {
            if valid_ratio(r.value) {
                adv.max_delta_ratio = r.value;
            } else {
                self.problem("advanced.max_delta_ratio", loc(r), ratio_message(r.value));
            }
        }
        for (field, value, target) in [
            (
                "advanced.max_object_size_for_delta_mb",
                &a.max_object_size_for_delta_mb,
                &mut adv.max_object_size_for_delta_mb,
            ),
            (
                "advanced.max_request_body_mb",
                &a.max_request_body_mb,
                &mut adv.max_request_body_mb,
            ),
            (
                "advanced.delta_concurrency",
                &a.delta_concurrency,
                &mut adv.delta_concurrency,
            ),
            (
                "advanced.header_read_timeout_secs",
                &a.header_read_timeout_secs,
                &mut adv.header_read_timeout_secs,
            ),
            (
                "advanced.idle_timeout_secs",
                &a.idle_timeout_secs,
                &mut adv.idle_timeout_secs,
            ),
            (
                "advanced.max_connections",
                &a.max_connections,
                &mut adv.max_connections,
            ),
            (
                "advanced.session_ttl_secs",
                &a.session_ttl_secs,
                &mut adv.session_ttl_secs,
            ),
            (
                "advanced.session_max_per_user",
                &a.session_max_per_user,
                &mut adv.session_max_per_user,
            ),
        ] {
            if let Some(v) = value {
                if v.value == 0 {
                    self.problem(field, loc(v), "must be at least 1");
                } else {
                    *target = v.value;
                }
            }
        }
        if let Some(v) = &a.shutdown_grace_secs {
            adv.shutdown_grace_secs = v.value;
        }
        if let Some(v) = &a.min_free_space_mb {
            adv.min_free_space_mb = v.value;
        }
        if let Some(v) = &a.trust_proxy_headers {
            adv.trust_proxy_headers = v.value;
        }
        if let Some(v) = &a.session_bind_ip {
            adv.session_bind_ip = v.value;
        }
        if let Some(t) = &a.tls {
            let cert = self.opt_nonempty("advanced.tls.cert_file", t.value.cert_file.as_ref());
            let key = self.opt_nonempty("advanced.tls.key_file", t.value.key_file.as_ref());
            match (cert, key) {
                (Some(c), Some(k)) => {
                    adv.tls = Some(super::settings::TlsSettings {
                        cert_file: PathBuf::from(c.trim()),
                        key_file: PathBuf::from(k.trim()),
                    })
                }
                _ => self.problem(
                    "advanced.tls",
                    loc(t),
                    "needs both cert_file and key_file (PEM files)",
                ),
            }
        }
        if let Some(v) = &a.auth_delay_after {
            adv.auth_delay_after = v.value;
        }
        if let Some(v) = &a.auth_lockout_after {
            adv.auth_lockout_after = v.value;
        }
        for (i, v) in a.metrics_allow_from.iter().flatten().enumerate() {
            match IpNet::parse(v.value.trim()) {
                Ok(net) => adv.metrics_allow_from.push(net),
                Err(e) => self.problem(
                    format!("advanced.metrics_allow_from[{i}]"),
                    loc(v),
                    format!("not an IP address or CIDR: {e}"),
                ),
            }
        }
        if let Some(v) = &a.auth_lockout_secs {
            if v.value == 0 {
                self.problem("advanced.auth_lockout_secs", loc(v), "must be at least 1");
            } else {
                adv.auth_lockout_secs = v.value;
            }
        }
        if let Some(v) = &ov.trust_proxy_headers {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => adv.trust_proxy_headers = true,
                "0" | "false" | "no" | "off" => adv.trust_proxy_headers = false,
                _ => self.problem(
                    "DGP_TRUST_PROXY_HEADERS",
                    None,
                    format!("`{v}` is not a boolean (true or false)"),
                ),
            }
        }
        if let Some(d) = &a.spool_dir
            && let Some(v) = self.nonempty("advanced.spool_dir", d)
        {
            adv.spool_dir = PathBuf::from(v);
        }
        if let Some(r) = &a.region
            && let Some(v) = self.nonempty("advanced.region", r)
        {
            let v = v.trim();
            if v.len() <= 64
                && v.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            {
                adv.region = v.to_owned();
            } else {
                self.problem(
                    "advanced.region",
                    loc(r),
                    "a region name is lower-case letters, digits and '-' (for example us-east-1)",
                );
            }
        }
        if let Some(list) = &a.s3_domains {
            let mut domains = Vec::new();
            for (i, s) in list.iter().enumerate() {
                let field = format!("advanced.s3_domains[{i}]");
                if let Some(v) = self.nonempty(&field, s) {
                    let d = v.trim().trim_end_matches('.').to_ascii_lowercase();
                    match check_domain(&d) {
                        Ok(()) if !domains.contains(&d) => domains.push(d),
                        Ok(()) => {}
                        Err(m) => self.problem(field, loc(s), m),
                    }
                }
            }
            adv.s3_domains = domains;
        }
        (listen_addr, log_level, adv)
    }

    // ------------------------------------------------------------- access

    fn access(
        &mut self,
        raw: Option<RawAccess>,
        ov: &Overrides,
        upstream_creds_serve: bool,
    ) -> (
        Option<AdminCredentials>,
        IamMode,
        IamSettings,
        ConfigDbSettings,
        super::sso::SsoSettings,
    ) {
        let a = raw.unwrap_or_default();
        let mut key_id = self.opt_nonempty("access.access_key_id", a.access_key_id.as_ref());
        let mut secret =
            self.opt_nonempty("access.secret_access_key", a.secret_access_key.as_ref());
        self.warn_if_literal_secret("access.secret_access_key", a.secret_access_key.as_ref());
        let mut iam_mode = IamMode::Gui;
        if let Some(s) = &a.iam_mode {
            match self.text("access.iam_mode", s).as_deref() {
                Some("gui") => iam_mode = IamMode::Gui,
                Some("declarative") => iam_mode = IamMode::Declarative,
                Some(other) => self.problem(
                    "access.iam_mode",
                    loc(s),
                    format!("unknown IAM mode `{other}` (expected gui or declarative)"),
                ),
                None => {}
            }
        }
        if let Some(v) = ov.access_key_id.as_ref().filter(|v| !v.is_empty()) {
            key_id = Some(v.clone());
        }
        if let Some(v) = ov.secret_access_key.as_ref().filter(|v| !v.is_empty()) {
            secret = Some(v.clone());
        }
        let creds = match (key_id, secret) {
            (Some(access_key_id), Some(s)) => Some(AdminCredentials {
                access_key_id,
                secret_access_key: Secret::new(s),
            }),
            (None, None) => {
                if self.mode == Mode::Lint
                    && !upstream_creds_serve
                    && (self.env)("DGP_ACCESS_KEY_ID").is_none()
                {
                    self.warn(
                        "access",
                        None,
                        "no admin credentials in the file; the proxy needs DGP_ACCESS_KEY_ID and \
                         DGP_SECRET_ACCESS_KEY (or the CLI flags) at startup",
                    );
                }
                None
            }
            (Some(_), None) | (None, Some(_)) => {
                self.problem(
                    "access",
                    None,
                    "access_key_id and secret_access_key must be given together \
                     (in access:, or as DGP_ACCESS_KEY_ID / DGP_SECRET_ACCESS_KEY or CLI flags)",
                );
                None
            }
        };
        let iam = self.iam(
            &a,
            iam_mode,
            creds.as_ref().map(|c| c.access_key_id.as_str()),
        );
        let mut db = ConfigDbSettings::default();
        if let Some(v) = self.opt_nonempty("access.config_db_path", a.config_db_path.as_ref()) {
            db.path = PathBuf::from(v.trim());
        }
        db.key_file = self
            .opt_nonempty("access.config_db_key_file", a.config_db_key_file.as_ref())
            .map(|v| PathBuf::from(v.trim()));
        let sso = self.sso(&a, iam_mode);
        (creds, iam_mode, iam, db, sso)
    }

    // ------------------------------------------------------------ storage

    fn storage(
        &mut self,
        raw: Option<RawStorage>,
        data_dir: Option<&PathBuf>,
    ) -> (
        Vec<BackendSettings>,
        String,
        BTreeMap<String, BucketSettings>,
    ) {
        let Some(st) = raw else {
            return (
                vec![BackendSettings::embedded_default(data_dir.cloned())],
                SINGLETON_BACKEND_NAME.to_string(),
                BTreeMap::new(),
            );
        };

        let forms: Vec<&str> = [
            ("backend", st.backend.is_some()),
            ("filesystem", st.filesystem.is_some()),
            ("s3", st.s3.is_some()),
            ("backends", st.backends.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, present)| present.then_some(n))
        .collect();
        if forms.len() > 1 {
            self.problem(
                "storage",
                None,
                format!(
                    "takes exactly one of backend, filesystem, s3 or backends (found {})",
                    forms.join(" and ")
                ),
            );
        }

        // Siblings of the `s3:` shorthand.
        if st.s3.is_none() {
            let siblings = [
                ("region", st.region.as_ref().map(loc)),
                ("access_key_id", st.access_key_id.as_ref().map(loc)),
                ("secret_access_key", st.secret_access_key.as_ref().map(loc)),
                ("force_path_style", st.force_path_style.as_ref().map(loc)),
            ];
            for (name, at) in siblings {
                if let Some(at) = at {
                    self.problem(
                        format!("storage.{name}"),
                        at,
                        "only valid next to the `s3:` shorthand; inside `backend:` or each \
                         entry of `backends:` put it there instead",
                    );
                }
            }
        }

        let named = st.backends.is_some();
        if named {
            if let Some(enc) = &st.backend_encryption {
                self.problem(
                    "storage.backend_encryption",
                    loc(enc),
                    "only valid with a singleton backend (backend:, filesystem: or s3:); \
                     with backends: put `encryption:` inside each backend",
                );
            }
        } else if let Some(d) = &st.default_backend
            && self.text("storage.default_backend", d).as_deref() != Some(SINGLETON_BACKEND_NAME)
        {
            self.problem(
                "storage.default_backend",
                loc(d),
                "only valid with `backends:` (a singleton backend is always named `default`)",
            );
        }

        let defines_backend = !forms.is_empty();
        if defines_backend && let Some(dir) = data_dir {
            self.warnings.push(format!(
                "data dir {} (--data-dir / DGP_DATA_DIR) is ignored: the config file's \
                     storage section defines the backend",
                dir.display()
            ));
        }

        let (backends, default_backend) = if let Some(list) = &st.backends {
            self.named_backends(list, st.default_backend.as_ref())
        } else {
            let kind = if let Some(b) = &st.backend {
                let b_at = loc(b);
                let b = &b.value;
                self.backend_kind(BackendSpec {
                    prefix: "storage.backend".into(),
                    at: b_at,
                    kind: b.kind.as_ref(),
                    path: b.path.as_ref(),
                    endpoint: b.endpoint.as_ref(),
                    region: b.region.as_ref(),
                    force_path_style: b.force_path_style.as_ref(),
                    access_key_id: b.access_key_id.as_ref(),
                    secret_access_key: b.secret_access_key.as_ref(),
                })
            } else if let Some(p) = &st.filesystem {
                self.nonempty("storage.filesystem", p)
                    .map(|p| BackendKind::Filesystem {
                        path: PathBuf::from(p),
                    })
            } else if let Some(url) = &st.s3 {
                self.s3_kind(
                    "storage",
                    Some(url),
                    st.region.as_ref(),
                    st.force_path_style.as_ref(),
                    st.access_key_id.as_ref(),
                    st.secret_access_key.as_ref(),
                )
            } else {
                // No backend form: the embedded default (data dir honoured).
                Some(BackendSettings::embedded_default(data_dir.cloned()).kind)
            };
            let is_fs = matches!(kind, Some(BackendKind::Filesystem { .. }));
            let encryption = self.encryption(
                "storage.backend_encryption",
                st.backend_encryption.as_ref(),
                is_fs,
                SINGLETON_KEY_VAR,
            );
            let backends = kind
                .map(|kind| BackendSettings {
                    name: SINGLETON_BACKEND_NAME.to_string(),
                    kind,
                    encryption,
                })
                .into_iter()
                .collect();
            (backends, SINGLETON_BACKEND_NAME.to_string())
        };

        let buckets = match &st.buckets {
            Some(entries) => self.buckets(entries, &backends, &default_backend),
            None => BTreeMap::new(),
        };
        (backends, default_backend, buckets)
    }

    fn named_backends(
        &mut self,
        list: &Spanned<Vec<Spanned<super::raw::RawNamedBackend>>>,
        default_backend: Option<&S>,
    ) -> (Vec<BackendSettings>, String) {
        if list.value.is_empty() {
            self.problem(
                "storage.backends",
                loc(list),
                "must list at least one backend",
            );
        }
        let mut backends: Vec<BackendSettings> = Vec::new();
        let mut names: Vec<(String, usize)> = Vec::new();
        let mut vars: HashMap<String, (String, usize)> = HashMap::new();
        for (i, sb) in list.value.iter().enumerate() {
            let prefix = format!("storage.backends[{i}]");
            let b = &sb.value;
            let name = match &b.name {
                None => {
                    self.problem(format!("{prefix}.name"), loc(sb), "required");
                    None
                }
                Some(n) => self.text(&format!("{prefix}.name"), n).and_then(|v| {
                    if let Err(m) = rules::check_backend_name(&v) {
                        self.problem(
                            format!("{prefix}.name"),
                            loc(n),
                            format!("invalid backend name `{v}`: {m}"),
                        );
                        return None;
                    }
                    if let Some((_, j)) = names.iter().find(|(other, _)| *other == v) {
                        self.problem(
                            format!("{prefix}.name"),
                            loc(n),
                            format!("duplicate backend name `{v}` (also storage.backends[{j}])"),
                        );
                        return None;
                    }
                    let var = env_var_for_backend(&v);
                    if let Some((other, j)) = vars.get(&var) {
                        self.problem(
                            format!("{prefix}.name"),
                            loc(n),
                            format!(
                                "`{v}` and `{other}` (storage.backends[{j}]) map to the same key \
                                 variable {var}; rename one"
                            ),
                        );
                        return None;
                    }
                    names.push((v.clone(), i));
                    vars.insert(var, (v.clone(), i));
                    Some(v)
                }),
            };
            let kind = self.backend_kind(BackendSpec {
                prefix: prefix.clone(),
                at: loc(sb),
                kind: b.kind.as_ref(),
                path: b.path.as_ref(),
                endpoint: b.endpoint.as_ref(),
                region: b.region.as_ref(),
                force_path_style: b.force_path_style.as_ref(),
                access_key_id: b.access_key_id.as_ref(),
                secret_access_key: b.secret_access_key.as_ref(),
            });
            let is_fs = matches!(kind, Some(BackendKind::Filesystem { .. }));
            let default_var = env_var_for_backend(name.as_deref().unwrap_or("UNNAMED"));
            let encryption = self.encryption(
                &format!("{prefix}.encryption"),
                b.encryption.as_ref(),
                is_fs,
                &default_var,
            );
            if let (Some(name), Some(kind)) = (name, kind) {
                backends.push(BackendSettings {
                    name,
                    kind,
                    encryption,
                });
            }
        }

        let all_names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        let default = match default_backend {
            Some(d) => match self.text("storage.default_backend", d) {
                Some(v) if all_names.contains(&v.as_str()) => v,
                Some(v) => {
                    self.problem(
                        "storage.default_backend",
                        loc(d),
                        format!(
                            "no backend named `{v}` (backends: {})",
                            all_names.join(", ")
                        ),
                    );
                    String::new()
                }
                None => String::new(),
            },
            None if list.value.len() == 1 => {
                all_names.first().map(|s| s.to_string()).unwrap_or_default()
            }
            None if list.value.is_empty() => String::new(),
            None => {
                self.problem(
                    "storage.default_backend",
                    loc(list),
                    format!(
                        "required when more than one backend is defined (backends: {})",
                        all_names.join(", ")
                    ),
                );
                String::new()
            }
        };
        (backends, default)
    }

    fn backend_kind(&mut self, spec: BackendSpec<'_>) -> Option<BackendKind> {
        let p = &spec.prefix;
        let Some(kind_s) = spec.kind else {
            self.problem(format!("{p}.type"), spec.at, "required: filesystem or s3");
            return None;
        };
        let kind = self.text(&format!("{p}.type"), kind_s)?;
        match kind.as_str() {
            "filesystem" => {
                let s3_only = [
                    ("endpoint", spec.endpoint.map(loc)),
                    ("region", spec.region.map(loc)),
                    ("force_path_style", spec.force_path_style.map(loc)),
                    ("access_key_id", spec.access_key_id.map(loc)),
                    ("secret_access_key", spec.secret_access_key.map(loc)),
                ];
                for (field, at) in s3_only {
                    if let Some(at) = at {
                        self.problem(
                            format!("{p}.{field}"),
                            at,
                            "not valid for a filesystem backend",
                        );
                    }
                }
                match spec.path {
                    None => {
                        self.problem(
                            format!("{p}.path"),
                            spec.at,
                            "required for a filesystem backend",
                        );
                        None
                    }
                    Some(path) => {
                        self.nonempty(&format!("{p}.path"), path)
                            .map(|v| BackendKind::Filesystem {
                                path: PathBuf::from(v),
                            })
                    }
                }
            }
            "s3" => {
                if let Some(path) = spec.path {
                    self.problem(
                        format!("{p}.path"),
                        loc(path),
                        "not valid for an s3 backend (use endpoint)",
                    );
                }
                self.s3_kind(
                    p,
                    spec.endpoint,
                    spec.region,
                    spec.force_path_style,
                    spec.access_key_id,
                    spec.secret_access_key,
                )
            }
            other => {
                self.problem(
                    format!("{p}.type"),
                    loc(kind_s),
                    format!("unknown backend type `{other}` (expected filesystem or s3)"),
                );
                None
            }
        }
    }

    /// The S3 fields, for `backend:`, `backends[i]` and the `s3:` shorthand
    /// (where `prefix` is `storage` and the endpoint field is `s3`).
    fn s3_kind(
        &mut self,
        p: &str,
        endpoint: Option<&S>,
        region: Option<&S>,
        force_path_style: Option<&Spanned<bool>>,
        access_key_id: Option<&S>,
        secret_access_key: Option<&S>,
    ) -> Option<BackendKind> {
        let mut ok = true;
        let endpoint_field = if p == "storage" {
            "storage.s3".to_string()
        } else {
            format!("{p}.endpoint")
        };
        let endpoint = match endpoint {
            Some(e) => match self.nonempty(&endpoint_field, e) {
                Some(v) => match check_endpoint(v.trim()) {
                    Ok(()) => Some(v.trim().trim_end_matches('/').to_string()),
                    Err(m) => {
                        self.problem(&endpoint_field, loc(e), m);
                        ok = false;
                        None
                    }
                },
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let region = self.opt_nonempty(&format!("{p}.region"), region);
        let akid = self.opt_nonempty(&format!("{p}.access_key_id"), access_key_id);
        let secret = self.opt_nonempty(&format!("{p}.secret_access_key"), secret_access_key);
        self.warn_if_literal_secret(&format!("{p}.secret_access_key"), secret_access_key);
        if access_key_id.is_some() != secret_access_key.is_some() {
            let at = access_key_id.or(secret_access_key).map(loc).unwrap_or(None);
            self.problem(
                p,
                at,
                "access_key_id and secret_access_key must be given together (or both omitted \
                 to use the default AWS credential chain)",
            );
            ok = false;
        }
        ok.then(|| BackendKind::S3 {
            endpoint,
            region,
            force_path_style: force_path_style.map(|b| b.value).unwrap_or(false),
            access_key_id: akid,
            secret_access_key: secret.map(Secret::new),
        })
    }

    // --------------------------------------------------------- encryption

    fn encryption(
        &mut self,
        p: &str,
        raw: Option<&Spanned<RawEncryption>>,
        is_fs: bool,
        default_var: &str,
    ) -> EncryptionSettings {
        let mut out = EncryptionSettings::default();
        let Some(raw) = raw else { return out };
        let e = &raw.value;

        if let Some(m) = &e.mode {
            if let Some(v) = self.text(&format!("{p}.mode"), m) {
                match EncryptionMode::parse(v.trim()) {
                    Some(mode) => out.mode = mode,
                    None => {
                        let all: Vec<&str> =
                            EncryptionMode::ALL.iter().map(|m| m.as_str()).collect();
                        self.problem(
                            format!("{p}.mode"),
                            loc(m),
                            format!(
                                "unknown encryption mode `{v}` (expected one of {})",
                                all.join(", ")
                            ),
                        );
                    }
                }
            }
            if out.mode.is_native() && is_fs {
                self.problem(
                    format!("{p}.mode"),
                    loc(m),
                    "native SSE modes are S3-only; use aes256-gcm-proxy on filesystem backends",
                );
            }
        }
        let mode = out.mode;

        // sse-kms fields
        match (&e.kms_key_id, mode) {
            (Some(k), EncryptionMode::SseKms) => {
                out.kms_key_id = self.nonempty(&format!("{p}.kms_key_id"), k)
            }
            (None, EncryptionMode::SseKms) => self.problem(
                format!("{p}.kms_key_id"),
                loc(raw),
                "required when mode is sse-kms",
            ),
            (Some(k), _) => self.problem(
                format!("{p}.kms_key_id"),
                loc(k),
                "only valid with mode: sse-kms",
            ),
            (None, _) => {}
        }
        if let Some(b) = &e.bucket_key_enabled {
            if mode == EncryptionMode::SseKms {
                out.bucket_key_enabled = b.value;
            } else {
                self.problem(
                    format!("{p}.bucket_key_enabled"),
                    loc(b),
                    "only valid with mode: sse-kms",
                );
            }
        }

        // proxy-AES fields
        if mode == EncryptionMode::Aes256GcmProxy {
            if let (Some(_), Some(f)) = (&e.key, &e.key_file) {
                self.problem(
                    format!("{p}.key_file"),
                    loc(f),
                    "key and key_file are mutually exclusive",
                );
            }
            let hint = format!("or omit it and set {default_var}");
            out.key_source = if let Some(k) = &e.key {
                self.key_reference(&format!("{p}.key"), k, &hint)
            } else if let Some(f) = &e.key_file {
                self.nonempty(&format!("{p}.key_file"), f)
                    .map(|v| KeySource::File {
                        path: PathBuf::from(v),
                    })
            } else {
                if self.mode == Mode::Lint && (self.env)(default_var).is_none() {
                    self.warn(
                        &format!("{p}.mode"),
                        e.mode.as_ref().and_then(loc),
                        format!(
                            "the key comes from environment variable {default_var}, which is not set here; \
                             it must be set when the proxy starts"
                        ),
                    );
                }
                Some(KeySource::Env {
                    var: default_var.to_string(),
                })
            };
        } else {
            for (field, s) in [
                ("key", &e.key),
                ("key_file", &e.key_file),
                ("key_id", &e.key_id),
            ] {
                if let Some(s) = s {
                    self.problem(
                        format!("{p}.{field}"),
                        loc(s),
                        "only valid with mode: aes256-gcm-proxy",
                    );
                }
            }
        }
        if mode == EncryptionMode::Aes256GcmProxy {
            out.key_id = self.key_id(&format!("{p}.key_id"), e.key_id.as_ref());
        }

        // legacy (rotation shim), any mode
        if let (Some(_), Some(f)) = (&e.legacy_key, &e.legacy_key_file) {
            self.problem(
                format!("{p}.legacy_key_file"),
                loc(f),
                "legacy_key and legacy_key_file are mutually exclusive",
            );
        }
        out.legacy_key_source = if let Some(k) = &e.legacy_key {
            self.key_reference(&format!("{p}.legacy_key"), k, "or use legacy_key_file")
        } else if let Some(f) = &e.legacy_key_file {
            self.nonempty(&format!("{p}.legacy_key_file"), f)
                .map(|v| KeySource::File {
                    path: PathBuf::from(v),
                })
        } else {
            None
        };
        out.legacy_key_id = self.key_id(&format!("{p}.legacy_key_id"), e.legacy_key_id.as_ref());
        if let Some(id) = &e.legacy_key_id {
            if e.legacy_key.is_none() && e.legacy_key_file.is_none() {
                self.problem(
                    format!("{p}.legacy_key_id"),
                    loc(id),
                    "requires legacy_key or legacy_key_file",
                );
            }
            if out.legacy_key_id.is_some() && out.legacy_key_id == out.key_id {
                self.problem(
                    format!("{p}.legacy_key_id"),
                    loc(id),
                    "must differ from key_id",
                );
            }
        }
        out
    }

    fn key_id(&mut self, field: &str, s: Option<&S>) -> Option<String> {
        let s = s?;
        let v = self.text(field, s)?;
        match rules::check_key_id(&v) {
            Ok(()) => Some(v),
            Err(m) => {
                self.problem(field, loc(s), format!("invalid key id: {m}"));
                None
            }
        }
    }

    /// A `key:`/`legacy_key:` value: only `${env:NAME}` is accepted. The
    /// value is never read here, only whether the variable is set.
    fn key_reference(&mut self, field: &str, s: &S, hint: &str) -> Option<KeySource> {
        let Some(name) = expand::whole_reference(&s.value) else {
            // Never echo the value: it may be a key.
            self.problem(
                field,
                loc(s),
                format!(
                    "a literal key is not allowed: keys never live in config files; \
                     write \"${{env:VARIABLE}}\" {hint}"
                ),
            );
            return None;
        };
        if (self.env)(name).is_none() {
            match self.mode {
                Mode::Lint => self.warn(
                    field,
                    loc(s),
                    format!("${{env:{name}}} is unresolved: {name} is not set here; it must be set when the proxy starts"),
                ),
                Mode::Load => self.problem(field, loc(s), format!("environment variable {name} is not set")),
            }
        }
        Some(KeySource::Env {
            var: name.to_string(),
        })
    }

    // ------------------------------------------------------------ buckets

    fn buckets(
        &mut self,
        entries: &Entries<Option<RawBucket>>,
        backends: &[BackendSettings],
        default_backend: &str,
    ) -> BTreeMap<String, BucketSettings> {
        let mut out = BTreeMap::new();
        let mut real: HashMap<(String, String), String> = HashMap::new();
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        for (key, value) in &entries.0 {
            let name = key.value.clone();
            let p = format!("storage.buckets.{name}");
            let mut ok = true;
            if let Err(m) = rules::check_bucket_name(&name) {
                self.problem(&p, loc(key), format!("invalid bucket name `{name}`: {m}"));
                ok = false;
            }
            let empty = RawBucket::default();
            let b = value.as_ref().unwrap_or(&empty);

            let backend = match &b.backend {
                Some(s) => match self.nonempty(&format!("{p}.backend"), s) {
                    Some(v) if names.contains(&v.as_str()) => v,
                    Some(v) => {
                        self.problem(
                            format!("{p}.backend"),
                            loc(s),
                            format!("no backend named `{v}` (backends: {})", names.join(", ")),
                        );
                        ok = false;
                        v
                    }
                    None => {
                        ok = false;
                        String::new()
                    }
                },
                None => default_backend.to_string(),
            };
            let real_name = match &b.alias {
                Some(s) => match self.nonempty(&format!("{p}.alias"), s) {
                    Some(v) => {
                        if let Err(m) = rules::check_bucket_name(&v) {
                            self.problem(
                                format!("{p}.alias"),
                                loc(s),
                                format!("invalid bucket name `{v}`: {m}"),
                            );
                            ok = false;
                        }
                        v
                    }
                    None => {
                        ok = false;
                        name.clone()
                    }
                },
                None => name.clone(),
            };
            let max_delta_ratio = b.max_delta_ratio.as_ref().and_then(|r| {
                if valid_ratio(r.value) {
                    Some(r.value)
                } else {
                    self.problem(
                        format!("{p}.max_delta_ratio"),
                        loc(r),
                        ratio_message(r.value),
                    );
                    None
                }
            });
            let public_prefixes = match (&b.public, &b.public_prefixes) {
                (Some(pb), Some(_)) => {
                    self.problem(
                        &p,
                        loc(pb),
                        "public and public_prefixes are mutually exclusive \
                         (public: true is shorthand for public_prefixes: [\"\"])",
                    );
                    Vec::new()
                }
                (Some(pb), None) => {
                    if pb.value {
                        vec![String::new()]
                    } else {
                        Vec::new()
                    }
                }
                (None, Some(list)) => {
                    let mut v = Vec::new();
                    for (i, s) in list.value.iter().enumerate() {
                        if let Some(prefix) = self.text(&format!("{p}.public_prefixes[{i}]"), s)
                            && !v.contains(&prefix)
                        {
                            v.push(prefix);
                        }
                    }
                    v
                }
                (None, None) => Vec::new(),
            };
            let mut types = |field: &str, list: &Option<Vec<S>>| -> Vec<String> {
                let mut v = Vec::new();
                for (i, s) in list.iter().flatten().enumerate() {
                    let f = format!("{p}.{field}[{i}]");
                    if let Some(t) = self.nonempty(&f, s) {
                        let t = t.trim().to_ascii_lowercase();
                        if !t.starts_with('.') || t.len() < 2 || t.contains('/') {
                            self.problem(
                                f,
                                loc(s),
                                "a file-name suffix with its dot, e.g. \".fw\" or \".tar.gz\"",
                            );
                        } else if !v.contains(&t) {
                            v.push(t);
                        }
                    }
                }
                v
            };
            let delta_types = types("delta_types", &b.delta_types);
            let passthrough_types = types("passthrough_types", &b.passthrough_types);
            if ok {
                let k = (backend.clone(), real_name.clone());
                if let Some(other) = real.get(&k) {
                    self.problem(
                        &p,
                        loc(key),
                        format!(
                            "maps to bucket `{real_name}` on backend `{backend}`, as does bucket `{other}`"
                        ),
                    );
                } else {
                    real.insert(k, name.clone());
                }
            }
            out.insert(
                name,
                BucketSettings {
                    backend,
                    real_name,
                    compression: b.compression,
                    max_delta_ratio,
                    public_prefixes,
                    delta_types,
                    passthrough_types,
                },
            );
        }
        out
    }
}

// ------------------------------------------------------------- helpers

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.trim().parse().map_err(|_| {
        format!("`{v}` is not an IP:port socket address (e.g. 0.0.0.0:9000 or [::]:9000; host names are not accepted)")
    })
}

fn valid_ratio(r: f64) -> bool {
    r.is_finite() && r > 0.0 && r <= 1.0
}

fn ratio_message(r: f64) -> String {
    format!("must be greater than 0 and at most 1 (is {r})")
}

/// A light check of a `tracing` filter: not empty, and `target=level`
/// directives name a known level. Span filters (`[...]`) are not checked.
fn check_log_filter(v: &str) -> Result<(), String> {
    if v.trim().is_empty() {
        return Err("must not be empty".into());
    }
    for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if d.contains('[') {
            continue;
        }
        if d.contains(char::is_whitespace) {
            return Err(format!("directive `{d}` contains whitespace"));
        }
        if let Some((_, level)) = d.rsplit_once('=')
            && !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "unknown level `{level}` in `{d}` (expected one of {})",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A DNS name (lower-case) for virtual-hosted-style requests: no scheme,
/// no port, labels of `[a-z0-9-]`.
fn check_domain(d: &str) -> Result<(), String> {
    if d.contains("://") || d.contains(':') || d.contains('/') {
        return Err(format!(
            "`{d}` must be a bare domain name (no scheme, port or path)"
        ));
    }
    if d.len() > 253 {
        return Err("domain name longer than 253 characters".into());
    }
    for label in d.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!("`{d}` is not a valid domain name"));
        }
    }
    Ok(())
}

/// `http://` or `https://` followed by a host.
fn check_endpoint(v: &str) -> Result<(), String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| format!("`{v}` must be an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || v.contains(char::is_whitespace) {
        return Err(format!("`{v}` is not a valid endpoint URL"));
    }
    Ok(())
}
