//! The server's hold on the config database: one connection, the IAM
//! directory built from it (swapped whole when users change), and the
//! mode. In declarative mode the YAML's users are written into the
//! database on start and on every reload, and mutations are refused; in
//! gui mode the database is the source of truth, changed through the admin
//! API or by `deltaglider_proxy iam` in another process (noticed within a
//! second by `watch`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::{ConfigDb, DbError, KeyOrigin, Result, key};
use crate::config::{IamMode, Settings};
use crate::gateway::iam::{Directory, SharedDirectory};

pub struct LiveIam {
    db: Mutex<ConfigDb>,
    directory: SharedDirectory,
    mode: Mutex<IamMode>,
    seen: AtomicI64,
}

/// Opens the database the settings name (finding or creating its key) for
/// a command: the server, or `iam` / `config-db` with the server stopped or
/// running.
pub fn open_db(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ConfigDb> {
    let c = &settings.config_db;
    let k = key::resolve(&c.path, c.key_file.as_deref(), env).map_err(anyhow::Error::msg)?;
    if let KeyOrigin::Created(p) = &k.origin {
        tracing::warn!(
            key_file = %p.display(),
            "created a new key for the config database beside it; keep a copy off this disk and consider moving it (docs/backup.md)"
        );
    }
    Ok(ConfigDb::open(&c.path, &k)?)
}

impl LiveIam {
    /// Opens the database and applies the settings (declarative users).
    pub fn open(
        settings: &Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Arc<LiveIam>> {
        let db = open_db(settings, env)?;
        let live = Arc::new(LiveIam {
            seen: AtomicI64::new(db.data_version()?),
            db: Mutex::new(db),
            directory: Arc::new(arc_swap::ArcSwap::from_pointee(Directory::default())),
            mode: Mutex::new(settings.iam_mode),
        });
        live.apply(settings)?;
        Ok(live)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, ConfigDb> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The directory handle gateways hold.
    pub fn directory(&self) -> SharedDirectory {
        self.directory.clone()
    }

    pub fn mode(&self) -> IamMode {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies (new) settings: the mode, and in declarative mode the YAML's
    /// users and groups, which replace the database's.
    pub fn apply(&self, settings: &Settings) -> Result<()> {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = settings.iam_mode;
        if settings.iam_mode == IamMode::Declarative {
            self.db().replace_all(&settings.iam)?;
        }
        self.refresh()
    }

    /// Rebuilds the directory from the database.
    pub fn refresh(&self) -> Result<()> {
        let db = self.db();
        let iam = db.load_iam()?;
        let policies = db.bucket_policies()?;
        let acls = db.bucket_acls()?;
        self.seen.store(db.data_version()?, Ordering::Relaxed);
        drop(db);
        let d = Directory::new(&iam)
            .and_then(|d| d.with_bucket_policies(&policies))
            .and_then(|d| d.with_bucket_acls(&acls))
            .map_err(DbError::Other)?;
        tracing::debug!(users = d.len(), "IAM users loaded from the config database");
        self.directory.store(Arc::new(d));
        Ok(())
    }

    /// A read of the database.
    pub fn read<T>(&self, f: impl FnOnce(&ConfigDb) -> Result<T>) -> Result<T> {
        f(&self.db())
    }

    /// A change to bucket policies or ACLs (any mode: they are S3 bucket settings,
    /// not the file's IAM); the directory follows at once.
    pub fn mutate_policies<T>(&self, f: impl FnOnce(&mut ConfigDb) -> Result<T>) -> Result<T> {
        let out = f(&mut self.db())?;
        self.refresh()?;
        Ok(out)
    }

    /// Stores one of the server's own settings (any mode: not the file's IAM).
    pub fn write_server_setting(&self, name: &str, value: &str) -> Result<()> {
        self.db().set_server_setting(name, value)
    }

    /// A change to IAM (gui mode only); the directory follows at once.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut ConfigDb) -> Result<T>) -> Result<T> {
        if self.mode() == IamMode::Declarative {
            return Err(DbError::Declarative);
        }
        let out = f(&mut self.db())?;
        self.refresh()?;
        Ok(out)
    }

    /// Re-reads the users when another process changed the database.
    pub fn watch(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("dg-iam-watch".into())
            .spawn(move || {
                while let Some(live) = weak.upgrade() {
                    let changed = live
                        .db()
                        .data_version()
                        .is_ok_and(|v| v != live.seen.load(Ordering::Relaxed));
                    if changed {
                        match live.refresh() {
                            Ok(()) => tracing::info!("IAM users changed in the config database; applied"),
                            Err(e) => tracing::error!(error = %e, "re-reading the config database failed; the previous users stay"),
                        }
                    }
                    drop(live);
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch the config database for changes");
        }
    }
}
