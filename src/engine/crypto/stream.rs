//! The async streaming stages: `encrypt_stream` turns a plaintext body into
//! a `DGE1` body, `decrypt_stream` turns a whole `DGE1` body back into
//! plaintext. Each holds at most one chunk plus the input item being
//! consumed; the AES work runs inline on the polling task (a 64 KiB chunk
//! costs tens of microseconds).

use std::io;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::ByteStream;
use super::error::CryptoError;
use super::format::{ChunkCipher, HEADER_LEN, Header, TAG_LEN};
use super::keys::Dek;

/// Encrypts a plaintext body into a `DGE1` body with a fresh random nonce
/// base: header first, then one sealed chunk per `1 << chunk_exp` bytes.
/// The output does not depend on how the input is split into items.
///
/// Input errors pass through unchanged and end the stream. An exponent
/// outside 12..=24 yields a single `BadHeader` error item.
pub fn encrypt_stream(input: ByteStream, dek: &Dek, chunk_exp: u8) -> ByteStream {
    match Header::new_random(chunk_exp) {
        Ok(header) => encrypt_stream_with_header(input, ChunkCipher::new(dek, header)),
        Err(err) => error_stream(err),
    }
}

fn error_stream(err: CryptoError) -> ByteStream {
    Box::pin(futures::stream::once(
        async move { Err(io::Error::from(err)) },
    ))
}

pub(super) fn encrypt_stream_with_header(input: ByteStream, cipher: ChunkCipher) -> ByteStream {
    let chunk = cipher.header().chunk_size();
    let state = Sealer {
        input,
        cipher,
        chunk,
        pending: BytesMut::with_capacity(chunk + TAG_LEN),
        carry: Bytes::new(),
        index: 0,
        header_sent: false,
        done: false,
    };
    Box::pin(
        futures::stream::unfold(state, |mut st| async move {
            let item = st.next_item().await?;
            Some((item, st))
        })
        .fuse(),
    )
}

struct Sealer {
    input: ByteStream,
    cipher: ChunkCipher,
    chunk: usize,
    /// Plaintext of the chunk being filled (capacity chunk + tag).
    pending: BytesMut,
    /// Rest of the input item being consumed.
    carry: Bytes,
    index: u64,
    header_sent: bool,
    done: bool,
}

impl Sealer {
    async fn next_item(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        if !self.header_sent {
            self.header_sent = true;
            return Some(Ok(Bytes::copy_from_slice(self.cipher.header_bytes())));
        }
        loop {
            // A full chunk with more input behind it is not the last one.
            if self.pending.len() == self.chunk && !self.carry.is_empty() {
                return Some(self.seal(false));
            }
            if !self.carry.is_empty() {
                let take = (self.chunk - self.pending.len()).min(self.carry.len());
                self.pending.extend_from_slice(&self.carry[..take]);
                self.carry = self.carry.slice(take..);
                continue;
            }
            match self.input.next().await {
                Some(Ok(bytes)) => self.carry = bytes,
                Some(Err(err)) => {
                    self.done = true;
                    return Some(Err(err));
                }
                None => {
                    self.done = true;
                    return Some(self.seal(true));
                }
            }
        }
    }

    fn seal(&mut self, is_final: bool) -> io::Result<Bytes> {
        let next = if is_final {
            BytesMut::new()
        } else {
            BytesMut::with_capacity(self.chunk + TAG_LEN)
        };
        let mut buf = std::mem::replace(&mut self.pending, next);
        match self.cipher.seal_detached(self.index, is_final, &mut buf) {
            Ok(tag) => {
                buf.extend_from_slice(&tag);
                self.index += 1;
                Ok(buf.freeze())
            }
            Err(err) => {
                self.done = true;
                Err(err.into())
            }
        }
    }
}

