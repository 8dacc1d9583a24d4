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
use socketioxide::extract::TryData;

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

/// Register every client event on a new socket.
pub(crate) fn register(gw: &Arc<Gateway>, socket: &Socket) {
    on_now(gw, socket, EventName::Message, |_, _, _| message::handle());
    on_waiting(gw, socket, EventName::JoinProject);
    on_now(gw, socket, EventName::LeaveProject, leave_project::handle);
    on_waiting(gw, socket, EventName::AuthRefresh);
    let gw = gw.clone();
    socket.on_fallback(move |s: Socket, ack: Ack| {
        // Unknown events are only counted (and limited); they have no handler.
        let _ = admit(&gw, &s, EventName::Other, ack);
        async {}
    });
}

/// Register `handle` for `event`: it runs, and is answered, as the event is read, so a
/// socket's events take effect in the order it sent them.
fn on_now(gw: &Arc<Gateway>, socket: &Socket, event: EventName, handle: Handler) {
    let gw = gw.clone();
    socket.on(
        event.as_str(),
        move |s: Socket, TryData(data): TryData<Value>, ack: Ack| {
            if let Some(ack) = admit(&gw, &s, event, ack) {
                answer(&gw, &s, event, handle(&gw, &s, data.ok()), ack);
            }
            async {}
        },
    );
}

/// Register an event whose handler waits, in a task of its own: `join_project`
/// (permission lookup, subscription, history) and `auth_refresh` (an identity hook).
fn on_waiting(gw: &Arc<Gateway>, socket: &Socket, event: EventName) {
    let gw = gw.clone();
    socket.on(
        event.as_str(),
        move |s: Socket, TryData(data): TryData<Value>, ack: Ack| {
            let gw = gw.clone();
            async move {
                if let Some(ack) = admit(&gw, &s, event, ack) {
                    let outcome = match event {
                        EventName::AuthRefresh => auth_refresh::handle(&gw, &s, data.ok()).await,
                        _ => join_project::handle(&gw, &s, data.ok()).await,
                    };
                    answer(&gw, &s, event, outcome, ack);
                }
            }
        },
    );
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
