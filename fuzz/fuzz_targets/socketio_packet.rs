//! socketioxide's packet parser (the common parser, the default) as wsgate feeds it: an
//! Engine.IO message packet's text is a Socket.IO packet; a binary packet's attachments
//! follow as binary messages. A decoded event's arguments become the `serde_json::Value`
//! wsgate's handlers take (`TryData<Value>`), and `join_project`'s go to its validator; a
//! CONNECT's payload becomes the `auth` the connect middleware reads.
//!
//! Input: the text packet, then optionally `\0` and binary attachments separated by `\0`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use socketioxide_core::{
    Str,
    packet::PacketData,
    parser::{Parse, ParseConfig, ParseError, ParserState},
};
use socketioxide_parser_common::CommonParser;
use wsgate::gateway::validate_join_project;

fuzz_target!(|data: &[u8]| {
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
            if let (Ok(event), Ok(args)) = (event, args) {
                if event == "join_project" {
                    let _ = validate_join_project(Some(&args));
                }
            }
        }
        PacketData::Connect(value) => {
            let _ = parser.decode_default::<serde_json::Value>(value.as_ref());
        }
        _ => {}
    }
});
