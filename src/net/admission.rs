//! Admission of Engine.IO handshakes before any session exists: the replica's session
//! count (`--max-connections`, from the handshake on) and the client address's limits
//! (`--max-connections-per-ip`, `--max-handshakes-per-ip-per-s`).
//!
//! A handshake (a `/socket.io/` request without `sid`) that is admitted carries a
//! [`SessionPermit`] in its extensions. engineioxide keeps the handshake request's head
//! (extensions included) in the session it creates, for the session's whole life, so the
//! permit is released exactly when the session is dropped: closed by either side, expired
//! by `--connect-timeout` or the ping timeout, or never created (a refused or failed
//! handshake drops its request). No hook in the vendored crates is needed.
//!
//! A refused handshake costs no allocation beyond its request: the checks are atomics and
//! one map lookup, and the answer is a status with an empty body (no header, nothing
//! formatted). `wsgate_network_refusals_total{limit}` counts it.

use std::{
    future::Ready,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use futures_util::future::Either;
use http::{Request, StatusCode};

use super::{
    forwarded::TrustedProxies,
    per_ip::{IpHold, PerIp},
};
use crate::telemetry::NetRefusal;

/// The replica's admission state, shared by every connection.
pub struct Admission {
    max_sessions: usize,
    live: AtomicUsize,
    per_ip: Option<Arc<PerIp>>,
    trusted: TrustedProxies,
    /// `wsgate_network_refusals_total`, one handle per [`NetRefusal`] value in its order:
    /// a handle counts with one atomic add, where the `counter!` macro with a label
    /// allocates its key at every call.
    refusals: Vec<metrics::Counter>,
    /// `wsgate_engine_sessions`.
    gauge: metrics::Gauge,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("max_sessions", &self.max_sessions)
            .field("sessions", &self.sessions())
            .field("per_ip", &self.per_ip)
            .field("trusted", &self.trusted)
            .finish()
    }
}

impl Admission {
    /// `max_sessions` 0: no replica limit; `per_ip` `None`: no per-IP limit. Make it after
    /// the metrics recorder is installed (it keeps the refusal counters' handles).
    pub fn new(
        max_sessions: usize,
        per_ip: Option<Arc<PerIp>>,
        trusted: TrustedProxies,
    ) -> Arc<Self> {
        let refusals = NetRefusal::ALL
            .iter()
            .map(|why| metrics::counter!("wsgate_network_refusals_total", "limit" => why.as_str()))
            .collect();
        Arc::new(Self {
            max_sessions,
            live: AtomicUsize::new(0),
            per_ip,
            trusted,
            refusals,
            gauge: metrics::gauge!("wsgate_engine_sessions"),
        })
    }

    /// Count one refusal (no allocation).
    pub fn count(&self, why: NetRefusal) {
        let i = NetRefusal::ALL.iter().position(|v| *v == why);
        if let Some(counter) = i.and_then(|i| self.refusals.get(i)) {
            counter.increment(1);
        }
    }

    /// Engine.IO sessions open now (connected to Socket.IO or not).
    pub fn sessions(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The proxies whose forwarding headers are believed.
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The per-IP table, when a per-IP limit is set.
    pub fn per_ip(&self) -> Option<&Arc<PerIp>> {
        self.per_ip.as_ref()
    }

    /// Admit one handshake of a request that came over a connection from `conn_ip`.
    pub fn admit(
        self: &Arc<Self>,
        conn_ip: IpAddr,
        headers: &http::HeaderMap,
    ) -> Result<SessionPermit, NetRefusal> {
        // The replica first: a full replica refuses without touching the per-IP table.
        let reserved = self.live.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        if self.max_sessions > 0 && reserved >= self.max_sessions {
            return Err(NetRefusal::Sessions);
        }
        let ip = match &self.per_ip {
            Some(per_ip) => Some(per_ip.handshake(self.trusted.client(conn_ip, headers))?),
            None => None,
        };
        self.gauge.increment(1.0);
        Ok(SessionPermit {
            _slot: SlotCounted { _slot: slot },
            _ip: ip,
        })
    }
}

/// A reserved place in the replica's session count.
#[derive(Debug)]
struct Slot(Arc<Admission>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot of an admitted session (in the gauge too).
#[derive(Debug)]
struct SlotCounted {
    _slot: Slot,
}

impl Drop for SlotCounted {
    fn drop(&mut self) {
        self._slot.0.gauge.decrement(1.0);
    }
}

/// One Engine.IO session's place in the counts; in the handshake request's extensions
/// (an `Arc`, as extensions must be `Clone`), so it lives as long as the session.
#[derive(Debug)]
pub struct SessionPermit {
    _slot: SlotCounted,
    _ip: Option<IpHold>,
}

/// Whether a request opens an Engine.IO session: a `/socket.io/` request without `sid`.
pub fn is_handshake<B>(req: &Request<B>) -> bool {
    req.uri().path().starts_with("/socket.io")
        && !req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// What a refused handshake gets: 503 when the replica is full (a load balancer or the
/// client's reconnection may find another replica), 429 when the client's address is
/// over its limits.
pub fn refusal_status(why: NetRefusal) -> StatusCode {
    match why {
        NetRefusal::Sessions | NetRefusal::IpTableFull => StatusCode::SERVICE_UNAVAILABLE,
        NetRefusal::ConnectionsPerIp
        | NetRefusal::SessionsPerIp
        | NetRefusal::HandshakesPerIp
        | NetRefusal::ProxyHeader => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The refusal's response: a status, no header, an empty body (no allocation).
fn refusal(why: NetRefusal) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = refusal_status(why);
    r
}

/// The admission service of one connection, around the replica's router.
#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Arc<Admission>,
    conn_ip: IpAddr,
}

impl<S> Admit<S> {
    /// `inner` behind `admission`, for a connection whose address is `conn_ip` (the TCP
    /// peer, or what its PROXY protocol header said).
    pub fn new(inner: S, admission: Arc<Admission>, conn_ip: IpAddr) -> Self {
        Self {
            inner,
            admission,
            conn_ip,
        }
    }
}

impl<S, B> tower::Service<Request<B>> for Admit<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    /// The router's future, or the refusal ready at once (no boxing).
    type Future = Either<S::Future, Ready<Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if is_handshake(&req) {
            match self.admission.admit(self.conn_ip, req.headers()) {
                Ok(permit) => {
                    req.extensions_mut().insert(Arc::new(permit));
                }
                Err(why) => {
                    self.admission.count(why);
                    return Either::Right(std::future::ready(Ok(refusal(why))));
                }
            }
        }
        Either::Left(self.inner.call(req))
    }
}
