//! The fan-out fixture shared by `benches/fanout.rs` (Criterion timings) and
//! `examples/fanout_profile.rs` (callgrind instruction counts): 1,000 dummy sockets in one
//! room through wsgate's adapter and the gateway's reference counts (half of them opted in
//! to recovery), and the same room on socketioxide's default adapter.

use std::{sync::Arc, time::Duration};

use socketioxide::{SocketIo, adapter::Adapter as SioAdapter, extract::SocketRef};
use wsgate::{
    backplane::{Args, Broadcast, memory::MemoryBackplane, wire},
    gateway::{Adapter, Io, Membership, Overflow},
};

/// Sockets in the room.
pub const SOCKETS: usize = 1_000;

/// The queues of the dummy sockets (what their transports would write).
pub type Queues = Vec<tokio::sync::mpsc::Receiver<engineioxide::Packet>>;

/// Both servers, their sockets' queues and the messages to deliver.
pub struct Fixture {
    /// wsgate's Socket.IO server (full sockets reported by id).
    pub io: Io,
    /// The gateway's room reference counts for `io`.
    pub membership: Membership,
    /// The same room on socketioxide's default adapter.
    pub shared: SocketIo,
    /// Every dummy socket's queue.
    pub queues: Queues,
    /// A 34-byte `chat` update to the room, as the emitter encodes it.
    pub message: Vec<u8>,
    /// The same update with a history position.
    pub positioned: Vec<u8>,
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

/// Build the fixture (inside a Tokio runtime).
pub async fn build() -> Fixture {
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
    let mut b = update();
    let message = build_message();
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
}

/// The 34-byte `chat` update to `project_one`, as the emitter encodes it.
#[allow(dead_code)] // not every user of this module needs it
pub fn build_message() -> Vec<u8> {
    wire::encode("emitter", &update())
}

fn update() -> Broadcast {
    Broadcast {
        event: "chat".into(),
        args: Args(vec![wire::from_json(
            &serde_json::json!({"id": 1, "text": "hello, project"}),
        )]),
        rooms: vec!["project_one".into()],
        except: vec![],
        volatile: false,
        sent_at: None,
        position: None,
        order: None,
    }
}

/// Empty every socket's queue (the transports' side, not part of what is measured).
pub fn drain(f: &mut Fixture) {
    for q in &mut f.queues {
        while q.try_recv().is_ok() {}
    }
}
