//! The JWT path of `--auth jwt`: the input as the token itself (header parse, algorithm
//! checks, signature), and the input split at the first `\n` into a header and a claims
//! JSON text signed with the replica's secret, so the claims path (`exp`, `nbf`, `iss`,
//! `aud`, the user and projects claims) is reached with any JSON.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::jwt(data));
