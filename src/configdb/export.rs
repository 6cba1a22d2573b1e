//! `config-db export FILE` / `import FILE`: the whole database (IAM,
//! bucket policies and ACLs, single sign-on identities) as one sealed document. The export is encrypted with a key derived from the
//! database key (the same sealing as the secrets inside), so it is safe to
//! copy off the box, and it opens only with that key: keep the key too.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{ConfigDb, DbError, Result};
use crate::config::{IamGroup, IamSettings, IamUser, PermissionSpec, Secret, UserKey};

const MAGIC: &[u8] = b"DGP-CONFIG-DB-EXPORT 1\n";
const AAD: &str = "config-db export";

#[derive(Serialize, Deserialize)]
struct Doc {
    schema_version: i64,
    groups: Vec<IamGroup>,
    users: Vec<UserDoc>,
    /// (bucket, policy JSON); absent in exports from before schema 3.
    #[serde(default)]
    bucket_policies: Vec<(String, String)>,
    /// (bucket, canned ACL).
    #[serde(default)]
    bucket_acls: Vec<(String, String)>,
    /// Single sign-on identities; absent in exports from before schema 5.
    #[serde(default)]
    sso_identities: Vec<super::SsoIdentity>,
}

#[derive(Serialize, Deserialize)]
struct UserDoc {
    name: String,
    enabled: bool,
    groups: Vec<String>,
    permissions: Vec<PermissionSpec>,
    keys: Vec<(String, String)>,
}

impl ConfigDb {
    /// The sealed export of everything.
    pub fn export(&self) -> Result<Vec<u8>> {
        let iam = self.load_iam()?;
        let doc = Doc {
            schema_version: self.schema_version()?,
            groups: iam.groups,
            users: iam
                .users
                .into_iter()
                .map(|u| UserDoc {
                    name: u.name,
                    enabled: u.enabled,
                    groups: u.groups,
                    permissions: u.permissions,
                    keys: u
                        .keys
                        .into_iter()
                        .map(|k| (k.access_key_id, k.secret_access_key.expose().to_owned()))
                        .collect(),
                })
                .collect(),
            bucket_policies: self.bucket_policies()?,
            bucket_acls: self.bucket_acls()?,
            sso_identities: self.sso_identities()?,
        };
        let json = Zeroizing::new(serde_json::to_vec(&doc).expect("serializes"));
        let mut out = MAGIC.to_vec();
        out.extend(self.seal_key.seal(AAD, &json));
        Ok(out)
    }

    /// Replaces the database's contents with an export made with the same key.
    pub fn import(&mut self, bytes: &[u8]) -> Result<usize> {
        let sealed = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| DbError::Invalid("not a config database export".into()))?;
        let json = self.seal_key.open(AAD, sealed).ok_or_else(|| {
            DbError::Invalid(
                "the export does not open with this database's key (another key, or altered)"
                    .into(),
            )
        })?;
        let doc: Doc = serde_json::from_slice(&json)
            .map_err(|e| DbError::Invalid(format!("the export does not parse: {e}")))?;
        let iam = IamSettings {
            groups: doc.groups,
            users: doc
                .users
                .into_iter()
                .map(|u| IamUser {
                    name: u.name,
                    enabled: u.enabled,
                    groups: u.groups,
                    permissions: u.permissions,
                    keys: u
                        .keys
                        .into_iter()
                        .map(|(id, s)| UserKey {
                            access_key_id: id,
                            secret_access_key: Secret::new(s),
                        })
                        .collect(),
                })
                .collect(),
        };
        let n = iam.users.len();
        self.replace_all(&iam)?;
        self.replace_bucket_settings(&doc.bucket_policies, &doc.bucket_acls)?;
        self.replace_sso_identities(&doc.sso_identities)?;
        Ok(n)
    }
}
