//! The blocking encryption stage: a `Write` adapter that turns plaintext into
//! a `DGE1` body as it is written, for the engine's writer thread. It holds
//! at most one chunk: a full chunk is sealed (as non-final) only when more
//! plaintext arrives, so `finish` can seal the last one with the final flag.

use std::io::{self, Write};

use super::error::CryptoError;
use super::format::{ChunkCipher, Header, TAG_LEN};
use super::keys::Dek;

pub struct SealingWriter<W: Write> {
    inner: W,
    cipher: ChunkCipher,
    chunk: usize,
    pending: Vec<u8>,
    index: u64,
    written: u64,
}

impl<W: Write> SealingWriter<W> {
    /// Writes the header with a fresh random nonce base.
    pub fn new(mut inner: W, dek: &Dek, chunk_exp: u8) -> Result<Self, CryptoError> {
        let header = Header::new_random(chunk_exp)?;
        let cipher = ChunkCipher::new(dek, header);
        inner.write_all(cipher.header_bytes())?;
        let chunk = cipher.header().chunk_size();
        Ok(SealingWriter {
            inner,
            cipher,
            chunk,
            pending: Vec::with_capacity(chunk + TAG_LEN),
            index: 0,
            written: 0,
        })
    }

    fn seal_pending(&mut self, is_final: bool) -> io::Result<()> {
        let tag = self
            .cipher
            .seal_detached(self.index, is_final, &mut self.pending)?;
        self.inner.write_all(&self.pending)?;
        self.inner.write_all(&tag)?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }

    /// Encrypts and writes `data`.
    pub fn write_plain(&mut self, mut data: &[u8]) -> io::Result<()> {
        self.written += data.len() as u64;
        while !data.is_empty() {
            if self.pending.len() == self.chunk {
                self.seal_pending(false)?;
            }
            let take = (self.chunk - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Seals the last chunk (possibly empty) with the final flag and returns
    /// the inner writer and the plaintext length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.seal_pending(true)?;
        Ok((self.inner, self.written))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DEFAULT_CHUNK_EXP, decrypt_vec};
    use super::*;

    #[test]
    fn writer_output_decrypts_for_any_split() {
        let dek = Dek::generate();
        for size in [0usize, 1, 4095, 4096, 4097, 3 * 4096 + 5, 70_000] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            for split in [1usize, 100, 4096, 9999] {
                let mut w = SealingWriter::new(Vec::new(), &dek, 12).unwrap();
                for piece in data.chunks(split) {
                    w.write_plain(piece).unwrap();
                }
                let (out, n) = w.finish().unwrap();
                assert_eq!(n, size as u64);
                assert_eq!(
                    decrypt_vec(&out, &dek).unwrap(),
                    data,
                    "size {size} split {split}"
                );
            }
        }
        let w = SealingWriter::new(Vec::new(), &dek, DEFAULT_CHUNK_EXP).unwrap();
        let (out, _) = w.finish().unwrap();
        assert_eq!(decrypt_vec(&out, &dek).unwrap(), Vec::<u8>::new());
    }
}
