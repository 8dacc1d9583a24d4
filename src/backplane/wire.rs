//! The broadcast wire format of `@socket.io/redis-adapter` and `@socket.io/redis-emitter`:
//! a msgpack array `[uid, packet, opts]`. Values only, no I/O.
//!
//! Maps are read by key, never by position, because every emitter implementation orders
//! them differently. Arguments stay [`rmpv::Value`]s from decode to the socket write: that
//! keeps object key order, 64-bit integers, floats and binary exactly as published.

use rmpv::Value;
use serde::ser::{Serialize, SerializeTuple, Serializer};

use super::Broadcast;
use crate::telemetry::DecodeErrorKind;

use super::position::{
    EPOCH_FLAG, MAX_EPOCH, OFFSET_FLAG, ORDER_FLAG, Order, Position, SHARD_FLAG,
};

/// Socket.IO packet type of an event.
const EVENT: u64 = 2;
/// Socket.IO packet type of an event with binary attachments (accepted, never sent).
const BINARY_EVENT: u64 = 5;
/// Deepest nesting accepted in a message, far beyond any real payload; stops a hostile
/// publisher from exhausting the subscriber's stack.
pub(crate) const MAX_DEPTH: usize = 256;
/// Key in `opts.flags` where a publisher stamps its send time (ms since the Unix epoch, a
/// number). An extension of the adapter's format that Node servers ignore.
pub const SENT_AT: &str = "wsgateSentAt";

/// The arguments of an event after its name. Serializes as a tuple, which socketioxide
/// expands into separate Socket.IO arguments; binary values become attachments.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args(pub Vec<Value>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

/// Why a message from the backplane could not be decoded. The label is bounded, for
/// metrics and rate-limited logs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not valid msgpack (or nested deeper than the limit).
    #[error("not msgpack: {0}")]
    NotMsgpack(String),
    /// Valid msgpack but not `[uid, packet, opts]`.
    #[error("not a [uid, packet, opts] array")]
    NotEnvelope,
    /// The packet is not an event map with `data: [event, ...args]`.
    #[error("packet is not an event: {0}")]
    BadPacket(&'static str),
    /// `opts` has a field of the wrong type.
    #[error("bad opts: {0}")]
    BadOpts(&'static str),
}

impl WireError {
    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            WireError::NotMsgpack(_) => DecodeErrorKind::NotMsgpack,
            WireError::NotEnvelope => DecodeErrorKind::NotEnvelope,
            WireError::BadPacket(_) => DecodeErrorKind::BadPacket,
            WireError::BadOpts(_) => DecodeErrorKind::BadOpts,
        }
    }
}

/// A decoded broadcast with the uid of the server (or `"emitter"`) that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Sender's uid, used to skip a replica's own messages.
    pub uid: String,
    /// Namespace of the packet (`/` for wsgate).
    pub nsp: String,
    /// What to deliver.
    pub broadcast: Broadcast,
}

pub(crate) fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

pub(crate) fn strings(v: Option<&Value>, what: &'static str) -> Result<Vec<String>, WireError> {
    match v {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s
                    .as_str()
                    .map(str::to_owned)
                    .ok_or(WireError::BadOpts(what)),
                // Node joins numeric rooms and stringifies them for channel names.
                Value::Integer(n) => Ok(n.to_string()),
                Value::F64(f) => Ok(f.to_string()),
                _ => Err(WireError::BadOpts(what)),
            })
            .collect(),
        Some(_) => Err(WireError::BadOpts(what)),
    }
}

