//! Instruction counts of the fan-out, for `valgrind --tool=callgrind` (counts do not depend
//! on machine load, unlike the Criterion timings of `benches/fanout.rs`).
//!
//! ```sh
//! cargo build --release --example fanout_profile
//! for v in none wsgate shared; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$v target/release/examples/fanout_profile $v 200
//! done   # (total(v) - total(none)) / (200 * 1000) = instructions per recipient
//! ```
//! Variants: `none` (set-up only), `wsgate` (decode + wsgate's adapter, per-socket overflow
//! reports), `shared` (decode + socketioxide's local adapter, bytes shared by all sockets).

use std::{sync::Arc, time::Duration};

use socketioxide::{SocketIo, adapter::Adapter as SioAdapter, extract::SocketRef};
use socketioxide_core::adapter::DefinedAdapter;
use wsgate::{
    backplane::{Args, Broadcast, memory::MemoryBackplane, wire},
    gateway::{Adapter, Membership, Overflow, deliver_broadcast_counted},
};

const SOCKETS: usize = 1_000;

type Queues = Vec<tokio::sync::mpsc::Receiver<engineioxide::Packet>>;

async fn connect_all<A: SioAdapter + DefinedAdapter>(io: &SocketIo<A>, queues: &mut Queues) {
    io.ns("/", |_: SocketRef<A>| async move {});
    for _ in 0..SOCKETS {
        let (_tx, rx) = io.new_dummy_sock("/", ()).await;
        queues.push(rx);
    }
}

fn drain(queues: &mut Queues) {
    for q in queues {
        while q.try_recv().is_ok() {}
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let variant = argv.next().unwrap_or_else(|| "wsgate".into());
    let n: usize = argv.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let (overflow, _reports) = Overflow::channel();
    let (_svc, io) = SocketIo::builder()
        .with_adapter::<Adapter>(overflow)
        .max_buffer_size(1 << 20)
        .build_svc();
    let (_svc2, shared) = SocketIo::builder().max_buffer_size(1 << 20).build_svc();
    let mut queues = Vec::new();
    connect_all(&io, &mut queues).await;
    connect_all(&shared, &mut queues).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (backplane, _inbound) = MemoryBackplane::new();
    let membership = Membership::new(Arc::new(backplane));
    for s in io.sockets() {
        let _ = membership.join(&s, "project_one").await;
    }
    for s in shared.sockets() {
        s.join("project_one");
    }
    let b = Broadcast {
        event: "chat".into(),
        args: Args(vec![wire::from_json(
            &serde_json::json!({"id": 1, "text": "hello, project"}),
        )]),
        rooms: vec!["project_one".into()],
        except: vec![],
        volatile: false,
        sent_at: None,
        position: None,
    };
    let message = wire::encode("emitter", &b);
    for _ in 0..n {
        match variant.as_str() {
            "wsgate" => {
                if let Ok(env) = wire::decode(&message) {
                    deliver_broadcast_counted(&io, env.broadcast, &membership).await;
                }
            }
            "shared" => {
                if let Ok(env) = wire::decode(&message) {
                    let ops = shared.to("project_one");
                    let _ = ops.emit(&env.broadcast.event, &env.broadcast.args).await;
                }
            }
            _ => {}
        }
        drain(&mut queues);
    }
}
