//! The config database: IAM users, groups, access keys and permissions in
//! one SQLite file encrypted page by page with SQLCipher (the file does not
//! start with `SQLite format 3` and opens with no other key). Secrets in it
//! are also sealed per record (`seal`). Used by the server (its IAM
//! directory), the `deltaglider_proxy iam` and `config-db` commands and the
//! admin API; SQLite's locking lets them share the file while the server
//! runs.
//!
//! Files: `key.rs` (where the key comes from), `seal.rs` (per-record
//! sealing), `schema.rs` (versioned migrations), `iam.rs` (the IAM
//! operations), `export.rs` (encrypted backup).

mod buckets;
mod export;
mod iam;
pub mod key;
pub mod live;
mod schema;
mod seal;
mod server;
mod sso;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use iam::{GroupInfo, NewKey, Owner, UserInfo};
pub use key::{DbKey, KeyOrigin};
pub use live::{LiveIam, open_db};
pub use server::BOOTSTRAP_PASSWORD_HASH;
pub use sso::{SsoIdentity, SsoLogin};

/// Why an operation on the config database failed. `Invalid`, `NotFound`
/// and `Conflict` are the caller's mistakes (the API answers 400/404/409).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(
        "the config database {path} does not open with this key (wrong key, or not a config database); {hint}"
    )]
    WrongKey { path: PathBuf, hint: String },
    #[error("config database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("config database: {0}")]
    Other(String),
    #[error(
        "iam_mode is declarative: users and groups come from the config file; change it and reload (or switch to iam_mode: gui)"
    )]
    Declarative,
}

pub type Result<T> = std::result::Result<T, DbError>;

/// An open config database.
pub struct ConfigDb {
    conn: Connection,
    path: PathBuf,
    seal_key: seal::SealKey,
}

impl std::fmt::Debug for ConfigDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDb")
            .field("path", &self.path)
            .finish()
    }
}

impl ConfigDb {
    /// Opens (creating if missing, with mode 0600) the database at `path`
    /// with `key`, and brings its schema up to date.
    pub fn open(path: &Path, key: &DbKey) -> Result<ConfigDb> {
        let existed = path.exists();
        if !existed {
            create_private_file(path)?;
        }
        let conn = Connection::open(path)?;
        // A raw 256-bit key (`x'..'`): SQLCipher uses it as is, no passphrase KDF.
        let hex = zeroize::Zeroizing::new(hex::encode(key.expose()));
        conn.pragma_update(None, "key", format!("x'{}'", hex.as_str()))?;
        // The first read decrypts page 1: this is where a wrong key shows.
        if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            return Err(match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    DbError::WrongKey {
                        path: path.to_owned(),
                        hint: key.origin.hint(),
                    }
                }
                other => DbError::Sqlite(other),
            });
        }
        // Before WAL: switching the journal mode waits for other connections.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        schema::migrate(&conn)?;
        Ok(ConfigDb {
            conn,
            path: path.to_owned(),
            seal_key: seal::SealKey::derive(key.expose()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A counter that changes when another connection (the CLI, another
    /// process) commits: the server re-reads its users when it moves.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The schema version of the file.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }
}

/// Creates an empty file only the owner can read (the database, a key).
pub fn create_private_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::Other(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| DbError::Other(format!("cannot create {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
