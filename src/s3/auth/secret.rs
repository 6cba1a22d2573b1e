//! Owns the secret-handling types: [`SecretKey`] (a secret access key that is
//! zeroized on drop, redacted in `Debug`, compared in constant time) and the
//! [`CredentialStore`] trait the verifier uses to look secrets up.

use std::collections::HashMap;
use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// A secret access key. The bytes are wiped when the value is dropped, `Debug`
/// never prints them, equality is constant-time, and the only way to read the
/// key is [`SecretKey::expose`].
#[derive(Clone)]
pub struct SecretKey(Zeroizing<String>);

impl SecretKey {
    pub fn new(s: String) -> Self {
        SecretKey(Zeroizing::new(s))
    }

    /// The secret itself. Use only to compute a signature; never log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl From<String> for SecretKey {
    fn from(s: String) -> Self {
        SecretKey::new(s)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        // `ct_eq` on slices of different lengths returns false without
        // looking at the contents; only the length can leak.
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretKey {}

/// Looks up the secret for an access key id (the main crate implements it
/// over its user store). `None` means "unknown access key".
pub trait CredentialStore: Send + Sync {
    fn secret_for(&self, access_key_id: &str) -> Option<SecretKey>;
}

/// A fixed map of access key id -> secret (handy for tests and static configs).
impl CredentialStore for HashMap<String, SecretKey> {
    fn secret_for(&self, access_key_id: &str) -> Option<SecretKey> {
        self.get(access_key_id).cloned()
    }
}
