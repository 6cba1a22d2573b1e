//! The accept loop: HTTP/1.1 connections with a header-read deadline, an
//! idle timeout, a cap on connections served at once, the peer address as a
//! request extension, and a graceful drain on shutdown.
//!
//! Written on hyper's connection API rather than `axum::serve` because the
//! latter exposes none of these limits; the limits are what keep a
//! slowloris client (partial headers, or nothing at all) from holding the
//! box's sockets forever.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Connection limits (`advanced.*` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Complete request headers must arrive within this long of the server
    /// starting to wait for them (a new connection, or the next request on
    /// a keep-alive connection).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress and no byte received or
    /// sent for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

/// Activity of one connection, shared by its I/O wrapper, its service and
/// its watchdog.
struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Requests whose handler has not answered yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Whether a request came over TLS (a request extension, for
/// `aws:SecureTransport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secure(pub bool);

/// A connection's byte stream: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A TCP stream that records when bytes last moved.
struct Tracked {
    inner: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Decrements the in-flight count when a handler answers (or is dropped).
struct InFlight(Arc<Activity>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
    tls: Option<crate::tls::Shared>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut warned_full = false;
    loop {
        // A connection slot first: at the cap, new connections wait in the
        // kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => break,
        };
        if permits.available_permits() == 0 && !warned_full {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait until one closes (advanced.max_connections)"
            );
            warned_full = true;
        } else if permits.available_permits() > limits.max_connections / 2 {
            warned_full = false;
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let tracked = Tracked {
            inner: tcp,
            activity: activity.clone(),
        };
        let svc_activity = activity.clone();
        let app = app.clone();
        let secure = Secure(tls.is_some());
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            svc_activity.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(svc_activity.clone());
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req.extensions_mut().insert(secure);
            let app = app.clone();
            async move {
                let r = app.oneshot(req.map(axum::body::Body::new)).await;
                drop(guard);
                r
            }
        });
        let http = http.clone();
        let watcher = graceful.watcher();
        let idle = limits.idle_timeout;
        let handshake_deadline = limits.header_read_timeout;
        let tls = tls.as_ref().map(|t| t.load_full());
        tokio::spawn(async move {
            let _permit = permit;
            // The handshake happens here, not in the accept loop, and has the
            // header deadline: a client that never finishes it is dropped.
            let io: Box<dyn Io> = match tls {
                None => Box::new(tracked),
                Some(cfg) => {
                    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(tracked);
                    match tokio::time::timeout(handshake_deadline, accept).await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            let conn = watcher.watch(http.serve_connection(TokioIo::new(io), service));
            tokio::pin!(conn);
            let mut tick = tokio::time::interval(Duration::from_millis(250).min(idle));
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = tick.tick() => {
                        if activity.in_flight.load(Ordering::Relaxed) == 0 && activity.idle_for() >= idle {
                            tracing::debug!(peer = %peer, "closing an idle connection");
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight after the grace period; exiting");
        }
    }
}
