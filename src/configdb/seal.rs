//! Per-record sealing of the secrets in the database (user secret keys):
//! each secret is encrypted with its own random data key (AES-256-GCM), and
//! the data key is wrapped by a key derived from the database key. The
//! record's name (the access key id) is the associated data of both, so a
//! sealed value copied onto another row does not open. On top of the
//! SQLCipher page encryption: a secret never sits decrypted in a page cache
//! or an export.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE: usize = 12;
const WRAPPED: usize = 32 + 16;

pub struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    /// HMAC-SHA256(database key, label): SQLCipher uses the database key
    /// itself; the sealing key is a separate one derived from it.
    pub fn derive(db_key: &[u8; 32]) -> SealKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(db_key).expect("any key length");
        mac.update(b"deltaglider_proxy config-db seal v1");
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        SealKey(out)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.0[..]).expect("32-byte key")
    }

    /// `version || wrap nonce || wrapped data key || nonce || ciphertext`.
    pub fn seal(&self, name: &str, secret: &[u8]) -> Vec<u8> {
        let dk = Zeroizing::new(rand::random::<[u8; 32]>());
        let (n1, n2) = (rand::random::<[u8; NONCE]>(), rand::random::<[u8; NONCE]>());
        let wrapped = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&n1),
                Payload {
                    msg: &dk[..],
                    aad: name.as_bytes(),
                },
            )
            .expect("in-memory encryption");
        let data = Aes256Gcm::new_from_slice(&dk[..]).expect("32-byte key");
        let ct = data
            .encrypt(
                Nonce::from_slice(&n2),
                Payload {
                    msg: secret,
                    aad: name.as_bytes(),
                },
            )
            .expect("in-memory encryption");
        let mut out = Vec::with_capacity(1 + 2 * NONCE + WRAPPED + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&n1);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&n2);
        out.extend_from_slice(&ct);
        out
    }

    /// The secret, or `None` if the record was not sealed for `name` with
    /// this key (or was altered).
    pub fn open(&self, name: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 1 + 2 * NONCE + WRAPPED + 16 || sealed[0] != VERSION {
            return None;
        }
        let (n1, rest) = sealed[1..].split_at(NONCE);
        let (wrapped, rest) = rest.split_at(WRAPPED);
        let (n2, ct) = rest.split_at(NONCE);
        let dk = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(n1),
                    Payload {
                        msg: wrapped,
                        aad: name.as_bytes(),
                    },
                )
                .ok()?,
        );
        let data = Aes256Gcm::new_from_slice(&dk).ok()?;
        data.decrypt(
            Nonce::from_slice(n2),
            Payload {
                msg: ct,
                aad: name.as_bytes(),
            },
        )
        .ok()
        .map(Zeroizing::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = SealKey::derive(&[7u8; 32]);
        let s = k.seal("AKIA1", b"secret-value");
        assert_eq!(&k.open("AKIA1", &s).unwrap()[..], b"secret-value");
        assert!(k.open("AKIA2", &s).is_none(), "bound to its record");
        assert!(SealKey::derive(&[8u8; 32]).open("AKIA1", &s).is_none());
        for i in [0, 5, 30, s.len() - 1] {
            let mut t = s.clone();
            t[i] ^= 1;
            assert!(k.open("AKIA1", &t).is_none(), "byte {i}");
        }
        assert!(!s.windows(12).any(|w| w == b"secret-value"));
    }
}
