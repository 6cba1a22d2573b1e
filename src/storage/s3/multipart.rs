//! Direct multipart uploads on an S3 upstream: client part N is upstream
//! part N, uploaded from the spool as it arrives and then dropped, so a
//! 10 GiB upload never has more than a few parts on local disk. The spool
//! keeps the upload's state, the part documents, the upstream upload id
//! (`upstream.json`) and each part's upstream ETag (`up-NNNNN`).
//!
//! The upstream object is created with a pending document (the engine's,
//! marked `dg-pending-upload`) because S3 takes user metadata only at
//! CreateMultipartUpload; completion then replaces it with the final
//! document by a server-side copy onto itself (no bytes through the proxy).

use std::collections::HashMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};
use serde::{Deserialize, Serialize};

use super::{S3Backend, Sse, file_range, list::copy_source, upstream, upstream_key};
use crate::storage::{Loc, RawObject, Result, StorageError, TempFile, UploadStore as _};

const UPSTREAM: &str = "upstream.json";
/// Largest object CopyObject copies; larger ones are copied in parts.
const COPY_OBJECT_MAX: u64 = 5 * 1024 * 1024 * 1024;
/// Part size of a server-side multipart copy.
const COPY_PART: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct DirectUpload {
    bucket: String,
    key: String,
    upload_id: String,
    /// The pending document the upstream object carries until completion:
    /// how a completion whose answer was lost is recognised.
    #[serde(default)]
    pending: Vec<u8>,
}

fn etag_file(number: u32) -> String {
    format!("up-{number:05}")
}

impl S3Backend {
    fn direct_of(&self, id: &str) -> Result<Option<DirectUpload>> {
        Ok(self
            .local
            .read_upload_file(id, UPSTREAM)?
            .and_then(|d| serde_json::from_slice(&d).ok()))
    }

    pub(super) fn begin_direct_upload(&self, id: &str, at: &Loc, meta: &[u8]) -> Result<()> {
        let (bucket, key) = upstream_key(at)?;
        let fields = self.fields(meta)?;
        let req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .set_metadata(Some(fields));
        let out = self
            .block_on(with_sse!(req, &self.cfg.sse).send())
            .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
        let d = DirectUpload {
            bucket: bucket.to_owned(),
            key,
            upload_id: out.upload_id().unwrap_or_default().to_owned(),
            pending: meta.to_vec(),
        };
        self.local
            .write_upload_file(id, UPSTREAM, &serde_json::to_vec(&d).expect("serializes"))
    }

    /// Sends a part of a direct upload upstream; `false` if the upload is
    /// not direct (the part then stays on the spool).
    pub(super) fn put_direct_part(&self, id: &str, number: u32, temp: &TempFile) -> Result<bool> {
        let Some(d) = self.direct_of(id)? else {
            return Ok(false);
        };
        let len = temp.path().metadata()?.len();
        let path = temp.path().to_path_buf();
        let unsigned = self.unsigned_payload(&super::meta_fields(&d.pending)?);
        let out = self.block_on(async {
            let body = file_range(&path, 0, len).await?;
            let req = self
                .client
                .upload_part()
                .bucket(&d.bucket)
                .key(&d.key)
                .upload_id(&d.upload_id)
                .part_number(number as i32)
                .content_length(len as i64)
                .body(body)
                .customize();
            let req = if unsigned {
                req.disable_payload_signing()
            } else {
                req
            };
            req.send()
                .await
                .map_err(|e| upstream(e, StorageError::NoSuchUpload))
        })?;
        let etag = out.e_tag().unwrap_or_default();
        self.local
            .write_upload_file(id, &etag_file(number), etag.as_bytes())?;
        Ok(true)
    }

