//! The `DGE1` body format: the 24-byte header, the per-chunk nonce and AAD,
//! sealing and opening one chunk, and the length and range arithmetic that
//! maps plaintext offsets to ciphertext offsets.
//!
//! Header layout (all offsets in bytes):
//!
//! | offset | len | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `DGE1` |
//! | 4 | 1 | format version, `1` |
//! | 5 | 1 | chunk-size exponent (plaintext chunk = `1 << exp`), 12..=24 |
//! | 6 | 2 | reserved, zero |
//! | 8 | 12 | nonce base (random per object version) |
//! | 20 | 4 | reserved, zero |

use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::error::CryptoError;
use super::keys::Dek;

/// Magic at offset 0 of every encrypted body.
pub const MAGIC: [u8; 4] = *b"DGE1";
/// Body format version written and read.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the body header.
pub const HEADER_LEN: usize = 24;
/// Default chunk-size exponent: 64 KiB plaintext chunks.
pub const DEFAULT_CHUNK_EXP: u8 = 16;
/// Smallest chunk-size exponent accepted (4 KiB).
pub const MIN_CHUNK_EXP: u8 = 12;
/// Largest chunk-size exponent accepted (16 MiB).
pub const MAX_CHUNK_EXP: u8 = 24;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length, appended to every chunk.
pub const TAG_LEN: usize = 16;
/// Offset of the nonce base in the header.
pub const NONCE_BASE_OFFSET: usize = 8;
/// Length of a chunk's AAD: header || index (u64 BE) || final flag.
pub const CHUNK_AAD_LEN: usize = HEADER_LEN + 8 + 1;

const VERSION_OFFSET: usize = 4;
const EXP_OFFSET: usize = 5;

/// The parsed body header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    chunk_exp: u8,
    nonce_base: [u8; NONCE_LEN],
}

fn check_exp(chunk_exp: u8) -> Result<(), CryptoError> {
    if (MIN_CHUNK_EXP..=MAX_CHUNK_EXP).contains(&chunk_exp) {
        Ok(())
    } else {
        Err(CryptoError::BadHeader)
    }
}

impl Header {
    /// A header with a fresh random nonce base; `BadHeader` if the exponent
    /// is outside 12..=24.
    pub fn new_random(chunk_exp: u8) -> Result<Header, CryptoError> {
        check_exp(chunk_exp)?;
        let mut nonce_base = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce_base);
        Ok(Header {
            chunk_exp,
            nonce_base,
        })
    }

    /// A header with a given nonce base (tests, deterministic sealing).
    pub fn with_nonce_base(
        chunk_exp: u8,
        nonce_base: [u8; NONCE_LEN],
    ) -> Result<Header, CryptoError> {
        check_exp(chunk_exp)?;
        Ok(Header {
            chunk_exp,
            nonce_base,
        })
    }

    /// Parses the first bytes of a body. Fewer than 24 bytes that agree with
    /// the magic so far are `Truncated`.
    pub fn parse(bytes: &[u8]) -> Result<Header, CryptoError> {
        let magic_part = bytes.len().min(MAGIC.len());
        if bytes[..magic_part] != MAGIC[..magic_part] {
            return Err(CryptoError::BadMagic);
        }
        if bytes.len() < HEADER_LEN {
            return Err(CryptoError::Truncated);
        }
        let version = bytes[VERSION_OFFSET];
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let chunk_exp = bytes[EXP_OFFSET];
        check_exp(chunk_exp)?;
        if bytes[6..NONCE_BASE_OFFSET].iter().any(|&b| b != 0)
            || bytes[NONCE_BASE_OFFSET + NONCE_LEN..HEADER_LEN]
                .iter()
                .any(|&b| b != 0)
        {
            return Err(CryptoError::BadHeader);
        }
        let mut nonce_base = [0u8; NONCE_LEN];
        nonce_base.copy_from_slice(&bytes[NONCE_BASE_OFFSET..NONCE_BASE_OFFSET + NONCE_LEN]);
        Ok(Header {
            chunk_exp,
            nonce_base,
        })
    }

    /// The 24 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[VERSION_OFFSET] = FORMAT_VERSION;
        out[EXP_OFFSET] = self.chunk_exp;
        out[NONCE_BASE_OFFSET..NONCE_BASE_OFFSET + NONCE_LEN].copy_from_slice(&self.nonce_base);
        out
    }

    /// log2 of the plaintext chunk size.
    pub fn chunk_exp(&self) -> u8 {
        self.chunk_exp
    }

    /// Plaintext chunk size in bytes.
    pub fn chunk_size(&self) -> usize {
        1usize << self.chunk_exp
    }
}

