//! Delivery: what the backplane brings in, applied to this replica's sockets.
//!
//! A broadcast's arguments are serialized once; wsgate's adapter (`adapter.rs`) queues the
//! packet on every matching socket and reports full queues by socket.

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use serde_json::json;
use socketioxide::{BroadcastError, SocketError};

use super::{
    membership::Membership,
    recover::{self, Recovering, with_position},
};
use crate::{
    auth::Identity,
    backplane::{Args, Broadcast, Inbound, InboundRx, Request, RequestKind, request},
    gateway::{
        Adapter, Gateway, Io, Socket,
        connection::{
            close::{close_transport, disconnect_for_good},
            revoke,
        },
    },
    telemetry::DeliveryOutcome,
};

/// Consume the backplane's inbound channel until it closes. Recovery steps (see
/// `recover`) run here too, between two batches of deliveries, so none of them races a
/// fan-out.
///
/// Whatever is waiting is handled in one go, without yielding in between, so a socket gets
/// all the packets of a burst with one flush: written straight to it and flushed when this
/// task's poll ends (see below), or, when its queue is not empty, by its writer task, which
/// drains its queue before flushing. With a `window` above zero, each batch
/// first waits that long for more messages: at most `window` of added latency, in exchange
/// for fewer writes, syscalls and TCP segments per delivery when updates come often
/// (`--coalesce-window`; BENCHMARKS.md has its measured effect).
///
/// Each poll of this task is one write batch (`engineioxide::write_batch`, vendored hunk 8;
/// it only matters with `--direct-writes`):
/// the frames it writes straight to idle websockets, without waking their writer tasks, are
/// flushed once per socket when the poll ends.
pub async fn run(io: Io, gw: Arc<Gateway>, inbound: InboundRx, window: Duration) {
    engineioxide::write_batch(consume(io, gw, inbound, window)).await
}

async fn consume(io: Io, gw: Arc<Gateway>, mut inbound: InboundRx, window: Duration) {
    let mut recovering = Recovering::new(&gw);
    let mut commands = gw.recover.take();
    loop {
        let first = tokio::select! {
            biased;
            Some(c) = async { commands.as_mut()?.recv().await } => {
                recovering.apply(&io, c);
                continue;
            }
            msg = inbound.recv() => msg,
        };
        let Some(first) = first else { return };
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
        handle(&io, &gw, &mut recovering, first).await;
        while let Ok(msg) = inbound.try_recv() {
            // Under a steady stream the channel is never empty: let the scheduler run
            // the tasks this one woke (eviction, socket writers) now and then, or they wait
            // in this worker's LIFO slot for as long as the stream lasts.
            tokio::task::consume_budget().await;
            handle(&io, &gw, &mut recovering, msg).await;
        }
    }
}

async fn handle(io: &Io, gw: &Gateway, recovering: &mut Recovering, msg: Inbound) {
    match msg {
        Inbound::Broadcast(b) => deliver(io, b, Some(&gw.membership), Some(recovering)).await,
        Inbound::Request(r) => on_request(io, gw, r).await,
        Inbound::Control(c) => revoke::apply(io, gw, c).await,
    }
}

/// Deliver one broadcast to the matching local sockets, and count what happened:
/// `wsgate_deliveries_total{outcome}` per socket (`sent`, `dropped_buffer_full`,
/// `dropped_closed`, and `volatile` for volatile messages, whose skips socketioxide does
/// not report), the fan-out time, and the publish-to-socket latency when stamped.
pub async fn broadcast(io: &Io, b: Broadcast) {
    deliver(io, b, None, None).await
}

/// Deliver one broadcast as the gateway's delivery task does: the sent count of a one-room
/// broadcast comes from `membership`'s reference counts instead of a second adapter query.
pub async fn broadcast_counted(io: &Io, b: Broadcast, membership: &Membership) {
    deliver(io, b, Some(membership), None).await
}

/// Emit through `ops`; returns how many sockets were full and closed.
async fn emit(
    ops: socketioxide::operators::BroadcastOperators<Adapter>,
    volatile: bool,
    event: &str,
    args: &Args,
) -> (u64, u64) {
    let ops = if volatile { ops.volatile() } else { ops };
    let (mut full, mut closed) = (0u64, 0u64);
    if let Err(e) = ops.emit(event, args).await {
        match &e {
            BroadcastError::Socket(errors) => {
                for err in errors {
                    match err {
                        SocketError::InternalChannelFull => full += 1,
                        SocketError::Closed => closed += 1,
                    }
                }
            }
            _ => tracing::warn!(error = %e, "broadcast failed"),
        }
        tracing::debug!(error = %e, "some sockets did not take a broadcast");
    }
    (full, closed)
}

