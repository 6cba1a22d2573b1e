//! Configuration of deltaglider_proxy: the YAML file (sections `admission`,
//! `access`, `storage`, `advanced`, all optional), CLI/env overrides, and
//! encryption key resolution.
//!
//! Entry points:
//! * [`load`]: file + [`Overrides`] -> validated [`Settings`] (startup).
//! * [`lint`]: file -> [`LintReport`] (`config lint`; lenient about unset
//!   key variables, which become warnings).
//! * [`resolve_encryption_keys`]: [`Settings`] -> 32-byte keys (serve time).
//!
//! Precedence: CLI flag > environment variable > file > default. The caller
//! merges CLI and env into one [`Overrides`] ([`Overrides::from_env`] and
//! [`Overrides::or`] help). The environment is always passed in as a lookup
//! function; nothing in this module reads `std::env`.
//!
//! Files: `raw.rs` (serde mirror of the YAML), `expand.rs` (`${env:NAME}`),
//! `validate.rs` (rules, raw -> settings), `settings.rs` (typed result),
//! `rules.rs` (naming rules), `keys.rs` (key material), `error.rs`.

#![forbid(unsafe_code)]

pub mod document;
mod error;
mod expand;
mod iam;
mod keys;
mod raw;
mod rules;
mod settings;
pub mod sso;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_iam;
#[cfg(test)]
mod tests_sso;

use std::path::{Path, PathBuf};

use serde_saphyr::MessageFormatter;

pub use error::{ConfigError, Problem};

/// A config value with its `${env:...}` references expanded, as the
/// validator reads it (`None`: a reference that cannot be expanded).
pub fn expanded(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    expand::expand(value, env).ok()
}
pub use iam::*;
pub use keys::{
    BackendKeys, EncryptionKey, KEY_LEN, ResolvedKeys, parse_hex_key, read_key, read_key_file,
    resolve_encryption_keys,
};
pub use rules::{backend_env_var, env_var_for_backend};
pub use settings::*;
pub use validate::SINGLETON_KEY_VAR;

/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "DGP_CONFIG";
pub const ENV_LISTEN_ADDR: &str = "DGP_LISTEN_ADDR";
pub const ENV_DATA_DIR: &str = "DGP_DATA_DIR";
pub const ENV_ACCESS_KEY_ID: &str = "DGP_ACCESS_KEY_ID";
pub const ENV_SECRET_ACCESS_KEY: &str = "DGP_SECRET_ACCESS_KEY";
pub const ENV_LOG_LEVEL: &str = "DGP_LOG_LEVEL";
pub const ENV_TRUST_PROXY_HEADERS: &str = "DGP_TRUST_PROXY_HEADERS";

/// Values that win over the file (from CLI flags or `DGP_*` variables).
#[derive(Clone, Default)]
pub struct Overrides {
    pub listen_addr: Option<String>,
    /// Path of the embedded default filesystem backend; ignored (with a
    /// warning in [`Settings::warnings`]) when the file defines a backend.
    pub data_dir: Option<PathBuf>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub log_level: Option<String>,
    /// `DGP_TRUST_PROXY_HEADERS` (true/false), over `advanced.trust_proxy_headers`.
    pub trust_proxy_headers: Option<String>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("listen_addr", &self.listen_addr)
            .field("data_dir", &self.data_dir)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("log_level", &self.log_level)
            .field("trust_proxy_headers", &self.trust_proxy_headers)
            .finish()
    }
}

