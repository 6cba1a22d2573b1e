//! Settings the server keeps for itself in the config database (not the
//! YAML's): today the argon2 hash of the admin UI's bootstrap password.

use rusqlite::{OptionalExtension, params};

use super::iam::now;
use super::{ConfigDb, Result};

/// The PHC string (`$argon2id$...`) of the bootstrap password.
pub const BOOTSTRAP_PASSWORD_HASH: &str = "bootstrap_password_hash";

impl ConfigDb {
    pub fn server_setting(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM server_settings WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_server_setting(&mut self, name: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO server_settings (name, value, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            params![name, value, now()],
        )?;
        Ok(())
    }
}
