//! The hot path, backplane message -> socket queues: decode one msgpack message, encode the
//! Socket.IO packet once, queue it on 1,000 sockets. Compared with encoding per recipient
//! (what a naive loop of `socket.emit` does) to show what "encode once" is worth; with
//! socketioxide's own local adapter (the same shared bytes, but a full queue not reported by
//! socket) to show what naming full sockets costs wsgate's adapter; and with a
//! history position when half the sockets opted in to recovery (two encodes: one per group).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Fixture, drain};
use criterion::{Criterion, criterion_group, criterion_main};
use wsgate::{backplane::wire, gateway::deliver_broadcast_counted};

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
    let mut f = rt.block_on(common::build());
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
