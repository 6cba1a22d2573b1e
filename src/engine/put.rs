//! Staging a new object body: the body streams into a temp file while MD5
//! (for the ETag), SHA-256 and the requested `x-amz-checksum-*` run as
//! parallel stages, one short blocking job per block each, so a slow client
//! never holds a thread while it sends.
//!
//! The result is a `Staged` body with its digests; nothing is visible until
//! the caller checks the digests and commits it. Dropping it deletes the temp
//! file. Bodies smaller than one block take a single-thread fast path.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::Digest as _;

use super::EngineError;
use super::body::ByteStream;
use super::checksum::ChecksumAlgorithm;
use super::crypto::{self, Dek, SealingWriter};
use crate::storage::FsBackend;
use crate::storage::fs::TempFile;

/// Bodies are cut into blocks of this size before they fan out to the stages.
pub const STAGE_BLOCK: usize = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    pub sha256: bool,
    pub checksum: Option<ChecksumAlgorithm>,
    /// Bytes the body is expected to hold (declared length, copy size), for
    /// the free-space guard before anything is written; 0 when unknown.
    pub expected_size: u64,
}

/// A body written to a temp file, with its digests, not yet visible.
pub struct Staged {
    pub(super) temp: TempFile,
    /// The data key the body was encrypted with (wrapped at commit, when the
    /// object's identity is known).
    pub(super) dek: Option<Dek>,
    pub size: u64,
    pub md5: [u8; 16],
    pub sha256: Option<[u8; 32]>,
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

#[derive(Default)]
struct Digests {
    md5: Option<md5::Md5>,
    sha256: Option<sha2::Sha256>,
    checksum: Option<(ChecksumAlgorithm, super::checksum::Hasher)>,
}

impl Digests {
    fn new(opts: &StageOptions) -> Self {
        Digests {
            md5: Some(md5::Md5::new()),
            sha256: opts.sha256.then(sha2::Sha256::new),
            checksum: opts.checksum.map(|a| (a, a.hasher())),
        }
    }
}

fn finish_into(staged_temp: TempFile, dek: Option<Dek>, size: u64, d: Digests) -> Staged {
    Staged {
        temp: staged_temp,
        dek,
        size,
        md5: d.md5.map(|h| h.finalize().into()).unwrap_or_default(),
        sha256: d.sha256.map(|h| h.finalize().into()),
        checksum: d.checksum.map(|(a, h)| (a, h.finish())),
    }
}

/// Streams `body` into a temp file of `backend`, computing the digests of
/// the plaintext; with `dek`, the file receives the DGE1 encryption of it.
pub async fn stage(
    backend: Arc<FsBackend>,
    mut body: ByteStream,
    opts: StageOptions,
    dek: Option<Dek>,
) -> Result<Staged, EngineError> {
    // Read up to one block: small bodies never leave this task's thread pool hop.
    let mut first = BytesMut::new();
    let mut ended = false;
    while first.len() < STAGE_BLOCK {
        match body.next().await {
            Some(chunk) => first.extend_from_slice(&chunk.map_err(EngineError::Body)?),
            None => {
                ended = true;
                break;
            }
        }
    }
    if ended {
        let data = first.freeze();
        return tokio::task::spawn_blocking(move || -> Result<Staged, EngineError> {
            let mut temp = backend.new_temp()?;
            let mut out = BodyWriter::new(temp.file(), dek.as_ref())?;
            out.write(&data)?;
            out.finish()?;
            let mut d = Digests::new(&opts);
            update_all(&mut d, &data);
            Ok(finish_into(temp, dek, data.len() as u64, d))
        })
        .await
        .map_err(join_err)?;
    }

    let temp = {
        let b = backend.clone();
        tokio::task::spawn_blocking(move || b.new_temp())
            .await
            .map_err(join_err)??
    };
    // Each block goes through the stages as short blocking jobs (write, MD5,
    // SHA-256 + checksum in parallel), while the next block is received: no
    // thread waits on the client, so a slow uploader costs a task, not a
    // thread of the blocking pool.
    let mut writer = Some(WriteStage::new(temp, dek)?);
    let d = Digests::new(&opts);
    // MD5 runs alone (it is the slowest); SHA-256 and the checksum share a job.
    let mut md5_part = Some(Digests {
        md5: d.md5,
        ..Default::default()
    });
    let mut rest = Some(Digests {
        md5: None,
        sha256: d.sha256,
        checksum: d.checksum,
    })
    .filter(|r| r.sha256.is_some() || r.checksum.is_some());

    let mut size: u64 = 0;
    let mut pending = first;
    let mut body_err = None;
    loop {
        let block = if pending.len() >= STAGE_BLOCK || (ended && !pending.is_empty()) {
            Some(pending.split_to(pending.len().min(STAGE_BLOCK)).freeze())
        } else {
            None
        };
        let process = async {
            let Some(block) = block else {
                return Ok(());
            };
            size += block.len() as u64;
            let w = writer.take().expect("writer present between blocks");
            let b = block.clone();
            let write = tokio::task::spawn_blocking(move || {
                let mut w = w;
                let r = w.write(&b);
                (w, r)
            });
            let hash = |part: Option<Digests>, b: Bytes| async move {
                match part {
                    None => Ok(None),
                    Some(mut p) => tokio::task::spawn_blocking(move || {
                        update_all(&mut p, &b);
                        p
                    })
                    .await
                    .map(Some),
                }
            };
            let (w, m, r) = tokio::join!(
                write,
                hash(md5_part.take(), block.clone()),
                hash(rest.take(), block)
            );
            let (w, res) = w.map_err(join_err)?;
            writer = Some(w);
            md5_part = m.map_err(join_err)?;
            rest = r.map_err(join_err)?;
            res
        };
        let receive = async {
            if ended || pending.len() >= STAGE_BLOCK {
                return None;
            }
            // Fill the next block while the current one is processed.
            while pending.len() < STAGE_BLOCK {
                match body.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => return Some(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            None
        };
        let (processed, received) = tokio::join!(process, receive);
        processed?;
        if let Some(e) = received {
            body_err = Some(e);
            break;
        }
        if ended && pending.is_empty() {
            break;
        }
    }
    if let Some(e) = body_err {
        return Err(EngineError::Body(e));
    }
    let mut digests = Digests::default();
    for p in [md5_part, rest].into_iter().flatten() {
        digests.md5 = digests.md5.or(p.md5);
        digests.sha256 = digests.sha256.or(p.sha256);
        digests.checksum = digests.checksum.or(p.checksum);
    }
    let w = writer.take().expect("writer present at the end");
    let (temp, dek) = tokio::task::spawn_blocking(move || w.finish())
        .await
        .map_err(join_err)??;
    Ok(finish_into(temp, dek, size, digests))
}

/// The writer stage, owning its temp file (and the sealing writer on a
/// duplicate of its descriptor), so it can move between blocking jobs.
struct WriteStage {
    temp: TempFile,
    sealer: Option<Box<SealingWriter<std::fs::File>>>,
    dek: Option<Dek>,
}

impl WriteStage {
    fn new(mut temp: TempFile, dek: Option<Dek>) -> Result<Self, EngineError> {
        let sealer = match &dek {
            None => None,
            Some(k) => Some(Box::new(
                SealingWriter::new(temp.file().try_clone()?, k, crypto::DEFAULT_CHUNK_EXP)
                    .map_err(|e| EngineError::from(io::Error::from(e)))?,
            )),
        };
        Ok(WriteStage { temp, sealer, dek })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        match &mut self.sealer {
            Some(w) => w.write_plain(data)?,
            None => self.temp.file().write_all(data)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<(TempFile, Option<Dek>), EngineError> {
        if let Some(w) = self.sealer {
            w.finish()?;
        }
        Ok((self.temp, self.dek))
    }
}

fn update_all(d: &mut Digests, data: &[u8]) {
    if let Some(h) = d.md5.as_mut() {
        h.update(data);
    }
    if let Some(h) = d.sha256.as_mut() {
        sha2::Digest::update(h, data);
    }
    if let Some((_, h)) = d.checksum.as_mut() {
        h.update(data);
    }
}

/// The writer stage's sink: plaintext straight to the file, or through the
/// DGE1 sealing writer when the backend encrypts.
pub(super) enum BodyWriter<'a> {
    Plain(&'a mut std::fs::File),
    Sealed(Box<SealingWriter<&'a mut std::fs::File>>),
}

impl<'a> BodyWriter<'a> {
    pub(super) fn new(file: &'a mut std::fs::File, dek: Option<&Dek>) -> Result<Self, EngineError> {
        Ok(match dek {
            None => BodyWriter::Plain(file),
            Some(dek) => BodyWriter::Sealed(Box::new(
                SealingWriter::new(file, dek, crypto::DEFAULT_CHUNK_EXP)
                    .map_err(|e| EngineError::from(io::Error::from(e)))?,
            )),
        })
    }
    pub(super) fn write(&mut self, data: &[u8]) -> Result<(), EngineError> {
        match self {
            BodyWriter::Plain(f) => f.write_all(data)?,
            BodyWriter::Sealed(w) => w.write_plain(data)?,
        }
        Ok(())
    }
    pub(super) fn finish(self) -> Result<(), EngineError> {
        if let BodyWriter::Sealed(w) = self {
            w.finish()?;
        }
        Ok(())
    }
}

pub(super) fn join_err(e: tokio::task::JoinError) -> EngineError {
    EngineError::Storage(io::Error::other(format!("worker task failed: {e}")).into())
}
