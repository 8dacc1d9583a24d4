//! What each fuzz target does with one input, shared by the targets (`fuzz_targets/*.rs`)
//! and by the normal test suite (`tests/fuzz_regressions.rs`), which replays every seed and
//! every input kept in `fuzz/regressions/<target>/` on the stable toolchain.
// Each target binary uses one of these.
#![allow(dead_code)]

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, crypto::sign};
use socketioxide_core::{
    Str,
    packet::PacketData,
    parser::{Parse, ParseConfig, ParseError, ParserState},
};
use socketioxide_parser_common::CommonParser;
use wsgate::{
    auth::jwt::{JwtAuthenticator, JwtSettings, KeySource},
    backplane::{request, sharded_wire, wire},
    gateway::validate_join_project,
    net::{TrustedProxies, forwarded::parse_list, proxy_protocol},
};

/// One target's body.
pub type Target = fn(&[u8]);

/// Every target's name and body.
pub const ALL: &[(&str, Target)] = &[
    ("wire", wire),
    ("sharded_wire", sharded_wire),
    ("request", request),
    ("join_project", join_project),
    ("jwt", jwt),
    ("socketio_packet", socketio_packet),
    ("proxy_header", proxy_header),
    ("forwarded", forwarded),
];

/// The emitter / classic adapter format (`[uid, packet, opts]` msgpack) as the Redis
/// subscriber decodes it: any bytes on a `socket.io#/#...` channel. A decoded broadcast is
/// encoded again, as a replica does when it forwards one.
pub fn wire(data: &[u8]) {
    if let Ok(envelope) = wire::decode(data) {
        let _ = wire::encode(&envelope.uid, &envelope.broadcast);
    }
}

/// The sharded adapter's format (JSON or msgpack `{type, data, uid, nsp}`) as the Redis
/// Cluster engine decodes it: any bytes on a shard channel.
pub fn sharded_wire(data: &[u8]) {
    if let Ok(sharded_wire::Message::Broadcast { uid, broadcast, .. }) = sharded_wire::decode(data)
    {
        let _ = sharded_wire::encode_broadcast(&uid, &broadcast);
    }
}

/// The request channel (`socket.io-request#/#`, JSON) as the Redis engine decodes it.
pub fn request(data: &[u8]) {
    let _ = request::decode(data);
}

/// The `join_project` validator on any JSON a client can send as the event's payload
/// (socketioxide hands wsgate a `serde_json::Value`; none at all is `None`).
pub fn join_project(data: &[u8]) {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) => {
            let _ = validate_join_project(Some(&v));
        }
        Err(_) => {
            let _ = validate_join_project(None);
        }
    }
}

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

static AUTH: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    JwtAuthenticator::new(JwtSettings {
        keys: KeySource::Secret(SECRET.to_owned()),
        algorithms: Vec::new(),
        issuers: vec!["wsgate-fuzz".to_owned()],
        audiences: Vec::new(),
        leeway: Duration::from_secs(5),
        user_claim: "sub".to_owned(),
        projects_claim: "projects".to_owned(),
        numeric_sub: false,
    })
    .expect("a secret is a valid key")
});

static KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()));

/// The JWT path of `--auth jwt`: the input as the token itself (header parse, algorithm
/// checks, signature), and the input split at the first `\n` into a header and a claims
/// JSON text signed with the replica's secret, so the claims path (`exp`, `nbf`, `iss`,
/// `aud`, the user and projects claims) is reached with any JSON.
pub fn jwt(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AUTH.verify(text);
    if let Some((header, claims)) = text.split_once('\n') {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        if let Ok(signature) = sign(signing_input.as_bytes(), &KEY, Algorithm::HS256) {
            let _ = AUTH.verify(&format!("{signing_input}.{signature}"));
        }
    }
}

/// socketioxide's packet parser (the common parser, its default) as wsgate feeds it: an
/// Engine.IO message's text is a Socket.IO packet; a binary packet's attachments follow as
/// binary messages (here: after the text, separated by `\0`). A decoded event's arguments
/// become the `serde_json::Value` wsgate's handlers take (`TryData<Value>`), and
/// `join_project`'s go to its validator; a CONNECT's payload becomes the `auth` the connect
/// middleware reads.
pub fn socketio_packet(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0);
    let Some(Ok(text)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let parser = CommonParser;
    let config = ParseConfig::default();
    let state = ParserState::default();
    let mut decoded = parser.decode_str(&config, &state, Str::from(text.to_owned()));
    for bin in parts {
        if !matches!(decoded, Err(ParseError::NeedsMoreBinaryData)) {
            break;
        }
        decoded = parser.decode_bin(&config, &state, Bytes::copy_from_slice(bin));
    }
    let Ok(packet) = decoded else {
        return;
    };
    match packet.inner {
        PacketData::Event(mut value, _) | PacketData::BinaryEvent(mut value, _) => {
            let event = parser.read_event(&value).map(str::to_owned);
            let args = parser.decode_value::<serde_json::Value>(&mut value, true);
            if let (Ok(event), Ok(args)) = (event, args)
                && event == "join_project"
            {
                let _ = validate_join_project(Some(&args));
            }
        }
        PacketData::Connect(value) => {
            let _ = parser.decode_default::<serde_json::Value>(value.as_ref());
        }
        _ => {}
    }
}

/// `--proxy-protocol`: the first bytes of a trusted proxy's connection. A header that
/// parses never claims more bytes than it was given, nor more than the bound.
pub fn proxy_header(data: &[u8]) {
    if let Ok(Some(header)) = proxy_protocol::parse(data) {
        assert!(header.len <= data.len() && header.len <= proxy_protocol::MAX_HEADER);
    }
}

static TRUSTED: LazyLock<TrustedProxies> =
    LazyLock::new(|| parse_list("10.0.0.0/8,192.168.0.0/16,::1,fd00::/8").expect("a valid list"));

/// `--trusted-proxies`: the client address from `X-Forwarded-For` / `Forwarded` header
/// lines (the input's lines; the first byte picks the header). From an untrusted peer the
/// headers never matter.
pub fn forwarded(data: &[u8]) {
    let Some((which, lines)) = data.split_first() else {
        return;
    };
    let name = if which % 2 == 0 {
        HeaderName::from_static("x-forwarded-for")
    } else {
        http::header::FORWARDED
    };
    let mut headers = HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(name.clone(), v);
        }
    }
    let proxy: IpAddr = [10, 0, 0, 1].into();
    let _ = TRUSTED.client(proxy, &headers);
    let outside: IpAddr = [203, 0, 113, 5].into();
    assert_eq!(TRUSTED.client(outside, &headers), outside);
}
