//! The hot path, backplane message -> socket queues: decode one msgpack message, encode the
//! Socket.IO packet once, queue it on 1,000 sockets. Compared with encoding per recipient
//! (what a naive loop of `socket.emit` does) to show what "encode once" is worth.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use socketioxide::{SocketIo, extract::SocketRef};
use std::sync::Arc;

use wsgate::{
    backplane::{Args, Broadcast, memory::MemoryBackplane, wire},
    gateway::{Membership, deliver_broadcast_counted},
};

const SOCKETS: usize = 1_000;

struct Fixture {
    io: SocketIo,
    membership: Membership,
    queues: Vec<tokio::sync::mpsc::Receiver<engineioxide::Packet>>,
    message: Vec<u8>,
}

fn main_fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    rt.block_on(async {
        let (_svc, io) = SocketIo::builder().max_buffer_size(1 << 20).build_svc();
        io.ns("/", |_: SocketRef| async move {});
        let mut queues = Vec::with_capacity(SOCKETS);
        for _ in 0..SOCKETS {
            let (_tx, rx) = io.new_dummy_sock("/", ()).await;
            queues.push(rx);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Rooms joined through the gateway's reference counts, as in production.
        let (backplane, _inbound) = MemoryBackplane::new();
        let membership = Membership::new(Arc::new(backplane));
        for s in io.sockets() {
            membership.join(&s, "project_one").await.unwrap();
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
        Fixture {
            io,
            membership,
            queues,
            message: wire::encode("emitter", &b),
        }
    })
}

fn drain(f: &mut Fixture) {
    for q in &mut f.queues {
        while q.try_recv().is_ok() {}
    }
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
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let env = wire::decode(&f.message).unwrap();
                rt.block_on(deliver_broadcast_counted(
                    &f.io,
                    env.broadcast,
                    &f.membership,
                ));
                total += start.elapsed();
                drain(&mut f);
            }
            total
        })
    });
    g.bench_function("decode_encode_per_recipient", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let env = wire::decode(&f.message).unwrap();
                for s in f.io.to("project_one").sockets() {
                    let _ = s.emit(&env.broadcast.event, &env.broadcast.args);
                }
                total += start.elapsed();
                drain(&mut f);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
