//! Listing an upstream bucket in S3 key order (ListObjectsV2, which is
//! already in that order), with the hidden prefix left out, and fetching
//! the metadata documents of a listed page concurrently (a listing does not
//! carry user metadata).

use std::ops::ControlFlow;

use futures::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{INTERNAL_PREFIX, S3Backend, to_system_time, upstream};
use crate::storage::{Backend as _, Found, RawObject, Result, StorageError, WalkItem};

/// HEADs in flight while the metadata of a listed page is fetched.
const HEAD_CONCURRENCY: usize = 16;

/// `x-amz-copy-source` keeps '/' and the unreserved characters as they are.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE))
}

impl S3Backend {
    pub(super) fn walk_bucket(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        roll_up_slash: bool,
        f: &mut dyn FnMut(WalkItem) -> ControlFlow<()>,
    ) -> Result<()> {
        if prefix.starts_with(INTERNAL_PREFIX) {
            // Nothing a client can store lives there (keys are refused).
            return if self.bucket_exists(bucket)? {
                Ok(())
            } else {
                Err(StorageError::NoSuchBucket)
            };
        }
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone());
            if token.is_none() && !start_after.is_empty() {
                req = req.start_after(start_after);
            }
            if roll_up_slash {
                req = req.delimiter("/");
            }
            let page = self
                .block_on(req.send())
                .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
            // Objects and common prefixes come in two sorted lists: merge.
            let mut items: Vec<WalkItem> = Vec::new();
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                if key.starts_with(INTERNAL_PREFIX) {
                    continue;
                }
                items.push(WalkItem::Object {
                    key: key.to_owned(),
                    found: Found::Listed(RawObject {
                        meta: None,
                        stored_len: o.size().unwrap_or(0).max(0) as u64,
                        mtime: to_system_time(o.last_modified()),
                        is_dir: false,
                        version: o.e_tag().map(str::to_owned),
                    }),
                });
            }
            for p in page.common_prefixes() {
                if let Some(p) = p.prefix()
                    && p != INTERNAL_PREFIX
                {
                    items.push(WalkItem::Prefix(p.to_owned()));
                }
            }
            items.sort_by(|a, b| item_key(a).cmp(item_key(b)));
            for item in items {
                if f(item).is_break() {
                    return Ok(());
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                return Ok(());
            }
        }
    }

    /// Every key under `prefix` (hidden ones included), in order.
    pub(super) fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
        f: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .block_on(
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send(),
                )
                .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    f(k);
                }
            }
            token = page.next_continuation_token().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                return Ok(());
            }
        }
    }

    /// The metadata documents of listed objects, fetched concurrently, in order.
    pub(super) fn head_many(
        &self,
        bucket: &str,
        items: &[(String, Found)],
    ) -> Vec<Result<RawObject>> {
        self.block_on(async {
            futures::stream::iter(items.iter())
                .map(|(key, _)| async move {
                    let out = self
                        .client
                        .head_object()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
                    Ok(super::raw_from_head(&out))
                })
                .buffered(HEAD_CONCURRENCY)
                .collect()
                .await
        })
    }
}

fn item_key(i: &WalkItem) -> &str {
    match i {
        WalkItem::Object { key, .. } => key,
        WalkItem::Prefix(p) => p,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_source_escapes_all_but_slashes() {
        assert_eq!(super::copy_source("b", "a b/c+d/é"), "b/a%20b/c%2Bd/%C3%A9");
    }
}
