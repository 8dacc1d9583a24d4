//! The message format of `createShardedAdapter` (`@socket.io/redis-adapter` 8.x, built on
//! socket.io-adapter's `ClusterAdapter`), for Redis Cluster sharded pub/sub. Values only,
//! no I/O.
//!
//! What the Node source does (lib/sharded-adapter.ts, socket.io-adapter cluster-adapter.ts):
//! - Every message is one object `{type, data, uid, nsp}`, NOT the classic
//!   `[uid, packet, opts]` array. It is JSON (`JSON.stringify`) unless `data` holds binary,
//!   then msgpack (notepack) of the same object. Receivers check the first byte: `{` is JSON.
//! - `type` 3 is a broadcast: `data = {packet, opts: {rooms, except, flags}, requestId?}`;
//!   with a `requestId` the sender collects client acks. 4 / 5 / 6 are socketsJoin /
//!   socketsLeave / disconnectSockets (`data.opts`, `data.rooms`, `data.close`), 7 fetchSockets
//!   and 9 serverSideEmit expect answers; 8, 10, 11, 12 are answers; 1, 2, 13 heartbeats and
//!   close (not sent by the sharded adapter itself).
//! - Channels (dynamic subscription mode): a broadcast without `requestId` to exactly one
//!   room whose name is not 20 UTF-16 units long (the length of a socket id) goes to
//!   `socket.io#/#<room>#`; everything else to `socket.io#/#`. Answers go to the requester's
//!   own channel `socket.io#/#<requester uid>#`, which every server subscribes to.
//! - `uid` is the sender's id: a server skips its own messages by it. Emitters use `emitter`.

use rmpv::Value;

use crate::telemetry::DecodeErrorKind;
use serde_json::{Value as Json, json};

use super::{
    BROADCAST_CHANNEL, Broadcast,
    request::{Request, RequestKind},
    wire::{self, WireError},
};

/// `MessageType.BROADCAST`.
pub const BROADCAST: u64 = 3;
/// `MessageType.SOCKETS_JOIN`.
pub const SOCKETS_JOIN: u64 = 4;
/// `MessageType.SOCKETS_LEAVE`.
pub const SOCKETS_LEAVE: u64 = 5;
/// `MessageType.DISCONNECT_SOCKETS`.
pub const DISCONNECT_SOCKETS: u64 = 6;
/// `MessageType.FETCH_SOCKETS`.
pub const FETCH_SOCKETS: u64 = 7;
/// `MessageType.FETCH_SOCKETS_RESPONSE`.
pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
/// `MessageType.SERVER_SIDE_EMIT`.
pub const SERVER_SIDE_EMIT: u64 = 9;
/// `MessageType.SERVER_SIDE_EMIT_RESPONSE`.
pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
/// `MessageType.BROADCAST_CLIENT_COUNT`.
pub const BROADCAST_CLIENT_COUNT: u64 = 11;
/// `MessageType.BROADCAST_ACK`.
pub const BROADCAST_ACK: u64 = 12;

/// Length (in UTF-16 units, as JavaScript counts) of a socket id; the Node adapter never
/// uses a room's own channel for a room name of this length.
const SOCKET_ID_LEN: usize = 20;

/// One decoded message of a sharded channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A broadcast to deliver (type 3 without `requestId`).
    Broadcast {
        /// Sender's uid, to skip our own messages.
        uid: String,
        /// Namespace of the packet.
        nsp: String,
        /// What to deliver.
        broadcast: Broadcast,
    },
    /// A request of another server or an emitter (types 3 with ack, 4, 5, 6, 7, 9), in the
    /// same shape as the classic adapter's requests so the gateway handles both alike.
    Request {
        /// Namespace the request is for.
        nsp: String,
        /// What to do (`request.uid` is the requester, where answers go).
        request: Request,
    },
    /// A message wsgate does not act on (answers to requests it never sends, heartbeats).
    Ignored {
        /// Its `type`.
        kind: u64,
    },
}

