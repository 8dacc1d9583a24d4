//! A socket in several of the targeted rooms must be selected only once.

use std::time::Duration;

use engineioxide::Packet;
use socketioxide::{SocketIo, extract::SocketRef};
use tokio::sync::mpsc;

const TIMEOUT: Duration = Duration::from_millis(100);

#[tokio::test]
async fn emit_to_overlapping_rooms_is_received_once() {
    let (_svc, io) = SocketIo::new_svc();
    io.ns("/", async |s: SocketRef| s.join(["room1", "room2"]));
    let (_stx, mut srx) = io.new_dummy_sock("/", ()).await;
    assert!(matches!(srx.recv().await, Some(Packet::Message(_)))); // connect packet

    io.to(["room1", "room2"]).emit("event", &1).await.unwrap();

    let msg = tokio::time::timeout(TIMEOUT, srx.recv()).await.unwrap();
    assert!(matches!(msg, Some(Packet::Message(m)) if m.contains("event")));
    tokio::time::timeout(TIMEOUT, srx.recv())
        .await
        .expect_err("the event should be received once");
}

#[tokio::test]
async fn sockets_of_overlapping_rooms_are_listed_once() {
    let (_svc, io) = SocketIo::new_svc();
    io.ns("/", async |s: SocketRef| s.join(["room1", "room2"]));
    let (_stx, _srx) = io.new_dummy_sock("/", ()).await;

    assert_eq!(io.to(["room1", "room2"]).sockets().len(), 1);
}

/// The ack stream expects as many acks as selected sockets: it would wait for a second one.
#[tokio::test]
async fn emit_with_ack_to_overlapping_rooms_expects_one_ack() {
    let (_svc, io) = SocketIo::new_svc();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    io.ns("/", async move |s: SocketRef| {
        s.join(["room1", "room2"]);
        tx.try_send(()).unwrap();
    });
    let (_stx, _srx) = io.new_dummy_sock("/", ()).await;
    rx.recv().await.unwrap();

    let stream = io
        .to(["room1", "room2"])
        .timeout(TIMEOUT)
        .emit_with_ack::<_, ()>("event", &1)
        .await
        .unwrap();
    use futures_util::StreamExt;
    let results: Vec<_> = stream.collect().await;
    assert_eq!(results.len(), 1);
}

/// wsgate hunk 8: `adapter::report::report_full` names the sockets a broadcast found full
/// and skips the ones it is told to, on the local adapter's shared path.
mod report_full {
    use engineioxide::Packet;
    use socketioxide::{SocketIo, adapter::report::report_full, extract::SocketRef};
    use std::{
        collections::HashSet,
        future::Future,
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use socketioxide_core::Sid;

    /// The socket id in a dummy socket's CONNECT packet (`0{"sid":"..."}`).
    fn sid_of(connect: Packet) -> Sid {
        let Packet::Message(msg) = connect else {
            panic!("not a CONNECT: {connect:?}");
        };
        let json: serde_json::Value = serde_json::from_str(&msg[1..]).unwrap();
        json["sid"].as_str().unwrap().parse().unwrap()
    }

    /// Whether a message packet comes within the module's timeout.
    async fn message(rx: &mut tokio::sync::mpsc::Receiver<Packet>) -> bool {
        matches!(
            tokio::time::timeout(super::TIMEOUT, rx.recv()).await,
            Ok(Some(Packet::Message(_)))
        )
    }

    /// Poll a broadcast once: the local adapter sends during that poll.
    fn now<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("a local broadcast is ready at once"),
        }
    }

    #[tokio::test]
    async fn report_full_names_full_sockets_and_skips() {
        let (_svc, io) = SocketIo::builder().max_buffer_size(2).build_svc();
        io.ns("/", async |_: SocketRef| {});
        let (_atx, mut arx) = io.new_dummy_sock("/", ()).await;
        let (_btx, mut brx) = io.new_dummy_sock("/", ()).await;
        let (_ctx, mut crx) = io.new_dummy_sock("/", ()).await;
        let a = sid_of(arx.recv().await.unwrap());
        let b = sid_of(brx.recv().await.unwrap());
        let c = sid_of(crx.recv().await.unwrap());

        // Without a broadcast nothing is recorded.
        let ((), full) = report_full(HashSet::new(), || {});
        assert!(full.is_empty());

        // Two fit in each queue (nobody reads meanwhile); the third and fourth find a and c
        // full. b is skipped.
        let (results, mut full) = report_full(HashSet::from([b]), || {
            (0..4).map(|i| now(io.emit("x", &i))).collect::<Vec<_>>()
        });
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        assert!(results[2].is_err() && results[3].is_err(), "{results:?}");
        full.sort();
        let mut want = vec![a, a, c, c];
        want.sort();
        assert_eq!(full, want, "a and c, once per broadcast they missed; never b");
        assert!(brx.try_recv().is_err(), "b was skipped");

        // Once the queues drained (the dummy sockets' forwarders run while c reads), a
        // broadcast outside the skip reaches b and names nobody.
        assert!(message(&mut crx).await && message(&mut crx).await, "c got two");
        let (result, full) = report_full(HashSet::new(), || now(io.emit("y", &0)));
        assert!(result.is_ok(), "{result:?}");
        assert!(full.is_empty(), "{full:?}");
        assert!(message(&mut brx).await, "b gets broadcasts again");
    }
}