/// Decrypts a whole `DGE1` body read sequentially (copy, re-encryption).
/// Yields plaintext chunk by chunk; the first error (an `InvalidData`
/// `io::Error` wrapping a [`CryptoError`], or the input's own error) ends
/// the stream, and no plaintext of a chunk that failed is ever yielded.
/// An empty object yields nothing (after authenticating its empty chunk).
pub fn decrypt_stream(input: ByteStream, dek: &Dek) -> ByteStream {
    let state = Opener {
        input,
        aead: Some(dek.cipher()),
        cipher: None,
        header: Vec::with_capacity(HEADER_LEN),
        sealed: 0,
        pending: BytesMut::new(),
        carry: Bytes::new(),
        index: 0,
        done: false,
    };
    Box::pin(
        futures::stream::unfold(state, |mut st| async move {
            let item = st.next_item().await?;
            Some((item, st))
        })
        .fuse(),
    )
}

struct Opener {
    input: ByteStream,
    /// The DEK's cipher until the header is known.
    aead: Option<super::format::ChunkAead>,
    cipher: Option<ChunkCipher>,
    header: Vec<u8>,
    /// Sealed chunk size (chunk + tag), once the header is known.
    sealed: usize,
    pending: BytesMut,
    carry: Bytes,
    index: u64,
    done: bool,
}

impl Opener {
    async fn next_item(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        let result = self.next_chunk().await;
        match result {
            Ok(Some(bytes)) => Some(Ok(bytes)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(err) => {
                self.done = true;
                Some(Err(err))
            }
        }
    }

    fn fail(err: CryptoError) -> io::Result<Option<Bytes>> {
        Err(err.into())
    }

    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let Some(cipher) = &self.cipher else {
                if !self.carry.is_empty() {
                    let take = (HEADER_LEN - self.header.len()).min(self.carry.len());
                    self.header.extend_from_slice(&self.carry[..take]);
                    self.carry = self.carry.slice(take..);
                    if self.header.len() == HEADER_LEN {
                        let header = match Header::parse(&self.header) {
                            Ok(h) => h,
                            Err(err) => return Self::fail(err),
                        };
                        let Some(aead) = self.aead.take() else {
                            return Self::fail(CryptoError::BadHeader);
                        };
                        self.sealed = header.chunk_size() + TAG_LEN;
                        self.pending = BytesMut::with_capacity(self.sealed);
                        self.cipher = Some(ChunkCipher::with_aead(aead, header));
                    }
                    continue;
                }
                match self.input.next().await {
                    Some(Ok(bytes)) => self.carry = bytes,
                    Some(Err(err)) => return Err(err),
                    None => {
                        return Self::fail(match Header::parse(&self.header) {
                            Err(err) => err,
                            Ok(_) => CryptoError::Truncated,
                        });
                    }
                }
                continue;
            };
            // A full sealed chunk with more bytes behind it is not the last.
            if self.pending.len() == self.sealed && !self.carry.is_empty() {
                let mut buf =
                    std::mem::replace(&mut self.pending, BytesMut::with_capacity(self.sealed));
                if let Err(err) = cipher.open(self.index, false, &mut buf) {
                    return Self::fail(err);
                }
                buf.truncate(buf.len() - TAG_LEN);
                self.index += 1;
                return Ok(Some(buf.freeze()));
            }
            if !self.carry.is_empty() {
                let take = (self.sealed - self.pending.len()).min(self.carry.len());
                self.pending.extend_from_slice(&self.carry[..take]);
                self.carry = self.carry.slice(take..);
                continue;
            }
            match self.input.next().await {
                Some(Ok(bytes)) => self.carry = bytes,
                Some(Err(err)) => return Err(err),
                None => {
                    let mut buf = std::mem::take(&mut self.pending);
                    if buf.len() < TAG_LEN {
                        return Self::fail(CryptoError::Truncated);
                    }
                    if buf.len() == TAG_LEN && self.index > 0 {
                        // Only the empty object has an empty final chunk.
                        return Self::fail(CryptoError::InvalidLength);
                    }
                    if let Err(err) = cipher.open(self.index, true, &mut buf) {
                        return Self::fail(err);
                    }
                    buf.truncate(buf.len() - TAG_LEN);
                    self.done = true;
                    return Ok((!buf.is_empty()).then(|| buf.freeze()));
                }
            }
        }
    }
}
