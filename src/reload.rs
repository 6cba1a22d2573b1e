//! Config reload (SIGHUP, `POST /_/api/config/reload`): re-reads the
//! configuration file, checks it as startup does, and swaps the new gateway
//! (backends, routes, aliases, bucket policies, keys) and protocol settings
//! (credentials, domains, region, body limit) in under live requests. A
//! request keeps the snapshot it started with, so nothing in flight fails.
//! Anything wrong with the new file keeps the running configuration, and the
//! answer says why.
//!
//! A backend whose storage settings are unchanged keeps its open storage;
//! its engine is replaced by a successor that shares the upload and delta
//! locks ([`ObjectStore::reconfigured`]), so requests on the old and the new
//! configuration never race. A backend whose storage settings changed is
//! opened again without cleaning anything (requests on the old instance may
//! still be writing temp files there). A new backend is opened as at startup.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{Overrides, Settings};
use crate::engine::ObjectStore;
use crate::gateway::Shared;
use crate::open::{self, Opened};
use crate::s3::Protocol;

/// Where the configuration comes from: what `serve` was started with.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: Option<PathBuf>,
    pub overrides: Overrides,
    /// `--open-access` (applies only while no credentials are configured).
    pub open_access: bool,
}

/// What a reload changed.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Backends whose storage, keys or policies changed.
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Settings that changed in the file but take effect only at restart.
    pub restart_required: Vec<String>,
    pub warnings: Vec<String>,
}

/// Why [`Reloader::apply_text`] kept the running configuration.
#[derive(Debug)]
pub enum Refusal {
    /// The server was started without a configuration file to write.
    NoFile,
    /// The document is not a valid configuration (`config lint`'s problems).
    Invalid(Vec<crate::config::Problem>),
    /// Valid, but it could not be applied (a key, a backend, the file).
    Failed(String),
}

/// Replaces the configuration file with `text`: a temporary file beside it
/// (with the old file's permissions), synced, renamed over it, and the
/// directory synced, so a crash leaves the old file or the new one.
fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{}.dgp-new", name.unwrap_or_default()));
    let mut f = std::fs::File::create(&tmp)?;
    if let Ok(meta) = std::fs::metadata(path) {
        f.set_permissions(meta.permissions())?;
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    write!(
        f,
        "# Written by the deltaglider_proxy config API at {stamp}.\n# Comments in this file are not kept by the API; see docs/config-api.md.\n{text}"
    )?;
    f.sync_all()?;
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&dir)?.sync_all()
}

/// The running backends that `settings` no longer names.
fn removed(running: &Running, settings: &Settings) -> Vec<String> {
    running
        .backends
        .keys()
        .filter(|n| settings.backends.iter().all(|b| &b.name != *n))
        .cloned()
        .collect()
}

/// The running configuration and the handles a reload swaps.
pub struct Reloader {
    source: Source,
    gateway: Shared,
    protocol: Arc<ArcSwap<Protocol>>,
    /// The config database: declarative users are written into it on reload.
    iam: Option<Arc<crate::configdb::LiveIam>>,
    /// The TLS certificate in force (re-read on reload).
    tls: Option<crate::tls::Shared>,
    /// The settings in force and the backends opened for them; the lock
    /// also makes reloads one at a time.
    running: Mutex<Running>,
}

