//! The one error type of the encryption layer, and its mapping to and from
//! the `io::Error` items that carry it inside a body stream.

use std::io;

/// Everything that can go wrong sealing, opening, wrapping or unwrapping.
///
/// Integrity failures (`ChunkAuth`, `Truncated`, `TrailingData`, `KeyUnwrap`,
/// `BadMagic`, `BadHeader`, `UnsupportedVersion`, `InvalidLength`) all mean
/// "the stored bytes are not what this key sealed for this object"; none of
/// them is ever accompanied by plaintext from the failing chunk.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The body does not start with the `DGE1` magic.
    #[error("not an encrypted object body (bad magic)")]
    BadMagic,
    /// The header names a format version this code does not read.
    #[error("unsupported encryption format version {0}")]
    UnsupportedVersion(u8),
    /// Chunk-size exponent out of range, or a reserved byte is not zero.
    #[error("malformed encryption header")]
    BadHeader,
    /// A chunk failed AES-GCM authentication: tampered, reordered, taken
    /// from another object, or the wrong data key.
    #[error("encrypted chunk {index} failed authentication (tampered data or wrong key)")]
    ChunkAuth {
        /// Zero-based index of the chunk that failed.
        index: u64,
    },
    /// The body ends before its final chunk (the last chunk present was not
    /// sealed as final, or the file is shorter than recorded).
    #[error("encrypted body is truncated")]
    Truncated,
    /// Bytes follow the chunk that was sealed as final.
    #[error("data after the final chunk of an encrypted body")]
    TrailingData,
    /// The wrapped data key does not open under this KEK, key id and object
    /// identity, or the blob is malformed.
    #[error("cannot unwrap the object's data key (wrong key, other object, or tampered)")]
    KeyUnwrap,
    /// A length no encrypted body can have, or a range outside the object.
    #[error("invalid length for an encrypted body or range")]
    InvalidLength,
    /// Operator key material that is not exactly 32 bytes in the given
    /// encoding.
    #[error("invalid key material: {0}")]
    InvalidKey(&'static str),
    /// A key id that is empty, too long, or contains control characters.
    #[error("invalid key id")]
    InvalidKeyId,
    /// I/O error of the underlying reader.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CryptoError {
    /// The `CryptoError` carried inside an `io::Error` item of a body stream,
    /// if that is what it is.
    pub fn from_io(err: &io::Error) -> Option<&CryptoError> {
        err.get_ref()?.downcast_ref::<CryptoError>()
    }

    /// True when the error says the stored data (or the key used for it) is
    /// wrong, as opposed to an I/O failure or a caller mistake.
    pub fn is_integrity(&self) -> bool {
        !matches!(
            self,
            CryptoError::Io(_) | CryptoError::InvalidKey(_) | CryptoError::InvalidKeyId
        )
    }
}

impl From<CryptoError> for io::Error {
    /// An I/O error passes through unchanged; every other error becomes an
    /// `InvalidData` error wrapping the `CryptoError`.
    fn from(err: CryptoError) -> io::Error {
        match err {
            CryptoError::Io(inner) => inner,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
