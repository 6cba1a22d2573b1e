//! Key material: the operator's key-encryption key (`Kek`), the per-object
//! data key (`Dek`), the key id naming a KEK, and the key-check record that
//! tells whether a configured KEK is the one a backend was written with.
//!
//! Key bytes are zeroized on drop and never printed; neither type is `Copy`.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::CryptoError;

/// Length of every key (KEK and DEK) in bytes: AES-256.
pub const KEY_LEN: usize = 32;
/// HMAC message for deriving a key id from a KEK.
pub const KEY_ID_LABEL: &[u8] = b"deltaglider key id v1";
/// Prefix of a derived key id.
pub const KEY_ID_PREFIX: &str = "k-";
/// Hex characters of the HMAC kept in a derived key id (8 bytes).
pub const KEY_ID_HEX_LEN: usize = 16;
/// Longest key id accepted (bytes).
pub const KEY_ID_MAX_LEN: usize = 64;
/// HMAC message of the key-check record.
pub const KEY_CHECK_LABEL: &[u8] = b"deltaglider key check v1";
/// Length of the key-check record in bytes.
pub const KEY_CHECK_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

fn hmac_sha256(key: &[u8; KEY_LEN], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The backend's key-encryption key, 32 bytes given by the operator.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Kek([u8; KEY_LEN]);

/// Constant time: a reload compares the configured key with the running one.
impl PartialEq for Kek {
    fn eq(&self, other: &Kek) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Kek {
    /// A KEK from raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Kek {
        Kek(bytes)
    }

    /// A KEK from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Kek, CryptoError> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("a key must be exactly 32 bytes"))?;
        Ok(Kek(arr))
    }

    /// A KEK from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Kek, CryptoError> {
        let bytes = Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| CryptoError::InvalidKey("not hex"))?,
        );
        Kek::from_slice(&bytes)
    }

    /// A KEK from standard base64 of 32 bytes (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Kek, CryptoError> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| CryptoError::InvalidKey("not base64"))?,
        );
        Kek::from_slice(&bytes)
    }

    /// A fresh random KEK (tests, key generation tools).
    pub fn generate() -> Kek {
        let mut kek = Kek([0u8; KEY_LEN]);
        rand::rng().fill_bytes(&mut kek.0);
        kek
    }

    pub(super) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&self.0))
    }

    pub(super) fn hmac(&self, msg: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, msg)
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// A per-object data key: random, 32 bytes, stored only wrapped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Dek([u8; KEY_LEN]);

impl Dek {
    /// A fresh random data key (one per object version).
    pub fn generate() -> Dek {
        let mut dek = Dek([0u8; KEY_LEN]);
        rand::rng().fill_bytes(&mut dek.0);
        dek
    }

    /// A data key from raw bytes (tests; unwrapping builds it in place).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Dek {
        Dek(bytes)
    }

    /// The key of segment `number` of a segmented body (one per multipart
    /// part): `HMAC-SHA256(DEK, "dg-segment-v1" || 0x00 || u32_be(number))`.
    /// Binding the part number into the key makes a segment moved to
    /// another position fail authentication.
    pub fn segment_key(&self, number: u32) -> Dek {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.0)
            .expect("HMAC takes any key length");
        mac.update(b"dg-segment-v1\0");
        mac.update(&number.to_be_bytes());
        let out = mac.finalize().into_bytes();
        let mut dek = Dek::zeroed();
        dek.0.copy_from_slice(&out);
        dek
    }

    pub(super) fn zeroed() -> Dek {
        Dek([0u8; KEY_LEN])
    }

    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(super) fn bytes_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }

    pub(super) fn cipher(&self) -> super::format::ChunkAead {
        super::format::chunk_aead(&self.0)
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

/// The one rule for key ids, used by the config check and by the crypto
/// code: 1 to 64 of `[A-Za-z0-9._-]`. Ids name key check record files and
/// are bound into the AAD (NUL-separated), so nothing else is allowed.
pub fn check_key_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > KEY_ID_MAX_LEN {
        return Err("must be 1 to 64 characters long");
    }
    if !id
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err("may contain only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The name of a KEK, stored beside every wrapped key and bound into its AAD.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// An operator-chosen key id (see [`check_key_id`]).
    pub fn new(id: impl Into<String>) -> Result<KeyId, CryptoError> {
        let id = id.into();
        check_key_id(&id).map_err(|_| CryptoError::InvalidKeyId)?;
        Ok(KeyId(id))
    }

    /// The key id used when the operator gives none:
    /// `"k-" + hex(HMAC-SHA256(kek, "deltaglider key id v1"))[..16]`.
    /// Stable for a KEK and reveals nothing about it.
    pub fn derive(kek: &Kek) -> KeyId {
        let mac = kek.hmac(KEY_ID_LABEL);
        let hex = hex::encode(&mac[..KEY_ID_HEX_LEN / 2]);
        KeyId(format!("{KEY_ID_PREFIX}{hex}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key-check record of a KEK: `HMAC-SHA256(kek, "deltaglider key check v1")`.
/// Stored at the backend root so a start with a different KEK is refused.
/// It contains no key material.
pub fn key_check(kek: &Kek) -> [u8; KEY_CHECK_LEN] {
    kek.hmac(KEY_CHECK_LABEL)
}

/// Whether `record` is the key-check record of `kek` (constant time; a
/// record of the wrong length is simply false).
pub fn verify_key_check(kek: &Kek, record: &[u8]) -> bool {
    if record.len() != KEY_CHECK_LEN {
        return false;
    }
    key_check(kek).as_slice().ct_eq(record).into()
}
