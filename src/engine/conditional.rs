//! Conditional writes (`If-None-Match: *`, `If-Match: <etag>`) and the
//! per-key lock that makes them atomic.
//!
//! Every change of an object's current version (PUT, copy, multipart
//! completion, delete, a metadata rewrite) runs its publishing step under
//! the key's lock, and a conditional write checks its condition under that
//! same lock, right before it publishes. So of many racing `If-None-Match: *`
//! writers exactly one wins, and an `If-Match` writer never overwrites a
//! version it did not name. The lock is in-process: this server is the only
//! writer of its backends (docs/on-disk-format.md).
//!
//! A condition is checked twice: before the body is received (the client
//! gets 412 at once, as S3 answers) and under the lock. A condition that
//! held at the start but no longer holds when the object is published means
//! a concurrent write came between: 409 `ConditionalRequestConflict`, which
//! S3 clients retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::{EngineError, ObjectStore, Result};
use crate::storage::StorageError;

/// What a conditional write requires of the object it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// `If-None-Match: *`: no current object under the key.
    Absent,
    /// `If-Match`: a current object whose ETag is one of these (unquoted;
    /// `*` matches any).
    Matches(Vec<String>),
}

impl WriteCondition {
    /// The condition of a request's `If-None-Match` and `If-Match` values
    /// (`None`: an unconditional write). `Err` names a header S3 refuses:
    /// `If-None-Match` takes only `*` on writes.
    pub fn from_headers(
        if_none_match: Option<&str>,
        if_match: Option<&str>,
    ) -> std::result::Result<Option<Self>, &'static str> {
        match (if_none_match.map(str::trim), if_match) {
            (None, None) => Ok(None),
            (Some("*"), None) => Ok(Some(WriteCondition::Absent)),
            (Some(_), None) => Err("If-None-Match"),
            (None, Some(m)) => Ok(Some(WriteCondition::Matches(
                m.split(',')
                    .map(|t| {
                        t.trim()
                            .trim_start_matches("W/")
                            .trim_matches('"')
                            .to_owned()
                    })
                    .filter(|t| !t.is_empty())
                    .collect(),
            ))),
            (Some(_), Some(_)) => Err("If-None-Match"),
        }
    }
}

/// One lock per key being written, shared with a reloaded engine's successor.
#[derive(Debug, Default)]
pub struct KeyLocks(Mutex<HashMap<(String, String), Weak<Mutex<()>>>>);

impl KeyLocks {
    fn get(&self, bucket: &str, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let id = (bucket.to_owned(), key.to_owned());
        if let Some(l) = m.get(&id).and_then(Weak::upgrade) {
            return l;
        }
        // Only keys being written right now stay in the table.
        m.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(Mutex::new(()));
        m.insert(id, Arc::downgrade(&l));
        l
    }
}

impl ObjectStore {
    /// Is `cond` true of `bucket/key` now? `PreconditionFailed`, or
    /// `NoSuchKey` for `If-Match` on a key with no object (as S3 answers).
    pub fn check_condition_blocking(
        &self,
        bucket: &str,
        key: &str,
        cond: &WriteCondition,
    ) -> Result<()> {
        let current = match self.head_blocking(bucket, key) {
            Ok(i) => Some(i),
            Err(EngineError::Storage(StorageError::NoSuchKey)) => None,
            Err(e) => return Err(e),
        };
        match (cond, current) {
            (WriteCondition::Absent, None) => Ok(()),
            (WriteCondition::Absent, Some(_)) => Err(EngineError::PreconditionFailed),
            (WriteCondition::Matches(_), None) => Err(StorageError::NoSuchKey.into()),
            (WriteCondition::Matches(tags), Some(i)) => {
                if tags.iter().any(|t| t == "*" || *t == i.meta.etag) {
                    Ok(())
                } else {
                    Err(EngineError::PreconditionFailed)
                }
            }
        }
    }

    /// `check_condition_blocking` for async callers (the early check).
    pub async fn check_condition(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        cond: &WriteCondition,
    ) -> Result<()> {
        let (this, b, k, c) = (
            self.clone(),
            bucket.to_owned(),
            key.to_owned(),
            cond.clone(),
        );
        super::blocking(move || this.check_condition_blocking(&b, &k, &c)).await
    }

    /// Runs `publish` (on a blocking thread) holding `bucket/key`'s lock,
    /// after checking `cond` under it: a condition that fails here is a
    /// conflict with a concurrent write.
    pub(super) fn publish_locked<T>(
        &self,
        bucket: &str,
        key: &str,
        cond: Option<&WriteCondition>,
        publish: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let lock = self.key_locks.get(bucket, key);
        let _g = lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cond {
            match self.check_condition_blocking(bucket, key, c) {
                Ok(()) => {}
                Err(EngineError::PreconditionFailed)
                | Err(EngineError::Storage(StorageError::NoSuchKey)) => {
                    return Err(EngineError::ConditionalConflict);
                }
                Err(e) => return Err(e),
            }
        }
        publish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_from_headers() {
        assert_eq!(WriteCondition::from_headers(None, None), Ok(None));
        assert_eq!(
            WriteCondition::from_headers(Some(" * "), None),
            Ok(Some(WriteCondition::Absent))
        );
        assert_eq!(
            WriteCondition::from_headers(None, Some("\"abc\", W/\"def\",*")),
            Ok(Some(WriteCondition::Matches(vec![
                "abc".into(),
                "def".into(),
                "*".into()
            ])))
        );
        assert!(WriteCondition::from_headers(Some("\"abc\""), None).is_err());
        assert!(WriteCondition::from_headers(Some("*"), Some("\"a\"")).is_err());
    }

    #[test]
    fn one_lock_per_key_while_it_is_held() {
        let locks = KeyLocks::default();
        let a = locks.get("b", "k");
        assert!(Arc::ptr_eq(&a, &locks.get("b", "k")));
        assert!(!Arc::ptr_eq(&a, &locks.get("b", "other")));
        drop(a);
        let _c = locks.get("b", "x");
        assert_eq!(
            locks.0.lock().unwrap().len(),
            1,
            "released keys leave the table"
        );
    }
}
