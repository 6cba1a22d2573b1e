//! The schema, versioned with `PRAGMA user_version`: migration `n` takes a
//! file from version `n` to `n + 1`, in one transaction. A file from a newer
//! program (a higher version than we know) is refused, never downgraded.

use rusqlite::Connection;

use super::{DbError, Result};

const MIGRATIONS: &[&str] = &[
    // 0 -> 1: IAM.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL,
        permissions TEXT NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE TABLE iam_groups (
        name TEXT PRIMARY KEY,
        permissions TEXT NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE TABLE memberships (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        grp TEXT NOT NULL REFERENCES iam_groups(name) ON DELETE CASCADE,
        PRIMARY KEY (user, grp)
     );
     CREATE TABLE access_keys (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        sealed_secret BLOB NOT NULL,
        created INTEGER NOT NULL
     );",
    // 1 -> 2: bucket policies (the JSON document as the client sent it).
    "CREATE TABLE bucket_policies (
        bucket TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        updated INTEGER NOT NULL
     );",
    // 2 -> 3: canned ACLs of buckets (only those that grant: none is private).
    "CREATE TABLE bucket_acls (
        bucket TEXT PRIMARY KEY,
        canned TEXT NOT NULL,
        updated INTEGER NOT NULL
     );",
    // 3 -> 4: server settings kept by the server itself (the admin UI's
    // bootstrap password hash).
    "CREATE TABLE server_settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated INTEGER NOT NULL
     );",
    // 4 -> 5: which IAM user a single sign-on identity (issuer + subject:
    // OIDC makes `sub` unique only per issuer) signs in as.
    "CREATE TABLE sso_identities (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        email TEXT,
        created INTEGER NOT NULL,
        last_login INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject)
     );",
];

/// The schema version this program writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

pub fn migrate(conn: &Connection) -> Result<()> {
    let mut v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if v > VERSION {
        return Err(DbError::Other(format!(
            "the file has schema version {v}, newer than this program's {VERSION}; run the newer deltaglider_proxy"
        )));
    }
    while v < VERSION {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(MIGRATIONS[v as usize])?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
        v += 1;
    }
    Ok(())
}
