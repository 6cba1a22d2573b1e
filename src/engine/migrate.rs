//! The bucket migrate job: copies every object of a bucket from one backend
//! to another through the engines (decrypted by the source's keys, stored
//! in the destination's mode, delta policy and keys), with the source
//! bucket write-gated, verifying each object as it goes; then the bucket's
//! route switches to the destination. Seed 000's "migration as a
//! re-encryption path".
//!
//! The job's state lives in the source backend's state,
//! `jobs/migrate/<source bucket>.json`. The document is the write gate, it
//! is saved at least every second (a job killed at any point resumes after
//! the last saved key; objects after it are copied again, which only
//! overwrites identical copies), and once `phase` is `done` it is the route
//! switch: the gateway sends the bucket to the destination while the config
//! still routes it to the source (see `open::gateway`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{EngineError, ObjectMeta, ObjectStore, Result, StageOptions, info_from_raw, meta};
use crate::storage::StorageError;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Copying objects in key order (after `last_key`).
    Copying,
    /// Every object is copied; comparing the two listings.
    Verifying,
    /// Verified: the bucket is served by the destination.
    Done,
}

/// The job's durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrateJob {
    pub v: u32,
    /// The bucket as clients name it.
    pub bucket: String,
    pub from_backend: String,
    /// The bucket's name on the source backend.
    pub from_bucket: String,
    pub to_backend: String,
    /// The bucket's name on the destination backend.
    pub to_bucket: String,
    pub phase: Phase,
    /// The last key known to be copied and verified.
    pub last_key: String,
    pub copied: u64,
    pub bytes: u64,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

const DIR: &str = "jobs/migrate";

fn job_name(from_bucket: &str) -> String {
    // Bucket names are [a-z0-9.-]: safe as a document name.
    format!("{DIR}/{from_bucket}.json")
}

/// Keys listed per step (their metadata is read with them).
const PAGE: usize = 500;

fn other(msg: String) -> EngineError {
    EngineError::Storage(StorageError::Io(std::io::Error::other(msg)))
}

impl ObjectStore {
    /// The migrate job of `bucket` (its name on this, the source, backend).
    pub fn migration(&self, bucket: &str) -> Option<MigrateJob> {
        let raw = self.backend.read_state(&job_name(bucket)).ok()??;
        serde_json::from_slice(&raw).ok()
    }

    /// Whether a migrate job (running or done) has `bucket` write-gated:
    /// one failed stat in the common case.
    pub(super) fn migration_gated(&self, bucket: &str) -> bool {
        self.backend.state_exists(&job_name(bucket))
    }

    /// Every migrate job recorded on this backend (as the source).
    pub fn migrations(&self) -> Vec<MigrateJob> {
        let names = self.backend.list_state(DIR).unwrap_or_default();
        names
            .iter()
            .filter_map(|n| n.strip_suffix(".json"))
            .filter_map(|b| self.migration(b))
            .collect()
    }

    fn save_migration(&self, j: &MigrateJob) -> Result<()> {
        self.backend.write_state(
            &job_name(&j.from_bucket),
            &serde_json::to_vec_pretty(j).expect("job serializes"),
        )?;
        Ok(())
    }

    /// Forgets a finished job: the route switch it made ends (the config
    /// must route the bucket to the destination by then).
    pub fn forget_migration(&self, bucket: &str) -> Result<bool> {
        let from = job_name(bucket);
        let to = format!("{DIR}/{bucket}.forgotten");
        Ok(self.backend.rename_state(&from, &to)?)
    }
}

