//! The key envelope: a per-object DEK sealed under the KEK with AES-256-GCM,
//! bound to the key id and the object's identity (bucket, key), stored as
//! base64 in the object's metadata. Rotation is unwrap + wrap.

use std::fmt;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use base64::Engine as _;
use rand::RngCore;

use super::error::CryptoError;
use super::keys::{Dek, KEY_LEN, Kek, KeyId};

/// First bytes of the wrap AAD (domain separation, version 1).
pub const WRAP_AAD_PREFIX: &[u8] = b"dg-wrap-v1\0";
/// Nonce length of the wrap (AES-GCM standard 96 bits).
pub const WRAP_NONCE_LEN: usize = 12;
/// GCM tag length of the wrap.
pub const WRAP_TAG_LEN: usize = 16;
/// Wire length of a wrapped DEK: nonce(12) || ciphertext(32) || tag(16).
pub const WRAPPED_DEK_LEN: usize = WRAP_NONCE_LEN + KEY_LEN + WRAP_TAG_LEN;

/// Which object a wrapped key belongs to. Binding it into the AAD makes a
/// wrapped key (and so the body it opens) useless under any other name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectIdentity<'a> {
    /// Bucket name (S3 rules: never contains NUL).
    pub bucket: &'a str,
    /// Object key (the engine refuses keys with NUL; as the last AAD field
    /// it would stay unambiguous anyway).
    pub key: &'a str,
}

/// A DEK sealed under a KEK: `nonce(12) || ciphertext(32) || tag(16)`.
/// Not secret; stored as standard base64.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek([u8; WRAPPED_DEK_LEN]);

impl WrappedDek {
    /// The raw 60 bytes.
    pub fn as_bytes(&self) -> &[u8; WRAPPED_DEK_LEN] {
        &self.0
    }

    /// From raw bytes; anything but 60 bytes is `KeyUnwrap`.
    pub fn from_slice(bytes: &[u8]) -> Result<WrappedDek, CryptoError> {
        let arr: [u8; WRAPPED_DEK_LEN] = bytes.try_into().map_err(|_| CryptoError::KeyUnwrap)?;
        Ok(WrappedDek(arr))
    }

    /// Standard base64 (80 characters), as stored in the metadata.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// From the metadata's base64; malformed text or length is `KeyUnwrap`.
    pub fn from_base64(text: &str) -> Result<WrappedDek, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| CryptoError::KeyUnwrap)?;
        WrappedDek::from_slice(&bytes)
    }
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedDek({})", self.to_base64())
    }
}

/// `"dg-wrap-v1\0" || key_id || "\0" || bucket || "\0" || object_key`.
fn wrap_aad(key_id: &KeyId, identity: ObjectIdentity<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        WRAP_AAD_PREFIX.len()
            + key_id.as_str().len()
            + identity.bucket.len()
            + identity.key.len()
            + 2,
    );
    aad.extend_from_slice(WRAP_AAD_PREFIX);
    aad.extend_from_slice(key_id.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(identity.bucket.as_bytes());
    aad.push(0);
    aad.extend_from_slice(identity.key.as_bytes());
    aad
}

/// Seals `dek` under `kek` for one object, with a fresh random nonce.
pub fn wrap_dek(kek: &Kek, key_id: &KeyId, identity: ObjectIdentity<'_>, dek: &Dek) -> WrappedDek {
    let mut nonce = [0u8; WRAP_NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    wrap_dek_with_nonce(kek, key_id, identity, dek, nonce)
}

/// [`wrap_dek`] with a given nonce (known-answer tests only: a nonce must
/// never repeat under one KEK).
pub(super) fn wrap_dek_with_nonce(
    kek: &Kek,
    key_id: &KeyId,
    identity: ObjectIdentity<'_>,
    dek: &Dek,
    nonce: [u8; WRAP_NONCE_LEN],
) -> WrappedDek {
    let mut out = [0u8; WRAPPED_DEK_LEN];
    let (nonce_out, rest) = out.split_at_mut(WRAP_NONCE_LEN);
    let (body, tag_out) = rest.split_at_mut(KEY_LEN);
    nonce_out.copy_from_slice(&nonce);
    body.copy_from_slice(dek.bytes());
    let aad = wrap_aad(key_id, identity);
    // AES-GCM only fails for plaintexts over 64 GiB; this one is 32 bytes.
    let tag = kek
        .cipher()
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, body)
        .expect("AES-GCM seals 32 bytes");
    tag_out.copy_from_slice(&tag);
    WrappedDek(out)
}

/// Opens a wrapped DEK. `KeyUnwrap` for a wrong KEK, key id or identity, or
/// a tampered blob.
pub fn unwrap_dek(
    kek: &Kek,
    key_id: &KeyId,
    identity: ObjectIdentity<'_>,
    wrapped: &WrappedDek,
) -> Result<Dek, CryptoError> {
    let (nonce, rest) = wrapped.0.split_at(WRAP_NONCE_LEN);
    let (body, tag) = rest.split_at(KEY_LEN);
    let aad = wrap_aad(key_id, identity);
    let mut dek = Dek::zeroed();
    dek.bytes_mut().copy_from_slice(body);
    kek.cipher()
        .decrypt_in_place_detached(
            Nonce::from_slice(nonce),
            &aad,
            dek.bytes_mut(),
            Tag::from_slice(tag),
        )
        .map_err(|_| CryptoError::KeyUnwrap)?;
    Ok(dek)
}

/// Re-seals a wrapped DEK under a new KEK and key id (key rotation). The
/// object body is untouched: its DEK stays the same.
pub fn rewrap(
    old_kek: &Kek,
    old_id: &KeyId,
    new_kek: &Kek,
    new_id: &KeyId,
    identity: ObjectIdentity<'_>,
    wrapped: &WrappedDek,
) -> Result<WrappedDek, CryptoError> {
    let dek = unwrap_dek(old_kek, old_id, identity, wrapped)?;
    Ok(wrap_dek(new_kek, new_id, identity, &dek))
}