/// Why a sharded message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardedError {
    /// Neither JSON nor msgpack.
    #[error("not JSON or msgpack: {0}")]
    Encoding(String),
    /// Not an object `{type, data, uid, nsp}` with a numeric type.
    #[error("not a cluster message: {0}")]
    Shape(&'static str),
    /// The broadcast's packet or opts are malformed.
    #[error("{0}")]
    Event(#[from] WireError),
}

impl ShardedError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            ShardedError::Encoding(_) => DecodeErrorKind::ShardedEncoding,
            ShardedError::Shape(_) => DecodeErrorKind::ShardedShape,
            ShardedError::Event(e) => e.kind(),
        }
    }
}

/// The sender's ack timeout of a broadcast with acks (`opts.flags.timeout`, ms).
fn ack_timeout(opts: Option<&Value>) -> Option<std::time::Duration> {
    let Some(Value::Map(o)) = opts else {
        return None;
    };
    let Some(Value::Map(flags)) = wire::get(o, "flags") else {
        return None;
    };
    wire::get(flags, "timeout")
        .and_then(Value::as_f64)
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| std::time::Duration::from_secs_f64(ms / 1e3))
}

/// The channel the Node sharded adapter (dynamic mode) publishes `b` on; a wsgate
/// socket id's room goes to the namespace channel too (as the adapter does for its own
/// ids), since a replica has no shard channel per socket.
pub fn channel_for(b: &Broadcast) -> String {
    match b.rooms.as_slice() {
        [room] if room.encode_utf16().count() != SOCKET_ID_LEN && !super::is_socket_id(room) => {
            super::room_channel(room)
        }
        _ => BROADCAST_CHANNEL.to_owned(),
    }
}

/// The channel where answers to server `uid`'s requests arrive.
pub fn response_channel(uid: &str) -> String {
    format!("{BROADCAST_CHANNEL}{uid}#")
}

fn take(map: &mut [(Value, Value)], key: &str) -> Option<Value> {
    map.iter_mut()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| std::mem::replace(v, Value::Nil))
}

fn string_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => s.as_str().map(str::to_owned),
        Value::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Decode one message (JSON when it starts with `{`, msgpack otherwise, as Node decides).
pub fn decode(bytes: &[u8]) -> Result<Message, ShardedError> {
    let value: Value = if bytes.first() == Some(&b'{') {
        // serde_json bounds nesting itself (128 levels).
        serde_json::from_slice(bytes).map_err(|e| ShardedError::Encoding(e.to_string()))?
    } else {
        rmpv::decode::read_value_with_max_depth(&mut &bytes[..], wire::MAX_DEPTH)
            .map_err(|e| ShardedError::Encoding(e.to_string()))?
    };
    let Value::Map(mut msg) = value else {
        return Err(ShardedError::Shape("not a map"));
    };
    let kind = wire::get(&msg, "type")
        .and_then(Value::as_u64)
        .ok_or(ShardedError::Shape("type is not a number"))?;
    let uid = string_of(wire::get(&msg, "uid"));
    let nsp = string_of(wire::get(&msg, "nsp")).unwrap_or_else(|| "/".to_owned());
    let mut data = match take(&mut msg, "data") {
        Some(Value::Map(d)) => d,
        None | Some(Value::Nil) => Vec::new(),
        Some(_) => return Err(ShardedError::Shape("data is not a map")),
    };
    let request_id = string_of(wire::get(&data, "requestId"));
    let opts = take(&mut data, "opts");
    let selection = |opts: Option<&Value>| -> Result<(Vec<String>, Vec<String>), WireError> {
        match opts {
            Some(Value::Map(o)) => Ok((
                wire::strings(wire::get(o, "rooms"), "rooms is not a list of strings")?,
                wire::strings(wire::get(o, "except"), "except is not a list of strings")?,
            )),
            _ => Ok((Vec::new(), Vec::new())),
        }
    };
    let request_kind = match kind {
        BROADCAST => {
            let Some(Value::Map(packet)) = take(&mut data, "packet") else {
                return Err(WireError::BadPacket("not a map").into());
            };
            let (_, broadcast) = wire::event_of(packet, opts.as_ref())?;
            if request_id.is_none() {
                return Ok(Message::Broadcast {
                    uid: uid.unwrap_or_default(),
                    nsp,
                    broadcast,
                });
            }
            RequestKind::BroadcastWithAck(broadcast, ack_timeout(opts.as_ref()))
        }
        SOCKETS_JOIN => RequestKind::Join(wire::strings(
            wire::get(&data, "rooms"),
            "rooms is not a list of strings",
        )?),
        SOCKETS_LEAVE => RequestKind::Leave(wire::strings(
            wire::get(&data, "rooms"),
            "rooms is not a list of strings",
        )?),
        DISCONNECT_SOCKETS => RequestKind::Disconnect {
            close: wire::get(&data, "close").and_then(Value::as_bool) == Some(true),
        },
        FETCH_SOCKETS => RequestKind::Fetch,
        SERVER_SIDE_EMIT => RequestKind::ServerSideEmit,
        other => return Ok(Message::Ignored { kind: other }),
    };
    let (rooms, except) = selection(opts.as_ref())?;
    Ok(Message::Request {
        nsp,
        request: Request {
            kind: request_kind,
            request_id,
            uid,
            rooms,
            except,
        },
    })
}