/// Starts a job moving `bucket` (client name) from `src`'s `from_bucket` to
/// `dst`'s `to_bucket`, or returns the one already recorded. From here on
/// the source bucket is write-gated. The destination bucket must not hold
/// objects (it is created when missing).
pub async fn start(
    bucket: &str,
    src: &Arc<ObjectStore>,
    from_bucket: &str,
    dst: &Arc<ObjectStore>,
    to_bucket: &str,
) -> Result<MigrateJob> {
    if let Some(j) = src.migration(from_bucket) {
        if j.to_backend != dst.name || j.to_bucket != to_bucket {
            return Err(other(format!(
                "bucket {bucket} already has a migrate job to backend '{}' (bucket {}); finish it first",
                j.to_backend, j.to_bucket
            )));
        }
        return Ok(j);
    }
    if Arc::ptr_eq(src, dst) || (src.name == dst.name && from_bucket == to_bucket) {
        return Err(other(format!(
            "bucket {bucket} is already on backend '{}'",
            dst.name
        )));
    }
    if !src.bucket_exists(from_bucket).await? {
        return Err(StorageError::NoSuchBucket.into());
    }
    match dst.create_bucket(to_bucket).await {
        Ok(()) | Err(EngineError::Storage(StorageError::BucketExists)) => {}
        Err(e) => return Err(e),
    }
    let (d, b) = (dst.clone(), to_bucket.to_owned());
    let page = super::blocking(move || d.migration_page(&b, "", 1)).await?;
    if !page.is_empty() {
        return Err(other(format!(
            "the destination bucket {to_bucket} on backend '{}' already holds objects; migrate into an empty bucket",
            dst.name
        )));
    }
    let j = MigrateJob {
        v: 1,
        bucket: bucket.to_owned(),
        from_backend: src.name.clone(),
        from_bucket: from_bucket.to_owned(),
        to_backend: dst.name.clone(),
        to_bucket: to_bucket.to_owned(),
        phase: Phase::Copying,
        last_key: String::new(),
        copied: 0,
        bytes: 0,
        started_ms: meta::to_ms(SystemTime::now()),
        finished_ms: None,
    };
    src.save_migration(&j)?;
    Ok(j)
}

impl ObjectStore {
    /// Up to `limit` objects after `start_after`, with their metadata.
    fn migration_page(
        &self,
        bucket: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Result<ObjectMeta>)>> {
        let mut out = Vec::new();
        self.each_object(bucket, "", start_after, false, &mut |key, raw| {
            let info = raw
                .map_err(EngineError::from)
                .and_then(|raw| info_from_raw(key, &raw))
                .map(|i| i.meta);
            out.push((key.to_owned(), info));
            if out.len() >= limit {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })?;
        Ok(out)
    }
}

/// Copies one object and reads the copy back: its SHA-256 must be the
/// source's. Returns the bytes copied.
async fn copy_one(
    j: &MigrateJob,
    src: &Arc<ObjectStore>,
    dst: &Arc<ObjectStore>,
    key: &str,
) -> Result<u64> {
    let obj = src.open(&j.from_bucket, key).await?;
    let m = obj.info.meta.clone();
    let body = obj.into_stream(0, m.size).await?;
    let staged = dst
        .stage(
            body,
            StageOptions {
                sha256: true,
                checksum: None,
                expected_size: m.size,
            },
        )
        .await?;
    let sha = staged.sha256.expect("asked for");
    let broken = |why: String| other(format!("{key}: {why}"));
    if m.sha256.as_deref().is_some_and(|s| s != hex::encode(sha)) {
        return Err(broken(
            "the source's content does not match its recorded SHA-256".into(),
        ));
    }
    // The object as it was: ETag (a multipart one too), Last-Modified,
    // headers, user metadata, checksum; only the stored form changes.
    let mut out = ObjectMeta::new(m.size, m.etag.clone(), m.mtime());
    out.mtime_ms = m.mtime_ms;
    out.content_type = m.content_type.clone();
    out.headers = m.headers.clone();
    out.user = m.user.clone();
    out.checksum = m.checksum.clone();
    out.parts = m.parts;
    out.sha256 = Some(hex::encode(sha));
    dst.commit(&j.to_bucket, key, staged, out).await?;
    // Read back through the destination's engine (its decryption and delta
    // reconstruction): what clients will get from now on.
    let copy = dst.open(&j.to_bucket, key).await?;
    let size = copy.size();
    let mut stream = copy.into_stream(0, size).await?;
    let mut h = sha2::Sha256::new();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk.map_err(EngineError::Body)?);
    }
    if size != m.size || h.finalize().as_slice() != sha {
        return Err(broken(
            "the copy read back from the destination differs from the source".into(),
        ));
    }
    Ok(m.size)
}