impl Overrides {
    /// Reads `DGP_LISTEN_ADDR`, `DGP_DATA_DIR`, `DGP_ACCESS_KEY_ID`,
    /// `DGP_SECRET_ACCESS_KEY`, `DGP_LOG_LEVEL` and `DGP_TRUST_PROXY_HEADERS`
    /// through `env`. Empty
    /// values count as unset.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Overrides {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        Overrides {
            listen_addr: get(ENV_LISTEN_ADDR),
            data_dir: get(ENV_DATA_DIR).map(PathBuf::from),
            access_key_id: get(ENV_ACCESS_KEY_ID),
            secret_access_key: get(ENV_SECRET_ACCESS_KEY),
            log_level: get(ENV_LOG_LEVEL),
            trust_proxy_headers: get(ENV_TRUST_PROXY_HEADERS),
        }
    }

    /// Field by field, `self` wins over `lower`
    /// (`cli.or(Overrides::from_env(&env))`).
    pub fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            listen_addr: self.listen_addr.or(lower.listen_addr),
            data_dir: self.data_dir.or(lower.data_dir),
            access_key_id: self.access_key_id.or(lower.access_key_id),
            secret_access_key: self.secret_access_key.or(lower.secret_access_key),
            log_level: self.log_level.or(lower.log_level),
            trust_proxy_headers: self.trust_proxy_headers.or(lower.trust_proxy_headers),
        }
    }
}

/// Result of a successful [`lint`]: the file is valid; these are advisories
/// (unresolved key variables, literal secrets, missing credentials...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintReport {
    pub warnings: Vec<String>,
}

/// The config file to use: the CLI `--config` value, else `DGP_CONFIG`.
pub fn config_path(cli: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    cli.map(Path::to_path_buf).or_else(|| {
        env(ENV_CONFIG)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    })
}

/// Loads the configuration for serving: reads `path` if given (no file means
/// an empty config: all defaults), validates it, expands `${env:...}`, and
/// applies `overrides`. Any unset `${env:NAME}` is an error, including in
/// encryption `key:` fields. Keys themselves are not read: call
/// [`resolve_encryption_keys`] for that.
pub fn load(
    path: Option<&Path>,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let (text, file) = match path {
        Some(p) => (read_file(p)?, p.display().to_string()),
        None => (String::new(), "<defaults>".to_string()),
    };
    load_str(&text, &file, overrides, env)
}

/// [`load`] from a string; `file` is only used in messages.
pub fn load_str(
    text: &str,
    file: &str,
    overrides: &Overrides,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let raw = parse(text, file)?;
    let mut v = validate::Validator::new(env, validate::Mode::Load);
    let mut settings = v.build(raw, overrides);
    if !v.problems.is_empty() {
        return Err(invalid(file, v.problems));
    }
    settings.warnings = v.warnings;
    Ok(settings)
}

/// Validates a config file offline (`config lint`). Errors list every
/// problem found; an encryption `key: "${env:NAME}"` whose variable is unset
/// is accepted with a warning. Overrides are not applied and key material is
/// never read.
pub fn lint(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<LintReport, ConfigError> {
    let text = read_file(path)?;
    lint_str(&text, &path.display().to_string(), env)
}

/// [`lint`] from a string; `file` is only used in messages.
pub fn lint_str(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LintReport, ConfigError> {
    let raw = parse(text, file)?;
    let mut v = validate::Validator::new(env, validate::Mode::Lint);
    v.build(raw, &Overrides::default());
    if !v.problems.is_empty() {
        return Err(invalid(file, v.problems));
    }
    Ok(LintReport {
        warnings: v.warnings,
    })
}

/// Problems in file order; those without a location (overrides, whole
/// sections) last.
fn invalid(file: &str, mut problems: Vec<Problem>) -> ConfigError {
    problems.sort_by_key(|p| p.location.unwrap_or((u64::MAX, u64::MAX)));
    ConfigError::Invalid {
        file: file.to_string(),
        problems,
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// YAML -> raw structs. An empty (or comment-only) document is the default.
fn parse(text: &str, file: &str) -> Result<raw::RawConfig, ConfigError> {
    match serde_saphyr::from_str::<Option<raw::RawConfig>>(text) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => {
            let location = e
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| (l.line(), l.column()));
            let message = serde_saphyr::UserMessageFormatter
                .format_message(e.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let snippet =
                e.render_with_options(serde_saphyr::render_options! { source_name: Some(file) });
            Err(ConfigError::Parse {
                file: file.to_string(),
                location,
                message,
                snippet,
            })
        }
    }
}
