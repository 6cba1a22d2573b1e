//! Single sign-on identities: a person signed in by a provider (its issuer
//! and `sub`, which never change, not the e-mail, which can) is one IAM user.
//! The first login provisions the user; every login sets its groups to what
//! the mapping rules give now.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::iam::now;
use super::{ConfigDb, DbError, Result};
use crate::config::check_user_name;

/// The outcome of one login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLogin {
    pub user: String,
    /// The user was created by this login.
    pub created: bool,
    pub enabled: bool,
}

/// One stored identity (for the users page and the export).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SsoIdentity {
    pub issuer: String,
    pub subject: String,
    pub user: String,
    pub email: Option<String>,
    pub created: i64,
    pub last_login: i64,
}

/// The user name a new identity gets: its e-mail address when that is a
/// valid, free name, else `{provider}-{subject}` cut to the name rules
/// (an existing user is never taken over by a matching address).
fn candidate_names(provider: &str, subject: &str, email: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = email {
        out.push(e.to_owned());
    }
    let clean: String = subject
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base: String = format!("{provider}-{clean}").chars().take(56).collect();
    out.push(base.clone());
    // A cut or cleaned subject can collide: a short digest makes it unique.
    let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(subject.as_bytes())[..3]);
    out.push(format!(
        "{}-{digest}",
        base.chars().take(57).collect::<String>()
    ));
    out.retain(|n| check_user_name(n).is_ok());
    out
}

impl ConfigDb {
    /// Signs in `issuer`/`subject` (through the provider called `provider`,
    /// which new user names may start with): provisions its user on the
    /// first login, then makes `groups` its groups (each must exist). One
    /// transaction.
    pub fn sso_login(
        &mut self,
        issuer: &str,
        provider: &str,
        subject: &str,
        email: Option<&str>,
        groups: &[String],
    ) -> Result<SsoLogin> {
        for g in groups {
            if !self.group_exists(g)? {
                return Err(DbError::NotFound(format!(
                    "the mapping rules name group `{g}`, which does not exist; create it first"
                )));
            }
        }
        let tx = self.conn.unchecked_transaction()?;
        let known: Option<String> = tx
            .query_row(
                "SELECT user FROM sso_identities WHERE issuer = ?1 AND subject = ?2",
                [issuer, subject],
                |r| r.get(0),
            )
            .optional()?;
        let (user, created) = match known {
            Some(u) => (u, false),
            None => {
                let mut chosen = None;
                for name in candidate_names(provider, subject, email) {
                    let taken = tx
                        .query_row("SELECT 1 FROM users WHERE name = ?1", [&name], |_| Ok(()))
                        .optional()?
                        .is_some();
                    if !taken {
                        chosen = Some(name);
                        break;
                    }
                }
                let Some(name) = chosen else {
                    return Err(DbError::Conflict(format!(
                        "no free user name for {provider} subject {subject}"
                    )));
                };
                tx.execute(
                    "INSERT INTO users (name, enabled, permissions, created) VALUES (?1, 1, '[]', ?2)",
                    params![name, now()],
                )?;
                tx.execute(
                    "INSERT INTO sso_identities (issuer, subject, user, email, created, last_login)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![issuer, subject, name, email, now()],
                )?;
                (name, true)
            }
        };
        tx.execute(
            "UPDATE sso_identities SET email = ?3, last_login = ?4 WHERE issuer = ?1 AND subject = ?2",
            params![issuer, subject, email, now()],
        )?;
        tx.execute("DELETE FROM memberships WHERE user = ?1", [&user])?;
        for g in groups {
            tx.execute(
                "INSERT INTO memberships (user, grp) VALUES (?1, ?2)",
                [&user, g],
            )?;
        }
        let enabled: bool =
            tx.query_row("SELECT enabled FROM users WHERE name = ?1", [&user], |r| {
                r.get(0)
            })?;
        tx.commit()?;
        Ok(SsoLogin {
            user,
            created,
            enabled,
        })
    }

    /// A known identity the rules no longer give any group: it leaves all
    /// its groups (and so loses what they gave). Its user, if any.
    pub fn sso_clear_groups(&mut self, issuer: &str, subject: &str) -> Result<Option<String>> {
        let user: Option<String> = self
            .conn
            .query_row(
                "SELECT user FROM sso_identities WHERE issuer = ?1 AND subject = ?2",
                [issuer, subject],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(u) = &user {
            self.conn
                .execute("DELETE FROM memberships WHERE user = ?1", [u])?;
        }
        Ok(user)
    }

    /// Every stored identity, by issuer and subject.
    pub fn sso_identities(&self) -> Result<Vec<SsoIdentity>> {
        let mut q = self.conn.prepare(
            "SELECT issuer, subject, user, email, created, last_login FROM sso_identities
             ORDER BY issuer, subject",
        )?;
        let rows = q.query_map([], |r| {
            Ok(SsoIdentity {
                issuer: r.get(0)?,
                subject: r.get(1)?,
                user: r.get(2)?,
                email: r.get(3)?,
                created: r.get(4)?,
                last_login: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Replaces the stored identities (an import); those whose user is not
    /// in the database are dropped.
    pub(super) fn replace_sso_identities(&mut self, ids: &[SsoIdentity]) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM sso_identities", [])?;
        for i in ids {
            tx.execute(
                "INSERT INTO sso_identities (issuer, subject, user, email, created, last_login)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM users WHERE name = ?3)",
                params![
                    i.issuer,
                    i.subject,
                    i.user,
                    i.email,
                    i.created,
                    i.last_login
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn group_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM iam_groups WHERE name = ?1", [name], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prefer_the_address_and_stay_valid() {
        let n = candidate_names("corp", "abc", Some("alice@example.com"));
        assert_eq!(n[0], "alice@example.com");
        assert_eq!(n[1], "corp-abc");
        let long = "x".repeat(200) + "/ü";
        let n = candidate_names("corp", &long, None);
        assert!(n.iter().all(|n| check_user_name(n).is_ok()), "{n:?}");
        assert_eq!(n.len(), 2);
        assert_ne!(n[0], n[1]);
    }
}