    pub(super) fn complete_direct_upload(
        &self,
        id: &str,
        at: &Loc,
        parts: &[u32],
        meta: &[u8],
    ) -> Result<()> {
        let d = self.direct_of(id)?.ok_or(StorageError::NoSuchUpload)?;
        let (bucket, key) = upstream_key(at)?;
        if d.bucket != bucket || d.key != key {
            return Err(StorageError::NoSuchUpload);
        }
        // Checked before anything changes upstream: a document that does
        // not fit leaves the upload open.
        let fields = self.fields(meta)?;
        let mut done = Vec::with_capacity(parts.len());
        for &n in parts {
            let etag = self
                .local
                .read_upload_file(id, &etag_file(n))?
                .ok_or(StorageError::NoSuchUpload)?;
            done.push(
                CompletedPart::builder()
                    .part_number(n as i32)
                    .e_tag(String::from_utf8_lossy(&etag))
                    .build(),
            );
        }
        let completed = self.block_on(
            self.client
                .complete_multipart_upload()
                .bucket(&d.bucket)
                .key(&d.key)
                .upload_id(&d.upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(done))
                        .build(),
                )
                .send(),
        );
        if let Err(e) = completed {
            // The upstream may have completed it anyway: before a crash
            // (NoSuchUpload now), or with an answer the SDK cannot read
            // (moto's CompleteMultipartUploadResponse root). Our pending
            // object in place says it did.
            let err = upstream(e, StorageError::NoSuchUpload);
            let ours = self
                .head(bucket, &key)
                .is_ok_and(|r| r.meta.as_deref() == Some(&d.pending[..]));
            if !ours {
                return Err(err);
            }
            tracing::debug!(upload = id, error = %err, "the upstream completed the upload despite the error");
        }
        crate::failpoint::hit("direct-after-upstream-complete");
        let current = self.head(bucket, &key)?;
        self.copy_replace(bucket, &key, fields, &current)
    }

    /// Aborts the upstream side of a direct upload (if it is one).
    pub(super) fn abort_direct(&self, id: &str) -> Result<()> {
        let Some(d) = self.direct_of(id)? else {
            return Ok(());
        };
        let r = self.block_on(
            self.client
                .abort_multipart_upload()
                .bucket(&d.bucket)
                .key(&d.key)
                .upload_id(&d.upload_id)
                .send(),
        );
        match r {
            Ok(_) => Ok(()),
            Err(e) => match upstream(e, StorageError::NoSuchUpload) {
                StorageError::NoSuchUpload => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Replaces an object's user metadata by a server-side copy onto
    /// itself, pinned to the version `current` describes: CopyObject up to
    /// 5 GiB, above that a multipart copy in 1 GiB parts.
    pub(super) fn copy_replace(
        &self,
        bucket: &str,
        key: &str,
        fields: HashMap<String, String>,
        current: &RawObject,
    ) -> Result<()> {
        let source = copy_source(bucket, key);
        if current.stored_len <= COPY_OBJECT_MAX {
            let mut req = self
                .client
                .copy_object()
                .bucket(bucket)
                .key(key)
                .copy_source(&source)
                .metadata_directive(MetadataDirective::Replace)
                .content_type("application/octet-stream")
                .set_metadata(Some(fields));
            req = with_sse!(req, &self.cfg.sse);
            // Only the version we read: a concurrent overwrite wins, not us.
            if let Some(tag) = &current.version {
                req = req.copy_source_if_match(tag);
            }
            return self
                .block_on(req.send())
                .map(|_| ())
                .map_err(|e| upstream(e, StorageError::NoSuchKey));
        }
        let (len, tag) = (current.stored_len, current.version.clone());
        self.block_on(self.write_multipart(
            bucket,
            key,
            fields,
            len,
            COPY_PART,
            1,
            |id, n, off, size| {
                let req = self
                    .client
                    .upload_part_copy()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(n)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={off}-{}", off + size - 1))
                    .set_copy_source_if_match(tag.clone());
                async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| upstream(e, StorageError::NoSuchKey))?;
                    Ok(out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .map(str::to_owned))
                }
            },
        ))
    }

    /// Writes `bucket/key` as an upstream multipart upload: created with
    /// `fields` (and the backend's SSE), `len` bytes in parts of
    /// `part_size` made by `part(upload id, number, offset, size)` (which
    /// returns the part's ETag), `concurrency` at once; completed in order,
    /// aborted on any failure, so nothing half-written becomes visible.
    pub(super) async fn write_multipart<F, Fut>(
        &self,
        bucket: &str,
        key: &str,
        fields: HashMap<String, String>,
        len: u64,
        part_size: u64,
        concurrency: usize,
        part: F,
    ) -> Result<()>
    where
        F: Fn(&str, i32, u64, u64) -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>>>,
    {
        use futures::{StreamExt, TryStreamExt};
        let req = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type("application/octet-stream")
            .set_metadata(Some(fields));
        let created = with_sse!(req, &self.cfg.sse)
            .send()
            .await
            .map_err(|e| upstream(e, StorageError::NoSuchBucket))?;
        let id = created.upload_id().unwrap_or_default().to_owned();
        let part = &part;
        let id_ref = id.as_str();
        let uploaded: Result<Vec<CompletedPart>> =
            futures::stream::iter(0..len.div_ceil(part_size))
                .map(|i| async move {
                    let off = i * part_size;
                    let n = i as i32 + 1;
                    let etag = part(id_ref, n, off, part_size.min(len - off)).await?;
                    Ok(CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(etag)
                        .build())
                })
                .buffered(concurrency)
                .try_collect()
                .await;
        let done = match uploaded {
            Ok(parts) => {
                let expected = multipart_etag(&parts);
                let res = self
                    .client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        // An answer the SDK cannot read (moto's
                        // CompleteMultipartUploadResponse root) after the
                        // upstream completed: the object there with the
                        // ETag of exactly these parts is this upload.
                        let err = upstream(e, StorageError::NoSuchUpload);
                        let head = self
                            .client
                            .head_object()
                            .bucket(bucket)
                            .key(key)
                            .send()
                            .await;
                        let etag = head.ok().and_then(|h| h.e_tag().map(str::to_owned));
                        match (etag, expected) {
                            (Some(got), Some(want)) if got.trim_matches('"') == want => {
                                tracing::debug!(error = %err, "the upstream completed the upload despite the error");
                                return Ok(());
                            }
                            _ => Err(err),
                        }
                    }
                }
            }
            Err(e) => Err(e),
        };
        if done.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&id)
                .send()
                .await;
        }
        done
    }

    pub(super) fn remove_any_upload(&self, id: &str) -> Result<()> {
        self.abort_direct(id)?;
        self.local.remove_upload(id)
    }

    pub(super) fn put_any_part(
        &self,
        id: &str,
        number: u32,
        temp: TempFile,
        meta: &[u8],
    ) -> Result<()> {
        if self.put_direct_part(id, number, &temp)? {
            // The bytes are upstream; the spool keeps the part's document.
            drop(temp);
            let empty = self.local.temp_file()?;
            return self.local.put_part(id, number, empty, meta);
        }
        self.local.put_part(id, number, temp, meta)
    }
}

/// The ETag S3 gives a completed multipart upload of `parts`: the MD5 of
/// the parts' binary MD5s, then `-N`. `None` when a part ETag is not an MD5.
fn multipart_etag(parts: &[CompletedPart]) -> Option<String> {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    for p in parts {
        let raw = hex::decode(p.e_tag()?.trim_matches('"')).ok()?;
        if raw.len() != 16 {
            return None;
        }
        h.update(&raw);
    }
    Some(format!("{}-{}", hex::encode(h.finalize()), parts.len()))
}
