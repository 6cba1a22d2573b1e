//! The re-encrypt job: rewrites every object of a backend (or of some of its
//! buckets) that does not match the current encryption config — plaintext to
//! encrypted, an old key id to the current key, encrypted to plaintext when
//! the mode is `none` (with the old key as legacy) — while the buckets are
//! write-gated. Progress is kept in `<internal>/jobs/reencrypt.json`; the
//! file is the gate, and a job killed at any point resumes from it (every
//! object is rewritten atomically, and one that already matches is skipped,
//! so nothing is lost or done twice).

use std::ops::ControlFlow;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::crypto::Dek;
use super::put::BodyWriter;
use super::{EngineError, ObjectStore, OpenBody, Result, info_from_raw, meta, parse_key};

/// The job's durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobState {
    pub v: u32,
    /// The buckets (names on this backend) the job covers, in order.
    pub buckets: Vec<String>,
    /// Index into `buckets` of the bucket in progress.
    pub bucket_index: usize,
    /// The last key of that bucket known to be done.
    pub last_key: String,
    pub rewritten: u64,
    pub skipped: u64,
    pub failed: u64,
    pub started_ms: u64,
    pub finished: bool,
    /// The objects the buckets held when the job started (for a progress
    /// bar: objects written meanwhile are gated, so this is the work).
    #[serde(default)]
    pub total: u64,
}

/// The job's state document (also the write gate) and where a finished one goes.
const JOB: &str = "jobs/reencrypt.json";
const JOB_LAST: &str = "jobs/reencrypt.last.json";

