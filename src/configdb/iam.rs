//! IAM in the config database: users, their access keys (secrets sealed),
//! groups, memberships and permissions (JSON, the same shape as the YAML).
//! Every mutation is one transaction.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{ConfigDb, DbError, Result};
use crate::config::{
    IamGroup, IamSettings, IamUser, PermissionSpec, Secret, UserKey, check_access_key_id,
    check_user_name,
};

/// Who a permission is attached to.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    User(&'a str),
    Group(&'a str),
}

/// A key just created: the only time its secret is shown.
#[derive(Debug, Serialize)]
pub struct NewKey {
    pub user: String,
    pub access_key_id: String,
    #[serde(serialize_with = "expose")]
    pub secret_access_key: Zeroizing<String>,
}

fn expose<S: serde::Serializer>(
    v: &Zeroizing<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    pub access_key_id: String,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    pub access_keys: Vec<KeyInfo>,
    pub permissions: Vec<PermissionSpec>,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub members: Vec<String>,
    pub permissions: Vec<PermissionSpec>,
    pub created: i64,
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// 20 upper-case letters and digits starting `DGP` (like AWS's `AKIA...`).
fn new_key_id() -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = String::from("DGP");
    id.extend((0..17).map(|_| A[rand::random_range(0..A.len())] as char));
    id
}

/// 40 characters from letters, digits, `+` and `/` (AWS's shape).
fn new_secret() -> Zeroizing<String> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    Zeroizing::new(
        (0..40)
            .map(|_| A[rand::random_range(0..A.len())] as char)
            .collect(),
    )
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    let reserved = if kind == "user" {
        crate::config::check_not_reserved(name)
    } else {
        Ok(())
    };
    check_user_name(name)
        .and(reserved)
        .map_err(|e| DbError::Invalid(format!("{kind} name `{name}` {e}")))
}

fn check_permission(p: &PermissionSpec) -> Result<()> {
    crate::gateway::policy::compile(p, Some("user"))
        .map(|_| ())
        .map_err(|e| DbError::Invalid(format!("permission: {e}")))
}

fn to_json(p: &[PermissionSpec]) -> String {
    serde_json::to_string(p).expect("permissions serialize")
}

fn from_json(s: &str) -> Result<Vec<PermissionSpec>> {
    serde_json::from_str(s)
        .map_err(|e| DbError::Other(format!("stored permissions do not parse: {e}")))
}