/// Decode one message of a broadcast channel.
pub fn decode(bytes: &[u8]) -> Result<Envelope, WireError> {
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH)
        .map_err(|e| WireError::NotMsgpack(e.to_string()))?;
    let Value::Array(mut parts) = value else {
        return Err(WireError::NotEnvelope);
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(WireError::NotEnvelope);
    }
    let opts = if parts.len() == 3 { parts.pop() } else { None };
    let Some(Value::Map(packet)) = parts.pop() else {
        return Err(WireError::BadPacket("not a map"));
    };
    let uid = match parts.pop() {
        Some(Value::String(s)) => s.into_str().ok_or(WireError::NotEnvelope)?,
        _ => return Err(WireError::NotEnvelope),
    };

    let (nsp, broadcast) = event_of(packet, opts.as_ref())?;
    Ok(Envelope {
        uid,
        nsp,
        broadcast,
    })
}

/// The namespace and broadcast of a Socket.IO event packet map and its adapter `opts`:
/// shared by the classic `[uid, packet, opts]` array and the sharded adapter's messages.
pub(crate) fn event_of(
    packet: Vec<(Value, Value)>,
    opts: Option<&Value>,
) -> Result<(String, Broadcast), WireError> {
    match get(&packet, "type").and_then(Value::as_u64) {
        Some(EVENT | BINARY_EVENT) => {}
        _ => return Err(WireError::BadPacket("type is not 2 or 5")),
    }
    let nsp = match get(&packet, "nsp") {
        None | Some(Value::Nil) => "/".to_owned(),
        Some(v) => v
            .as_str()
            .ok_or(WireError::BadPacket("nsp is not a string"))?
            .to_owned(),
    };
    let mut packet = packet;
    let data = packet
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("data"))
        .map(|(_, v)| std::mem::replace(v, Value::Nil));
    let Some(Value::Array(mut data)) = data else {
        return Err(WireError::BadPacket("data is not an array"));
    };
    if data.is_empty() {
        return Err(WireError::BadPacket("data is empty"));
    }
    let event = match data.remove(0) {
        Value::String(s) => s
            .into_str()
            .ok_or(WireError::BadPacket("event name is not UTF-8"))?,
        _ => return Err(WireError::BadPacket("event name is not a string")),
    };

    let (rooms, except, volatile, sent_at, (position, order)) = match opts {
        None | Some(Value::Nil) => (Vec::new(), Vec::new(), false, None, (None, None)),
        Some(Value::Map(o)) => {
            let (volatile, sent_at, position) = match get(o, "flags") {
                None | Some(Value::Nil) => (false, None, (None, None)),
                Some(Value::Map(f)) => (
                    get(f, "volatile").and_then(Value::as_bool) == Some(true),
                    // A stamp of another type is ignored, not an error: it is only a metric.
                    get(f, SENT_AT).and_then(Value::as_f64),
                    (position(f), order(f)),
                ),
                Some(_) => return Err(WireError::BadOpts("flags is not a map")),
            };
            (
                strings(get(o, "rooms"), "rooms is not a list of strings")?,
                strings(get(o, "except"), "except is not a list of strings")?,
                volatile,
                sent_at,
                position,
            )
        }
        Some(_) => return Err(WireError::BadOpts("opts is not a map")),
    };

    Ok((
        nsp,
        Broadcast {
            event,
            args: Args(data),
            rooms,
            except,
            volatile,
            sent_at,
            position,
            order,
        },
    ))
}

/// The fleet order in `flags` (decimal digits, and the shard's 8 hex digits on a
/// cluster), when there and well formed.
fn order(flags: &[(Value, Value)]) -> Option<Order> {
    let shard = match get(flags, SHARD_FLAG) {
        None => None,
        Some(v) => Some(v.as_str()?),
    };
    Order::parse(get(flags, ORDER_FLAG)?.as_str()?, shard)
}

/// The history position in `flags`, when both parts are there and well formed (anything
/// else is treated as no position: the update is still delivered, just not recoverable).
fn position(flags: &[(Value, Value)]) -> Option<Position> {
    let epoch = get(flags, EPOCH_FLAG)?.as_str()?;
    let offset = get(flags, OFFSET_FLAG)?.as_str()?.parse().ok()?;
    (!epoch.is_empty() && epoch.len() <= MAX_EPOCH).then(|| Position {
        epoch: epoch.to_owned(),
        offset,
    })
}

