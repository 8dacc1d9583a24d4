//! Requests between servers on `socket.io-request#/#` and their answers, in the format of
//! `@socket.io/redis-adapter` (JSON; msgpack is accepted too). Values only, no I/O.
//!
//! Emitters send socketsJoin / socketsLeave / disconnectSockets / serverSideEmit; Node
//! servers also ask for their fleet's sockets and rooms and wait for one answer per
//! subscriber of the request channel, so a replica that stays silent makes their
//! `fetchSockets()` time out.

use serde::Serialize;
use serde_json::Value as Json;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// 0: the ids of the local sockets in `rooms` (answer expected).
    Sockets,
    /// 1: every local room name (answer expected).
    AllRooms,
    /// 2: make the selected sockets join `rooms`.
    Join(Vec<String>),
    /// 3: make the selected sockets leave `rooms`.
    Leave(Vec<String>),
    /// 4: disconnect the selected sockets (`close`: also close the transport).
    Disconnect {
        /// Close the underlying connection, not only the namespace.
        close: bool,
    },
    /// 5: describe the selected sockets (answer expected).
    Fetch,
    /// 6: an event for server-side listeners; wsgate has none, but answers `null` when
    /// the sender waits for acks.
    ServerSideEmit,
    /// 7: a broadcast whose sender collects client acks (msgpack), with the sender's
    /// timeout (`opts.flags.timeout`, ms) when it gave one. A replica answers how many
    /// local clients got it (8), then each client's ack (9) as it comes.
    BroadcastWithAck(super::Broadcast, Option<std::time::Duration>),
    /// Any other type (broadcast acks of Node servers): ignored.
    Other(u64),
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// What to do.
    pub kind: RequestKind,
    /// The requester's id for matching answers.
    pub request_id: Option<String>,
    /// The requesting server's uid (absent from emitters).
    pub uid: Option<String>,
    /// Selected sockets: members of these rooms (empty: all)...
    pub rooms: Vec<String>,
    /// ...except members of these.
    pub except: Vec<String>,
}

/// Why a request could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// Neither JSON nor msgpack.
    #[error("not JSON or msgpack: {0}")]
    Encoding(String),
    /// Not an object with a numeric `type`.
    #[error("not a request object")]
    Shape,
}

