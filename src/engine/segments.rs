//! Reading a segmented object: a body made of DGE1 segments, one per
//! multipart part, all under the object's one data key (each with its own
//! header and nonce base). Written when a multipart upload goes to an S3
//! upstream part by part, so the proxy never holds the whole object.
//!
//! Segment boundaries come from `dg-segments` (plaintext sizes); stored
//! offsets follow from the DGE1 length formula, so a range read opens only
//! the segments it covers, and within them decrypts only the covering
//! chunks.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::body::{self, ByteStream};
use super::crypto::{self, CryptoError, Decryptor, Dek};
use crate::storage::{Body, BodyReader, SliceBody};

#[derive(Debug, Clone, Copy)]
struct Segment {
    /// The part number (its key is the object key's segment key for it).
    number: u32,
    plain_off: u64,
    plain_len: u64,
    stored_off: u64,
    stored_len: u64,
}

pub struct Segmented {
    body: Body,
    dek: Arc<Dek>,
    segs: Vec<Segment>,
    /// The segment last read: (index, its decryptor).
    open: Option<(usize, Decryptor<BodyReader>)>,
}

impl Segmented {
    /// `segs`: (part number, plaintext size) in order. Checks that the
    /// segments' stored lengths add up to the body's.
    pub fn new(
        body: Body,
        dek: Dek,
        chunk_exp: u8,
        segs_in: &[(u32, u64)],
    ) -> Result<Self, CryptoError> {
        if !(crypto::MIN_CHUNK_EXP..=crypto::MAX_CHUNK_EXP).contains(&chunk_exp) {
            return Err(CryptoError::BadHeader);
        }
        let (mut plain_off, mut stored_off) = (0, 0);
        let mut segs = Vec::with_capacity(segs_in.len());
        for &(number, p) in segs_in {
            let stored = crypto::ciphertext_len(p, chunk_exp);
            segs.push(Segment {
                number,
                plain_off,
                plain_len: p,
                stored_off,
                stored_len: stored,
            });
            plain_off += p;
            stored_off += stored;
        }
        if stored_off != body.len() {
            return Err(CryptoError::InvalidLength);
        }
        Ok(Segmented {
            body,
            dek: Arc::new(dek),
            segs,
            open: None,
        })
    }

    pub fn plaintext_len(&self) -> u64 {
        self.segs.last().map_or(0, |s| s.plain_off + s.plain_len)
    }

    fn index_of(&self, plain: u64) -> usize {
        self.segs
            .partition_point(|s| s.plain_off + s.plain_len <= plain)
            .min(self.segs.len().saturating_sub(1))
    }

    fn decryptor(body: &Body, dek: &Dek, s: Segment) -> Result<Decryptor<BodyReader>, CryptoError> {
        let slice: Body = Arc::new(SliceBody::new(body.clone(), s.stored_off, s.stored_len));
        let d = Decryptor::open(
            BodyReader::new(slice),
            &dek.segment_key(s.number),
            s.stored_len,
        )?;
        if d.plaintext_len() != s.plain_len {
            return Err(CryptoError::InvalidLength);
        }
        Ok(d)
    }

    /// Authenticates the first chunk a read from `plain_start` needs.
    pub fn verify_first(&mut self, plain_start: u64) -> Result<(), CryptoError> {
        let i = self.index_of(plain_start);
        let s = self.segs[i];
        let mut d = Self::decryptor(&self.body, &self.dek, s)?;
        d.verify_first(plain_start.saturating_sub(s.plain_off).min(s.plain_len))?;
        self.open = Some((i, d));
        Ok(())
    }

    /// Decrypts `[start, start+len)` into `out`, segment by segment.
    pub fn read_range(
        &mut self,
        start: u64,
        len: u64,
        out: &mut dyn FnMut(Bytes) -> ControlFlow<()>,
    ) -> Result<(), CryptoError> {
        let end = (start + len).min(self.plaintext_len());
        let mut pos = start;
        while pos < end {
            let i = self.index_of(pos);
            let s = self.segs[i];
            if self.open.as_ref().is_none_or(|(j, _)| *j != i) {
                self.open = Some((i, Self::decryptor(&self.body, &self.dek, s)?));
            }
            let (_, d) = self.open.as_mut().expect("just opened");
            let from = pos - s.plain_off;
            let n = (s.plain_len - from).min(end - pos);
            let mut stop = false;
            d.read_range(from, n, |b| {
                let f = out(b);
                stop = f.is_break();
                f
            })?;
            if stop {
                return Ok(());
            }
            pos += n;
        }
        Ok(())
    }

    /// The plaintext `[start, start+len)` as a body stream: each covered
    /// segment is opened when the stream reaches it and streamed like a
    /// whole encrypted object (blocking work in short jobs, never a thread
    /// per slow client).
    pub fn into_stream(self, start: u64, len: u64) -> ByteStream {
        let end = (start + len).min(self.plaintext_len());
        let first = self.index_of(start);
        let Segmented {
            body,
            dek,
            segs,
            open,
        } = self;
        let mut first_open = open.filter(|(i, _)| *i == first).map(|(_, d)| d);
        let pieces: Vec<(Segment, u64, u64)> = segs[first..]
            .iter()
            .take_while(|s| s.plain_off < end)
            .map(|s| {
                let from = start.max(s.plain_off) - s.plain_off;
                let to = end.min(s.plain_off + s.plain_len) - s.plain_off;
                (*s, from, to - from)
            })
            .collect();
        let stream =
            futures::stream::iter(pieces.into_iter().enumerate()).then(move |(k, (s, from, n))| {
                let (body, dek) = (body.clone(), dek.clone());
                let ready = if k == 0 { first_open.take() } else { None };
                async move {
                    let d = match ready {
                        Some(d) => Ok(d),
                        None => tokio::task::spawn_blocking(move || {
                            Segmented::decryptor(&body, &dek, s)
                        })
                        .await
                        .unwrap_or_else(|e| {
                            Err(CryptoError::Io(std::io::Error::other(format!(
                                "decrypt task failed: {e}"
                            ))))
                        }),
                    };
                    match d {
                        Ok(d) => crypto::range_stream(d, from, n),
                        Err(e) => body::once_err(e.into()),
                    }
                }
            });
        Box::pin(stream.flatten())
    }
}
