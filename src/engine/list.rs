//! Listing: a page of objects and common prefixes in S3 key order, from a
//! sorted walk of the backend, with delimiter roll-up and pagination.

use std::ops::ControlFlow;
use std::sync::Arc;

use super::{ObjectInfo, ObjectStore, Result, blocking, info_from_raw};
use crate::storage::{Found, StorageError, WalkItem};

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Only keys (and prefixes) strictly after this one.
    pub start_after: String,
    pub max_keys: usize,
}

#[derive(Debug, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or prefix of the page: where the next page starts after.
    pub last: Option<String>,
}

enum Item {
    Obj(String, Found),
    Prefix(String),
}

impl ObjectStore {
    pub async fn list(self: &Arc<Self>, bucket: &str, p: ListParams) -> Result<ListPage> {
        let (this, bucket) = (self.clone(), bucket.to_owned());
        blocking(move || this.list_blocking(&bucket, p)).await
    }

    /// `list` for callers already on a blocking thread.
    pub fn list_blocking(&self, bucket: &str, p: ListParams) -> Result<ListPage> {
        let b = &self.backend;
        {
            let delim = p.delimiter.clone().filter(|d| !d.is_empty());
            let roll_slash = delim.as_deref() == Some("/");
            let mut items: Vec<Item> = Vec::new();
            let mut truncated = false;
            let mut last_prefix: Option<String> = None;
            b.walk(bucket, &p.prefix, &p.start_after, roll_slash, &mut |wi| {
                let item = match wi {
                    WalkItem::Prefix(pfx) => Item::Prefix(pfx),
                    WalkItem::Object { key, found } => match delim.as_deref() {
                        Some(d) if !roll_slash => match key[p.prefix.len()..].find(d) {
                            Some(i) => {
                                let cp = key[..p.prefix.len() + i + d.len()].to_owned();
                                if cp.as_str() <= p.start_after.as_str()
                                    || last_prefix.as_deref() == Some(cp.as_str())
                                {
                                    return ControlFlow::Continue(());
                                }
                                last_prefix = Some(cp.clone());
                                Item::Prefix(cp)
                            }
                            None => Item::Obj(key, found),
                        },
                        _ => Item::Obj(key, found),
                    },
                };
                if items.len() >= p.max_keys {
                    truncated = true;
                    return ControlFlow::Break(());
                }
                items.push(item);
                ControlFlow::Continue(())
            })?;
            let mut page = ListPage {
                truncated,
                ..Default::default()
            };
            let mut found = Vec::new();
            for it in items {
                match it {
                    Item::Prefix(pfx) => {
                        page.last = Some(pfx.clone());
                        page.prefixes.push(pfx);
                    }
                    Item::Obj(key, f) => {
                        page.last = Some(key.clone());
                        found.push((key, f));
                    }
                }
            }
            // Prefixes and objects each come in key order; S3 returns them
            // in separate lists, so their interleaving does not matter.
            let raws = b.stat_found(bucket, &found);
            for ((key, _), raw) in found.iter().zip(raws) {
                let raw = match raw {
                    Ok(r) => r,
                    // Deleted between the walk and now: not part of the page.
                    Err(StorageError::NoSuchKey) => continue,
                    Err(e) => return Err(e.into()),
                };
                match info_from_raw(key, &raw) {
                    Ok(info) => page.objects.push(info),
                    // A multipart completion still writing its document.
                    Err(super::EngineError::Storage(StorageError::NoSuchKey)) => continue,
                    Err(e) => return Err(e),
                }
            }
            Ok(page)
        }
    }
}

/// Objects statted per batch by [`ObjectStore::each_object`] (an S3
/// backend fetches a batch's metadata concurrently).
const STAT_BATCH: usize = 256;

impl ObjectStore {
    /// Every object of `bucket` under `prefix` after `start_after` in key
    /// order (`shallow`: not below the next '/'), with its stored metadata
    /// (or the error reading it), until `f` breaks. Objects deleted during
    /// the walk are skipped. Blocking.
    pub(crate) fn each_object(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        shallow: bool,
        f: &mut dyn FnMut(
            &str,
            crate::storage::Result<crate::storage::RawObject>,
        ) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut batch: Vec<(String, Found)> = Vec::new();
        let mut stopped = false;
        let mut flush = |batch: &mut Vec<(String, Found)>, stopped: &mut bool| {
            let raws = self.backend.stat_found(bucket, batch);
            for ((key, _), raw) in batch.iter().zip(raws) {
                if matches!(raw, Err(StorageError::NoSuchKey)) {
                    continue;
                }
                if f(key, raw).is_break() {
                    *stopped = true;
                    break;
                }
            }
            batch.clear();
        };
        self.backend
            .walk(bucket, prefix, start_after, shallow, &mut |item| {
                if let WalkItem::Object { key, found } = item {
                    batch.push((key, found));
                    if batch.len() >= STAT_BATCH {
                        flush(&mut batch, &mut stopped);
                        if stopped {
                            return ControlFlow::Break(());
                        }
                    }
                }
                ControlFlow::Continue(())
            })?;
        if !stopped && !batch.is_empty() {
            flush(&mut batch, &mut stopped);
        }
        Ok(())
    }
}