struct Running {
    settings: Settings,
    backends: BTreeMap<String, Opened>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Settings that only a restart applies: the listener, logging, the FUSE
/// mount, the spool, and the connection limits.
fn restart_required(old: &Settings, new: &Settings) -> Vec<String> {
    let (a, b) = (&old.advanced, &new.advanced);
    [
        ("advanced.listen_addr", old.listen_addr != new.listen_addr),
        ("advanced.log_level", old.log_level != new.log_level),
        ("fuse", old.fuse != new.fuse),
        ("access.config_db_path", old.config_db != new.config_db),
        (
            "advanced.tls (on or off)",
            old.advanced.tls.is_some() != new.advanced.tls.is_some(),
        ),
        ("advanced.spool_dir", a.spool_dir != b.spool_dir),
        (
            "advanced.header_read_timeout_secs",
            a.header_read_timeout_secs != b.header_read_timeout_secs,
        ),
        (
            "advanced.idle_timeout_secs",
            a.idle_timeout_secs != b.idle_timeout_secs,
        ),
        (
            "advanced.max_connections",
            a.max_connections != b.max_connections,
        ),
        (
            "advanced.shutdown_grace_secs",
            a.shutdown_grace_secs != b.shutdown_grace_secs,
        ),
    ]
    .into_iter()
    .filter(|(_, changed)| *changed)
    .map(|(name, _)| name.to_owned())
    .collect()
}

impl Reloader {
    pub fn new(
        source: Source,
        settings: Settings,
        backends: Vec<Opened>,
        gateway: Shared,
        protocol: Arc<ArcSwap<Protocol>>,
    ) -> Reloader {
        let backends = backends
            .into_iter()
            .map(|o| (o.settings.name.clone(), o))
            .collect();
        Reloader {
            source,
            gateway,
            protocol,
            iam: None,
            tls: None,
            running: Mutex::new(Running { settings, backends }),
        }
    }

    /// The TLS configuration a reload re-reads the certificate into.
    pub fn with_tls(mut self, tls: Option<crate::tls::Shared>) -> Reloader {
        self.tls = tls;
        self
    }

    /// The server's config database, which a reload applies the file's IAM to.
    pub fn with_iam(mut self, iam: Arc<crate::configdb::LiveIam>) -> Reloader {
        self.iam = Some(iam);
        self
    }

