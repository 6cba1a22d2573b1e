//! Encryption at rest for the filesystem backend (format `DGE1`, version 1).
//!
//! Every object version gets a random data key (`Dek`). Its body is stored
//! as a 24-byte header followed by AES-256-GCM sealed chunks (default
//! 64 KiB of plaintext each); the chunk index and a final flag are bound
//! into each chunk, so reordering, truncation and extension are detected,
//! and range reads decrypt only the chunks they need. The DEK is stored in
//! the object's metadata wrapped under the operator's key-encryption key
//! (`Kek`), bound to the key id and the object's bucket and key.
//!
//! Submodules: [`keys`] (KEK, DEK, key id, key check), [`envelope`] (DEK
//! wrapping), [`format`] (header, chunk nonce/AAD, length math),
//! [`stream`] (async encrypt/decrypt stages), [`reader`] (blocking range
//! reads), [`buffer`] (one-shot in-memory sealing), [`error`].
//! The byte-level format is in `docs/encryption-format.md`.

pub mod buffer;
pub mod envelope;
pub mod error;
pub mod format;
pub mod keys;
pub mod reader;
pub mod stream;
pub mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

/// A body: a stream of byte chunks with I/O errors in-band (the same type
/// as the engine's body stream).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub use buffer::{decrypt_vec, encrypt_vec};
pub use envelope::{ObjectIdentity, WRAPPED_DEK_LEN, WrappedDek, rewrap, unwrap_dek, wrap_dek};
pub use error::CryptoError;
pub use format::{
    ChunkSpan, DEFAULT_CHUNK_EXP, FORMAT_VERSION, HEADER_LEN, Header, MAGIC, MAX_CHUNK_EXP,
    MIN_CHUNK_EXP, TAG_LEN, chunk_count, chunk_range, ciphertext_len, looks_encrypted,
    plaintext_len,
};
pub use keys::{Dek, KEY_LEN, Kek, KeyId, check_key_id, key_check, verify_key_check};
pub use reader::{Decryptor, range_stream};
pub use stream::{decrypt_stream, encrypt_stream};
pub use writer::SealingWriter;
