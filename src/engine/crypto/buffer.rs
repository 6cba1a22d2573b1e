//! One-shot sealing and opening of a body held in memory: small bodies, and
//! the reference the streaming stages are tested against (written
//! independently of them, straight from the format definition).

use super::error::CryptoError;
use super::format::{ChunkCipher, HEADER_LEN, Header, TAG_LEN, ciphertext_len, plaintext_len};
use super::keys::Dek;

/// Seals `plain` into a complete `DGE1` body with a fresh nonce base.
pub fn encrypt_vec(plain: &[u8], dek: &Dek, chunk_exp: u8) -> Result<Vec<u8>, CryptoError> {
    let header = Header::new_random(chunk_exp)?;
    seal_all(plain, &ChunkCipher::new(dek, header))
}

pub(super) fn seal_all(plain: &[u8], cipher: &ChunkCipher) -> Result<Vec<u8>, CryptoError> {
    let header = cipher.header();
    let total = usize::try_from(ciphertext_len(plain.len() as u64, header.chunk_exp()))
        .map_err(|_| CryptoError::InvalidLength)?;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(cipher.header_bytes());
    let chunks: Vec<&[u8]> = if plain.is_empty() {
        vec![&[][..]]
    } else {
        plain.chunks(header.chunk_size()).collect()
    };
    let last = chunks.len() - 1;
    for (index, chunk) in chunks.into_iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(chunk);
        let tag = cipher.seal_detached(index as u64, index == last, &mut out[start..])?;
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// Opens a complete `DGE1` body held in memory.
pub fn decrypt_vec(body: &[u8], dek: &Dek) -> Result<Vec<u8>, CryptoError> {
    let header = Header::parse(body)?;
    if body.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    let plain_len = plaintext_len(body.len() as u64, header.chunk_exp())?;
    let cipher = ChunkCipher::new(dek, header);
    let sealed_size = header.chunk_size() + TAG_LEN;
    let sealed: Vec<&[u8]> = body[HEADER_LEN..].chunks(sealed_size).collect();
    let last = sealed.len() - 1;
    let mut out =
        Vec::with_capacity(usize::try_from(plain_len).map_err(|_| CryptoError::InvalidLength)?);
    let mut scratch = Vec::with_capacity(sealed_size);
    for (index, chunk) in sealed.into_iter().enumerate() {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        cipher.open(index as u64, index == last, &mut scratch)?;
        out.extend_from_slice(&scratch[..scratch.len() - TAG_LEN]);
    }
    Ok(out)
}
