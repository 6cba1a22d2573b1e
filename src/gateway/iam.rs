//! The directory of IAM users in force: who owns an access key, and the
//! compiled permissions of each user (their own and their groups'), built
//! from `IamSettings` (the YAML in declarative mode, the config database in
//! gui mode) and swapped whole with the gateway.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::IamSettings;
use crate::s3::auth::SecretKey;

use super::policy::{self, Request, Statement, Verdict};

/// A user with the statements that apply to them, each labelled with where
/// it came from (`user ci-uploader permission 1`, `group readers permission 0`).
#[derive(Debug)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub groups: Vec<String>,
    statements: Vec<(Statement, String)>,
}

impl User {
    /// May this user run the box (the admin UI and the operator API under
    /// `/_/api/`)? Only by an explicit `admin` action on resource `*`,
    /// unconditional, from the user or a group; `*` (every S3 action) is not
    /// enough. A Deny of `admin` or `*` on `*` takes it away.
    pub fn is_operator(&self) -> bool {
        use policy::{ActionPattern, Effect, Group};
        let everything = |s: &Statement| s.resources.iter().any(|r| r.pattern == "*");
        let names_admin = |s: &Statement, or_all: bool| {
            s.actions.iter().any(|a| match a {
                ActionPattern::Group(Group::Admin) => true,
                ActionPattern::All => or_all,
                _ => false,
            })
        };
        self.enabled
            && self.statements.iter().any(|(s, _)| {
                s.effect == Effect::Allow
                    && s.conditions.is_empty()
                    && everything(s)
                    && names_admin(s, false)
            })
            && !self
                .statements
                .iter()
                .any(|(s, _)| s.effect == Effect::Deny && everything(s) && names_admin(s, true))
    }

    /// Judges `r` by the user's statements and `extra` (the bucket policy
    /// statements naming them) together: an explicit Deny anywhere wins.
    pub fn judge<'a>(
        &'a self,
        r: &Request<'_>,
        extra: impl IntoIterator<Item = (&'a Statement, &'a str)>,
    ) -> Verdict<&'a str> {
        let own = self.statements.iter().map(|(s, l)| (s, l.as_str()));
        policy::judge(own.chain(extra), r)
    }

    /// Whether some Allow statement names this bucket at all (ListBuckets
    /// shows a user the buckets they have any permission in).
    pub fn mentions_bucket(&self, bucket: &str) -> bool {
        self.statements
            .iter()
            .any(|(s, _)| s.effect == policy::Effect::Allow && s.mentions_bucket(bucket))
    }
}

/// The directory in force, swapped whole when users change.
pub type SharedDirectory = Arc<arc_swap::ArcSwap<Directory>>;

#[derive(Debug, Default)]
pub struct Directory {
    users: BTreeMap<String, Arc<User>>,
    /// access key id -> (user, secret).
    keys: HashMap<String, (Arc<User>, SecretKey)>,
    /// Bucket policies by client-facing bucket name, followed by the
    /// statements of the bucket's canned ACL.
    bucket_policies: HashMap<String, Vec<policy::bucket::PolicyStatement>>,
    /// Canned ACLs of objects are in their metadata; of buckets, here.
    bucket_acls: HashMap<String, policy::acl::Canned>,
}

impl Directory {
    /// Compiles every user's permissions (validated by the config or the
    /// database already; an error names the user and the permission).
    pub fn new(iam: &IamSettings) -> Result<Directory, String> {
        let mut d = Directory::default();
        for u in &iam.users {
            let mut statements = Vec::new();
            for (i, p) in u.permissions.iter().enumerate() {
                let s = policy::compile(p, Some(&u.name))
                    .map_err(|e| format!("user {} permission {i}: {e}", u.name))?;
                statements.push((s, format!("user {} permission {i}", u.name)));
            }
            for g in &u.groups {
                let group = iam
                    .groups
                    .iter()
                    .find(|x| &x.name == g)
                    .ok_or_else(|| format!("user {}: no group {g}", u.name))?;
                for (i, p) in group.permissions.iter().enumerate() {
                    let s = policy::compile(p, Some(&u.name))
                        .map_err(|e| format!("group {g} permission {i}: {e}"))?;
                    statements.push((s, format!("group {g} permission {i}")));
                }
            }
            let user = Arc::new(User {
                name: u.name.clone(),
                enabled: u.enabled,
                groups: u.groups.clone(),
                statements,
            });
            for k in &u.keys {
                let secret = SecretKey::new(k.secret_access_key.expose().to_owned());
                if d.keys
                    .insert(k.access_key_id.clone(), (user.clone(), secret))
                    .is_some()
                {
                    return Err(format!("access key {} is used twice", k.access_key_id));
                }
            }
            d.users.insert(u.name.clone(), user);
        }
        Ok(d)
    }

    /// Adds the stored bucket policies (each validated when it was put).
    pub fn with_bucket_policies(
        mut self,
        stored: &[(String, String)],
    ) -> Result<Directory, String> {
        for (bucket, json) in stored {
            let p = policy::bucket::parse(bucket, json.as_bytes())
                .map_err(|e| format!("the stored policy of bucket {bucket}: {e}"))?;
            self.bucket_policies
                .entry(bucket.clone())
                .or_default()
                .extend(p);
        }
        Ok(self)
    }

    /// Adds the stored canned ACLs of buckets, as statements after the
    /// bucket's policy.
    pub fn with_bucket_acls(mut self, stored: &[(String, String)]) -> Result<Directory, String> {
        for (bucket, canned) in stored {
            let c = policy::acl::Canned::parse(canned)
                .ok_or_else(|| format!("the stored ACL of bucket {bucket}: unknown {canned}"))?;
            self.bucket_policies
                .entry(bucket.clone())
                .or_default()
                .extend(policy::acl::bucket_statements(bucket, c));
            self.bucket_acls.insert(bucket.clone(), c);
        }
        Ok(self)
    }

    /// The canned ACL of a bucket (`private` when none is stored).
    pub fn bucket_acl(&self, bucket: &str) -> policy::acl::Canned {
        self.bucket_acls
            .get(bucket)
            .copied()
            .unwrap_or(policy::acl::Canned::Private)
    }

    /// The bucket policy and ACL statements of `bucket` that apply to `user`
    /// (`None`: anonymous, so only `"*"` statements).
    pub fn policy_for<'a>(
        &'a self,
        bucket: Option<&str>,
        user: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Statement, &'a str)> + 'a {
        bucket
            .and_then(|b| self.bucket_policies.get(b))
            .into_iter()
            .flatten()
            .filter(move |p| p.principals.includes(user))
            .map(|p| (&p.statement, p.label.as_str()))
    }

    /// The secret of an enabled user's access key.
    pub fn secret_for(&self, access_key_id: &str) -> Option<SecretKey> {
        self.keys
            .get(access_key_id)
            .filter(|(u, _)| u.enabled)
            .map(|(_, s)| s.clone())
    }

    /// The user owning an access key.
    pub fn user_for_key(&self, access_key_id: &str) -> Option<&Arc<User>> {
        self.keys.get(access_key_id).map(|(u, _)| u)
    }

    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}
