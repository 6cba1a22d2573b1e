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
use tokio::sync::mpsc;

use super::EngineError;
use super::body::ByteStream;
use super::checksum::ChecksumAlgorithm;
use super::crypto::{self, Dek, SealingWriter};
use crate::storage::Backend;
use crate::storage::TempFile;

/// Bodies are cut into blocks of this size before they fan out to the stages.
pub const STAGE_BLOCK: usize = 1024 * 1024;
/// Blocks queued per stage: bounds memory per upload to a few MiB.
const STAGE_DEPTH: usize = 4;

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
    backend: Arc<dyn Backend>,
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
    // Each stage (write, MD5, SHA-256 + checksum) is an async task fed by a
    // bounded channel; it handles each block with a short blocking job. The
    // stages run independently (the slowest sets the pace, at most
    // STAGE_DEPTH blocks queued each), and no thread waits on the client:
    // a slow uploader costs tasks, not threads of the blocking pool.
    let d = Digests::new(&opts);
    let md5_part = Digests {
        md5: d.md5,
        ..Default::default()
    };
    let rest = Digests {
        md5: None,
        sha256: d.sha256,
        checksum: d.checksum,
    };
    let (w_tx, w_rx) = mpsc::channel::<Bytes>(STAGE_DEPTH);
    let writer = tokio::spawn(run_stage(WriteStage::new(temp, dek)?, w_rx, |w, b| {
        w.write(b)
    }));
    let mut hash_txs = Vec::new();
    let mut hash_tasks = Vec::new();
    for part in [md5_part, rest] {
        if part.md5.is_none() && part.sha256.is_none() && part.checksum.is_none() {
            continue;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(STAGE_DEPTH);
        hash_txs.push(tx);
        hash_tasks.push(tokio::spawn(run_stage(part, rx, |p, b| {
            update_all(p, b);
            Ok(())
        })));
    }

    let mut size: u64 = 0;
    let mut pending = first;
    let mut body_err = None;
    'feed: loop {
        while pending.len() >= STAGE_BLOCK || (ended && !pending.is_empty()) {
            let block = pending.split_to(pending.len().min(STAGE_BLOCK)).freeze();
            size += block.len() as u64;
            let mut ok = w_tx.send(block.clone()).await.is_ok();
            for tx in &hash_txs {
                ok &= tx.send(block.clone()).await.is_ok();
            }
            if !ok {
                break 'feed; // a stage failed; it reports why below
            }
        }
        if ended {
            break;
        }
        match body.next().await {
            Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
            Some(Err(e)) => {
                body_err = Some(e);
                break;
            }
            None => ended = true,
        }
    }
    drop(w_tx);
    drop(hash_txs);
    let w = writer.await.map_err(join_err)?;
    let mut digests = Digests::default();
    for t in hash_tasks {
        let p = t.await.map_err(join_err)??;
        digests.md5 = digests.md5.or(p.md5);
        digests.sha256 = digests.sha256.or(p.sha256);
        digests.checksum = digests.checksum.or(p.checksum);
    }
    if let Some(e) = body_err {
        return Err(EngineError::Body(e));
    }
    let w = w?;
    let (temp, dek) = tokio::task::spawn_blocking(move || w.finish())
        .await
        .map_err(join_err)??;
    Ok(finish_into(temp, dek, size, digests))
}

/// One stage of staging: applies `f` to every block from `rx` in a short
/// blocking job, waiting for the next block asynchronously. Stops at the
/// first error (the channel then closes and the feeder sees it).
async fn run_stage<S: Send + 'static>(
    mut state: S,
    mut rx: mpsc::Receiver<Bytes>,
    f: fn(&mut S, &[u8]) -> Result<(), EngineError>,
) -> Result<S, EngineError> {
    while let Some(block) = rx.recv().await {
        // Take what else is already queued: a fast client's blocks go in one
        // job (fewer hand-offs), a slow client's one at a time.
        let mut blocks = vec![block];
        while blocks.len() < STAGE_DEPTH
            && let Ok(b) = rx.try_recv()
        {
            blocks.push(b);
        }
        let (st, r) = tokio::task::spawn_blocking(move || {
            let r = blocks.iter().try_for_each(|b| f(&mut state, b));
            (state, r)
        })
        .await
        .map_err(join_err)?;
        state = st;
        r?;
    }
    Ok(state)
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
