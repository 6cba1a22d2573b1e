//! Opening what the settings name: each backend with its keys (checked
//! against its key check records), its engine, the gateway over them, and
//! the admin credential. Startup (`server`), config reload (`reload`) and the
//! operator commands (`ops`) all open through here.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{
    BackendKeys, BackendKind, BackendSettings, EncryptionKey, EncryptionMode, KeySource,
    ResolvedKeys, Settings,
};
use crate::engine::ObjectStore;
use crate::engine::crypto::{Kek, KeyId};
use crate::engine::delta::{BucketPolicy, DeltaConfig};
use crate::engine::encryption::{Encryption, KeyringNotice, NamedKey};
use crate::gateway::{BucketRoute, Gateway};
use crate::s3::auth::{CredentialStore, SecretKey};
use crate::storage::s3::{BucketScope, S3Backend, S3Config, Sse};
use crate::storage::{Backend, FsBackend, StorageError};

/// The single admin credential from the environment or the `access` section.
struct AdminCredential {
    access_key_id: String,
    secret: SecretKey,
}

impl CredentialStore for AdminCredential {
    fn secret_for(&self, access_key_id: &str) -> Option<SecretKey> {
        (access_key_id == self.access_key_id)
            .then(|| SecretKey::new(self.secret.expose().to_owned()))
    }
}

/// No credentials at all (open access): every signed request is refused.
struct NoCredentials;
impl CredentialStore for NoCredentials {
    fn secret_for(&self, _: &str) -> Option<SecretKey> {
        None
    }
}

fn key_source_name(src: Option<&KeySource>) -> String {
    match src {
        Some(KeySource::Env { var }) => var.clone(),
        Some(KeySource::File { path }) => path.display().to_string(),
        None => "-".into(),
    }
}

fn named_key(key: Option<&EncryptionKey>, id: Option<&String>) -> anyhow::Result<Option<NamedKey>> {
    let Some(key) = key else { return Ok(None) };
    let kek = Kek::from_bytes(*key.expose());
    let id = match id {
        Some(id) => KeyId::new(id).map_err(|e| anyhow::anyhow!("invalid key id {id:?}: {e}"))?,
        None => KeyId::derive(&kek),
    };
    Ok(Some(NamedKey { id, kek }))
}

/// The keys of one backend, as configured (checked by [`check_keyring`]).
fn backend_encryption(
    b: &BackendSettings,
    keys: Option<&BackendKeys>,
) -> anyhow::Result<Encryption> {
    let (current, legacy) = match keys {
        Some(k) => (
            named_key(k.key.as_ref(), k.key_id.as_ref())?,
            named_key(k.legacy_key.as_ref(), k.legacy_key_id.as_ref())?,
        ),
        None => (None, None),
    };
    if b.encryption.mode == EncryptionMode::Aes256GcmProxy && current.is_none() {
        bail!(
            "backend '{}' is configured for aes256-gcm-proxy but no key was given",
            b.name
        );
    }
    Ok(Encryption { current, legacy })
}

/// Checks a backend's keys against its key check records (and, when a
/// record is missing, against its objects), refusing a wrong key.
pub fn check_keyring(
    b: &BackendSettings,
    store: &ObjectStore,
    serving: bool,
) -> anyhow::Result<()> {
    let enc = store.encryption();
    let notices = store.open_keyring(
        (
            &key_source_name(b.encryption.key_source.as_ref()),
            &key_source_name(b.encryption.legacy_key_source.as_ref()),
        ),
        serving,
    )?;
    for n in notices {
        match n {
            KeyringNotice::FirstEnabled(id) => tracing::warn!(
                backend = %b.name,
                key_id = %id,
                "NOTICE: encryption at rest enabled for the first time on this backend. STORE THE KEY ({}) OFF-BOX NOW (password manager, vault, sealed envelope): without it the encrypted objects are unrecoverable",
                key_source_name(b.encryption.key_source.as_ref())
            ),
            KeyringNotice::NewKeyId(id) => {
                tracing::warn!(backend = %b.name, key_id = %id, "new encryption key id recorded; store this key off-box")
            }
            KeyringNotice::Recreated { key_id, objects } => tracing::warn!(
                backend = %b.name,
                key_id = %key_id,
                objects,
                "the key check record for this key id was missing; the configured key opens the objects stamped with it{}",
                if serving { ", so the record was written again" } else { "" }
            ),
        }
    }
    if let Some(k) = &enc.current {
        tracing::info!(backend = %b.name, key_id = %k.id, "encryption at rest: aes256-gcm-proxy");
    }
    Ok(())
}

