//! The sharded adapter's format (JSON or msgpack `{type, data, uid, nsp}`) as the Redis
//! Cluster engine decodes it: any bytes on a shard channel.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::sharded_wire(data));