fn has_binary(v: &Value) -> bool {
    match v {
        Value::Binary(_) | Value::Ext(..) => true,
        Value::Array(a) => a.iter().any(has_binary),
        Value::Map(m) => m.iter().any(|(k, v)| has_binary(k) || has_binary(v)),
        _ => false,
    }
}

/// Encode a broadcast as the sharded adapter does: JSON, or msgpack when an argument holds
/// binary (JSON cannot carry it). Same keys, same order, so Node servers and wsgate
/// replicas read each other's messages.
pub fn encode_broadcast(uid: &str, b: &Broadcast) -> Vec<u8> {
    let binary = b.args.0.iter().any(has_binary);
    let (packet, strs, flags) = (wire::packet(b), wire::str_list, wire::flags(b));
    let msg = Value::Map(vec![
        ("type".into(), Value::from(BROADCAST)),
        (
            "data".into(),
            Value::Map(vec![
                ("packet".into(), packet),
                (
                    "opts".into(),
                    Value::Map(vec![
                        ("rooms".into(), strs(&b.rooms)),
                        ("except".into(), strs(&b.except)),
                        ("flags".into(), Value::Map(flags)),
                    ]),
                ),
            ]),
        ),
        ("uid".into(), uid.into()),
        ("nsp".into(), "/".into()),
    ]);
    let mut out = Vec::with_capacity(128);
    if binary {
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &msg);
    } else {
        // Without binary every value has a JSON form; a NaN float becomes null, as in Node.
        let _ = serde_json::to_writer(&mut out, &msg);
    }
    out
}

/// The message of `b` for the history script on a Redis Cluster
/// ([`crate::backplane::stream`]): msgpack (JSON would need the script to splice text),
/// with `data` last, `opts` last in it and `flags` last in that, the flags' map header
/// counting four more pairs that are not written. The script appends them (`wsgateEpoch`,
/// `wsgateOffset`, `wsgateOrder`, `wsgateShard`); msgpack values simply concatenate. Node
/// reads either encoding (it checks the first byte), and keys by name.
pub fn encode_open(uid: &str, b: &Broadcast) -> Vec<u8> {
    let flags = wire::flags(b);
    let mut out = Vec::with_capacity(128);
    let put = |out: &mut Vec<u8>, v: &Value| {
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(out, v);
    };
    // A 4-map, then `data` a 2-map, `opts` a 3-map: fixed headers.
    out.push(0x84);
    for (k, v) in [
        ("type", Value::from(BROADCAST)),
        ("uid", Value::from(uid)),
        ("nsp", Value::from("/")),
    ] {
        put(&mut out, &Value::from(k));
        put(&mut out, &v);
    }
    put(&mut out, &Value::from("data"));
    out.push(0x82);
    put(&mut out, &Value::from("packet"));
    put(&mut out, &wire::packet(b));
    put(&mut out, &Value::from("opts"));
    out.push(0x83);
    for (k, v) in [("rooms", &b.rooms), ("except", &b.except)] {
        put(&mut out, &Value::from(k));
        put(&mut out, &wire::str_list(v));
    }
    put(&mut out, &Value::from("flags"));
    // At most 2 + 4 pairs: always a fixmap.
    out.push(0x80 | (flags.len() as u8 + 4));
    for (k, v) in &flags {
        put(&mut out, k);
        put(&mut out, v);
    }
    out
}

