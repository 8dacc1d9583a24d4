//! The hot path, backplane message -> socket queues: decode one msgpack message, encode the
//! Socket.IO packet once, queue it on 1,000 sockets. Compared with encoding per recipient
//! (what a naive loop of `socket.emit` does) to show what "encode once" is worth; with
//! socketioxide's own local adapter (bytes shared by every recipient, but a full queue not
//! reported by socket) to show what wsgate's per-socket overflow reports cost; and with a
//! history position when half the sockets opted in to recovery (two encodes: one per group).

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use socketioxide::{SocketIo, adapter::Adapter as SioAdapter, extract::SocketRef};
use std::sync::Arc;

use wsgate::{
    backplane::{Args, Broadcast, memory::MemoryBackplane, wire},
    gateway::{Adapter, Io, Membership, Overflow, deliver_broadcast_counted},
};

const SOCKETS: usize = 1_000;

type Queues = Vec<tokio::sync::mpsc::Receiver<engineioxide::Packet>>;

struct Fixture {
    io: Io,
    membership: Membership,
    /// The same room on socketioxide's default adapter.
    shared: SocketIo,
    queues: Queues,
    message: Vec<u8>,
    /// The same update with a history position.
    positioned: Vec<u8>,
}

/// `SOCKETS` dummy sockets connected to `io`, their queues appended to `queues`.
async fn connect_all<A: SioAdapter + socketioxide_core::adapter::DefinedAdapter>(
    io: &SocketIo<A>,
    queues: &mut Queues,
) {
    io.ns("/", |_: SocketRef<A>| async move {});
    for _ in 0..SOCKETS {
        let (_tx, rx) = io.new_dummy_sock("/", ()).await;
        queues.push(rx);
    }
}

fn main_fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let (overflow, _reports) = Overflow::channel();
        let (_svc, io) = SocketIo::builder()
            .with_adapter::<Adapter>(overflow)
            .max_buffer_size(1 << 20)
            .build_svc();
        let (_svc, shared) = SocketIo::builder().max_buffer_size(1 << 20).build_svc();
        let mut queues = Vec::with_capacity(2 * SOCKETS);
        connect_all(&io, &mut queues).await;
        connect_all(&shared, &mut queues).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        for s in shared.sockets() {
            s.join("project_one");
        }
        // Rooms joined through the gateway's reference counts, as in production.
        let (backplane, _inbound) = MemoryBackplane::new();
        let membership = Membership::new(Arc::new(backplane));
        for (i, s) in io.sockets().into_iter().enumerate() {
            membership.join(&s, "project_one").await.unwrap();
            if i % 2 == 0 {
                // Opted in to recovery (join_project {recover: true}).
                s.join(wsgate::gateway::recover::opted_room("project_one"));
            }
        }
        let mut b = Broadcast {
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
        b.position = Some(wsgate::history::Position {
            epoch: "5f1e0c2a9b7d3e41".into(),
            offset: "1795775643160-42".parse().unwrap(),
        });
        Fixture {
            io,
            membership,
            shared,
            queues,
            message,
            positioned: wire::encode("emitter", &b),
        }
    })
}

fn drain(f: &mut Fixture) {
    for q in &mut f.queues {
        while q.try_recv().is_ok() {}
    }
}

/// Time `send` only (one broadcast to the room), then empty the socket queues untimed.
fn time_each(f: &mut Fixture, iters: u64, mut send: impl FnMut(&Fixture)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        send(f);
        total += start.elapsed();
        drain(f);
    }
    total
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut f = main_fixture(&rt);
    let mut g = c.benchmark_group("fanout_1000_sockets");
    g.bench_function("decode_encode_once_fanout", |b| {
        b.iter_custom(|iters| {
            time_each(&mut f, iters, |f| {
                let env = wire::decode(&f.message).unwrap();
                rt.block_on(deliver_broadcast_counted(
                    &f.io,
                    env.broadcast,
                    &f.membership,
                ));
            })
        })
    });
    g.bench_function("decode_encode_once_shared_bytes_socketioxide", |b| {
        b.iter_custom(|iters| {
            time_each(&mut f, iters, |f| {
                let env = wire::decode(&f.message).unwrap();
                let ops = f.shared.to("project_one");
                let _ = rt.block_on(ops.emit(&env.broadcast.event, &env.broadcast.args));
            })
        })
    });
    g.bench_function("positioned_half_opted_in", |b| {
        b.iter_custom(|iters| {
            time_each(&mut f, iters, |f| {
                let env = wire::decode(&f.positioned).unwrap();
                rt.block_on(deliver_broadcast_counted(
                    &f.io,
                    env.broadcast,
                    &f.membership,
                ));
            })
        })
    });
    g.bench_function("decode_encode_per_recipient", |b| {
        b.iter_custom(|iters| {
            time_each(&mut f, iters, |f| {
                let env = wire::decode(&f.message).unwrap();
                for s in f.io.to("project_one").sockets() {
                    let _ = s.emit(&env.broadcast.event, &env.broadcast.args);
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
