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
//! Before hyper sees a connection: with `--proxy-protocol`, a trusted proxy's connection
//! starts with a PROXY header naming the client (`net::proxy_protocol`); then a client's
//! own connection (not a trusted proxy's) is counted under its address
//! (`--max-connections-per-ip`) and, over the limit, answered a static `429` and closed,
//! in the accept loop itself when there is no header to read (no task, no hyper state).
//! Each request then goes through `net::Admit`, which admits Engine.IO handshakes.
//!
//! HTTP/1 only: Socket.IO clients and load balancers speak HTTP/1.1 to the gateway (the
//! websocket upgrade is HTTP/1.1), and hyper-util's HTTP/2 detection reads 24 bytes
//! before any timeout of hyper starts.

use std::{
    future::Future,
    io,
    net::IpAddr,
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

use crate::{
    net::{Admission, Admit, forwarded::canonical, per_ip::IpHold, proxy_protocol},
    telemetry::{NetRefusal, TimeoutKind},
};

/// What a client over `--max-connections-per-ip` reads before its connection closes.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The per-connection settings of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// `--idle-timeout`.
    pub idle: Duration,
    /// `--header-read-timeout`.
    pub header_read: Duration,
    /// `--tcp-nodelay`.
    pub nodelay: bool,
    /// `--proxy-protocol`.
    pub proxy_protocol: bool,
}

/// Serve `app` on every connection `listener` accepts until `signal` completes; then stop
/// accepting, let each connection finish its request in flight, and return once all have
/// closed (what `axum::serve(..).with_graceful_shutdown(signal)` does).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
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
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let peer = canonical(peer.ip());
        let reads_header = settings.proxy_protocol && admission.trusted().contains(peer);
        // Without a header to read, the address is known now: refuse before any task.
        let hold = if reads_header {
            None
        } else {
            match count_connection(&admission, peer) {
                Ok(hold) => hold,
                Err(why) => {
                    refuse(&admission, &tcp, why);
                    continue;
                }
            }
        };
        no_delay(&tcp, settings.nodelay);
        let conn = Conn {
            builder: builder.clone(),
            idle: settings.idle,
            header_read: settings.header_read,
            admission: admission.clone(),
            stop: stop_rx.clone(),
            _closed: closed_rx.clone(),
        };
        let start = Start {
            peer,
            reads_header,
            hold,
        };
        tokio::spawn(conn.run(tcp, start, app.clone()));
    }
    drop(listener);
    drop(stop_tx);
    drop(closed_rx);
    closed_tx.closed().await;
}

/// The per-IP count of a client's own TCP connection: `None` when no connection limit is
/// set or the address is a trusted proxy's (it carries many clients; their sessions are
/// counted by their forwarded address instead).
fn count_connection(admission: &Admission, ip: IpAddr) -> Result<Option<IpHold>, NetRefusal> {
    match admission.per_ip() {
        Some(per_ip) if per_ip.counts_connections() && !admission.trusted().contains(ip) => {
            per_ip.connection(ip).map(Some)
        }
        _ => Ok(None),
    }
}

/// Refuse a connection before hyper: count it, write the static answer if the socket
/// takes it at once (no task, no buffer), and close.
fn refuse(admission: &Admission, tcp: &TcpStream, why: NetRefusal) {
    admission.count(why);
    let _ = tcp.try_write(TOO_MANY_CONNECTIONS);
}

/// What the accept loop learnt about a connection.
struct Start {
    /// The TCP peer.
    peer: IpAddr,
    /// A PROXY protocol header comes first.
    reads_header: bool,
    /// Its per-IP count, when already taken.
    hold: Option<IpHold>,
}

/// One connection's task and what it holds.
struct Conn {
    builder: http1::Builder,
    idle: Duration,
    header_read: Duration,
    admission: Arc<Admission>,
    stop: watch::Receiver<()>,
    /// Dropped when the connection ends (see [`serve`]).
    _closed: watch::Receiver<()>,
}

impl Conn {
    /// The connection's address: the peer, or the source its PROXY header names (`None`:
    /// no valid header in time, the connection is dropped).
    async fn proxied(&self, io: &mut Watched, peer: IpAddr) -> Option<IpAddr> {
        match tokio::time::timeout(self.header_read, proxy_protocol::read(io)).await {
            Ok(Ok((header, rest))) => {
                io.unread(rest);
                Some(header.source.map_or(peer, |s| canonical(s.ip())))
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "refused connection: PROXY protocol header");
                self.admission.count(NetRefusal::ProxyHeader);
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "refused connection: no PROXY protocol header in time");
                self.admission.count(NetRefusal::ProxyHeader);
                None
            }
        }
    }

    async fn run(mut self, tcp: TcpStream, start: Start, app: Router) {
        let (mut io, heard) = Watched::new(tcp);
        let mut conn_ip = start.peer;
        io.hold = start.hold;
        if start.reads_header {
            let Some(ip) = self.proxied(&mut io, start.peer).await else {
                return;
            };
            conn_ip = ip;
            match count_connection(&self.admission, conn_ip) {
                Ok(hold) => io.hold = hold,
                Err(why) => {
                    refuse(&self.admission, &io.inner, why);
                    return;
                }
            }
        }
        let requested = heard.clone();
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(move |req: axum::extract::Request<hyper::body::Incoming>| {
                    requested.request.store(true, Ordering::Relaxed);
                    req
                })
                .service(Admit::new(app, self.admission.clone(), conn_ip)),
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

/// A TCP stream that records whether a byte was ever read from it, gives back first what
/// was read past a PROXY header, and holds the connection's per-IP count for as long as
/// the socket is open (through a websocket upgrade: hyper hands this same value on).
struct Watched {
    /// Before `inner`: fields drop in order, so the count is released before the client
    /// can see the close (and connect again).
    hold: Option<IpHold>,
    inner: TcpStream,
    heard: Arc<Heard>,
    /// Bytes read past a PROXY header, and how many of them were given back.
    unread: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn new(inner: TcpStream) -> (Self, Arc<Heard>) {
        let heard = Arc::new(Heard::default());
        let io = Self {
            inner,
            heard: heard.clone(),
            unread: None,
            hold: None,
        };
        (io, heard)
    }

    /// Give `bytes` back before reading the socket again.
    fn unread(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.unread = Some((bytes, 0));
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((bytes, given)) = &mut self.unread {
            let n = buf.remaining().min(bytes.len() - *given);
            buf.put_slice(&bytes[*given..*given + n]);
            *given += n;
            if *given == bytes.len() {
                self.unread = None;
            }
            return Poll::Ready(Ok(()));
        }
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
