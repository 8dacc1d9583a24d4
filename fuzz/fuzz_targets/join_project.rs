//! The `join_project` validator on any JSON a client can send as the event's payload
//! (socketioxide hands wsgate a `serde_json::Value`; none at all is `None`).
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::join_project(data));
