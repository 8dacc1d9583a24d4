//! The request channel (`socket.io-request#/#`, JSON) as the Redis engine decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::backplane::request;

fuzz_target!(|data: &[u8]| {
    let _ = request::decode(data);
});
