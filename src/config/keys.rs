//! Key material: [`resolve_encryption_keys`] turns the [`KeySource`]s of a
//! validated [`Settings`] into 32-byte [`EncryptionKey`]s at serve time.
//!
//! * environment variable: exactly 64 hex characters (surrounding
//!   whitespace, e.g. a trailing newline, is ignored) -> 32 bytes;
//! * key file: exactly 32 raw bytes, refused if group- or world-accessible
//!   (`mode & 0o077 != 0`, Unix only).
//!
//! Keys are zeroed on drop, their `Debug` is redacted, and no error message
//! contains any part of a key (not even the offending character).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::ConfigError;
use super::settings::{KeySource, Settings};

/// Length of every key, in bytes.
pub const KEY_LEN: usize = 32;

/// A 256-bit key. Zeroed on drop; `Debug` shows only `<redacted>`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EncryptionKey(Box<[u8; KEY_LEN]>);

impl EncryptionKey {
    /// Wraps raw key bytes (the caller should zeroize its copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        EncryptionKey(Box::new(bytes))
    }
    /// The key bytes. Do not log them.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

/// The keys of one backend.
#[derive(Debug, Clone)]
pub struct BackendKeys {
    /// The current key (`aes256-gcm-proxy` only).
    pub key: Option<EncryptionKey>,
    pub key_id: Option<String>,
    /// The previous key, to read objects written before a rotation.
    pub legacy_key: Option<EncryptionKey>,
    pub legacy_key_id: Option<String>,
}

/// Keys of every backend that has at least one key source, by backend name.
pub type ResolvedKeys = BTreeMap<String, BackendKeys>;

/// Reads every key the settings refer to. All failures are collected into
/// one [`ConfigError::Keys`]; messages name the backend and the variable or
/// file, never the key.
pub fn resolve_encryption_keys(
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedKeys, ConfigError> {
    let mut out = ResolvedKeys::new();
    let mut problems = Vec::new();
    for backend in &settings.backends {
        let enc = &backend.encryption;
        if enc.key_source.is_none() && enc.legacy_key_source.is_none() {
            continue;
        }
        let mut read = |source: &Option<KeySource>, what: &str| -> Option<EncryptionKey> {
            let source = source.as_ref()?;
            match read_key(source, env) {
                Ok(k) => Some(k),
                Err(m) => {
                    problems.push(format!("backend `{}` {what}: {m}", backend.name));
                    None
                }
            }
        };
        let key = read(&enc.key_source, "key");
        let legacy_key = read(&enc.legacy_key_source, "legacy key");
        out.insert(
            backend.name.clone(),
            BackendKeys {
                key,
                key_id: enc.key_id.clone(),
                legacy_key,
                legacy_key_id: enc.legacy_key_id.clone(),
            },
        );
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::Keys { problems })
    }
}

/// Reads one key. The error string names the source, never the key.
pub fn read_key(
    source: &KeySource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EncryptionKey, String> {
    match source {
        KeySource::Env { var } => {
            let value = Zeroizing::new(
                env(var).ok_or_else(|| format!("environment variable {var} is not set"))?,
            );
            parse_hex_key(&value).map_err(|m| format!("environment variable {var}: {m}"))
        }
        KeySource::File { path } => {
            read_key_file(path).map_err(|m| format!("key file {}: {m}", path.display()))
        }
    }
}

/// 64 hex characters -> key. The message never quotes the input.
pub fn parse_hex_key(value: &str) -> Result<EncryptionKey, String> {
    let hex_str = value.trim();
    if hex_str.is_empty() {
        return Err(
            "is empty (expected 64 hex characters, e.g. from `openssl rand -hex 32`)".into(),
        );
    }
    if let Some(pos) = hex_str.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "is not valid hex (non-hex character at position {}); expected 64 hex characters",
            pos + 1
        ));
    }
    if hex_str.len() != 2 * KEY_LEN {
        return Err(format!(
            "must be exactly 64 hex characters (32 bytes), found {} characters",
            hex_str.len()
        ));
    }
    // Decode straight into the zeroizing box: no stray copy on the stack.
    let mut key = EncryptionKey(Box::new([0u8; KEY_LEN]));
    hex::decode_to_slice(hex_str, &mut key.0[..])
        .map_err(|_| "is not valid hex; expected 64 hex characters".to_string())?;
    Ok(key)
}

/// A key file: a regular file, not accessible by group/others, 32 raw bytes.
pub fn read_key_file(path: &Path) -> Result<EncryptionKey, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "has permissions {mode:04o}, which let group or others read it; run `chmod 600` (or 400) on it"
            ));
        }
    }
    if meta.len() != KEY_LEN as u64 {
        let hint = if meta.len() == 64 || meta.len() == 65 {
            " (it looks hex-encoded: a key file holds raw bytes, e.g. `openssl rand -out FILE 32`)"
        } else {
            ""
        };
        return Err(format!(
            "must contain exactly 32 raw bytes, found {} bytes{hint}",
            meta.len()
        ));
    }
    let mut file = File::open(path).map_err(|e| format!("cannot be opened: {e}"))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    // Read at most one byte more than needed: the file may have changed.
    (&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if buf.len() != KEY_LEN {
        return Err(format!(
            "must contain exactly 32 raw bytes, found {} bytes",
            buf.len()
        ));
    }
    let mut key = EncryptionKey(Box::new([0u8; KEY_LEN]));
    key.0.copy_from_slice(&buf);
    Ok(key)
}