/// Whether a file starts like an encrypted body (the `DGE1` magic), so the
/// engine can refuse to serve ciphertext of a file whose metadata lost its
/// encryption marker.
pub fn looks_encrypted(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(&MAGIC)
}

/// Seals and opens the chunks of one body: the DEK's cipher plus the header
/// that every chunk's AAD and nonce derive from.
pub(super) struct ChunkCipher {
    aead: ChunkAead,
    header: Header,
    header_bytes: [u8; HEADER_LEN],
}

impl ChunkCipher {
    pub(super) fn new(dek: &Dek, header: Header) -> ChunkCipher {
        ChunkCipher::with_aead(dek.cipher(), header)
    }

    pub(super) fn with_aead(aead: ChunkAead, header: Header) -> ChunkCipher {
        ChunkCipher {
            aead,
            header,
            header_bytes: header.encode(),
        }
    }

    pub(super) fn header(&self) -> &Header {
        &self.header
    }

    pub(super) fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header_bytes
    }

    /// Nonce base with the chunk index (u64 BE) XORed into its last 8 bytes.
    fn nonce(&self, index: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.header.nonce_base;
        for (n, i) in nonce[NONCE_LEN - 8..].iter_mut().zip(index.to_be_bytes()) {
            *n ^= i;
        }
        nonce
    }

    /// Header || index (u64 BE) || final flag.
    fn aad(&self, index: u64, is_final: bool) -> [u8; CHUNK_AAD_LEN] {
        let mut aad = [0u8; CHUNK_AAD_LEN];
        aad[..HEADER_LEN].copy_from_slice(&self.header_bytes);
        aad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
        aad[HEADER_LEN + 8] = u8::from(is_final);
        aad
    }

    /// Encrypts `data` in place and returns the tag.
    pub(super) fn seal_detached(
        &self,
        index: u64,
        is_final: bool,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(self.nonce(index)),
                Aad::from(self.aad(index, is_final)),
                data,
            )
            .map_err(|_| CryptoError::InvalidLength)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn try_open(&self, index: u64, is_final: bool, sealed: &mut [u8]) -> bool {
        self.aead
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce(index)),
                Aad::from(self.aad(index, is_final)),
                sealed,
            )
            .is_ok()
    }

    /// Authenticates and decrypts one sealed chunk (`ciphertext || tag`) in
    /// place; on success the plaintext is `sealed[..sealed.len() - 16]`.
    ///
    /// On failure the buffer must be discarded (it is zeroed). For the chunk
    /// we expect to be final, the error says what happened: one that opens
    /// as non-final means the body was cut short (`Truncated`). Anything else
    /// is `ChunkAuth`.
    pub(super) fn open(
        &self,
        index: u64,
        is_final: bool,
        sealed: &mut [u8],
    ) -> Result<(), CryptoError> {
        if sealed.len() < TAG_LEN {
            return Err(if is_final {
                CryptoError::Truncated
            } else {
                CryptoError::ChunkAuth { index }
            });
        }
        // Diagnosis needs the ciphertext again after a failed open (ring
        // zeroes the buffer): keep a copy of the one final chunk per object.
        let backup = is_final.then(|| sealed.to_vec());
        if self.try_open(index, is_final, sealed) {
            return Ok(());
        }
        if let Some(mut copy) = backup
            && self.try_open(index, false, &mut copy)
        {
            return Err(CryptoError::Truncated);
        }
        Err(CryptoError::ChunkAuth { index })
    }
}

/// The AEAD that seals chunks: ring's AES-256-GCM (AES-NI/VAES + CLMUL
/// assembly, several GB/s per core). Its expanded key schedule is not
/// zeroized on drop (ring does not offer that); the data key itself is.
pub(super) type ChunkAead = LessSafeKey;