/// A list of strings as msgpack (rooms, except).
pub(super) fn str_list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

/// The Socket.IO EVENT packet of `b`, as both adapters carry it.
pub(super) fn packet(b: &Broadcast) -> Value {
    let mut data = Vec::with_capacity(b.args.0.len() + 1);
    data.push(Value::from(b.event.as_str()));
    data.extend(b.args.0.iter().cloned());
    Value::Map(vec![
        // Always 2, binary or not: Node's parser promotes it on receipt and mishandles 5.
        ("type".into(), Value::from(EVENT)),
        ("data".into(), Value::Array(data)),
        ("nsp".into(), "/".into()),
    ])
}

/// The flags of `b` other than its position.
pub(super) fn flags(b: &Broadcast) -> Vec<(Value, Value)> {
    let mut flags = Vec::new();
    if b.volatile {
        flags.push(("volatile".into(), Value::Boolean(true)));
    }
    if let Some(at) = b.sent_at {
        flags.push((SENT_AT.into(), Value::F64(at)));
    }
    flags
}

/// Encode a broadcast exactly as `@socket.io/redis-emitter` does (same keys, same order),
/// so a wsgate publish is byte-for-byte what a Node backend would send.
pub fn encode(uid: &str, b: &Broadcast) -> Vec<u8> {
    let mut flags = flags(b);
    if let Some(p) = &b.position {
        flags.push((EPOCH_FLAG.into(), p.epoch.as_str().into()));
        flags.push((OFFSET_FLAG.into(), p.offset.to_string().into()));
    }
    if let Some(o) = b.order {
        flags.push((ORDER_FLAG.into(), o.at.to_string().into()));
        if o.shard != 0 {
            flags.push((SHARD_FLAG.into(), o.shard_hex().into()));
        }
    }
    let opts = Value::Map(vec![
        ("rooms".into(), str_list(&b.rooms)),
        ("flags".into(), Value::Map(flags)),
        ("except".into(), str_list(&b.except)),
    ]);
    let msg = Value::Array(vec![uid.into(), packet(b), opts]);
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, &msg);
    out
}

/// The message of `b` for the history script: `opts.flags` moved last, its map header
/// counting three more pairs that are not written. The script appends them (`wsgateEpoch`,
/// `wsgateOffset`, `wsgateOrder`) once it knows the stream entry id; msgpack values simply
/// concatenate.
pub fn encode_open(uid: &str, b: &Broadcast) -> Vec<u8> {
    let flags = flags(b);
    let mut out = Vec::with_capacity(96);
    // A 3-array, then a 3-map: fixed headers.
    out.push(0x93);
    let _ = rmpv::encode::write_value(&mut out, &Value::from(uid));
    let _ = rmpv::encode::write_value(&mut out, &packet(b));
    out.push(0x83);
    for (k, v) in [("rooms", &b.rooms), ("except", &b.except)] {
        let _ = rmpv::encode::write_value(&mut out, &Value::from(k));
        let _ = rmpv::encode::write_value(&mut out, &str_list(v));
    }
    let _ = rmpv::encode::write_value(&mut out, &Value::from("flags"));
    // At most 2 + 3 pairs: always a fixmap.
    out.push(0x80 | (flags.len() as u8 + 3));
    for (k, v) in &flags {
        let _ = rmpv::encode::write_value(&mut out, k);
        let _ = rmpv::encode::write_value(&mut out, v);
    }
    out
}

/// Convert JSON (key order kept) into the msgpack value the emitter would produce:
/// integers stay integers, other numbers become float64.
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (_, Some(i)) => Value::from(i),
            _ => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .collect(),
        ),
    }
}