/// Whether the backend cannot be asked right now (an upstream that does not
/// answer), as opposed to answering with a refusal.
pub fn unreachable(store: &ObjectStore) -> bool {
    store.backend_kind() == "s3" && store.health().is_err()
}

/// The upstream of `store` did not answer when its keys were to be checked
/// (`e`): writes are held (503) and a thread checks again every few seconds;
/// when the check passes writes are released, when it fails (a wrong key)
/// they stay held and the log says why. The thread ends when the engine is
/// dropped (a reload replaced it).
pub fn defer_key_check(b: &BackendSettings, store: &Arc<ObjectStore>, e: &anyhow::Error) {
    tracing::error!(backend = %b.name, error = %format!("{e:#}"), "cannot check this backend's encryption keys: its upstream does not answer; writes to its buckets answer 503 until the check passes");
    store.hold_writes("the upstream did not answer when the keys were to be checked".into());
    let name = b.name.clone();
    let (b, weak) = (b.clone(), Arc::downgrade(store));
    let spawned = std::thread::Builder::new()
        .name(format!("dg-keycheck-{name}"))
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3));
                let Some(store) = weak.upgrade() else { return };
                if unreachable(&store) {
                    continue;
                }
                match check_keyring(&b, &store, true) {
                    Ok(()) => {
                        // Interrupted completions are finished before any
                        // new write can race them.
                        if let Err(e) = store.recover_uploads() {
                            tracing::error!(backend = %b.name, error = %e, "recovering multipart uploads failed");
                        }
                        store.release_writes();
                        tracing::info!(backend = %b.name, "encryption keys checked against the upstream; writes accepted");
                        return;
                    }
                    Err(_) if unreachable(&store) => continue,
                    Err(e) => {
                        let why = format!("{e:#}");
                        tracing::error!(backend = %b.name, error = %why, "the configured key is refused; writes to this backend stay paused until the configuration is fixed (then reload or restart)");
                        store.hold_writes(why);
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(backend = %name, error = %e, "could not start the key check thread");
    }
}

/// The delta stage of one backend: the global defaults and the policy of
/// each bucket routed to it (by its name on the backend).
fn delta_config(settings: &Settings, backend: &str) -> DeltaConfig {
    let adv = &settings.advanced;
    let default_policy = BucketPolicy {
        compression: true,
        max_delta_ratio: adv.max_delta_ratio,
        delta_types: Vec::new(),
        passthrough_types: Vec::new(),
    };
    let buckets = settings
        .buckets
        .values()
        .filter(|b| b.backend == backend)
        .map(|b| {
            (
                b.real_name.clone(),
                BucketPolicy {
                    compression: b.compression.unwrap_or(true),
                    max_delta_ratio: b.max_delta_ratio.unwrap_or(adv.max_delta_ratio),
                    delta_types: b.delta_types.clone(),
                    passthrough_types: b.passthrough_types.clone(),
                },
            )
        })
        .collect();
    DeltaConfig {
        default_policy,
        buckets,
        max_object_size: adv.max_object_size_for_delta_mb.saturating_mul(1024 * 1024),
        cache_bytes: adv.cache_size_mb.saturating_mul(1024 * 1024),
        concurrency: adv.delta_concurrency as usize,
    }
}

/// An endpoint whose host is an IP address or `localhost` cannot be
/// addressed virtual-hosted style (`bucket.127.0.0.1` does not resolve).
fn host_needs_path_style(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok()
}

/// Upstream credentials: the config's pair, else
/// `DGP_BACKEND_<NAME>_ACCESS_KEY_ID` / `_SECRET_ACCESS_KEY`, else `None`
/// (the SDK's standard chain: AWS_* variables, profile, instance role).
fn upstream_credentials(
    backend: &str,
    id: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<Option<(String, String)>> {
    if let (Some(id), Some(secret)) = (id, secret) {
        return Ok(Some((id.to_owned(), secret.to_owned())));
    }
    let id_var = crate::config::backend_env_var(backend, "ACCESS_KEY_ID");
    let secret_var = crate::config::backend_env_var(backend, "SECRET_ACCESS_KEY");
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.trim().is_empty());
    match (get(&id_var), get(&secret_var)) {
        (Some(id), Some(secret)) => Ok(Some((id.trim().to_owned(), secret.trim().to_owned()))),
        (None, None) => Ok(None),
        _ => bail!("backend '{backend}': set both {id_var} and {secret_var}, or neither"),
    }
}

