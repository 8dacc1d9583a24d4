//! The `join_project` validator on any JSON a client can send as the event's payload
//! (socketioxide hands wsgate a `serde_json::Value`; none at all is `None`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgate::gateway::validate_join_project;

fuzz_target!(|data: &[u8]| {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) => {
            let _ = validate_join_project(Some(&v));
        }
        Err(_) => {
            let _ = validate_join_project(None);
        }
    }
});