fn str_list(v: Option<&Json>) -> Vec<String> {
    v.and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Decode a request (JSON when it starts with `{`, msgpack otherwise).
pub fn decode(bytes: &[u8]) -> Result<Request, RequestError> {
    let value: Json = if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).map_err(|e| RequestError::Encoding(e.to_string()))?
    } else {
        let v = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], 64)
            .map_err(|e| RequestError::Encoding(e.to_string()))?;
        serde_json::to_value(&v).map_err(|e| RequestError::Encoding(e.to_string()))?
    };
    let obj = value.as_object().ok_or(RequestError::Shape)?;
    let ty = obj
        .get("type")
        .and_then(Json::as_u64)
        .ok_or(RequestError::Shape)?;
    let opts = obj.get("opts");
    let kind = match ty {
        0 => RequestKind::Sockets,
        1 => RequestKind::AllRooms,
        2 => RequestKind::Join(str_list(obj.get("rooms"))),
        3 => RequestKind::Leave(str_list(obj.get("rooms"))),
        4 => RequestKind::Disconnect {
            close: obj.get("close").and_then(Json::as_bool).unwrap_or(false),
        },
        5 => RequestKind::Fetch,
        6 => RequestKind::ServerSideEmit,
        7 => RequestKind::BroadcastWithAck(
            broadcast_of(obj).ok_or(RequestError::Shape)?,
            opts.and_then(|o| o.get("flags"))
                .and_then(|f| f.get("timeout"))
                .and_then(Json::as_f64)
                .filter(|ms| ms.is_finite() && *ms >= 0.0)
                .map(|ms| std::time::Duration::from_secs_f64(ms / 1e3)),
        ),
        n => RequestKind::Other(n),
    };
    // SOCKETS names its rooms at the top level; the others select with opts.
    let rooms = match kind {
        RequestKind::Sockets => str_list(obj.get("rooms")),
        _ => str_list(opts.and_then(|o| o.get("rooms"))),
    };
    let id = |k: &str| {
        obj.get(k).and_then(|v| match v {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    Ok(Request {
        kind,
        request_id: id("requestId"),
        uid: id("uid"),
        rooms,
        except: str_list(opts.and_then(|o| o.get("except"))),
    })
}

/// The broadcast inside a type-7 request: `{packet: {data: [event, ...args]}, opts}`.
/// The JSON round trip keeps binary as arrays of numbers; acceptable for a path that
/// mixed fleets rarely use.
fn broadcast_of(obj: &serde_json::Map<String, Json>) -> Option<super::Broadcast> {
    let data = obj.get("packet")?.get("data")?.as_array()?;
    let (event, args) = data.split_first()?;
    let opts = obj.get("opts");
    let flags = opts.and_then(|o| o.get("flags"));
    Some(super::Broadcast {
        event: event.as_str()?.to_owned(),
        args: super::Args(args.iter().map(super::wire::from_json).collect()),
        rooms: str_list(opts.and_then(|o| o.get("rooms"))),
        except: str_list(opts.and_then(|o| o.get("except"))),
        volatile: flags
            .and_then(|f| f.get("volatile"))
            .and_then(Json::as_bool)
            == Some(true),
        sent_at: flags
            .and_then(|f| f.get(super::wire::SENT_AT))
            .and_then(Json::as_f64),
        position: None,
        order: None,
    })
}

/// One local socket as `fetchSockets()` on a Node server describes it.
#[derive(Debug, Clone, Serialize)]
pub struct SocketDetails {
    /// Socket id.
    pub id: String,
    /// Handshake details, with credentials removed.
    pub handshake: Json,
    /// Rooms the socket is in.
    pub rooms: Vec<String>,
    /// Application data (`socket.data` on Node).
    pub data: Json,
}

/// An answer to a request, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Channel to publish on.
    pub channel: String,
    /// The encoded answer.
    pub payload: Vec<u8>,
}

fn respond(request_id: &str, body: Json) -> Response {
    let mut obj = serde_json::Map::new();
    obj.insert("requestId".into(), Json::String(request_id.to_owned()));
    if let Json::Object(b) = body {
        obj.extend(b);
    }
    Response {
        channel: super::RESPONSE_CHANNEL.to_owned(),
        payload: serde_json::to_vec(&Json::Object(obj)).unwrap_or_default(),
    }
}

/// Answer to [`RequestKind::Sockets`].
pub fn sockets_response(request_id: &str, ids: Vec<String>) -> Response {
    respond(request_id, serde_json::json!({ "sockets": ids }))
}

/// Answer to [`RequestKind::AllRooms`].
pub fn rooms_response(request_id: &str, rooms: Vec<String>) -> Response {
    respond(request_id, serde_json::json!({ "rooms": rooms }))
}

/// Answer to [`RequestKind::ServerSideEmit`] with a request id: wsgate has no listener.
pub fn server_side_emit_response(request_id: &str) -> Response {
    respond(request_id, serde_json::json!({ "type": 6, "data": null }))
}

/// First answer to [`RequestKind::BroadcastWithAck`]: how many local clients got it, so
/// the sender knows how many acks to wait for from this server.
pub fn client_count_response(request_id: &str, count: usize) -> Response {
    respond(
        request_id,
        serde_json::json!({ "type": 8, "clientCount": count }),
    )
}

/// One client's ack of a [`RequestKind::BroadcastWithAck`] (its first argument, as the
/// Node adapter passes it on).
pub fn broadcast_ack_response(request_id: &str, packet: Json) -> Response {
    respond(
        request_id,
        serde_json::json!({ "type": 9, "packet": packet }),
    )
}

/// Answer to [`RequestKind::Fetch`].
pub fn fetch_response(request_id: &str, sockets: Vec<SocketDetails>) -> Response {
    respond(request_id, serde_json::json!({ "sockets": sockets }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitter_join_request() {
        let r =
            decode(br#"{"type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["x"]}"#).unwrap();
        assert_eq!(r.kind, RequestKind::Join(vec!["x".into()]));
        assert_eq!(r.rooms, ["a"]);
        assert_eq!(r.except, ["b"]);
    }

    #[test]
    fn fetch_answer_carries_the_request_id() {
        let r =
            decode(br#"{"uid":"u1","requestId":"42","type":5,"opts":{"rooms":[],"except":[]}}"#)
                .unwrap();
        assert_eq!(r.kind, RequestKind::Fetch);
        let resp = fetch_response(r.request_id.as_deref().unwrap(), vec![]);
        assert_eq!(resp.payload, br#"{"requestId":"42","sockets":[]}"#);
    }

    #[test]
    fn broadcast_with_ack_carries_the_senders_timeout() {
        let r = decode(br#"{"uid":"n1","requestId":"7a","type":7,"packet":{"type":2,"data":["ask",1],"nsp":"/"},"opts":{"rooms":["r"],"except":[],"flags":{"timeout":1500}}}"#).unwrap();
        let RequestKind::BroadcastWithAck(b, timeout) = r.kind else {
            panic!("not a broadcast with ack: {:?}", r.kind);
        };
        assert_eq!(b.event, "ask");
        assert_eq!(b.rooms, ["r"]);
        assert_eq!(timeout, Some(std::time::Duration::from_millis(1500)));
        assert_eq!(
            client_count_response("7a", 2).payload,
            br#"{"requestId":"7a","type":8,"clientCount":2}"#
        );
        assert_eq!(
            broadcast_ack_response("7a", serde_json::json!({"ok": 1})).payload,
            br#"{"requestId":"7a","type":9,"packet":{"ok":1}}"#
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"{nope").is_err());
        assert!(decode(b"[1]").is_err());
        assert!(decode(b"").is_err());
    }
}
