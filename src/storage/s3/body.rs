//! An upstream object's stored bytes as a [`StoredBody`]: ranged GETs of a
//! few MiB, each pinned to the ETag seen when the object was opened
//! (`If-Match`), so an overwrite during a read is an error, never a mix of
//! two versions. The window after the one being read is fetched ahead
//! when the reader says it reads sequentially.

use std::io;
use std::sync::Mutex;

use aws_sdk_s3::Client;
use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::storage::{RawObject, StoredBody};

/// Bytes per ranged GET.
const WINDOW: u64 = 4 * 1024 * 1024;

type Fetch = JoinHandle<io::Result<Bytes>>;

struct Windows {
    /// The window last read: (start offset, bytes).
    current: Option<(u64, Bytes)>,
    /// The next window, being fetched.
    ahead: Option<(u64, Fetch)>,
}

pub struct S3Body {
    client: Client,
    rt: Handle,
    bucket: String,
    key: String,
    etag: Option<String>,
    len: u64,
    windows: Mutex<Windows>,
}

impl S3Body {
    pub fn new(
        client: Client,
        rt: Handle,
        bucket: &str,
        key: &str,
        etag: Option<String>,
        len: u64,
        first: Option<Bytes>,
    ) -> Self {
        S3Body {
            client,
            rt,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            etag,
            len,
            windows: Mutex::new(Windows {
                current: first.map(|b| (0, b)),
                ahead: None,
            }),
        }
    }

    /// Starts fetching the window at `start` on the backend's runtime.
    fn fetch(&self, start: u64) -> Fetch {
        let end = (start + WINDOW).min(self.len) - 1;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(format!("bytes={start}-{end}"))
            .set_if_match(self.etag.clone());
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let want = (end + 1 - start) as usize;
        self.rt.spawn(async move {
            let out = req.send().await.map_err(|e| {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(412) {
                    io::Error::other(format!(
                        "upstream object {bucket}/{key} changed while it was being read"
                    ))
                } else {
                    let e = super::upstream(e, crate::storage::StorageError::NoSuchKey);
                    io::Error::other(format!("upstream read of {bucket}/{key}: {e}"))
                }
            })?;
            let data = out
                .body
                .collect()
                .await
                .map_err(|e| io::Error::other(format!("upstream read of {bucket}/{key}: {e}")))?
                .into_bytes();
            if data.len() != want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "upstream object {bucket}/{key} returned {} bytes for a {want}-byte range",
                        data.len()
                    ),
                ));
            }
            Ok(data)
        })
    }

    fn wait(&self, f: Fetch) -> io::Result<Bytes> {
        self.rt
            .block_on(f)
            .unwrap_or_else(|e| Err(io::Error::other(format!("upstream read task failed: {e}"))))
    }
}

/// Opens an object with one ranged GET of its first window: its metadata
/// (as a HEAD would give it) and those bytes. `None` for an empty object
/// (a range of nothing is refused with 416).
pub(super) fn first_window(
    backend: &super::S3Backend,
    bucket: &str,
    key: &str,
) -> crate::storage::Result<Option<(RawObject, Option<Bytes>)>> {
    use crate::storage::StorageError;
    let res = backend.block_on(async {
        let out = backend
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes=0-{}", WINDOW - 1))
            .send()
            .await?;
        let total = out
            .content_range()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, t)| t.parse::<u64>().ok())
            .or(out.content_length().map(|n| n.max(0) as u64))
            .unwrap_or(0);
        let raw = RawObject {
            meta: super::doc_from_fields(out.metadata()),
            stored_len: total,
            mtime: super::to_system_time(out.last_modified()),
            is_dir: false,
            version: out.e_tag().map(str::to_owned),
        };
        let data = out.body.collect().await.map(|b| b.into_bytes());
        Ok::<_, aws_sdk_s3::error::SdkError<_>>((raw, data))
    });
    match res {
        Ok((raw, Ok(data))) => {
            let want = raw.stored_len.min(WINDOW) as usize;
            if data.len() != want {
                return Err(StorageError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "upstream object {bucket}/{key}: first range returned {} of {want} bytes",
                        data.len()
                    ),
                )));
            }
            Ok(Some((raw, Some(data))))
        }
        Ok((_, Err(e))) => Err(StorageError::Io(io::Error::other(format!(
            "upstream read of {bucket}/{key}: {e}"
        )))),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if status == Some(416) {
                return Ok(None);
            }
            Err(super::upstream(e, StorageError::NoSuchKey))
        }
    }
}

impl StoredBody for S3Body {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let start = offset - offset % WINDOW;
        let mut w = self.windows.lock().expect("window lock");
        let have = matches!(&w.current, Some((s, _)) if *s == start);
        if !have {
            let fetch = match w.ahead.take() {
                Some((s, f)) if s == start => f,
                other => {
                    if let Some((_, f)) = other {
                        f.abort();
                    }
                    self.fetch(start)
                }
            };
            let data = self.wait(fetch)?;
            let sequential = match &w.current {
                Some((prev, _)) => prev + WINDOW == start,
                None => start == 0,
            };
            w.current = Some((start, data));
            // A reader going front to back: fetch the next window while
            // this one is used.
            if sequential && w.ahead.is_none() && start + WINDOW < self.len {
                w.ahead = Some((start + WINDOW, self.fetch(start + WINDOW)));
            }
        }
        let (s, data) = w.current.as_ref().expect("window present");
        let from = (offset - s) as usize;
        let n = buf.len().min(data.len() - from);
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }

    fn will_read(&self, offset: u64, len: u64) {
        let mut start = offset - offset % WINDOW;
        let mut w = self.windows.lock().expect("window lock");
        // The window holding `offset` is here: look one window further if
        // the announced read reaches it.
        if matches!(&w.current, Some((s, _)) if *s == start) {
            if offset + len <= start + WINDOW {
                return;
            }
            start += WINDOW;
        }
        let have = matches!(&w.ahead, Some((s, _)) if *s == start);
        if !have && start < self.len && w.ahead.is_none() {
            w.ahead = Some((start, self.fetch(start)));
        }
    }
}

impl Drop for S3Body {
    fn drop(&mut self) {
        if let Ok(mut w) = self.windows.lock()
            && let Some((_, f)) = w.ahead.take()
        {
            f.abort();
        }
    }
}