    /// Re-reads the file and applies it, or keeps the running configuration
    /// and says why. Blocking (it may open backends and ask upstreams).
    pub fn reload(&self) -> anyhow::Result<Report> {
        let src = &self.source;
        match crate::config::load(src.path.as_deref(), &src.overrides, &env)
            .context("reading the configuration")
        {
            Ok(settings) => self.swap(settings, None),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "config reload refused; the running configuration stays in force");
                Err(e)
            }
        }
    }

    /// The configuration file this server reads (`None`: started without one).
    pub fn path(&self) -> Option<&Path> {
        self.source.path.as_deref()
    }

    /// `--data-dir` / `DGP_DATA_DIR`: where the embedded default backend stores.
    pub fn data_dir(&self) -> Option<&Path> {
        self.source.overrides.data_dir.as_deref()
    }

    /// Checks `text` as a new configuration file. Without `dry_run` it then
    /// applies it as a reload does and, once everything checks out, writes it
    /// to the configuration file (atomically) before the swap. With
    /// `dry_run`, nothing is opened, written or swapped: the report says what
    /// would change. Blocking.
    pub fn apply_text(&self, text: &str, dry_run: bool) -> Result<Report, Refusal> {
        let Some(path) = self.source.path.clone() else {
            return Err(Refusal::NoFile);
        };
        let settings = crate::config::load_str(
            text,
            &path.display().to_string(),
            &self.source.overrides,
            &env,
        )
        .map_err(|e| match e {
            crate::config::ConfigError::Invalid { problems, .. } => Refusal::Invalid(problems),
            crate::config::ConfigError::Parse {
                location, message, ..
            } => Refusal::Invalid(vec![crate::config::Problem {
                field: String::new(),
                location,
                message,
            }]),
            e => Refusal::Failed(e.to_string()),
        })?;
        if dry_run {
            let running = self.running.lock().expect("reload lock");
            return self
                .plan(&running, &settings)
                .map_err(|e| Refusal::Failed(format!("{e:#}")));
        }
        self.swap(settings, Some((&path, text)))
            .map_err(|e| Refusal::Failed(format!("{e:#}")))
    }

    /// Applies `settings` (after writing `write` to its file, if given), or
    /// keeps the running configuration and says why.
    fn swap(&self, settings: Settings, write: Option<(&Path, &str)>) -> anyhow::Result<Report> {
        let mut running = self.running.lock().expect("reload lock");
        let res = self.prepare(&running, settings);
        let res = res.and_then(|(settings, backends, gateway, protocol, report)| {
            // Read before anything is applied: a bad certificate refuses the reload.
            let tls = match (&self.tls, &settings.advanced.tls) {
                (Some(_), Some(t)) => Some(crate::tls::load(&t.cert_file, &t.key_file)?),
                _ => None,
            };
            if let Some((path, text)) = write {
                write_config(path, text).with_context(|| format!("writing {}", path.display()))?;
            }
            if let (Some(shared), Some(cfg)) = (&self.tls, tls) {
                shared.store(cfg);
            }
            let gateway = match &self.iam {
                Some(iam) => {
                    iam.apply(&settings)
                        .context("applying access.iam_users to the config database")?;
                    gateway.with_directory(iam.directory())
                }
                None => gateway,
            };
            Ok((settings, backends, gateway, protocol, report))
        });
        let (settings, backends, gateway, protocol, report) = match res {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "config reload refused; the running configuration stays in force");
                return Err(e);
            }
        };
        self.gateway.store(Arc::new(gateway));
        self.protocol.store(Arc::new(protocol));
        *running = Running { settings, backends };
        tracing::info!(
            added = ?report.added,
            removed = ?report.removed,
            changed = ?report.changed,
            written = write.is_some(),
            "configuration reloaded"
        );
        for r in &report.restart_required {
            tracing::warn!(setting = %r, "changed in the config file; takes effect at the next restart");
        }
        Ok(report)
    }

    /// What applying `settings` would change, without opening anything:
    /// keys and credentials are checked, backends compared by their settings.
    fn plan(&self, running: &Running, settings: &Settings) -> anyhow::Result<Report> {
        crate::config::resolve_encryption_keys(settings, &env)
            .context("reading the encryption keys")?;
        open::credentials(settings, self.source.open_access)?;
        let mut report = Report {
            restart_required: restart_required(&running.settings, settings),
            warnings: settings.warnings.clone(),
            ..Report::default()
        };
        for b in &settings.backends {
            match running.backends.get(&b.name) {
                None => report.added.push(b.name.clone()),
                Some(o)
                    if o.settings == *b
                        && open::engine_settings(&o.settings, &running.settings)
                            == open::engine_settings(b, settings) =>
                {
                    report.unchanged.push(b.name.clone())
                }
                Some(_) => report.changed.push(b.name.clone()),
            }
        }
        report.removed = removed(running, settings);
        Ok(report)
    }

    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        running: &Running,
        settings: Settings,
    ) -> anyhow::Result<(
        Settings,
        BTreeMap<String, Opened>,
        crate::gateway::Gateway,
        Protocol,
        Report,
    )> {
        let src = &self.source;
        let keys = crate::config::resolve_encryption_keys(&settings, &env)
            .context("reading the encryption keys")?;
        crate::open::protect_keys(&keys);
        let open_access = src.open_access && settings.credentials.is_none();
        let credentials = open::credentials(&settings, src.open_access)?;
        let mut report = Report {
            restart_required: restart_required(&running.settings, &settings),
            warnings: settings.warnings.clone(),
            ..Report::default()
        };
        let old_gateway = self.gateway.load_full();

        // Storage first: reuse, reopen, or open each backend, and refuse two
        // backends in one place (a renamed backend whose old name still runs
        // included).
        let mut places: BTreeMap<PathBuf, String> = BTreeMap::new();
        for b in &settings.backends {
            let place = open::storage_place(b, &settings);
            if let Some(other) = places.insert(place.clone(), b.name.clone()) {
                bail!(
                    "backends '{other}' and '{}' store in the same place ({})",
                    b.name,
                    place.display()
                );
            }
        }
        for (name, o) in &running.backends {
            let place = open::storage_place(&o.settings, &running.settings);
            if let Some(user) = places.get(&place)
                && user != name
                && settings.backends.iter().all(|b| &b.name != name)
            {
                bail!(
                    "backend '{user}' would store where the running backend '{name}' does ({}); rename it back, or remove '{name}' and restart",
                    place.display()
                );
            }
        }
        let mut staged = Vec::new(); // (engine, fresh backend, key check deferred)
        for b in &settings.backends {
            let old = running.backends.get(&b.name);
            let same_storage = old.is_some_and(|o| {
                o.settings.kind == b.kind
                    && o.settings.encryption.mode == b.encryption.mode
                    && o.settings.encryption.kms_key_id == b.encryption.kms_key_id
                    && o.settings.encryption.bucket_key_enabled == b.encryption.bucket_key_enabled
                    && running.settings.advanced.spool_dir == settings.advanced.spool_dir
                    && (matches!(b.kind, crate::config::BackendKind::Filesystem { .. })
                        || open::bucket_scope(&o.settings, &running.settings)
                            == open::bucket_scope(b, &settings))
            });
            let enc = open::encryption_of(b, &keys)?;
            let (min_free, delta) = open::engine_settings(b, &settings);
            let old_store = old_gateway.store(&b.name);
            let (backend, store, fresh): (_, ObjectStore, bool) = match (old, old_store) {
                (Some(o), Some(s)) if same_storage => (
                    o.backend.clone(),
                    s.reconfigured(None, enc, min_free, delta),
                    false,
                ),
                (Some(_), Some(s)) => {
                    let backend = open::open_backend(b, &settings, false)?;
                    let store = s.reconfigured(Some(backend.clone()), enc, min_free, delta);
                    (backend, store, false)
                }
                _ => {
                    let backend = open::open_backend(b, &settings, true)?;
                    let store = open::new_engine(b, &settings, &keys, backend.clone())?;
                    (backend, store, true)
                }
            };
            // Checked before anything is recorded: a wrong key on any
            // backend refuses the whole reload and writes nothing. An
            // upstream that does not answer is checked later, as at startup.
            let deferred = match open::check_keyring(b, &store, false) {
                Ok(()) => None,
                Err(e) if open::unreachable(&store) => Some(e),
                Err(e) => return Err(e),
            };
            match (old, old_store) {
                (None, _) => report.added.push(b.name.clone()),
                (Some(o), Some(s))
                    if same_storage
                        && s.same_keys(store.encryption())
                        && o.settings.encryption == b.encryption
                        && open::engine_settings(&o.settings, &running.settings)
                            == open::engine_settings(b, &settings) =>
                {
                    report.unchanged.push(b.name.clone())
                }
                _ => report.changed.push(b.name.clone()),
            }
            staged.push((
                Opened {
                    settings: b.clone(),
                    backend,
                    store: Arc::new(store),
                },
                fresh,
                deferred,
            ));
        }
        // Everything checks out: record new key ids, finish what a new
        // backend left interrupted.
        for (o, fresh, deferred) in &staged {
            if let Some(e) = deferred {
                open::defer_key_check(&o.settings, &o.store, e);
                continue;
            }
            open::check_keyring(&o.settings, &o.store, true)?;
            if *fresh {
                o.store.recover_uploads().with_context(|| {
                    format!(
                        "recovering multipart uploads on backend '{}'",
                        o.settings.name
                    )
                })?;
            }
        }
        report.removed = removed(running, &settings);
        let stores = staged
            .iter()
            .map(|(o, ..)| (o.settings.name.clone(), o.store.clone()))
            .collect();
        let gateway = open::gateway(&settings, stores, open_access);
        let protocol = open::protocol(&settings, credentials);
        let backends = staged
            .into_iter()
            .map(|(o, ..)| (o.settings.name.clone(), o))
            .collect();
        Ok((settings, backends, gateway, protocol, report))
    }
}