impl ConfigDb {
    fn exists(&self, table: &str, name: &str) -> Result<bool> {
        let sql = format!("SELECT 1 FROM {table} WHERE name = ?1");
        Ok(self
            .conn
            .query_row(&sql, [name], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn need_user(&self, name: &str) -> Result<()> {
        if self.exists("users", name)? {
            Ok(())
        } else {
            Err(DbError::NotFound(format!("no user `{name}`")))
        }
    }

    fn need_group(&self, name: &str) -> Result<()> {
        if self.exists("iam_groups", name)? {
            Ok(())
        } else {
            Err(DbError::NotFound(format!("no group `{name}`")))
        }
    }

    /// Everything, secrets unsealed: what the server's IAM directory is built from.
    pub fn load_iam(&self) -> Result<IamSettings> {
        let mut out = IamSettings::default();
        for g in self.groups()? {
            out.groups.push(IamGroup {
                name: g.name,
                permissions: g.permissions,
            });
        }
        let mut keys = self.conn.prepare(
            "SELECT id, sealed_secret FROM access_keys WHERE user = ?1 ORDER BY created, id",
        )?;
        for u in self.users()? {
            let rows = keys.query_map([&u.name], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut user_keys = Vec::new();
            for row in rows {
                let (id, sealed) = row?;
                let secret = self.seal_key.open(&id, &sealed).ok_or_else(|| {
                    DbError::Other(format!(
                        "the secret of access key {id} does not unseal (altered record)"
                    ))
                })?;
                user_keys.push(UserKey {
                    access_key_id: id,
                    secret_access_key: Secret::new(String::from_utf8_lossy(&secret).into_owned()),
                });
            }
            out.users.push(IamUser {
                name: u.name,
                enabled: u.enabled,
                keys: user_keys,
                groups: u.groups,
                permissions: u.permissions,
            });
        }
        Ok(out)
    }

    pub fn users(&self) -> Result<Vec<UserInfo>> {
        let names: Vec<String> = self
            .conn
            .prepare("SELECT name FROM users ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        names.iter().map(|n| self.user(n)).collect()
    }

    pub fn user(&self, name: &str) -> Result<UserInfo> {
        let row: Option<(bool, String, i64)> = self
            .conn
            .query_row(
                "SELECT enabled, permissions, created FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((enabled, perms, created)) = row else {
            return Err(DbError::NotFound(format!("no user `{name}`")));
        };
        let groups = self
            .conn
            .prepare("SELECT grp FROM memberships WHERE user = ?1 ORDER BY grp")?
            .query_map([name], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        let access_keys = self
            .conn
            .prepare("SELECT id, created FROM access_keys WHERE user = ?1 ORDER BY created, id")?
            .query_map([name], |r| {
                Ok(KeyInfo {
                    access_key_id: r.get(0)?,
                    created: r.get(1)?,
                })
            })?
            .collect::<std::result::Result<_, _>>()?;
        Ok(UserInfo {
            name: name.to_owned(),
            enabled,
            groups,
            access_keys,
            permissions: from_json(&perms)?,
            created,
        })
    }

    /// A new user with one new access key (and memberships).
    pub fn create_user(&mut self, name: &str, groups: &[String]) -> Result<NewKey> {
        check_name("user", name)?;
        if self.exists("users", name)? {
            return Err(DbError::Conflict(format!("user `{name}` exists")));
        }
        for g in groups {
            self.need_group(g)?;
        }
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO users (name, enabled, permissions, created) VALUES (?1, 1, '[]', ?2)",
            params![name, now()],
        )?;
        for g in groups {
            tx.execute(
                "INSERT INTO memberships (user, grp) VALUES (?1, ?2)",
                [name, g],
            )?;
        }
        let key = self.insert_key(&tx, name)?;
        tx.commit()?;
        Ok(key)
    }

    fn insert_key(&self, tx: &rusqlite::Transaction<'_>, user: &str) -> Result<NewKey> {
        let id = new_key_id();
        let secret = new_secret();
        self.insert_key_with(tx, user, &id, &secret)?;
        Ok(NewKey {
            user: user.to_owned(),
            access_key_id: id,
            secret_access_key: secret,
        })
    }

    fn insert_key_with(
        &self,
        tx: &rusqlite::Transaction<'_>,
        user: &str,
        id: &str,
        secret: &str,
    ) -> Result<()> {
        check_access_key_id(id).map_err(|e| DbError::Invalid(format!("access key id {e}")))?;
        let taken = tx
            .query_row("SELECT 1 FROM access_keys WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some();
        if taken {
            return Err(DbError::Conflict(format!("access key {id} exists")));
        }
        tx.execute(
            "INSERT INTO access_keys (id, user, sealed_secret, created) VALUES (?1, ?2, ?3, ?4)",
            params![id, user, self.seal_key.seal(id, secret.as_bytes()), now()],
        )?;
        Ok(())
    }

    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<()> {
        self.need_user(name)?;
        self.conn.execute(
            "UPDATE users SET enabled = ?1 WHERE name = ?2",
            params![enabled, name],
        )?;
        Ok(())
    }

    pub fn delete_user(&mut self, name: &str) -> Result<()> {
        self.need_user(name)?;
        self.conn
            .execute("DELETE FROM users WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn create_key(&mut self, user: &str) -> Result<NewKey> {
        self.need_user(user)?;
        let tx = self.conn.unchecked_transaction()?;
        let key = self.insert_key(&tx, user)?;
        tx.commit()?;
        Ok(key)
    }

    /// A new key for the user and the old one gone, in one step (without
    /// `old`: the user must have exactly one key).
    pub fn rotate_key(&mut self, user: &str, old: Option<&str>) -> Result<NewKey> {
        let info = self.user(user)?;
        let old = match old {
            Some(o) => o.to_owned(),
            None => match info.access_keys.as_slice() {
                [only] => only.access_key_id.clone(),
                [] => {
                    return Err(DbError::NotFound(format!(
                        "user `{user}` has no access key"
                    )));
                }
                _ => {
                    return Err(DbError::Invalid(format!(
                        "user `{user}` has several access keys; name the one to rotate"
                    )));
                }
            },
        };
        if !info.access_keys.iter().any(|k| k.access_key_id == old) {
            return Err(DbError::NotFound(format!(
                "user `{user}` has no access key {old}"
            )));
        }
        let tx = self.conn.unchecked_transaction()?;
        let key = self.insert_key(&tx, user)?;
        tx.execute("DELETE FROM access_keys WHERE id = ?1", [&old])?;
        tx.commit()?;
        Ok(key)
    }

    pub fn delete_key(&mut self, user: &str, id: &str) -> Result<()> {
        let n = self.conn.execute(
            "DELETE FROM access_keys WHERE id = ?1 AND user = ?2",
            [id, user],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!(
                "user `{user}` has no access key {id}"
            )));
        }
        Ok(())
    }

    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let names: Vec<String> = self
            .conn
            .prepare("SELECT name FROM iam_groups ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        names.iter().map(|n| self.group(n)).collect()
    }

    pub fn group(&self, name: &str) -> Result<GroupInfo> {
        let row: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT permissions, created FROM iam_groups WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((perms, created)) = row else {
            return Err(DbError::NotFound(format!("no group `{name}`")));
        };
        let members = self
            .conn
            .prepare("SELECT user FROM memberships WHERE grp = ?1 ORDER BY user")?
            .query_map([name], |r| r.get(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(GroupInfo {
            name: name.to_owned(),
            members,
            permissions: from_json(&perms)?,
            created,
        })
    }

    pub fn create_group(&mut self, name: &str) -> Result<()> {
        check_name("group", name)?;
        if self.exists("iam_groups", name)? {
            return Err(DbError::Conflict(format!("group `{name}` exists")));
        }
        self.conn.execute(
            "INSERT INTO iam_groups (name, permissions, created) VALUES (?1, '[]', ?2)",
            params![name, now()],
        )?;
        Ok(())
    }

    pub fn delete_group(&mut self, name: &str) -> Result<()> {
        self.need_group(name)?;
        self.conn
            .execute("DELETE FROM iam_groups WHERE name = ?1", [name])?;
        Ok(())
    }

    pub fn add_member(&mut self, user: &str, group: &str) -> Result<()> {
        self.need_user(user)?;
        self.need_group(group)?;
        self.conn.execute(
            "INSERT OR IGNORE INTO memberships (user, grp) VALUES (?1, ?2)",
            [user, group],
        )?;
        Ok(())
    }

    pub fn remove_member(&mut self, user: &str, group: &str) -> Result<()> {
        let n = self.conn.execute(
            "DELETE FROM memberships WHERE user = ?1 AND grp = ?2",
            [user, group],
        )?;
        if n == 0 {
            return Err(DbError::NotFound(format!(
                "user `{user}` is not in group `{group}`"
            )));
        }
        Ok(())
    }

    fn owner_row(owner: Owner<'_>) -> (&'static str, &str) {
        match owner {
            Owner::User(n) => ("users", n),
            Owner::Group(n) => ("iam_groups", n),
        }
    }

    fn permissions_of(&self, owner: Owner<'_>) -> Result<Vec<PermissionSpec>> {
        Ok(match owner {
            Owner::User(n) => self.user(n)?.permissions,
            Owner::Group(n) => self.group(n)?.permissions,
        })
    }

    fn store_permissions(&self, owner: Owner<'_>, p: &[PermissionSpec]) -> Result<()> {
        let (table, name) = Self::owner_row(owner);
        let sql = format!("UPDATE {table} SET permissions = ?1 WHERE name = ?2");
        self.conn.execute(&sql, params![to_json(p), name])?;
        Ok(())
    }

    /// Adds a permission; returns its index.
    pub fn attach(&mut self, owner: Owner<'_>, p: PermissionSpec) -> Result<usize> {
        check_permission(&p)?;
        let mut list = self.permissions_of(owner)?;
        list.push(p);
        self.store_permissions(owner, &list)?;
        Ok(list.len() - 1)
    }

    /// Removes the permission at `index` and returns it.
    pub fn detach(&mut self, owner: Owner<'_>, index: usize) -> Result<PermissionSpec> {
        let mut list = self.permissions_of(owner)?;
        if index >= list.len() {
            return Err(DbError::NotFound(format!(
                "no permission {index} (there are {})",
                list.len()
            )));
        }
        let p = list.remove(index);
        self.store_permissions(owner, &list)?;
        Ok(p)
    }

    /// Makes the database hold exactly `iam` (declarative mode, and import).
    pub fn replace_all(&mut self, iam: &IamSettings) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute_batch("DELETE FROM memberships; DELETE FROM access_keys; DELETE FROM users; DELETE FROM iam_groups;")?;
        for g in &iam.groups {
            tx.execute(
                "INSERT INTO iam_groups (name, permissions, created) VALUES (?1, ?2, ?3)",
                params![g.name, to_json(&g.permissions), now()],
            )?;
        }
        for u in &iam.users {
            tx.execute(
                "INSERT INTO users (name, enabled, permissions, created) VALUES (?1, ?2, ?3, ?4)",
                params![u.name, u.enabled, to_json(&u.permissions), now()],
            )?;
            for g in &u.groups {
                tx.execute(
                    "INSERT INTO memberships (user, grp) VALUES (?1, ?2)",
                    [&u.name, g],
                )?;
            }
            for k in &u.keys {
                self.insert_key_with(&tx, &u.name, &k.access_key_id, k.secret_access_key.expose())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