/// Runs (or resumes) the job of `from_bucket` on `src` to the end:
/// copying, then verifying, then `done`. `pause` is slept between objects;
/// `progress` sees the state after each save.
pub async fn run(
    src: &Arc<ObjectStore>,
    dst: &Arc<ObjectStore>,
    from_bucket: &str,
    pause: Duration,
    progress: &mut (dyn FnMut(&MigrateJob) + Send),
) -> Result<MigrateJob> {
    let Some(mut j) = src.migration(from_bucket) else {
        return Err(other(format!("no migrate job for bucket {from_bucket}")));
    };
    if j.to_backend != dst.name {
        return Err(other(format!(
            "the job moves {from_bucket} to backend '{}', not '{}'",
            j.to_backend, dst.name
        )));
    }
    let mut last_save = Instant::now();
    while j.phase == Phase::Copying {
        let (s, b, after) = (src.clone(), j.from_bucket.clone(), j.last_key.clone());
        let page = super::blocking(move || s.migration_page(&b, &after, PAGE)).await?;
        if page.is_empty() {
            j.phase = Phase::Verifying;
            break;
        }
        for (key, info) in page {
            info.map_err(|e| other(format!("{key}: unreadable metadata: {e}")))?;
            let n = copy_one(&j, src, dst, &key).await?;
            crate::failpoint::hit("migrate-after-object");
            j.copied += 1;
            j.bytes += n;
            j.last_key = key;
            if last_save.elapsed() >= Duration::from_secs(1) {
                src.save_migration(&j)?;
                last_save = Instant::now();
                progress(&j);
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
    src.save_migration(&j)?;
    progress(&j);
    if j.phase == Phase::Verifying {
        verify(&j, src, dst).await?;
        j.phase = Phase::Done;
        j.finished_ms = Some(meta::to_ms(SystemTime::now()));
        src.save_migration(&j)?;
        progress(&j);
    }
    Ok(j)
}

/// Both buckets list the same keys with the same sizes and ETags.
async fn verify(j: &MigrateJob, src: &Arc<ObjectStore>, dst: &Arc<ObjectStore>) -> Result<()> {
    let mut after = String::new();
    loop {
        let (s, b, a) = (src.clone(), j.from_bucket.clone(), after.clone());
        let left = super::blocking(move || s.migration_page(&b, &a, PAGE)).await?;
        let (d, b, a) = (dst.clone(), j.to_bucket.clone(), after.clone());
        let right = super::blocking(move || d.migration_page(&b, &a, PAGE)).await?;
        if left.len() != right.len() {
            return Err(other(format!(
                "verify: after {after:?} the source lists {} objects, the destination {}",
                left.len(),
                right.len()
            )));
        }
        if left.is_empty() {
            return Ok(());
        }
        for ((lk, lm), (rk, rm)) in left.iter().zip(&right) {
            let (lm, rm) = match (lm, rm) {
                (Ok(l), Ok(r)) => (l, r),
                _ => return Err(other(format!("verify: {lk}: unreadable metadata"))),
            };
            if lk != rk || lm.size != rm.size || lm.etag != rm.etag {
                return Err(other(format!(
                    "verify: source {lk} ({} bytes, {}) and destination {rk} ({} bytes, {}) differ",
                    lm.size, lm.etag, rm.size, rm.etag
                )));
            }
        }
        after = left.last().expect("not empty").0.clone();
    }
}
