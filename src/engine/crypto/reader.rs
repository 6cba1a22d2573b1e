//! Random-access decryption of a stored `DGE1` body from a blocking reader
//! (`std::fs::File` or any `Read + Seek`): range reads that touch only the
//! chunks covering the range, a pre-flight check of the first chunk, and a
//! helper that runs a range read on a blocking thread as a `ByteStream`.

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::ControlFlow;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::ByteStream;
use super::error::CryptoError;
use super::format::{
    ChunkCipher, HEADER_LEN, Header, TAG_LEN, chunk_count, chunk_range, plaintext_len,
};
use super::keys::Dek;

/// Decrypted chunks in flight between the blocking reader and the network
/// in [`range_stream`].
const RANGE_STREAM_DEPTH: usize = 4;

/// A stored encrypted body opened for range reads. Holds at most one
/// decrypted chunk between calls (the last one decrypted).
pub struct Decryptor<R> {
    reader: R,
    cipher: ChunkCipher,
    plain_len: u64,
    chunk_count: u64,
    /// Where the reader is positioned, when known (saves seeks on
    /// sequential chunks).
    position: Option<u64>,
    /// A chunk already decrypted by `verify_first`: (index, plaintext).
    cached: Option<(u64, Bytes)>,
}

impl<R: Read + Seek> Decryptor<R> {
    /// Reads and checks the header at offset 0. `stored_len` is the length
    /// of the stored body (the file size).
    pub fn open(mut reader: R, dek: &Dek, stored_len: u64) -> Result<Decryptor<R>, CryptoError> {
        reader.seek(SeekFrom::Start(0))?;
        let want = stored_len.min(HEADER_LEN as u64) as usize;
        let mut header = [0u8; HEADER_LEN];
        read_full(&mut reader, &mut header[..want])?;
        let mut dec = Decryptor::open_with_header(reader, dek, &header[..want], stored_len)?;
        dec.position = Some(want as u64);
        Ok(dec)
    }

    /// Like [`Decryptor::open`] for a caller that already read the header
    /// bytes (for example to sniff [`super::looks_encrypted`]). The reader's
    /// position does not matter.
    pub fn open_with_header(
        reader: R,
        dek: &Dek,
        header: &[u8],
        stored_len: u64,
    ) -> Result<Decryptor<R>, CryptoError> {
        let header = Header::parse(header)?;
        if stored_len < (HEADER_LEN + TAG_LEN) as u64 {
            return Err(CryptoError::Truncated);
        }
        let plain_len = plaintext_len(stored_len, header.chunk_exp())?;
        Ok(Decryptor {
            reader,
            cipher: ChunkCipher::new(dek, header),
            plain_len,
            chunk_count: chunk_count(plain_len, header.chunk_exp()),
            position: None,
            cached: None,
        })
    }

    /// Plaintext length of the object, from the stored length.
    pub fn plaintext_len(&self) -> u64 {
        self.plain_len
    }

    /// The body's header.
    pub fn header(&self) -> Header {
        *self.cipher.header()
    }

    /// Decrypts the first chunk a read starting at `plain_start` needs,
    /// without emitting it, so the caller can refuse with a clean error
    /// before it sends a status line. The chunk is kept for the next
    /// `read_range`. `InvalidLength` if `plain_start` is past the end.
    pub fn verify_first(&mut self, plain_start: u64) -> Result<(), CryptoError> {
        let span = chunk_range(
            plain_start,
            0,
            self.plain_len,
            self.cipher.header().chunk_exp(),
        )?;
        self.chunk(span.first_chunk)?; // kept in `cached`
        Ok(())
    }

