//! Delivery: what the backplane brings in, applied to this replica's sockets.
//!
//! A broadcast is serialized once by socketioxide's local adapter and the same bytes are
//! queued on every matching socket; nothing here allocates per recipient.

use std::sync::Arc;

use serde_json::json;
use socketioxide::{SocketIo, extract::SocketRef};

use super::Gateway;
use crate::{
    auth::Identity,
    backplane::{Broadcast, Inbound, InboundRx, Request, RequestKind, request},
};

/// Consume the backplane's inbound channel until it closes.
pub async fn run(io: SocketIo, gw: Arc<Gateway>, mut inbound: InboundRx) {
    while let Some(msg) = inbound.recv().await {
        match msg {
            Inbound::Broadcast(b) => broadcast(&io, b).await,
            Inbound::Request(r) => on_request(&io, &gw, r).await,
            Inbound::Control(c) => super::revoke::apply(&io, &gw, c).await,
        }
    }
}

/// Deliver one broadcast to the matching local sockets.
pub async fn broadcast(io: &SocketIo, b: Broadcast) {
    let started = std::time::Instant::now();
    let ops = io.to(b.rooms).except(b.except);
    let ops = if b.volatile { ops.volatile() } else { ops };
    if let Err(e) = ops.emit(&b.event, &b.args).await {
        let outcome = if b.volatile {
            "dropped_volatile"
        } else {
            "dropped_buffer_full"
        };
        metrics::counter!("wsgate_delivery_errors_total", "outcome" => outcome).increment(1);
        tracing::debug!(error = %e, "some sockets did not take a broadcast");
    }
    metrics::histogram!("wsgate_fanout_seconds").record(started.elapsed().as_secs_f64());
}

fn select(io: &SocketIo, r: &Request) -> Vec<SocketRef> {
    io.to(r.rooms.clone()).except(r.except.clone()).sockets()
}

/// What a Node server's `fetchSockets()` gets for one of our sockets. Credentials (the
/// `Authorization` header, `auth`) are never included.
fn details(s: &SocketRef) -> request::SocketDetails {
    let parts = s.req_parts();
    let user = s
        .extensions
        .get::<Identity>()
        .map(|i| i.user_id.to_string());
    request::SocketDetails {
        id: s.id.to_string(),
        handshake: json!({
            "headers": {},
            "url": parts.uri.to_string(),
            "query": {},
            "auth": {},
            "xdomain": false,
            "secure": false,
        }),
        rooms: s.rooms().into_iter().map(|r| r.to_string()).collect(),
        data: json!({ "userId": user }),
    }
}

async fn on_request(io: &SocketIo, gw: &Gateway, r: Request) {
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
        (RequestKind::Disconnect { .. }, _) => {
            for s in select(io, &r) {
                let _ = s.disconnect();
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
        (RequestKind::BroadcastWithAck(b), id) => {
            broadcast(io, b.clone()).await;
            id.map(request::client_count_response)
        }
        _ => None,
    };
    if let Some(resp) = response
        && let Err(e) = gw.backplane.respond(resp).await
    {
        tracing::warn!(error = %e, "could not answer a backplane request");
    }
}
