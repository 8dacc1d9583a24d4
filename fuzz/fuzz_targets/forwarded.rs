//! `--trusted-proxies`: the client address from `X-Forwarded-For` / `Forwarded` header
//! lines (the input's lines; the first byte picks the header). From an untrusted peer the
//! headers never matter.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::forwarded(data));
