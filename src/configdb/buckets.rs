//! S3 bucket settings in the config database: bucket policies (the JSON
//! document as the client sent it) and canned bucket ACLs. They belong to
//! S3 buckets, not to the file's IAM, so they change in either IAM mode,
//! and they go when their bucket goes.

use rusqlite::{OptionalExtension, params};

use super::iam::now;
use super::{ConfigDb, Result};

impl ConfigDb {
    /// Every bucket policy, by client-facing bucket name.
    pub fn bucket_policies(&self) -> Result<Vec<(String, String)>> {
        self.pairs("SELECT bucket, policy FROM bucket_policies ORDER BY bucket")
    }

    pub fn bucket_policy(&self, bucket: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT policy FROM bucket_policies WHERE bucket = ?1",
                [bucket],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Stores a policy the caller has validated.
    pub fn put_bucket_policy(&mut self, bucket: &str, policy: &str) -> Result<()> {
        self.upsert("bucket_policies", "policy", bucket, policy)
    }

    /// Whether there was one.
    pub fn delete_bucket_policy(&mut self, bucket: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM bucket_policies WHERE bucket = ?1", [bucket])?
            > 0)
    }

    /// Every stored bucket ACL: (bucket, canned ACL name). A bucket without
    /// one is private.
    pub fn bucket_acls(&self) -> Result<Vec<(String, String)>> {
        self.pairs("SELECT bucket, canned FROM bucket_acls ORDER BY bucket")
    }

    /// Stores a bucket's canned ACL; `None` (private) removes the row.
    pub fn put_bucket_acl(&mut self, bucket: &str, canned: Option<&str>) -> Result<()> {
        match canned {
            None => {
                self.conn
                    .execute("DELETE FROM bucket_acls WHERE bucket = ?1", [bucket])?;
            }
            Some(c) => self.upsert("bucket_acls", "canned", bucket, c)?,
        }
        Ok(())
    }

    /// Forgets a deleted bucket's policy and ACL (one transaction), so a
    /// bucket created later under the same name starts private.
    pub fn forget_bucket(&mut self, bucket: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM bucket_policies WHERE bucket = ?1", [bucket])?;
        tx.execute("DELETE FROM bucket_acls WHERE bucket = ?1", [bucket])?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces all bucket settings (an import), in one transaction.
    pub fn replace_bucket_settings(
        &mut self,
        policies: &[(String, String)],
        acls: &[(String, String)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM bucket_policies", [])?;
        tx.execute("DELETE FROM bucket_acls", [])?;
        for (b, p) in policies {
            tx.execute(
                "INSERT INTO bucket_policies (bucket, policy, updated) VALUES (?1, ?2, ?3)",
                params![b, p, now()],
            )?;
        }
        for (b, c) in acls {
            tx.execute(
                "INSERT INTO bucket_acls (bucket, canned, updated) VALUES (?1, ?2, ?3)",
                params![b, c, now()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets one bucket's row of `table` (a constant of this file).
    fn upsert(&self, table: &str, column: &str, bucket: &str, value: &str) -> Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO {table} (bucket, {column}, updated) VALUES (?1, ?2, ?3)
                 ON CONFLICT(bucket) DO UPDATE SET {column} = excluded.{column}, updated = excluded.updated"
            ),
            params![bucket, value, now()],
        )?;
        Ok(())
    }

    fn pairs(&self, sql: &str) -> Result<Vec<(String, String)>> {
        Ok(self
            .conn
            .prepare(sql)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<std::result::Result<_, _>>()?)
    }
}