/// The update of the documented example (`update {x: 1}` to `project_one`), shared by the
/// codecs' tests.
#[cfg(test)]
pub(crate) fn example_update() -> Broadcast {
    Broadcast {
        event: "update".into(),
        args: Args(vec![from_json(&serde_json::json!({"x": 1}))]),
        rooms: vec!["project_one".into()],
        ..Broadcast::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `emitter.to("project_one").emit("update", {x: 1})`, the example of docs/backplane.md.
    const EXAMPLE_HEX: &str = "93a7656d697474657283a47479706502a46461746192a675706461746581a17801a36e7370a12f83a5726f6f6d7391ab70726f6a6563745f6f6e65a5666c61677380a665786365707490";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn encode_matches_the_documented_example_byte_for_byte() {
        assert_eq!(encode("emitter", &example_update()), unhex(EXAMPLE_HEX));
    }

    #[test]
    fn decode_reads_the_documented_example() {
        let e = decode(&unhex(EXAMPLE_HEX)).unwrap();
        assert_eq!(e.uid, "emitter");
        assert_eq!(e.nsp, "/");
        assert_eq!(e.broadcast, example_update());
    }

    #[test]
    fn decode_reads_maps_by_key_and_flags() {
        // opts and packet with keys in another order, several args, binary, volatile.
        let msg = Value::Array(vec![
            "abc".into(),
            Value::Map(vec![
                ("nsp".into(), "/".into()),
                (
                    "data".into(),
                    Value::Array(vec!["ev".into(), 1.into(), Value::Binary(vec![1, 2])]),
                ),
                ("type".into(), 5.into()),
            ]),
            Value::Map(vec![
                ("except".into(), Value::Array(vec!["c".into()])),
                (
                    "flags".into(),
                    Value::Map(vec![("volatile".into(), true.into())]),
                ),
                ("rooms".into(), Value::Array(vec!["a".into(), "b".into()])),
            ]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &msg).unwrap();
        let e = decode(&bytes).unwrap();
        assert_eq!(e.uid, "abc");
        assert_eq!(e.broadcast.event, "ev");
        assert_eq!(e.broadcast.args.0.len(), 2);
        assert_eq!(e.broadcast.rooms, ["a", "b"]);
        assert_eq!(e.broadcast.except, ["c"]);
        assert!(e.broadcast.volatile);
        assert_eq!(e.broadcast.sent_at, None);
    }

    #[test]
    fn send_time_stamp_round_trips_in_flags() {
        let mut b = example_update();
        b.sent_at = Some(1_795_775_643_160.5);
        let e = decode(&encode("emitter", &b)).unwrap();
        assert_eq!(e.broadcast, b);
    }

    #[test]
    fn open_message_completed_like_the_script_decodes_with_its_position() {
        let mut b = example_update();
        b.volatile = true;
        b.sent_at = Some(5.0);
        let mut bytes = encode_open("emitter", &b);
        for s in [
            EPOCH_FLAG,
            "ab12",
            OFFSET_FLAG,
            "1700000000000-7",
            ORDER_FLAG,
            "1700000000000123",
        ] {
            rmpv::encode::write_value(&mut bytes, &Value::from(s)).unwrap();
        }
        let e = decode(&bytes).unwrap();
        b.position = Some(Position {
            epoch: "ab12".into(),
            offset: "1700000000000-7".parse().unwrap(),
        });
        b.order = Some(Order::single(1_700_000_000_000_123));
        assert_eq!(e.broadcast, b);
        // The same message as `encode` writes it, keys in another order.
        assert_eq!(decode(&encode("emitter", &b)).unwrap().broadcast, b);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xc1],
            b"{\"json\":1}".to_vec(),
            vec![0x93, 0x01, 0x02, 0x03],
            unhex("93a1758182a474797065020080"),
            vec![0x91; 10_000],
        ];
        for c in cases {
            assert!(decode(&c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn json_keeps_key_order_and_number_kinds() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"z":1,"a":-2,"m":1.5,"big":18446744073709551615}"#).unwrap();
        let v = from_json(&j);
        let back = serde_json::to_string(&v).unwrap();
        assert_eq!(back, r#"{"z":1,"a":-2,"m":1.5,"big":18446744073709551615}"#);
    }
}