/// One backend as opened: its settings, the storage it talks to, its engine.
pub struct Opened {
    pub settings: BackendSettings,
    pub backend: Arc<dyn Backend>,
    pub store: Arc<ObjectStore>,
}

/// Where a backend keeps its bytes, to refuse two backends on one place
/// (each would clean the other's temp files and take its own locks).
pub fn storage_place(b: &BackendSettings, settings: &Settings) -> std::path::PathBuf {
    match &b.kind {
        BackendKind::Filesystem { path } => path.canonicalize().unwrap_or_else(|_| path.clone()),
        BackendKind::S3 { .. } => {
            let spool = settings.advanced.spool_dir.join(&b.name);
            spool.canonicalize().unwrap_or(spool)
        }
    }
}

/// Opens the storage of one backend. `serving`: the server itself, the only
/// user of this backend (removes temp files left by a crash); otherwise
/// someone else may be using it and nothing is cleaned.
pub fn open_backend(
    b: &BackendSettings,
    settings: &Settings,
    serving: bool,
) -> anyhow::Result<Arc<dyn Backend>> {
    if b.encryption.mode.is_native() && !matches!(b.kind, BackendKind::S3 { .. }) {
        bail!("backend '{}': native SSE modes are S3-only", b.name);
    }
    Ok(match &b.kind {
        BackendKind::Filesystem { path } => {
            let fs = if serving {
                FsBackend::open(path)
            } else {
                FsBackend::open_shared(path)
            }
            .with_context(|| {
                format!(
                    "opening filesystem backend '{}' at {}",
                    b.name,
                    path.display()
                )
            })?;
            if serving {
                let (total, free) = fs.disk_space().unwrap_or((0, 0));
                tracing::info!(
                    backend = %b.name,
                    root = %fs.root().display(),
                    disk_total_gib = total >> 30,
                    disk_free_gib = free >> 30,
                    "filesystem backend ready"
                );
            }
            Arc::new(fs)
        }
        BackendKind::S3 {
            endpoint,
            region,
            force_path_style,
            access_key_id,
            secret_access_key,
        } => {
            let cfg = S3Config {
                name: b.name.clone(),
                endpoint: endpoint.clone(),
                region: region.clone(),
                force_path_style: *force_path_style
                    || endpoint.as_deref().is_some_and(host_needs_path_style),
                credentials: upstream_credentials(
                    &b.name,
                    access_key_id.as_deref(),
                    secret_access_key.as_ref().map(|s| s.expose()),
                )?,
                spool: settings.advanced.spool_dir.join(&b.name),
                sse: match b.encryption.mode {
                    EncryptionMode::SseS3 => Some(Sse::S3),
                    EncryptionMode::SseKms => Some(Sse::Kms {
                        key_id: b.encryption.kms_key_id.clone().unwrap_or_default(),
                        bucket_key: b.encryption.bucket_key_enabled,
                    }),
                    _ => None,
                },
                scope: bucket_scope(b, settings),
            };
            let spool = cfg.spool.clone();
            let s3 = S3Backend::open(cfg, serving).with_context(|| {
                format!(
                    "opening the spool of s3 backend '{}' at {}",
                    b.name,
                    spool.display()
                )
            })?;
            match s3.check() {
                Ok(()) => {}
                // Unreachable: start anyway; its buckets answer 503 until
                // it is back, and /_/api/status shows it.
                Err(StorageError::Upstream {
                    status: None,
                    ref message,
                    ..
                }) => {
                    tracing::error!(backend = %b.name, endpoint = %s3.endpoint(), error = %message, "s3 backend unreachable; its buckets answer 503 ServiceUnavailable until it answers")
                }
                Err(e) => bail!(
                    "s3 backend '{}': the upstream at {} refuses ListBuckets with the configured credentials: {e}",
                    b.name,
                    s3.endpoint()
                ),
            }
            if serving {
                tracing::info!(
                    backend = %b.name,
                    endpoint = %s3.endpoint(),
                    spool = %s3.spool().display(),
                    "s3 backend ready"
                );
            }
            Arc::new(s3)
        }
    })
}

/// The upstream buckets clients reach through backend `b` (see
/// [`BucketScope`]): what the routes send there, and for the default
/// backend every name the routes do not send elsewhere.
pub fn bucket_scope(b: &BackendSettings, settings: &Settings) -> BucketScope {
    if settings.default_backend == b.name {
        BucketScope::AllExcept(
            settings
                .buckets
                .iter()
                .filter(|(_, r)| r.backend != b.name)
                .map(|(name, _)| name.clone())
                .collect(),
        )
    } else {
        BucketScope::Only(
            settings
                .buckets
                .values()
                .filter(|r| r.backend == b.name)
                .map(|r| r.real_name.clone())
                .collect(),
        )
    }
}

