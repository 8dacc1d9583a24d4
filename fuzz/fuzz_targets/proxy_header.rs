//! `--proxy-protocol`: the first bytes of a trusted proxy's connection. A header that
//! parses never claims more bytes than it was given, nor more than the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::net::proxy_protocol::{MAX_HEADER, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(header)) = parse(data) {
        assert!(header.len <= data.len() && header.len <= MAX_HEADER);
    }
});
