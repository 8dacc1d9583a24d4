//! Instruction counts of the fan-out, for `valgrind --tool=callgrind` (counts do not depend
//! on machine load, unlike the Criterion timings of `benches/fanout.rs`).
//!
//! ```sh
//! cargo build --release --example fanout_profile
//! for v in none wsgate shared positioned; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$v target/release/examples/fanout_profile $v 50
//! done   # (total(v) - total(none)) / (50 * 1000) = instructions per recipient
//! ```
//! Variants: `none` (set-up only), `wsgate` (decode + wsgate's adapter, per-socket overflow
//! reports), `shared` (decode + socketioxide's local adapter, bytes shared by all sockets),
//! `positioned` (an update with a history position, half the sockets opted in to recovery).
//! The fixture is `benches/common/mod.rs`, shared with the Criterion bench.

#[path = "../benches/common/mod.rs"]
mod common;

use wsgate::{backplane::wire, gateway::deliver_broadcast_counted};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let variant = argv.next().unwrap_or_else(|| "wsgate".into());
    let n: usize = argv.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut f = common::build().await;
    for _ in 0..n {
        match variant.as_str() {
            "wsgate" => {
                if let Ok(env) = wire::decode(&f.message) {
                    deliver_broadcast_counted(&f.io, env.broadcast, &f.membership).await;
                }
            }
            "positioned" => {
                if let Ok(env) = wire::decode(&f.positioned) {
                    deliver_broadcast_counted(&f.io, env.broadcast, &f.membership).await;
                }
            }
            "shared" => {
                if let Ok(env) = wire::decode(&f.message) {
                    let ops = f.shared.to("project_one");
                    let _ = ops.emit(&env.broadcast.event, &env.broadcast.args).await;
                }
            }
            _ => {}
        }
        common::drain(&mut f);
    }
}