/// How long clients are told to wait before retrying a gated write.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ObjectStore {
    /// The unfinished re-encrypt job of this backend, if any.
    pub fn pending_reencrypt(&self) -> Option<JobState> {
        let raw = self.backend.read_state(JOB).ok()??;
        serde_json::from_slice::<JobState>(&raw)
            .ok()
            .filter(|j| !j.finished)
    }

    /// The last job of this backend that ran to the end, if any.
    pub fn last_reencrypt(&self) -> Option<JobState> {
        let raw = self.backend.read_state(JOB_LAST).ok()??;
        serde_json::from_slice::<JobState>(&raw).ok()
    }

    /// Why writes to `bucket` are refused now, if they are: the backend's
    /// keys are not checked yet (or failed the check), or a re-encrypt job
    /// covers the bucket. The job may have been started by another process
    /// (the CLI), so its state is looked at, not cached; the common case is
    /// one failed stat.
    pub fn write_gate(&self, bucket: &str) -> Option<super::WriteGate> {
        if let Some(why) = self.writes_held() {
            return Some(super::WriteGate::KeysUnchecked(why));
        }
        if self.migration_gated(bucket) {
            return Some(super::WriteGate::Migrating);
        }
        if !self.backend.state_exists(JOB) {
            return None;
        }
        self.pending_reencrypt()
            .filter(|j| j.buckets.iter().any(|b| b == bucket))
            .map(|_| super::WriteGate::Reencrypt)
    }

    fn save_job(&self, j: &JobState) -> Result<()> {
        self.backend
            .write_state(JOB, &serde_json::to_vec_pretty(j).expect("job serializes"))?;
        Ok(())
    }

    /// Starts (or returns the unfinished) job over `buckets` (all when empty):
    /// from here on the buckets are write-gated.
    pub fn start_reencrypt(&self, buckets: &[String]) -> Result<JobState> {
        if let Some(j) = self.pending_reencrypt() {
            return Ok(j);
        }
        let all: Vec<String> = if buckets.is_empty() {
            self.backend
                .list_buckets()?
                .into_iter()
                .map(|b| b.name)
                .collect()
        } else {
            buckets.to_vec()
        };
        let mut total = 0;
        for b in &all {
            if self.backend.bucket_exists(b)? {
                self.each_object(b, "", "", false, &mut |key, _| {
                    total += u64::from(!key.ends_with('/'));
                    ControlFlow::Continue(())
                })?;
            }
        }
        let j = JobState {
            v: 1,
            buckets: all,
            bucket_index: 0,
            last_key: String::new(),
            rewritten: 0,
            skipped: 0,
            failed: 0,
            started_ms: meta::to_ms(SystemTime::now()),
            finished: false,
            total,
        };
        self.save_job(&j)?;
        Ok(j)
    }

    /// Does this object's stored form match the current config?
    pub(super) fn matches_config(&self, m: &meta::ObjectMeta) -> bool {
        match &self.enc.current {
            Some(k) => m.encrypted.is_some() && m.key_id.as_deref() == Some(k.id.as_str()),
            None => m.encrypted.is_none(),
        }
    }

    /// Rewrites one object in its current form under the current config,
    /// holding the key's lock from the read to the publish: a write that
    /// passed the gate before the job began cannot land in between and be
    /// overwritten by the old bytes (or a deleted object come back).
    fn reencrypt_one(&self, bucket: &str, key: &str) -> Result<()> {
        parse_key(key)?;
        self.publish_locked(bucket, key, None, || self.reencrypt_one_locked(bucket, key))
    }

    fn reencrypt_one_locked(&self, bucket: &str, key: &str) -> Result<()> {
        // The stored body as it is (a delta stays a delta).
        let obj = self.open_stored_blocking(bucket, key)?;
        let mut m = obj.info.meta.clone();
        let dek = self.enc.encrypts().then(Dek::generate);
        let mut temp = self.backend.new_temp()?;
        {
            let mut out = BodyWriter::new(temp.file(), dek.as_ref())?;
            let mut failed: Option<EngineError> = None;
            match obj.body {
                OpenBody::Empty => {}
                OpenBody::Memory(b) => out.write(&b)?,
                OpenBody::Plain(f) => {
                    let mut f = crate::storage::BodyReader::new(f);
                    let mut buf = vec![0u8; 1024 * 1024];
                    loop {
                        let n = std::io::Read::read(&mut f, &mut buf)?;
                        if n == 0 {
                            break;
                        }
                        out.write(&buf[..n])?;
                    }
                }
                mut body @ (OpenBody::Encrypted(_) | OpenBody::Segmented(_)) => {
                    body.decrypt_range(0, m.body_size(), &mut |b| match out.write(&b) {
                        Ok(()) => ControlFlow::Continue(()),
                        Err(e) => {
                            failed = Some(e);
                            ControlFlow::Break(())
                        }
                    })
                    .map_err(|err| EngineError::Crypto {
                        key: key.to_owned(),
                        err,
                    })?;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            out.finish()?;
        }
        m.encrypted = None;
        m.key_id = None;
        m.wrapped_key = None;
        m.segments = None; // rewritten as one body
        if let Some(dek) = &dek {
            self.seal_meta(bucket, key, dek, &mut m);
        }
        self.backend
            .publish(&crate::storage::Loc::object(bucket, key), temp, &m.encode())?;
        Ok(())
    }

    /// After a job that left nothing behind: retires the key check records
    /// of the key ids no object, reference or part uses any more, so that
    /// the old key may leave the config (and the mode may change again).
    /// Returns the retired ids; none while anything still needs an old key.
    pub fn retire_unused_keys(&self) -> Result<Vec<String>> {
        let keep = self.enc.current.as_ref().map(|k| &k.id);
        let census = self.census()?;
        let others_left = census
            .key_ids
            .keys()
            .any(|id| keep.is_none_or(|k| k.as_str() != id));
        if others_left || self.parts_under_old_keys()? > 0 {
            return Ok(Vec::new());
        }
        self.retire_other_keys(keep).map_err(|e| {
            EngineError::Storage(crate::storage::StorageError::Io(std::io::Error::other(
                e.to_string(),
            )))
        })
    }

    /// Runs the pending job to the end, pausing `pause` between objects,
    /// saving progress at least every second. `progress` sees the state after
    /// each save. Returns the final state.
    pub fn run_reencrypt(
        &self,
        pause: Duration,
        progress: &mut dyn FnMut(&JobState),
    ) -> Result<JobState> {
        let Some(mut j) = self.pending_reencrypt() else {
            return Err(EngineError::Storage(crate::storage::StorageError::Io(
                std::io::Error::other("no re-encrypt job is pending"),
            )));
        };
        let mut last_save = Instant::now();
        while j.bucket_index < j.buckets.len() {
            let bucket = j.buckets[j.bucket_index].clone();
            if self.backend.bucket_exists(&bucket)? {
                let start_after = j.last_key.clone();
                let mut err = None;
                self.each_object(&bucket, "", &start_after, false, &mut |key, raw| {
                    if key.ends_with('/') {
                        return ControlFlow::Continue(()); // directory objects have no body
                    }
                    let info = raw.map_err(EngineError::from).and_then(|raw| info_from_raw(key, &raw));
                    match info {
                        Ok(info) if self.matches_config(&info.meta) => j.skipped += 1,
                        Ok(_) => match self.reencrypt_one(&bucket, key) {
                            Ok(()) => j.rewritten += 1,
                            Err(e) => {
                                tracing::error!(bucket = %bucket, key = %key, error = %e, "re-encrypt: object left as it was");
                                j.failed += 1;
                            }
                        },
                        Err(e) => {
                            tracing::error!(bucket = %bucket, key = %key, error = %e, "re-encrypt: unreadable metadata");
                            j.failed += 1;
                        }
                    }
                    j.last_key = key.to_owned();
                    if last_save.elapsed() >= Duration::from_secs(1) {
                        if let Err(e) = self.save_job(&j) {
                            err = Some(e);
                            return ControlFlow::Break(());
                        }
                        last_save = Instant::now();
                        progress(&j);
                    }
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    ControlFlow::Continue(())
                })?;
                if let Some(e) = err {
                    return Err(e);
                }
                // The bucket's delta references, like its objects.
                let (done, failed) = self.reencrypt_refs(&bucket)?;
                j.rewritten += done;
                j.failed += failed;
            }
            j.bucket_index += 1;
            j.last_key.clear();
            self.save_job(&j)?;
            progress(&j);
        }
        j.finished = true;
        self.save_job(&j)?;
        // The job file is the write gate: a finished job moves aside, so a
        // write costs one failed stat again, not a read of the file.
        self.backend.rename_state(JOB, JOB_LAST)?;
        progress(&j);
        Ok(j)
    }
}