/// The engine settings of backend `b`: free-space reserve and delta policy.
pub fn engine_settings(b: &BackendSettings, settings: &Settings) -> (u64, DeltaConfig) {
    (
        settings
            .advanced
            .min_free_space_mb
            .saturating_mul(1024 * 1024),
        delta_config(settings, &b.name),
    )
}

/// The engine of backend `b` over `backend` with its configured keys, not
/// yet checked against the key check records (see [`check_keyring`]).
pub fn new_engine(
    b: &BackendSettings,
    settings: &Settings,
    keys: &ResolvedKeys,
    backend: Arc<dyn Backend>,
) -> anyhow::Result<ObjectStore> {
    let enc = backend_encryption(b, keys.get(&b.name))?;
    let (min_free, delta) = engine_settings(b, settings);
    Ok(ObjectStore::new(b.name.clone(), backend, enc)
        .with_min_free(min_free)
        .with_delta(delta))
}

/// The configured keys of backend `b`.
pub fn encryption_of(b: &BackendSettings, keys: &ResolvedKeys) -> anyhow::Result<Encryption> {
    backend_encryption(b, keys.get(&b.name))
}

/// Opens every backend with its keys. `serving`: the server itself (removes
/// temp files left by a crash, records a new key id, finishes interrupted
/// multipart completions); otherwise an operator command that may run next
/// to a live server and changes nothing.
pub fn open_backends(
    settings: &Settings,
    keys: &ResolvedKeys,
    serving: bool,
) -> anyhow::Result<Vec<Opened>> {
    let mut out: Vec<Opened> = Vec::new();
    let mut places = BTreeMap::new();
    for b in &settings.backends {
        if let Some(other) = places.insert(storage_place(b, settings), b.name.clone()) {
            bail!(
                "backends '{other}' and '{}' store in the same place ({}); give each its own",
                b.name,
                storage_place(b, settings).display()
            );
        }
        let backend = open_backend(b, settings, serving)?;
        let store = Arc::new(new_engine(b, settings, keys, backend.clone())?);
        match check_keyring(b, &store, serving) {
            Ok(()) => {}
            Err(e) if serving && unreachable(&store) => defer_key_check(b, &store, &e),
            Err(e) => return Err(e),
        }
        if serving && store.writes_held().is_none() {
            store
                .recover_uploads()
                .with_context(|| format!("recovering multipart uploads on backend '{}'", b.name))?;
        }
        out.push(Opened {
            settings: b.clone(),
            backend,
            store,
        });
    }
    Ok(out)
}

/// [`open_backends`], the engines by backend name.
pub fn open_stores(
    settings: &Settings,
    keys: &ResolvedKeys,
    serving: bool,
) -> anyhow::Result<BTreeMap<String, Arc<ObjectStore>>> {
    Ok(open_backends(settings, keys, serving)?
        .into_iter()
        .map(|o| (o.settings.name.clone(), o.store))
        .collect())
}

/// The gateway over `stores` with the settings' routes and policies, and
/// the route switches of finished migrate jobs (see [`migrated_routes`]).
pub fn gateway(
    settings: &Settings,
    stores: BTreeMap<String, Arc<ObjectStore>>,
    open_access: bool,
) -> Gateway {
    let mut routes: BTreeMap<String, BucketRoute> = settings
        .buckets
        .iter()
        .map(|(name, bs)| {
            (
                name.clone(),
                BucketRoute {
                    store: bs.backend.clone(),
                    real_name: bs.real_name.clone(),
                    public_prefixes: bs.public_prefixes.clone(),
                },
            )
        })
        .collect();
    migrated_routes(settings, &stores, &mut routes);
    Gateway::new(
        stores,
        settings.default_backend.clone(),
        routes,
        open_access,
    )
    .with_admission(crate::gateway::Admission::new(&settings.admission))
}

