//! Room history against a real `redis-server` (private port): the publish script's bytes,
//! keys and positions, and what a read gives a client at a position (docs/history.md).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::{redis::RedisServer, run_bounded};
use wsgate::{
    backplane::{Args, Broadcast, connect::Connector, pool::pool, store::Store, wire},
    history::{History, HistoryConfig, Outcome, Position, Reason, keys, redis::RedisHistory},
    publish::Publisher,
};

const LIMIT: Duration = Duration::from_secs(60);

fn update(room: &str, n: u64) -> Broadcast {
    Broadcast {
        event: "update".into(),
        args: Args(vec![wire::from_json(&serde_json::json!({ "n": n }))]),
        rooms: vec![room.into()],
        ..Broadcast::default()
    }
}

/// Publish `n` updates to `room` and return the raw messages a subscriber received.
async fn publish_and_capture(
    redis: &RedisServer,
    publisher: &Publisher,
    room: &str,
    n: u64,
) -> Vec<Vec<u8>> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    let channel = format!("socket.io#/#{room}#");
    pubsub.subscribe(&channel).await.unwrap();
    for i in 1..=n {
        publisher.publish(&update(room, i)).await.unwrap();
    }
    let mut stream = pubsub.on_message();
    let mut out = Vec::new();
    while out.len() < n as usize {
        let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("message")
            .expect("stream open");
        out.push(msg.get_payload_bytes().to_vec());
    }
    out
}

fn cfg(size: u64) -> Option<HistoryConfig> {
    HistoryConfig::enabled(size, Duration::from_secs(600))
}

#[tokio::test]
async fn history_off_publishes_the_emitter_bytes_and_writes_no_key() {
    run_bounded(LIMIT, async {
        let redis = RedisServer::start().await;
        let publisher = Publisher::new(&redis.url()).unwrap();
        let got = publish_and_capture(&redis, &publisher, "p", 2).await;
        assert_eq!(got[0], wire::encode("emitter", &update("p", 1)));
        assert_eq!(
            redis.command(&["DBSIZE"]).await,
            support::redis::Resp::Int(0)
        );
    })
    .await;
}

#[tokio::test]
async fn history_publish_is_xadd_then_publish_of_the_same_positioned_bytes() {
    run_bounded(LIMIT, async {
        let redis = RedisServer::start().await;
        let publisher = Publisher::new(&redis.url())
            .unwrap()
            .with_history(cfg(1000))
            .unwrap();
        let got = publish_and_capture(&redis, &publisher, "p", 3).await;
        let decoded: Vec<Broadcast> = got
            .iter()
            .map(|m| wire::decode(m).unwrap().broadcast)
            .collect();
        let epoch = decoded[0].position.as_ref().unwrap().epoch.clone();
        for (i, b) in decoded.iter().enumerate() {
            let p = b.position.as_ref().unwrap();
            assert_eq!(p.epoch, epoch);
            assert_eq!(p.offset.seq, i as u64 + 1);
            let order = b.order.expect("a fleet order");
            if i > 0 {
                assert!(
                    order.at > decoded[i - 1].order.unwrap().at,
                    "orders increase"
                );
            }
            let mut plain = b.clone();
            plain.position = None;
            plain.order = None;
            assert_eq!(
                plain,
                update("p", i as u64 + 1),
                "the update itself is unchanged"
            );
        }
        let stream = keys::key_for("stream", "socket.io#/#p#");
        assert_eq!(stream, "wsgate:stream:{socket.io#/#p#}");
        let entries = redis.command(&["XRANGE", &stream, "-", "+"]).await;
        let support::redis::Resp::Array(Some(entries)) = entries else {
            panic!("{entries:?}")
        };
        assert_eq!(entries.len(), 3);
        for (entry, published) in entries.iter().zip(&got) {
            let support::redis::Resp::Array(Some(parts)) = entry else {
                panic!()
            };
            let support::redis::Resp::Array(Some(fields)) = &parts[1] else {
                panic!()
            };
            assert_eq!(
                fields[1],
                support::redis::Resp::Bulk(Some(published.clone())),
                "stored == published"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn reads_give_back_exactly_the_missed_updates_or_say_why_not() {
    run_bounded(LIMIT, async {
        let redis = RedisServer::start().await;
        let history = RedisHistory::new(
            Store::Single(
                pool(
                    Connector::new(&redis.url(), &Default::default()).unwrap(),
                    2,
                    Duration::from_secs(5),
                )
                .unwrap(),
            ),
            cfg(3).unwrap(),
        );
        // A first join makes the epoch; the publisher then writes under it.
        let fresh = history.read("p", None).await.unwrap();
        assert!(matches!(fresh.outcome, Outcome::Fresh));
        assert_eq!(fresh.head.offset.seq, 0);
        let publisher = Publisher::new(&redis.url())
            .unwrap()
            .with_history(cfg(3))
            .unwrap();
        for i in 1..=5 {
            publisher.publish(&update("p", i)).await.unwrap();
        }
        let head = history.read("p", None).await.unwrap().head;
        assert_eq!(head.epoch, fresh.head.epoch);
        assert_eq!(head.offset.seq, 5);

        // At 3 of 5 with 3 kept: 4 and 5 come back, in order.
        let at = |seq: u64, epoch: &str| Position {
            epoch: epoch.into(),
            offset: wsgate::history::Offset { ms: 0, seq },
        };
        let stream = keys::key_for("stream", "socket.io#/#p#");
        let ids = redis.command(&["XRANGE", &stream, "-", "+"]).await;
        let support::redis::Resp::Array(Some(ids)) = ids else {
            panic!()
        };
        let id_of = |i: usize| -> wsgate::history::Offset {
            let support::redis::Resp::Array(Some(parts)) = &ids[i] else {
                panic!()
            };
            let support::redis::Resp::Bulk(Some(id)) = &parts[0] else {
                panic!()
            };
            String::from_utf8(id.clone()).unwrap().parse().unwrap()
        };
        assert_eq!(ids.len(), 3, "trimmed to --history-size");
        let since = Position {
            epoch: head.epoch.clone(),
            offset: id_of(0),
        };
        let r = history.read("p", Some(since)).await.unwrap();
        let Outcome::Recovered(got) = r.outcome else {
            panic!("{:?}", r.outcome)
        };
        let seqs: Vec<u64> = got
            .iter()
            .map(|b| b.position.as_ref().unwrap().offset.seq)
            .collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(got[0].args, update("p", 4).args);

        // At the head: nothing missed.
        let r = history.read("p", Some(head.clone())).await.unwrap();
        assert!(matches!(r.outcome, Outcome::Recovered(v) if v.is_empty()));
        // At 1 of 5 with 3 kept: 2 is gone.
        let r = history.read("p", Some(at(1, &head.epoch))).await.unwrap();
        assert!(
            matches!(r.outcome, Outcome::Lost(Reason::Trimmed)),
            "{:?}",
            r.outcome
        );
        // Another epoch (Redis lost the data): never a replay.
        let r = history.read("p", Some(at(1, "other"))).await.unwrap();
        assert!(
            matches!(r.outcome, Outcome::Lost(Reason::EpochChanged)),
            "{:?}",
            r.outcome
        );
    })
    .await;
}
