//! Where the config database's key comes from: `DGP_CONFIG_DB_KEY` (64 hex
//! characters), else the file named by `access.config_db_key_file` (32 raw
//! bytes, 0600), else `<database>.key` beside the database, which the
//! server creates with a fresh key the first time (and says so once).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{EncryptionKey, KEY_LEN, parse_hex_key, read_key_file};

/// The environment variable holding the key.
pub const ENV_KEY: &str = "DGP_CONFIG_DB_KEY";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    Env,
    File(PathBuf),
    /// `<database>.key`, found.
    Beside(PathBuf),
    /// `<database>.key`, created just now.
    Created(PathBuf),
    /// Given by the caller (tests, import).
    Given,
}

impl KeyOrigin {
    /// What to do when this key does not open the database.
    pub fn hint(&self) -> String {
        match self {
            KeyOrigin::Env => format!("{ENV_KEY} holds another key; set it to the database's key"),
            KeyOrigin::File(p) | KeyOrigin::Beside(p) => format!(
                "{} holds another key; restore the database's key file (docs/backup.md)",
                p.display()
            ),
            KeyOrigin::Created(p) => format!(
                "a new key was just created at {}, so the database's own key is missing; remove {} and restore the right key (docs/backup.md)",
                p.display(),
                p.display()
            ),
            KeyOrigin::Given => "the given key is another one".into(),
        }
    }
}

/// The 32-byte key of a config database and where it came from.
#[derive(Debug)]
pub struct DbKey {
    key: EncryptionKey,
    pub origin: KeyOrigin,
}

impl DbKey {
    pub fn new(bytes: [u8; KEY_LEN], origin: KeyOrigin) -> DbKey {
        DbKey {
            key: EncryptionKey::from_bytes(bytes),
            origin,
        }
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.key.expose()
    }
}

/// `<database>.key`.
pub fn beside(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// Finds the key for the database at `db` (see the module comment).
pub fn resolve(
    db: &Path,
    key_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DbKey, String> {
    if let Some(v) = env(ENV_KEY).filter(|v| !v.trim().is_empty()) {
        let k = parse_hex_key(&v).map_err(|e| format!("{ENV_KEY} {e}"))?;
        return Ok(DbKey {
            key: k,
            origin: KeyOrigin::Env,
        });
    }
    if let Some(f) = key_file {
        let k = read_key_file(f)
            .map_err(|e| format!("access.config_db_key_file {}: {e}", f.display()))?;
        return Ok(DbKey {
            key: k,
            origin: KeyOrigin::File(f.to_owned()),
        });
    }
    let side = beside(db);
    if side.exists() {
        let k = read_key_file(&side).map_err(|e| format!("{}: {e}", side.display()))?;
        return Ok(DbKey {
            key: k,
            origin: KeyOrigin::Beside(side),
        });
    }
    if db.exists() {
        return Err(format!(
            "the config database {} exists but its key is nowhere: set {ENV_KEY} (64 hex characters) or \
             access.config_db_key_file, or restore {} (docs/backup.md)",
            db.display(),
            side.display()
        ));
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    rand::fill(&mut bytes[..]);
    let mut f = super::create_private_file(&side).map_err(|e| e.to_string())?;
    f.write_all(&bytes[..])
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", side.display()))?;
    Ok(DbKey::new(*bytes, KeyOrigin::Created(side)))
}
