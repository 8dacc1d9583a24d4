//! The sharded adapter's format (JSON or msgpack `{type, data, uid, nsp}`) as the Redis
//! Cluster engine decodes it: any bytes on a shard channel.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::backplane::sharded_wire::{self, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(Message::Broadcast { uid, broadcast, .. }) = sharded_wire::decode(data) {
        let _ = sharded_wire::encode_broadcast(&uid, &broadcast);
    }
});