/// Turn the gateway's answer (built for the classic adapter: a JSON object with
/// `requestId` and the answer's fields) into the sharded adapter's answer of `kind`
/// (8, 10, 11 or 12) from server `uid`. `None` when the payload is not such an object.
pub fn encode_response(uid: &str, kind: u64, classic: &[u8]) -> Option<Vec<u8>> {
    let obj: serde_json::Map<String, Json> = serde_json::from_slice(classic).ok()?;
    let request_id = obj.get("requestId")?.clone();
    let data = match kind {
        FETCH_SOCKETS_RESPONSE => json!({
            "requestId": request_id,
            "sockets": obj.get("sockets").cloned().unwrap_or(json!([])),
        }),
        SERVER_SIDE_EMIT_RESPONSE => json!({ "requestId": request_id, "packet": null }),
        BROADCAST_CLIENT_COUNT => json!({
            "requestId": request_id,
            "clientCount": obj.get("clientCount").cloned().unwrap_or(json!(0)),
        }),
        BROADCAST_ACK => json!({
            "requestId": request_id,
            "packet": obj.get("packet").cloned().unwrap_or(Json::Null),
        }),
        _ => return None,
    };
    serde_json::to_vec(&json!({ "type": kind, "data": data, "uid": uid, "nsp": "/" })).ok()
}

