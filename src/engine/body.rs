//! The one stream type for object bodies, and the stages that read a stored
//! body into it. Memory per stream is bounded by `READ_BLOCK * READ_DEPTH`.

use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

use crate::storage::{Body, StoredBody};

/// A body: a stream of byte chunks with I/O errors in-band. Errors carry an
/// inner error (auth, digest) that the protocol layer can downcast.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Size of the blocks read from disk and handed to the network.
pub const READ_BLOCK: usize = 1024 * 1024;
/// Blocks in flight between the reader thread and the network.
const READ_DEPTH: usize = 4;
/// Blocks the kernel is asked to prefetch beyond the one being read.
const READ_AHEAD_BLOCKS: usize = 8;

/// Streams `len` bytes of a stored body starting at `offset`. Each block is
/// read by a short blocking job and sent from an async task, so a client
/// that reads slowly holds a task and at most `READ_DEPTH` blocks, never a
/// thread. Dropping the stream stops the reader.
pub fn file_stream(body: Body, offset: u64, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_DEPTH);
    tokio::spawn(async move {
        let mut left = len;
        let mut pos = offset;
        while left > 0 {
            let want = left.min(READ_BLOCK as u64) as usize;
            let b = body.clone();
            let block =
                tokio::task::spawn_blocking(move || read_block(b.as_ref(), pos, want, left))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(format!("reader task failed: {e}"))));
            let failed = block.is_err();
            if let Ok(b) = &block {
                pos += b.len() as u64;
                left -= b.len() as u64;
            }
            if tx.send(block).await.is_err() || failed {
                return; // the client went away, or the read failed
            }
        }
    });
    Box::pin(tokio_stream_from(rx))
}

/// One block of a body at `pos`, telling the backend which blocks come
/// next so their reads overlap with sending this one.
fn read_block(body: &dyn StoredBody, pos: u64, want: usize, left: u64) -> io::Result<Bytes> {
    let ahead = (READ_BLOCK * READ_AHEAD_BLOCKS) as u64;
    body.will_read(pos, (want as u64 + ahead).min(left).max(1));
    let mut buf = BytesMut::zeroed(want);
    let filled = crate::storage::read_full_at(body, &mut buf, pos)?;
    if filled < want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stored body shorter than its recorded size",
        ));
    }
    Ok(buf.freeze())
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
    // The stream is polled after the handler returned: keep its request's span.
    let span = tracing::Span::current();
    Box::pin(stream.inspect(move |item| {
        if let Err(e) = item {
            span.in_scope(|| tracing::error!(key = %key, error = %e, "object body failed mid-stream (damaged or tampered data); connection aborted"));
        }
    }))
}

/// A stream that fails at once (a body whose first step failed).
pub fn once_err(e: io::Error) -> ByteStream {
    Box::pin(futures::stream::once(async move { Err(e) }))
}
