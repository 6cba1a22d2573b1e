//! IAM as data: users, groups and their permissions, as the YAML
//! (`access.iam_users`, `access.iam_groups`), the config database and the
//! admin API carry them. `gateway::policy` compiles and judges them.

use serde::{Deserialize, Serialize};

use super::settings::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition: `{Operator: {key: [values]}}` flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionSpec {
    pub op: String,
    pub key: String,
    pub values: Vec<String>,
}

/// `{effect, actions, resources, conditions}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionSpec {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionSpec>,
}

/// An access key of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserKey {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IamUser {
    pub name: String,
    pub enabled: bool,
    pub keys: Vec<UserKey>,
    pub groups: Vec<String>,
    pub permissions: Vec<PermissionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamGroup {
    pub name: String,
    pub permissions: Vec<PermissionSpec>,
}

/// Where the config database is, and its key file if named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDbSettings {
    pub path: std::path::PathBuf,
    pub key_file: Option<std::path::PathBuf>,
}

/// `access.config_db_path` default: in the working directory (the state
/// directory `/var/lib/deltaglider_proxy` under systemd).
pub const DEFAULT_CONFIG_DB_PATH: &str = "./config.db";

impl Default for ConfigDbSettings {
    fn default() -> Self {
        ConfigDbSettings {
            path: DEFAULT_CONFIG_DB_PATH.into(),
            key_file: None,
        }
    }
}

/// The users and groups of `iam_mode: declarative`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IamSettings {
    pub users: Vec<IamUser>,
    pub groups: Vec<IamGroup>,
}

/// IAM user names: 1-64 of letters, digits and `_+=,.@-` (IAM's own set).
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters long".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    {
        return Err("may contain only letters, digits and _+=,.@-".into());
    }
    Ok(())
}

/// `admin` is the built-in administrator's name (the bootstrap password and
/// the admin credential sign in as it, and the audit log records it): no
/// IAM user may take it, or the audit could not tell the two apart.
pub fn check_not_reserved(name: &str) -> Result<(), String> {
    if name.eq_ignore_ascii_case("admin") {
        return Err("is reserved for the built-in administrator; choose another name".into());
    }
    Ok(())
}

/// Access key ids: 3-128 of letters and digits (and `_.-`, which some
/// operators' existing keys use).
pub fn check_access_key_id(id: &str) -> Result<(), String> {
    if id.len() < 3 || id.len() > 128 {
        return Err("must be 3 to 128 characters long".into());
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err("may contain only letters, digits and _.-".into());
    }
    Ok(())
}

/// Secrets: at least 16 characters (AWS's are 40), no whitespace.
pub fn check_secret(secret: &str) -> Result<(), String> {
    if secret.len() < 16 {
        return Err("must be at least 16 characters long".into());
    }
    if secret.chars().any(char::is_whitespace) || secret.len() > 256 {
        return Err("must be at most 256 characters, without whitespace".into());
    }
    Ok(())
}
