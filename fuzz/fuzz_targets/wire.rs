//! The emitter / classic adapter format (`[uid, packet, opts]` msgpack) as the Redis
//! subscriber decodes it: any bytes on a `socket.io#/#...` channel. A decoded broadcast is
//! encoded again, as a replica does when it forwards one.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::wire(data));
