//! The emitter / classic adapter format (`[uid, packet, opts]` msgpack) as the Redis
//! subscriber decodes it: any bytes on a `socket.io#/#...` channel. A decoded broadcast is
//! encoded again, as a replica does when it forwards one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::backplane::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = wire::decode(data) {
        let _ = wire::encode(&envelope.uid, &envelope.broadcast);
    }
});
