//! Staging a new object body: the body streams into a temp file while MD5
//! (for the ETag), SHA-256 and the requested `x-amz-checksum-*` run as
//! parallel stages on their own threads, joined by bounded channels.
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
use crate::storage::FsBackend;
use crate::storage::fs::TempFile;

/// Bodies are cut into blocks of this size before they fan out to the stages.
pub const STAGE_BLOCK: usize = 1024 * 1024;
/// Blocks queued per stage: bounds memory per upload to a few MiB.
const STAGE_DEPTH: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    pub sha256: bool,
    pub checksum: Option<ChecksumAlgorithm>,
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
    let (w_tx, w_rx) = mpsc::channel::<Bytes>(STAGE_DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_stage(temp, dek, w_rx));
    let mut hash_txs = Vec::new();
    let mut hash_tasks = Vec::new();
    // MD5 runs alone (it is the slowest); SHA-256 and the checksum share a second thread.
    let d = Digests::new(&opts);
    let mut md5_part = Digests {
        md5: d.md5,
        ..Default::default()
    };
    let mut rest = Digests {
        md5: None,
        sha256: d.sha256,
        checksum: d.checksum,
    };
    for mut part in [std::mem::take(&mut md5_part), std::mem::take(&mut rest)] {
        if part.md5.is_none() && part.sha256.is_none() && part.checksum.is_none() {
            continue;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(STAGE_DEPTH);
        hash_txs.push(tx);
        hash_tasks.push(tokio::task::spawn_blocking(move || {
            while let Some(b) = rx.blocking_recv() {
                update_all(&mut part, &b);
            }
            part
        }));
    }

    let mut size: u64 = 0;
    let mut pending = first;
    let mut body_err = None;
    loop {
        if pending.len() >= STAGE_BLOCK || (ended && !pending.is_empty()) {
            let block = pending.split().freeze();
            size += block.len() as u64;
            let mut ok = w_tx.send(block.clone()).await.is_ok();
            for tx in &hash_txs {
                ok &= tx.send(block.clone()).await.is_ok();
            }
            if !ok {
                break; // a stage failed; the writer reports why
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
    let write_result = writer.await.map_err(join_err)?;
    let mut digests = Digests::default();
    for t in hash_tasks {
        let p = t.await.map_err(join_err)?;
        digests.md5 = digests.md5.or(p.md5);
        digests.sha256 = digests.sha256.or(p.sha256);
        digests.checksum = digests.checksum.or(p.checksum);
    }
    if let Some(e) = body_err {
        return Err(EngineError::Body(e));
    }
    let (temp, dek) = write_result?;
    Ok(finish_into(temp, dek, size, digests))
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

fn write_stage(
    mut temp: TempFile,
    dek: Option<Dek>,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<(TempFile, Option<Dek>), EngineError> {
    let mut out = BodyWriter::new(temp.file(), dek.as_ref())?;
    while let Some(b) = rx.blocking_recv() {
        out.write(&b)?;
    }
    out.finish()?;
    Ok((temp, dek))
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
