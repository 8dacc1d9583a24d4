//! Client events: one file per event the client sends (`message`, `join_project`,
//! `leave_project`, `auth_refresh`), payload validation with zod's issue shapes
//! (`validate`), and every error a client can see with the one mapping to the client
//! contract (`error`).
//!
//! A handler returns its [`Outcome`]; this file registers the handlers, counts and rate
//! limits every event before it is handled, and sends every answer ([`answer`]).

pub(crate) mod auth_refresh;
pub(crate) mod error;
pub(crate) mod join_project;
pub(crate) mod leave_project;
pub(crate) mod message;
pub(crate) mod validate;

use std::{borrow::Cow, sync::Arc};

use serde_json::Value;
use socketioxide::extract::{Event, TryData};

use crate::{
    gateway::{
        Ack, Gateway, Socket,
        connection::{close::close_transport, limits::Admission},
        delivery::{recover, resume},
    },
    telemetry::EventName,
};
use error::ClientError;

/// What a handler answers when the event succeeded.
pub(crate) enum Reply {
    /// Sent back as the event of the same name and as the ack.
    Text(Cow<'static, str>),
    /// An opted-in join whose history is read: the delivery task sends the answer (with
    /// the position), then the replay and the buffered updates, so it takes the ack.
    Recovery(Box<recover::Read>),
}

/// A handler's outcome: its reply, or the error the client is told.
pub(crate) type Outcome = Result<Reply, ClientError>;

/// A handler that answers at once: `(gateway, socket, payload)`.
type Handler = fn(&Gateway, &Socket, Option<Value>) -> Outcome;

/// An admitted event whose handler waits (`join_project`, `auth_refresh`): it runs in the
/// task socketioxide spawns for the event.
type Waiting = (EventName, Option<Value>, Ack);

/// Register every client event on a new socket: one handler for all of them, dispatched by
/// name. socketioxide keeps a socket's named handlers in a hash map of the socket's own
/// (≈ 0.5 KB and four insertions per connection for four names); the one fallback
/// handler needs no map.
pub(crate) fn register(gw: &Arc<Gateway>, socket: &Socket) {
    let gw = gw.clone();
    socket.on_fallback(
        move |s: Socket, Event(name): Event, TryData(data): TryData<Value>, ack: Ack| {
            let waiting = on_event(&gw, &s, &name, data.ok(), ack);
            let gw = gw.clone();
            async move {
                if let Some((event, data, ack)) = waiting {
                    let outcome = match event {
                        EventName::AuthRefresh => auth_refresh::handle(&gw, &s, data).await,
                        _ => join_project::handle(&gw, &s, data).await,
                    };
                    answer(&gw, &s, event, outcome, ack);
                }
            }
        },
    );
}

/// The event's name as counted (`Other`: an event wsgate has no handler for).
fn event_name(name: &str) -> EventName {
    match name {
        "message" => EventName::Message,
        "join_project" => EventName::JoinProject,
        "leave_project" => EventName::LeaveProject,
        "auth_refresh" => EventName::AuthRefresh,
        _ => EventName::Other,
    }
}

/// Count and admit one event. One that answers at once (`message`, `leave_project`) is
/// handled and answered here, as it is read, so a socket's events take effect in the order
/// it sent them; unknown events are only counted (and limited). An admitted event whose
/// handler waits is returned.
fn on_event(
    gw: &Gateway,
    socket: &Socket,
    name: &str,
    data: Option<Value>,
    ack: Ack,
) -> Option<Waiting> {
    let event = event_name(name);
    let handle: Handler = match event {
        EventName::Message => |_, _, _| message::handle(),
        EventName::LeaveProject => leave_project::handle,
        EventName::JoinProject | EventName::AuthRefresh => {
            return admit(gw, socket, event, ack).map(|ack| (event, data, ack));
        }
        EventName::Other => {
            let _ = admit(gw, socket, EventName::Other, ack);
            return None;
        }
    };
    if let Some(ack) = admit(gw, socket, event, ack) {
        answer(gw, socket, event, handle(gw, socket, data), ack);
    }
    None
}

/// Count an inbound event under its name and take a token from the socket's bucket. A
/// refused event is answered here (its ack always, the `exception` at most once a second)
/// and `None` returned; a flooding socket's transport is closed instead.
fn admit(gw: &Gateway, socket: &Socket, event: EventName, ack: Ack) -> Option<Ack> {
    event.count();
    let refused = ClientError::RateLimited {
        pattern: event.as_str(),
    };
    match gw.limits.admit_event(socket) {
        Admission::Admitted => return Some(ack),
        Admission::Refused { tell: true } => refused.reply(socket, ack),
        Admission::Refused { tell: false } => refused.ack(socket, ack),
        Admission::Flood => {
            tracing::info!(sid = %socket.id, "event flood: closing the transport");
            close_transport(socket);
        }
        Admission::Closing => {}
    }
    None
}

/// Count a handled event's outcome under its event's own counter, and send it: the reply
/// as the event of the same name and the ack, or the error ([`ClientError::reply`]).
fn answer(gw: &Gateway, socket: &Socket, event: EventName, outcome: Outcome, ack: Ack) {
    match event {
        EventName::JoinProject => join_project::result(&outcome).count(),
        EventName::AuthRefresh => auth_refresh::result(&outcome).count(),
        EventName::Message | EventName::LeaveProject | EventName::Other => {}
    }
    match outcome {
        Ok(Reply::Text(text)) => resume::reply(gw, socket, event.as_str(), text, ack),
        Ok(Reply::Recovery(read)) => recover::finish(gw, *read, ack),
        Err(e) => e.reply(socket, ack),
    }
}
