//! The accept loop: hyper's HTTP/1 server on each TCP connection, with the two timeouts
//! `axum::serve` does not expose, so a connection that sends nothing, or only part of a
//! request head, does not hold a file descriptor and its buffers for ever.
//!
//! - idle (`--idle-timeout`): no byte at all within this long after the accept. The timer is
//!   ours: it only needs to know whether a byte came ([`Watched`]).
//! - header read (`--header-read-timeout`): hyper's `header_read_timeout`, from the moment
//!   hyper waits for a request head (the accept, or the end of the previous response on a
//!   keep-alive connection) until the head is complete.
//!
//! Both close the connection and count `wsgate_timeouts_total{kind}`: `idle` (no byte ever
//! came), `header_read` (part of the first request head came), `keep_alive` (a connection
//! that had completed a request waited longer than the header-read timeout for the next:
//! hyper's timer also runs between requests, so it is the keep-alive timeout too). A
//! websocket leaves hyper at its upgrade, so none applies to it after that.
//!
//! HTTP/1 only: Socket.IO clients and load balancers speak HTTP/1.1 to the gateway (the
//! websocket upgrade is HTTP/1.1), and hyper-util's HTTP/2 detection reads 24 bytes
//! before any timeout of hyper starts.

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::telemetry::TimeoutKind;

/// The per-connection settings of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// `--idle-timeout`.
    pub idle: Duration,
    /// `--header-read-timeout`.
    pub header_read: Duration,
    /// `--tcp-nodelay`.
    pub nodelay: bool,
}

/// Serve `app` on every connection `listener` accepts until `signal` completes; then stop
/// accepting, let each connection finish its request in flight, and return once all have
/// closed (what `axum::serve(..).with_graceful_shutdown(signal)` does).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnSettings,
    signal: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read);
    // Closed when the signal comes: every connection starts its graceful shutdown.
    let (stop_tx, stop_rx) = watch::channel(());
    // Each connection holds a receiver; `closed` completes when the last one is dropped.
    let (closed_tx, closed_rx) = watch::channel(());
    let mut signal = pin!(signal);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        no_delay(&tcp, settings.nodelay);
        let conn = Conn {
            builder: builder.clone(),
            idle: settings.idle,
            stop: stop_rx.clone(),
            _closed: closed_rx.clone(),
        };
        tokio::spawn(conn.run(tcp, app.clone()));
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
}

/// One connection's task and what it holds.
struct Conn {
    builder: http1::Builder,
    idle: Duration,
    stop: watch::Receiver<()>,
    /// Dropped when the connection ends (see [`serve`]).
    _closed: watch::Receiver<()>,
}

impl Conn {
    async fn run(mut self, tcp: TcpStream, app: Router) {
        let (io, heard) = Watched::new(tcp);
        let requested = heard.clone();
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(move |req: axum::extract::Request<hyper::body::Incoming>| {
                    requested.request.store(true, Ordering::Relaxed);
                    req
                })
                .service(app),
        );
        let mut conn = pin!(
            self.builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades()
        );
        let mut idle = pin!(silent_for(self.idle, heard.clone()));
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        report(&e, &heard);
                    }
                    return;
                }
                () = &mut idle => {
                    TimeoutKind::Idle.count();
                    return;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What a connection has done so far.
#[derive(Default)]
struct Heard {
    /// A byte was read.
    byte: AtomicBool,
    /// A request head was complete.
    request: AtomicBool,
}

/// Completes after `after` when no byte was read by then; never otherwise.
async fn silent_for(after: Duration, heard: Arc<Heard>) {
    tokio::time::sleep(after).await;
    if heard.byte.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// Count a header-read timeout under what the connection had done; other errors (resets,
/// malformed requests) are the peer's business.
fn report(e: &hyper::Error, heard: &Heard) {
    if !e.is_timeout() {
        tracing::trace!(error = %e, "connection ended with an error");
    } else if heard.request.load(Ordering::Relaxed) {
        TimeoutKind::KeepAlive.count();
    } else if heard.byte.load(Ordering::Relaxed) {
        TimeoutKind::HeaderRead.count();
    } else {
        TimeoutKind::Idle.count();
    }
}

/// As `axum::serve`: errors of one connection (reset before accept) are skipped; others
/// (out of file descriptors) are logged and accepting pauses for a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept error");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// `--tcp-nodelay`: updates are small frames; Nagle's algorithm holds one back until the
/// previous one is acknowledged (fewer segments, less CPU, a longer worst-case latency).
fn no_delay(tcp: &TcpStream, on: bool) {
    if let Err(e) = tcp.set_nodelay(on) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// A TCP stream that records whether a byte was ever read from it.
struct Watched {
    inner: TcpStream,
    heard: Arc<Heard>,
}

impl Watched {
    fn new(inner: TcpStream) -> (Self, Arc<Heard>) {
        let heard = Arc::new(Heard::default());
        let io = Self {
            inner,
            heard: heard.clone(),
        };
        (io, heard)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.byte.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