/// [`broadcast`], counting the matching sockets from `membership`'s room counts when the
/// broadcast targets one room with no exceptions (the common case: O(1)); otherwise the
/// adapter is asked for the matching sockets a second time, which the fan-out bench
/// measures at about +40% on 1,000 sockets.
async fn deliver(
    io: &Io,
    mut b: Broadcast,
    membership: Option<&Membership>,
    mut recovering: Option<&mut Recovering>,
) {
    let started = std::time::Instant::now();
    let matched = match (membership, b.rooms.as_slice()) {
        // A socket-id room is local only: it has no count.
        (Some(m), [room]) if b.except.is_empty() && !super::reach::is_socket_id(room) => {
            m.count(room)
        }
        _ => io
            .to(b.rooms.clone())
            .except(b.except.clone())
            .sockets()
            .len(),
    };
    let has_pending = match (recovering.as_deref_mut(), b.rooms.as_slice()) {
        (Some(r), [room]) if r.has(room) => {
            r.buffer(room, &b);
            true
        }
        _ => false,
    };
    if let Some(r) = recovering {
        // Stock recovery: resuming sockets keep it for later, everyone else gets it with
        // the offset as its last argument.
        r.resumes.deliver(&mut b);
    }
    let (volatile, sent_at) = (b.volatile, b.sent_at);
    let (full, closed) = match (b.rooms.as_slice(), &b.position) {
        // A one-room update with a position: opted-in sockets get it with `{epoch, offset}`
        // (one encode), the others as always (a second encode); recovering sockets get it
        // later from their buffer.
        ([room], Some(position)) => {
            let opted = recover::opted_room(room);
            let to_opted = io.to(opted.clone()).except(b.except.clone());
            let args = with_position(&b.args, position, room);
            let a = emit(to_opted, volatile, &b.event, &args).await;
            let mut except = b.except;
            except.push(opted);
            except.push(recover::pending_room(room));
            let z = emit(io.to(b.rooms).except(except), volatile, &b.event, &b.args).await;
            (a.0 + z.0, a.1 + z.1)
        }
        // Recovering sockets get it from their buffer.
        ([room], None) if has_pending => {
            let mut except = b.except;
            except.push(recover::pending_room(room));
            emit(io.to(b.rooms).except(except), volatile, &b.event, &b.args).await
        }
        _ => emit(io.to(b.rooms).except(b.except), volatile, &b.event, &b.args).await,
    };
    let matched = matched as u64;
    let deliveries = |outcome: DeliveryOutcome, n: u64| {
        if n > 0 {
            outcome.increment(n);
        }
    };
    if volatile {
        deliveries(DeliveryOutcome::Volatile, matched);
    } else {
        deliveries(DeliveryOutcome::Sent, matched.saturating_sub(full + closed));
        deliveries(DeliveryOutcome::DroppedBufferFull, full);
        deliveries(DeliveryOutcome::DroppedClosed, closed);
    }
    metrics::histogram!("wsgate_fanout_seconds").record(started.elapsed().as_secs_f64());
    if let Some(sent_at) = sent_at
        && matched > 0
    {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e6;
        // A publisher clock ahead of ours would give a negative latency: recorded as 0.
        let latency = ((now - sent_at) / 1e3).max(0.0);
        metrics::histogram!("wsgate_publish_latency_seconds").record(latency);
    }
}

fn select(io: &Io, r: &Request) -> Vec<Socket> {
    io.to(r.rooms.clone()).except(r.except.clone()).sockets()
}

/// What a Node server's `fetchSockets()` gets for one of our sockets. Credentials (the
/// `Authorization` header, `auth`) are never included.
fn details(s: &Socket) -> request::SocketDetails {
    let parts = s.req_parts();
    let user = s
        .extensions
        .get::<Identity>()
        .map(|i| i.user_id.to_string());
    request::SocketDetails {
        id: s.id.to_string(),
        handshake: json!({
            "headers": {},
            // The path only: a query string may carry credentials.
            "url": parts.uri.path(),
            "query": {},
            "auth": {},
            "xdomain": false,
            "secure": false,
        }),
        rooms: super::reach::node_rooms(s),
        data: json!({ "userId": user }),
    }
}

