//! The request channel (`socket.io-request#/#`, JSON) as the Redis engine decodes it.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::request(data));
