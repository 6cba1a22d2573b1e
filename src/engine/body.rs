//! The one stream type for object bodies, and the stages that read a stored
//! file into it. Memory per stream is bounded by `READ_BLOCK * READ_DEPTH`.

use std::fs::File;
use std::io;
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

/// Streams `len` bytes of `file` starting at `offset`. Each block is read by
/// a short blocking job and sent from an async task, so a client that reads
/// slowly holds a task and at most `READ_DEPTH` blocks, never a thread.
/// Dropping the stream stops the reader.
pub fn file_stream(file: File, offset: u64, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_DEPTH);
    tokio::spawn(async move {
        // Tell the kernel we read front to back: it doubles its read-ahead.
        let _ = rustix::fs::fadvise(
            &file,
            offset,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::Sequential,
        );
        let file = std::sync::Arc::new(file);
        let mut left = len;
        let mut pos = offset;
        while left > 0 {
            let want = left.min(READ_BLOCK as u64) as usize;
            let f = file.clone();
            let block = tokio::task::spawn_blocking(move || read_block(&f, pos, want, left))
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

/// One block of a file at `pos` (positional read: the file is shared),
/// asking the kernel to prefetch the next blocks meanwhile.
fn read_block(file: &File, pos: u64, want: usize, left: u64) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    // Ask the kernel to fetch the next blocks while this one is sent, so disk
    // reads overlap with the network on a cold cache.
    let ahead = (READ_BLOCK * READ_AHEAD_BLOCKS) as u64;
    let _ = rustix::fs::fadvise(
        file,
        pos + want as u64,
        std::num::NonZeroU64::new(ahead.min(left.saturating_sub(want as u64)).max(1)),
        rustix::fs::Advice::WillNeed,
    );
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if filled < want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "object file shorter than its recorded size",
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