/// A finished migrate job sends its bucket to the destination while the
/// config still routes it to the source; once the config names another
/// place for the bucket, the config wins.
fn migrated_routes(
    settings: &Settings,
    stores: &BTreeMap<String, Arc<ObjectStore>>,
    routes: &mut BTreeMap<String, BucketRoute>,
) {
    use crate::engine::migrate::Phase;
    for store in stores.values() {
        for j in store.migrations() {
            if j.phase != Phase::Done {
                continue;
            }
            let configured = routes.get(&j.bucket).map_or_else(
                || (settings.default_backend.clone(), j.bucket.clone()),
                |r| (r.store.clone(), r.real_name.clone()),
            );
            if configured != (j.from_backend.clone(), j.from_bucket.clone()) {
                continue;
            }
            if !stores.contains_key(&j.to_backend) {
                tracing::error!(bucket = %j.bucket, backend = %j.to_backend, "a finished migrate job moved this bucket to a backend that is no longer configured; it is served from its old copy, read-only");
                continue;
            }
            tracing::warn!(
                bucket = %j.bucket,
                backend = %j.to_backend,
                "served by backend '{}' since a migrate job moved it; make it permanent with `{}: {{backend: {}, alias: {}}}` under storage.buckets",
                j.to_backend,
                j.bucket,
                j.to_backend,
                j.to_bucket
            );
            let public_prefixes = routes
                .get(&j.bucket)
                .map(|r| r.public_prefixes.clone())
                .unwrap_or_default();
            routes.insert(
                j.bucket.clone(),
                BucketRoute {
                    store: j.to_backend.clone(),
                    real_name: j.to_bucket.clone(),
                    public_prefixes,
                },
            );
        }
    }
}

/// Opens every backend and builds the gateway (`serving`: see [`open_backends`]).
pub fn open_gateway(
    settings: &Settings,
    keys: &ResolvedKeys,
    open_access: bool,
    serving: bool,
) -> anyhow::Result<Gateway> {
    let stores = open_stores(settings, keys, serving)?;
    Ok(gateway(settings, stores, open_access))
}

/// Who may sign requests: the admin credential, or nobody with
/// `open_access` (every request is anonymous and allowed; loudly logged).
pub fn credentials(
    settings: &Settings,
    open_access: bool,
) -> anyhow::Result<Arc<dyn CredentialStore>> {
    Ok(match &settings.credentials {
        Some(c) => Arc::new(AdminCredential {
            access_key_id: c.access_key_id.clone(),
            secret: SecretKey::new(c.secret_access_key.expose().to_owned()),
        }),
        None if open_access => {
            tracing::warn!(
                "!!! OPEN ACCESS: no credentials are configured and --open-access is set: ANYONE who can reach this port can read, write and delete every object !!!"
            );
            Arc::new(NoCredentials)
        }
        None => bail!(
            "no credentials configured: set DGP_ACCESS_KEY_ID and DGP_SECRET_ACCESS_KEY (or access.access_key_id and \
             access.secret_access_key in the config file); to run without authentication on purpose, pass \
             --open-access or set DGP_OPEN_ACCESS=true"
        ),
    })
}

/// The protocol settings of the S3 endpoint.
pub fn protocol(settings: &Settings, credentials: Arc<dyn CredentialStore>) -> crate::s3::Protocol {
    crate::s3::Protocol {
        credentials,
        domains: settings.advanced.s3_domains.clone(),
        region: settings.advanced.region.clone(),
        max_body: settings
            .advanced
            .max_request_body_mb
            .saturating_mul(1024 * 1024),
        trust_proxy_headers: settings.advanced.trust_proxy_headers,
        lockout: crate::s3::lockout::LockoutSettings {
            delay_after: settings.advanced.auth_delay_after,
            lockout_after: settings.advanced.auth_lockout_after,
            lockout: std::time::Duration::from_secs(settings.advanced.auth_lockout_secs),
        },
        metrics_allow_from: settings.advanced.metrics_allow_from.clone(),
        sessions: crate::admin::session::SessionSettings {
            ttl: std::time::Duration::from_secs(settings.advanced.session_ttl_secs),
            max_per_user: settings.advanced.session_max_per_user as usize,
            bind_ip: settings.advanced.session_bind_ip,
        },
        sso: Arc::new(settings.sso.clone()),
    }
}

/// Keys are in this process's memory: no core dumps, no ptrace by other
/// unprivileged processes.
pub fn protect_keys(keys: &ResolvedKeys) {
    if keys.is_empty() {
        return;
    }
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "could not mark the process non-dumpable");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ip_and_localhost_endpoints_are_path_style() {
        for (ep, want) in [
            ("http://127.0.0.1:9000", true),
            ("http://localhost:9000/", true),
            ("https://[::1]:443", true),
            ("http://10.0.0.5", true),
            ("https://fsn1.your-objectstorage.com", false),
            ("https://s3.eu-west-1.amazonaws.com:443/x", false),
        ] {
            assert_eq!(super::host_needs_path_style(ep), want, "{ep}");
        }
    }
}