/// How long a broadcast's acks are collected when its sender gave no timeout, and at most.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const ACK_TIMEOUT_MAX: Duration = Duration::from_secs(300);

/// A Node server's broadcast with acks (`io.timeout(t).emitWithAck`): sent to the matching
/// local clients; this replica answers how many got it, then each client's ack as it comes,
/// until the sender's timeout (in the background: the delivery task never waits for a
/// client). As Node's adapter, the first argument of each ack is passed on.
async fn with_acks(io: &Io, gw: &Gateway, b: Broadcast, timeout: Option<Duration>, id: &str) {
    let count = select_broadcast(io, &b).len();
    let timeout = timeout.unwrap_or(ACK_TIMEOUT).min(ACK_TIMEOUT_MAX);
    let acks = io
        .to(b.rooms)
        .except(b.except)
        .timeout(timeout)
        .emit_with_ack::<_, serde_json::Value>(&b.event, &b.args)
        .await;
    let (backplane, id) = (gw.backplane.clone(), id.to_owned());
    tokio::spawn(async move {
        let answer = |r| async {
            if let Err(e) = backplane.respond(r).await {
                tracing::warn!(error = %e, "could not answer a broadcast with acks");
            }
        };
        answer(request::client_count_response(&id, count)).await;
        let acks = match acks {
            Ok(acks) => acks,
            Err(e) => return tracing::debug!(error = %e, "broadcast with acks not sent"),
        };
        let mut acks = std::pin::pin!(acks);
        while let Some((_, ack)) = acks.next().await {
            // A client that did not answer in time is left out, as on a Node server.
            match ack {
                // socketioxide gives a one-argument ack as that argument.
                Ok(arg) => answer(request::broadcast_ack_response(&id, arg)).await,
                Err(e) => tracing::debug!(error = %e, "a client's ack is left out"),
            }
        }
    });
}

fn select_broadcast(io: &Io, b: &Broadcast) -> Vec<Socket> {
    io.to(b.rooms.clone()).except(b.except.clone()).sockets()
}

async fn on_request(io: &Io, gw: &Gateway, r: Request) {
    let response = match (&r.kind, r.request_id.as_deref()) {
        (RequestKind::Join(rooms), _) => {
            for s in select(io, &r) {
                for room in rooms {
                    let _ = gw.membership.join(&s, room).await;
                }
            }
            None
        }
        (RequestKind::Leave(rooms), _) => {
            for s in select(io, &r) {
                for room in rooms {
                    gw.membership.leave(&s, room);
                }
            }
            None
        }
        (RequestKind::Disconnect { close }, _) => {
            // As Node: the DISCONNECT either way (the client stays offline); `close` ends
            // the connection too.
            for s in select(io, &r) {
                if *close {
                    close_transport(&s);
                }
                let _ = disconnect_for_good(&s);
            }
            None
        }
        (RequestKind::Sockets, Some(id)) => Some(request::sockets_response(
            id,
            select(io, &r).iter().map(|s| s.id.to_string()).collect(),
        )),
        (RequestKind::AllRooms, Some(id)) => {
            Some(request::rooms_response(id, gw.membership.rooms()))
        }
        (RequestKind::Fetch, Some(id)) => Some(request::fetch_response(
            id,
            select(io, &r).iter().map(details).collect(),
        )),
        (RequestKind::ServerSideEmit, id) => {
            tracing::debug!("server-side emit ignored: wsgate has no server-side listeners");
            id.map(request::server_side_emit_response)
        }
        (RequestKind::BroadcastWithAck(b, timeout), Some(id)) => {
            with_acks(io, gw, b.clone(), *timeout, id).await;
            None
        }
        (RequestKind::BroadcastWithAck(b, _), None) => {
            deliver(io, b.clone(), Some(&gw.membership), None).await;
            None
        }
        _ => None,
    };
    if let Some(resp) = response
        && let Err(e) = gw.backplane.respond(resp).await
    {
        tracing::warn!(error = %e, "could not answer a backplane request");
    }
}