/// The answer type the sharded adapter expects for a request kind, if it expects one.
pub fn response_kind(k: &RequestKind) -> Option<u64> {
    match k {
        RequestKind::Fetch => Some(FETCH_SOCKETS_RESPONSE),
        RequestKind::ServerSideEmit => Some(SERVER_SIDE_EMIT_RESPONSE),
        RequestKind::BroadcastWithAck(..) => Some(BROADCAST_CLIENT_COUNT),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::Args;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Reference bytes produced by @socket.io/redis-adapter 8.3.0 (socket.io-adapter 2.5.9)
    // `createShardedAdapter` with uid `abc123`, captured from its `sPublish` calls.

    /// `io.to("project_one").emit("update", {x: 1})` on `socket.io#/#project_one#`.
    const NODE_JSON_ROOM: &str = r#"{"type":3,"data":{"packet":{"type":2,"data":["update",{"x":1}],"nsp":"/"},"opts":{"rooms":["project_one"],"except":[],"flags":{}}},"uid":"abc123","nsp":"/"}"#;
    /// `io.to("project_two").except("x").volatile.emit("bin", Buffer.from([1,2,3]))`, msgpack.
    const NODE_MSGPACK_BINARY: &str = "84a47479706503a46461746182a67061636b657483a47479706502a46461746192a362696ec403010203a36e7370a12fa46f70747383a5726f6f6d7391ab70726f6a6563745f74776fa665786365707491a178a5666c61677381a8766f6c6174696c65c3a3756964a6616263313233a36e7370a12f";
    /// `io.in("r1").socketsJoin("newroom")` on `socket.io#/#`.
    const NODE_JOIN: &str = r#"{"type":4,"data":{"opts":{"rooms":["r1"],"except":[],"flags":{}},"rooms":["newroom"]},"uid":"abc123","nsp":"/"}"#;
    /// A fetchSockets answer to server `req999`, on `socket.io#/#req999#`.
    const NODE_FETCH_RESPONSE: &str =
        r#"{"type":8,"data":{"requestId":"q1","sockets":[]},"uid":"abc123","nsp":"/"}"#;

    #[test]
    fn open_message_completed_like_the_cluster_script_decodes_with_its_order() {
        use crate::backplane::position::{Order, Position};
        let mut b = wire::example_update();
        b.sent_at = Some(5.0);
        let mut bytes = encode_open("emitter", &b);
        for s in [
            "wsgateEpoch",
            "ab12",
            "wsgateOffset",
            "1700000000000-7",
            "wsgateOrder",
            "1700000000000123",
            "wsgateShard",
            "0a1b2c3d",
        ] {
            rmpv::encode::write_value(&mut bytes, &Value::from(s)).unwrap();
        }
        let Message::Broadcast { uid, broadcast, .. } = decode(&bytes).unwrap() else {
            panic!("not a broadcast")
        };
        assert_eq!(uid, "emitter");
        b.position = Some(Position {
            epoch: "ab12".into(),
            offset: "1700000000000-7".parse().unwrap(),
        });
        b.order = Some(Order {
            shard: 0x0a1b_2c3d,
            at: 1_700_000_000_000_123,
        });
        assert_eq!(broadcast, b);
    }

    #[test]
    fn decodes_a_node_json_broadcast() {
        let m = decode(NODE_JSON_ROOM.as_bytes()).unwrap();
        assert_eq!(
            m,
            Message::Broadcast {
                uid: "abc123".into(),
                nsp: "/".into(),
                broadcast: wire::example_update()
            }
        );
    }

    #[test]
    fn encodes_byte_for_byte_what_node_sends() {
        assert_eq!(
            String::from_utf8(encode_broadcast("abc123", &wire::example_update())).unwrap(),
            NODE_JSON_ROOM
        );
        let b = Broadcast {
            event: "bin".into(),
            args: Args(vec![Value::Binary(vec![1, 2, 3])]),
            rooms: vec!["project_two".into()],
            except: vec!["x".into()],
            volatile: true,
            sent_at: None,
            position: None,
            order: None,
        };
        assert_eq!(
            encode_broadcast("abc123", &b),
            unhex(NODE_MSGPACK_BINARY),
            "binary goes as msgpack"
        );
        let Message::Broadcast { broadcast, .. } = decode(&unhex(NODE_MSGPACK_BINARY)).unwrap()
        else {
            panic!("not a broadcast");
        };
        assert_eq!(broadcast, b);
    }

    #[test]
    fn channels_follow_dynamic_mode() {
        assert_eq!(
            channel_for(&wire::example_update()),
            "socket.io#/#project_one#"
        );
        let mut b = wire::example_update();
        b.rooms = vec!["x".repeat(20)];
        assert_eq!(channel_for(&b), "socket.io#/#", "socket-id-like rooms");
        b.rooms = vec!["AbCd_-0123456789".into()];
        assert_eq!(channel_for(&b), "socket.io#/#", "wsgate socket ids");
        b.rooms = vec![];
        assert_eq!(channel_for(&b), "socket.io#/#");
        assert_eq!(response_channel("req999"), "socket.io#/#req999#");
    }

    #[test]
    fn requests_take_the_classic_shape() {
        let Message::Request { nsp, request } = decode(NODE_JOIN.as_bytes()).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(nsp, "/");
        assert_eq!(request.kind, RequestKind::Join(vec!["newroom".into()]));
        assert_eq!(request.rooms, ["r1"]);
        assert_eq!(request.uid.as_deref(), Some("abc123"));

        let fetch = br#"{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"q1"},"uid":"n1","nsp":"/"}"#;
        let Message::Request { request, .. } = decode(fetch).unwrap() else {
            panic!("not a request");
        };
        assert_eq!(request.kind, RequestKind::Fetch);
        assert_eq!(request.request_id.as_deref(), Some("q1"));
    }

    #[test]
    fn answers_match_node() {
        let classic = crate::backplane::request::fetch_response("q1", vec![]);
        let kind = response_kind(&RequestKind::Fetch).unwrap();
        let bytes = encode_response("abc123", kind, &classic.payload).unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), NODE_FETCH_RESPONSE);
        assert_eq!(
            decode(NODE_FETCH_RESPONSE.as_bytes()).unwrap(),
            Message::Ignored { kind: 8 }
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"{nope").is_err());
        assert!(decode(b"\x93\x01\x02\x03").is_err());
        assert!(decode(b"").is_err());
        assert!(decode(br#"{"type":3,"data":{"packet":5}}"#).is_err());
    }
}