/// The chunk AEAD for a 32-byte data key.
pub(super) fn chunk_aead(key: &[u8; 32]) -> ChunkAead {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key"))
}

fn chunk_size_u64(chunk_exp: u8) -> u64 {
    1u64.checked_shl(u32::from(chunk_exp)).unwrap_or(u64::MAX)
}

/// Number of chunks of a plaintext: `max(1, ceil(plain_len / chunk))` (an
/// empty object is one empty final chunk).
pub fn chunk_count(plain_len: u64, chunk_exp: u8) -> u64 {
    plain_len.div_ceil(chunk_size_u64(chunk_exp)).max(1)
}

/// Stored length of a plaintext of `plain_len` bytes:
/// `24 + plain_len + 16 * chunk_count`. Saturates at `u64::MAX`.
pub fn ciphertext_len(plain_len: u64, chunk_exp: u8) -> u64 {
    let tags = chunk_count(plain_len, chunk_exp).saturating_mul(TAG_LEN as u64);
    (HEADER_LEN as u64)
        .saturating_add(plain_len)
        .saturating_add(tags)
}

/// Plaintext length of a stored body of `cipher_len` bytes; `InvalidLength`
/// for a length no body has (`BadHeader` for an exponent out of range).
pub fn plaintext_len(cipher_len: u64, chunk_exp: u8) -> Result<u64, CryptoError> {
    check_exp(chunk_exp)?;
    let chunk = chunk_size_u64(chunk_exp);
    let sealed = chunk + TAG_LEN as u64;
    let body = cipher_len
        .checked_sub(HEADER_LEN as u64)
        .ok_or(CryptoError::InvalidLength)?;
    let full = body / sealed;
    let rem = body % sealed;
    match rem {
        // Whole number of full chunks; at least one.
        0 if full > 0 => Ok(full * chunk),
        // An empty final chunk: only the empty object has one.
        r if r == TAG_LEN as u64 && full == 0 => Ok(0),
        r if r > TAG_LEN as u64 => Ok(full * chunk + (r - TAG_LEN as u64)),
        _ => Err(CryptoError::InvalidLength),
    }
}

/// The chunks a plaintext range needs and where they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Index of the first chunk to read.
    pub first_chunk: u64,
    /// Index of the last chunk to read (inclusive).
    pub last_chunk: u64,
    /// Offset of the first chunk in the stored file.
    pub cipher_offset: u64,
    /// Stored bytes from `cipher_offset` through the end of `last_chunk`.
    pub cipher_len: u64,
    /// Plaintext bytes of the first chunk before the range starts.
    pub skip_in_first: u64,
}

/// Maps the plaintext range `[plain_start, plain_start + plain_len)` of an
/// object of `object_len` plaintext bytes to the chunks covering it.
/// `InvalidLength` if the range goes past the object. An empty range maps
/// to the one chunk holding `plain_start` (the last chunk when it is the
/// end of the object), so even an empty read authenticates something.
pub fn chunk_range(
    plain_start: u64,
    plain_len: u64,
    object_len: u64,
    chunk_exp: u8,
) -> Result<ChunkSpan, CryptoError> {
    check_exp(chunk_exp)?;
    let end = plain_start
        .checked_add(plain_len)
        .ok_or(CryptoError::InvalidLength)?;
    if end > object_len {
        return Err(CryptoError::InvalidLength);
    }
    let chunk = chunk_size_u64(chunk_exp);
    let sealed = chunk + TAG_LEN as u64;
    let count = chunk_count(object_len, chunk_exp);
    let (first, last) = if plain_len == 0 {
        let c = (plain_start / chunk).min(count - 1);
        (c, c)
    } else {
        (plain_start / chunk, (end - 1) / chunk)
    };
    let last_plain = (object_len - last * chunk).min(chunk);
    Ok(ChunkSpan {
        first_chunk: first,
        last_chunk: last,
        cipher_offset: HEADER_LEN as u64 + first * sealed,
        cipher_len: (last - first) * sealed + last_plain + TAG_LEN as u64,
        skip_in_first: plain_start - first * chunk,
    })
}
