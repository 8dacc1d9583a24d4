//! socketioxide's packet parser (the common parser, its default) as wsgate feeds it: an
//! Engine.IO message's text is a Socket.IO packet; a binary packet's attachments follow as
//! binary messages (here: after the text, separated by `\0`). A decoded event's arguments
//! become the `serde_json::Value` wsgate's handlers take (`TryData<Value>`), and
//! `join_project`'s go to its validator; a CONNECT's payload becomes the `auth` the connect
//! middleware reads.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::socketio_packet(data));
