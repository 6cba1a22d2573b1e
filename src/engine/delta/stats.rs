//! Savings: logical bytes (what clients see) against stored bytes (object
//! files plus the references they need), per bucket and per deltaspace.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::Serialize;

use super::super::meta::{NOTE_DELTA, NOTE_PASSTHROUGH, NOTE_REFERENCE};
use super::super::{ObjectStore, Result, info_from_raw};
use super::{deltaspace, deltaspace_id};
use crate::storage::Loc;

#[derive(Debug, Default, Clone, Serialize)]
pub struct SpaceStats {
    /// The key prefix ("" for keys without a `/`).
    pub prefix: String,
    pub objects: u64,
    /// Objects whose content is the deltaspace's reference.
    pub references: u64,
    pub deltas: u64,
    /// Eligible objects stored whole (the delta was not small enough).
    pub passthrough: u64,
    /// Objects outside the delta path (type, size or bucket policy).
    pub whole: u64,
    pub logical_bytes: u64,
    /// Object files plus the reference file(s) of the deltaspace.
    pub stored_bytes: u64,
    pub reference_bytes: u64,
    pub savings_bytes: i64,
    pub savings_percent: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BucketStats {
    pub bucket: String,
    pub objects: u64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub savings_bytes: i64,
    pub savings_percent: f64,
    pub deltaspaces: Vec<SpaceStats>,
}

fn savings(logical: u64, stored: u64) -> (i64, f64) {
    let s = logical as i64 - stored as i64;
    let p = if logical == 0 {
        0.0
    } else {
        (s as f64 * 1000.0 / logical as f64).round() / 10.0
    };
    (s, p)
}

impl ObjectStore {
    /// Storage statistics of `bucket` (by its name on this backend).
    pub fn bucket_stats(&self, bucket: &str) -> Result<BucketStats> {
        let b = &self.backend;
        let mut spaces: BTreeMap<String, SpaceStats> = BTreeMap::new();
        self.each_object(bucket, "", "", false, &mut |key, raw| {
            let Ok(raw) = raw else {
                return ControlFlow::Continue(());
            };
            let prefix = deltaspace(key.trim_end_matches('/')).to_owned();
            let s = spaces.entry(prefix.clone()).or_insert_with(|| SpaceStats {
                prefix,
                ..Default::default()
            });
            s.objects += 1;
            s.stored_bytes += raw.stored_len;
            match info_from_raw(key, &raw) {
                Ok(info) => {
                    s.logical_bytes += info.meta.size;
                    match info.meta.note.as_deref() {
                        Some(NOTE_REFERENCE) => s.references += 1,
                        Some(NOTE_DELTA) => s.deltas += 1,
                        Some(NOTE_PASSTHROUGH) => s.passthrough += 1,
                        _ => s.whole += 1,
                    }
                }
                Err(_) => {
                    s.logical_bytes += raw.stored_len;
                    s.whole += 1;
                }
            }
            ControlFlow::Continue(())
        })?;
        let refs = b.all_refs()?;
        let mut out = BucketStats {
            bucket: bucket.to_owned(),
            ..Default::default()
        };
        for s in spaces.values_mut() {
            let ds = deltaspace_id(&s.prefix);
            for (rb, rds, id) in &refs {
                if rb == bucket && *rds == ds {
                    let len = b
                        .stat(&Loc::reference(rb, rds, id))
                        .map(|r| r.stored_len)
                        .unwrap_or(0);
                    s.reference_bytes += len;
                    s.stored_bytes += len;
                }
            }
            (s.savings_bytes, s.savings_percent) = savings(s.logical_bytes, s.stored_bytes);
            out.objects += s.objects;
            out.logical_bytes += s.logical_bytes;
            out.stored_bytes += s.stored_bytes;
        }
        (out.savings_bytes, out.savings_percent) = savings(out.logical_bytes, out.stored_bytes);
        out.deltaspaces = spaces.into_values().collect();
        Ok(out)
    }
}
