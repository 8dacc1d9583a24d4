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
//!
//! `ws` is `wsgate` over real websockets instead of dummy sockets: 1,000 clients connected
//! over loopback to an in-process Socket.IO server with wsgate's adapter, which do not read
//! (what they are sent waits in the kernel), so the count includes engineioxide's transport:
//! its queue, its writer tasks and the websocket writes, all but the kernel's own work.
//! Only the broadcasts are counted (with the writer tasks they wake, all polled inside
//! `ws::measured`):
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*ws::measured*' target/release/examples/fanout_profile ws 50
//! ```
//! `Ir / (50 * 1000)` = instructions per recipient (the 2 ms pauses between broadcasts add
//! a few; `(ws 150 - ws 50) / 100,000` removes them).

#[path = "../benches/common/mod.rs"]
mod common;

use wsgate::{backplane::wire, gateway::deliver_broadcast_counted};

fn main() {
    let mut argv = std::env::args().skip(1);
    let variant = argv.next().unwrap_or_else(|| "wsgate".into());
    let n: usize = argv.next().and_then(|s| s.parse().ok()).unwrap_or(100);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    if variant == "ws" {
        return ws::run(&rt, n);
    }
    rt.block_on(dummies(&variant, n));
}

async fn dummies(variant: &str, n: usize) {
    let mut f = common::build().await;
    for _ in 0..n {
        match variant {
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

/// The `ws` variant: real websocket transports.
mod ws {
    use std::{sync::Arc, time::Duration};

    use futures_util::{SinkExt, StreamExt};
    use socketioxide::SocketIo;
    use tokio_tungstenite::tungstenite::Message;
    use wsgate::{
        backplane::{memory::MemoryBackplane, wire},
        gateway::{Adapter, Membership, Overflow, Socket, deliver_broadcast_counted},
    };

    const CLIENTS: usize = 1_000;

    /// Connect the clients, then count the broadcasts.
    pub fn run(rt: &tokio::runtime::Runtime, n: usize) {
        let (io, membership, clients) = rt.block_on(connect());
        measured(rt, broadcasts(&io, &membership, n));
        drop(clients);
    }

    /// What callgrind counts (`--toggle-collect='*ws::measured*'`): everything the runtime
    /// polls while `fut` runs, the sockets' writer tasks included.
    #[inline(never)]
    fn measured<F: std::future::Future>(rt: &tokio::runtime::Runtime, fut: F) -> F::Output {
        rt.block_on(fut)
    }

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn connect() -> (SocketIo<Adapter>, Arc<Membership>, Vec<Client>) {
        let (overflow, _reports) = Overflow::channel();
        // No heartbeat during the run: the clients do not read.
        let (layer, io) = SocketIo::builder()
            .with_adapter::<Adapter>(overflow)
            .ping_interval(Duration::from_secs(3600))
            .ping_timeout(Duration::from_secs(3600))
            // What `wsgate serve --direct-writes` sets (vendored engineioxide hunk 8).
            .direct_writes(true)
            .build_layer();
        let (backplane, _inbound) = MemoryBackplane::new();
        let membership = Arc::new(Membership::new(Arc::new(backplane)));
        let m = membership.clone();
        io.ns("/", move |s: Socket| {
            let m = m.clone();
            async move {
                let _ = m.join(&s, "project_one").await;
            }
        });
        let app = axum::Router::new().layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap();
            ws.next().await.unwrap().unwrap(); // open
            ws.send(Message::text("40")).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.to_text().is_ok_and(|t| t.starts_with("40")) {
                    break;
                }
            }
            clients.push(ws);
        }
        while membership.count("project_one") < CLIENTS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let the set-up's last writes finish.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (io, membership, clients)
    }

    async fn broadcasts(io: &SocketIo<Adapter>, membership: &Membership, n: usize) {
        let message = crate::common::build_message();
        for _ in 0..n {
            if let Ok(env) = wire::decode(&message) {
                deliver_broadcast_counted(io, env.broadcast, membership).await;
            }
            // The writer tasks (if any) run here.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
