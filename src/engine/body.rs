//! The one stream type for object bodies, and the stages that read a stored
//! file into it. Memory per stream is bounded by `READ_BLOCK * READ_DEPTH`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

/// A body: a stream of byte chunks with I/O errors in-band. Errors carry an
/// inner error (auth, digest) that the protocol layer can downcast.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Size of the blocks read from disk and handed to the network.
pub const READ_BLOCK: usize = 1024 * 1024;
/// Blocks in flight between the reader thread and the network.
const READ_DEPTH: usize = 4;
/// Blocks the kernel is asked to prefetch beyond the one being read.
const READ_AHEAD_BLOCKS: usize = 8;

/// Streams `len` bytes of `file` starting at `offset` from a blocking reader
/// thread. Dropping the stream stops the reader.
pub fn file_stream(mut file: File, offset: u64, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_DEPTH);
    tokio::task::spawn_blocking(move || {
        // Tell the kernel we read front to back: it doubles its read-ahead.
        let _ = rustix::fs::fadvise(
            &file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::Sequential,
        );
        if offset > 0
            && let Err(e) = file.seek(SeekFrom::Start(offset))
        {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = len;
        let mut pos = offset;
        while left > 0 {
            // Ask the kernel to fetch the next blocks while this one is sent,
            // so disk reads overlap with the network on a cold cache.
            let ahead = (READ_BLOCK * READ_AHEAD_BLOCKS) as u64;
            let _ = rustix::fs::fadvise(
                &file,
                pos + READ_BLOCK as u64,
                std::num::NonZeroU64::new(ahead.min(left)),
                rustix::fs::Advice::WillNeed,
            );
            pos += left.min(READ_BLOCK as u64);
            let want = left.min(READ_BLOCK as u64) as usize;
            let mut buf = BytesMut::zeroed(want);
            let mut filled = 0;
            while filled < want {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if filled < want {
                let _ = tx.blocking_send(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "object file shorter than its recorded size",
                )));
                return;
            }
            buf.truncate(filled);
            left -= filled as u64;
            if tx.blocking_send(Ok(buf.freeze())).is_err() {
                return; // the client went away
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl Stream<Item = io::Result<Bytes>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A stream of one buffer (small bodies, XML documents).
pub fn once(data: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

pub fn empty() -> ByteStream {
    Box::pin(futures::stream::empty())
}

/// Logs the first error of a body stream with the object's key: damage found
/// after the status line was sent ends the connection, and this line is what
/// tells the operator why.
pub fn log_errors(stream: ByteStream, key: String) -> ByteStream {
    use futures::StreamExt;
    Box::pin(stream.inspect(move |item| {
        if let Err(e) = item {
            tracing::error!(key = %key, error = %e, "object body failed mid-stream (damaged or tampered data); connection aborted");
        }
    }))
}
