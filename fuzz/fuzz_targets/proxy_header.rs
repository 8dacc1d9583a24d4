//! `--proxy-protocol`: the first bytes of a trusted proxy's connection. A header that
//! parses never claims more bytes than it was given, nor more than the bound.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::proxy_header(data));
