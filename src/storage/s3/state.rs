//! The engine's state documents on an S3 backend. Key check records
//! (`keys/...`) live on the upstream, in every bucket's hidden prefix
//! (`<bucket>/.dg/keys/<key-id>.json`), so a wrong key is refused even on a
//! new spool or a new box, and a bucket carries the record of the keys its
//! objects need wherever it is read from. The spool keeps a copy of each
//! record: a bucket created through the proxy gets the records at once, and
//! a backend with no bucket yet still remembers its first key. Everything
//! else (jobs) is local to this proxy and stays on the spool.

use aws_sdk_s3::primitives::ByteStream as SdkBody;

use super::{INTERNAL_PREFIX, S3Backend, Sse, upstream};
use crate::storage::state::StateStore;
use crate::storage::{Result, StorageError};

/// The state directory whose documents live upstream.
const UPSTREAM_DIR: &str = "keys/";

fn upstream_doc(name: &str) -> bool {
    name.starts_with(UPSTREAM_DIR)
}

fn object_key(name: &str) -> String {
    format!("{INTERNAL_PREFIX}{name}")
}

impl S3Backend {
    /// The buckets of this backend's scope that exist upstream.
    fn bucket_names(&self) -> Result<Vec<String>> {
        use crate::storage::Backend;
        Ok(self
            .list_buckets()?
            .into_iter()
            .map(|b| b.name)
            .filter(|b| self.cfg.scope.contains(b))
            .collect())
    }

    fn get_doc(&self, bucket: &str, name: &str) -> Result<Option<Vec<u8>>> {
        let res = self.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(object_key(name))
                .send()
                .await
                .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
            let data = out
                .body
                .collect()
                .await
                .map_err(|e| StorageError::Io(std::io::Error::other(e)))?;
            Ok(data.into_bytes().to_vec())
        });
        match res {
            Ok(d) => Ok(Some(d)),
            Err(StorageError::NoSuchKey | StorageError::NoSuchBucket) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_doc(&self, bucket: &str, name: &str, data: &[u8]) -> Result<()> {
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(object_key(name))
            .content_type("application/json")
            .body(SdkBody::from(data.to_vec()));
        self.block_on(with_sse!(req, &self.cfg.sse).send())
            .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
        Ok(())
    }

    fn delete_doc(&self, bucket: &str, name: &str) -> Result<()> {
        self.block_on(
            self.client
                .delete_object()
                .bucket(bucket)
                .key(object_key(name))
                .send(),
        )
        .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
        Ok(())
    }

    /// Copies the spool's key check records into `bucket` (just created).
    pub(super) fn seed_bucket_state(&self, bucket: &str) -> Result<()> {
        if !self.cfg.scope.contains(bucket) {
            return Ok(());
        }
        let dir = UPSTREAM_DIR.trim_end_matches('/');
        for n in self.local.list_state(dir)? {
            let name = format!("{UPSTREAM_DIR}{n}");
            if let Some(d) = self.local.read_state(&name)? {
                self.put_doc(bucket, &name, &d)?;
            }
        }
        Ok(())
    }
}

impl StateStore for S3Backend {
    /// Upstream documents: the first bucket's copy (any bucket's copy will
    /// do: they are written together), else the spool's.
    fn read_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if upstream_doc(name) {
            for b in self.bucket_names()? {
                if let Some(d) = self.get_doc(&b, name)? {
                    return Ok(Some(d));
                }
            }
        }
        self.local.read_state(name)
    }

    fn write_state(&self, name: &str, data: &[u8]) -> Result<()> {
        if upstream_doc(name) {
            for b in self.bucket_names()? {
                self.put_doc(&b, name, data)?;
            }
        }
        self.local.write_state(name, data)
    }

    fn rename_state(&self, from: &str, to: &str) -> Result<bool> {
        let mut found = false;
        if upstream_doc(from) {
            for b in self.bucket_names()? {
                if let Some(d) = self.get_doc(&b, from)? {
                    self.put_doc(&b, to, &d)?;
                    self.delete_doc(&b, from)?;
                    found = true;
                }
            }
        }
        Ok(self.local.rename_state(from, to)? || found)
    }

    /// Upstream directories: the names in any bucket or on the spool.
    fn list_state(&self, dir: &str) -> Result<Vec<String>> {
        let mut names = self.local.list_state(dir)?;
        if upstream_doc(&format!("{dir}/")) {
            let prefix = object_key(&format!("{dir}/"));
            for b in self.bucket_names()? {
                self.list_keys(&b, &prefix, &mut |k| {
                    if let Some(n) = k.strip_prefix(&prefix)
                        && !n.contains('/')
                    {
                        names.push(n.to_owned());
                    }
                })?;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Only ever asked for local documents (the write gate's job file).
    fn state_exists(&self, name: &str) -> bool {
        self.local.state_exists(name)
    }
}