    /// Decrypts `[plain_start, plain_start + plain_len)` chunk by chunk and
    /// hands each piece to `out` (empty pieces are not emitted). `out`
    /// returning `Break` stops the read with `Ok`. An error stops the read;
    /// pieces already emitted came from chunks that authenticated.
    pub fn read_range(
        &mut self,
        plain_start: u64,
        plain_len: u64,
        mut out: impl FnMut(Bytes) -> ControlFlow<()>,
    ) -> Result<(), CryptoError> {
        let span = chunk_range(
            plain_start,
            plain_len,
            self.plain_len,
            self.cipher.header().chunk_exp(),
        )?;
        let mut skip = span.skip_in_first as usize;
        let mut left = plain_len;
        for index in span.first_chunk..=span.last_chunk {
            let plain = self.chunk(index)?;
            let start = skip.min(plain.len());
            let end =
                start + (plain.len() - start).min(usize::try_from(left).unwrap_or(usize::MAX));
            skip = 0;
            left -= (end - start) as u64;
            if end > start && out(plain.slice(start..end)).is_break() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Gives back the reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// The authenticated plaintext of chunk `index`.
    fn chunk(&mut self, index: u64) -> Result<Bytes, CryptoError> {
        if let Some((cached, plain)) = &self.cached
            && *cached == index
        {
            return Ok(plain.clone());
        }
        let header = self.cipher.header();
        let chunk = header.chunk_size() as u64;
        let sealed_size = chunk + TAG_LEN as u64;
        let is_final = index + 1 == self.chunk_count;
        let plain_size = if is_final {
            self.plain_len - index * chunk
        } else {
            chunk
        };
        let offset = HEADER_LEN as u64 + index * sealed_size;
        if self.position.take() != Some(offset) {
            self.reader.seek(SeekFrom::Start(offset))?;
        }
        let mut buf = vec![0u8; plain_size as usize + TAG_LEN];
        read_full(&mut self.reader, &mut buf)?;
        self.position = Some(offset + buf.len() as u64);
        self.cipher.open(index, is_final, &mut buf)?;
        buf.truncate(buf.len() - TAG_LEN);
        let plain = Bytes::from(buf);
        // Kept for the next read: small sequential reads (a FUSE reader, a
        // verify_first before a range) decrypt each chunk once.
        self.cached = Some((index, plain.clone()));
        Ok(plain)
    }
}

/// `read_exact` with a short file reported as `Truncated`.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), CryptoError> {
    reader.read_exact(buf).map_err(|err| match err.kind() {
        io::ErrorKind::UnexpectedEof => CryptoError::Truncated,
        _ => CryptoError::Io(err),
    })
}

/// Plaintext decrypted per blocking job by [`range_stream`].
const RANGE_STREAM_STEP: u64 = 1024 * 1024;

/// Streams the plaintext range: each step of about 1 MiB is decrypted by a
/// short blocking job and sent from an async task (at most four chunks
/// queued), so a slow client holds a task, never a thread. Call
/// [`Decryptor::verify_first`] before, to refuse a bad object before the
/// response starts. Dropping the stream stops the reader. Needs a tokio
/// runtime.
pub fn range_stream<R>(decryptor: Decryptor<R>, plain_start: u64, plain_len: u64) -> ByteStream
where
    R: Read + Seek + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(RANGE_STREAM_DEPTH);
    tokio::spawn(async move {
        let mut d = Some(decryptor);
        let mut pos = plain_start;
        let end = plain_start + plain_len;
        while pos < end {
            let step = (end - pos).min(RANGE_STREAM_STEP);
            let mut dec = d.take().expect("decryptor present between steps");
            let job = tokio::task::spawn_blocking(move || {
                let mut pieces = Vec::new();
                let r = dec.read_range(pos, step, |piece| {
                    pieces.push(piece);
                    ControlFlow::Continue(())
                });
                (dec, pieces, r)
            })
            .await;
            let (dec, pieces, r) = match job {
                Ok(v) => v,
                Err(e) => {
                    let _ = tx
                        .send(Err(io::Error::other(format!("decrypt task failed: {e}"))))
                        .await;
                    return;
                }
            };
            d = Some(dec);
            for piece in pieces {
                if tx.send(Ok(piece)).await.is_err() {
                    return; // the client went away
                }
            }
            if let Err(err) = r {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
            pos += step;
        }
    });
    Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
