//! The wire codec alone: decode and encode one emitter message (a 34-byte-class update to
//! one room), the per-message work a replica does before fan-out.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wsgate::backplane::{Args, Broadcast, wire};

fn update() -> Broadcast {
    Broadcast {
        event: "chat".into(),
        args: Args(vec![wire::from_json(
            &serde_json::json!({"id": 42, "text": "hello, project"}),
        )]),
        rooms: vec!["project_one".into()],
        except: vec![],
        volatile: false,
        sent_at: None,
        position: None,
        order: None,
    }
}

fn codec(c: &mut Criterion) {
    let b = update();
    let bytes = wire::encode("emitter", &b);
    c.bench_function("wire_decode", |x| {
        x.iter(|| wire::decode(black_box(&bytes)))
    });
    c.bench_function("wire_encode", |x| {
        x.iter(|| wire::encode("emitter", black_box(&b)))
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
