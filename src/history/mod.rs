//! Room history: the updates of each room kept in a Redis Stream, so a client that was away
//! (network blip, drained or killed replica) can be given back what it missed.
//!
//! The streams are written by the publishers (`crate::backplane::stream`: one script
//! XADDs the message and PUBLISHes the same bytes, with its position in `opts.flags`);
//! this module reads them and judges what a client at a given position gets back.
//!
//! The gateway never speaks Redis: it asks a [`History`] (`redis::RedisHistory`, or
//! [`Unavailable`] without Redis) and gets a [`Recovery`].

pub mod redis;
pub mod session;

use futures_util::{FutureExt, future::BoxFuture};

pub use crate::backplane::{
    Broadcast,
    position::{EPOCH_FLAG, MAX_EPOCH, OFFSET_FLAG, Offset, Position},
    stream::{EPOCH_GRACE, HistoryConfig, keys},
};

/// Why a client's missed updates cannot be given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Some of them were trimmed (older or more than the history keeps).
    Trimmed,
    /// The history is not the one the client's position belongs to (Redis lost it).
    EpochChanged,
    /// No history here (Redis unreachable, history off on this replica).
    Unavailable,
}

impl Reason {
    /// The word clients see in `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Trimmed => "trimmed",
            Reason::EpochChanged => "epoch_changed",
            Reason::Unavailable => "unavailable",
        }
    }
}

/// What a read of a room's history found.
#[derive(Debug)]
pub enum Outcome {
    /// No position was asked about: only the head is known.
    Fresh,
    /// Every update after the client's position, in order (maybe none).
    Recovered(Vec<Broadcast>),
    /// The missed updates are not all there.
    Lost(Reason),
}

/// A room's head and what the client missed.
#[derive(Debug)]
pub struct Recovery {
    /// The room's last position at the time of the read: every later update is live.
    pub head: Position,
    /// What happened to `since`.
    pub outcome: Outcome,
}

/// Why a history read failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// No history on this replica.
    #[error("history is off")]
    Off,
    /// Redis refused or was unreachable.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// No connection could be taken from the pool.
    #[error("redis pool: {0}")]
    Pool(#[from] crate::backplane::pool::PoolError),
    /// No connection to the fleet's Redis (pool or cluster).
    #[error("{0}")]
    Backplane(#[from] crate::backplane::BackplaneError),
    /// The script answered something unexpected.
    #[error("unexpected reply: {0}")]
    Reply(&'static str),
}

/// A room's history, as the gateway sees it.
pub trait History: Send + Sync + 'static {
    /// The head of `room` and, with `since`, every update after it. Reads are atomic with
    /// publishes: nothing is published between the head and the entries read.
    fn read(
        &self,
        room: &str,
        since: Option<Position>,
    ) -> BoxFuture<'static, Result<Recovery, HistoryError>>;
}

/// No history (the in-process backplane, or history off): every read says so.
#[derive(Debug, Default)]
pub struct Unavailable;

impl History for Unavailable {
    fn read(
        &self,
        _room: &str,
        _since: Option<Position>,
    ) -> BoxFuture<'static, Result<Recovery, HistoryError>> {
        async { Err(HistoryError::Off) }.boxed()
    }
}

/// Decide what a client at `since` gets, from an atomic read: the room's `epoch` and
/// `head`, and the entries after `since` (at most the history size, raw messages).
pub fn judge(
    since: &Position,
    epoch: &str,
    head: Offset,
    entries: Vec<(Offset, Vec<u8>)>,
) -> Outcome {
    if since.epoch != epoch
        || since.offset.seq > head.seq
        || (since.offset.seq == head.seq && since.offset != head)
    {
        return Outcome::Lost(Reason::EpochChanged);
    }
    let missed = head.seq - since.offset.seq;
    if entries.len() as u64 != missed {
        return Outcome::Lost(Reason::Trimmed);
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, (offset, bytes)) in entries.into_iter().enumerate() {
        if offset.seq != since.offset.seq + 1 + i as u64 {
            return Outcome::Lost(Reason::Trimmed);
        }
        match decode_entry(&bytes) {
            Some(b) if b.position.as_ref().map(|p| p.offset) == Some(offset) => out.push(b),
            // Not a message this history wrote: do not guess.
            _ => return Outcome::Lost(Reason::Unavailable),
        }
    }
    Outcome::Recovered(out)
}

/// A stream entry's message: the emitter's format on one Redis, the sharded adapter's on a
/// cluster.
pub(crate) fn decode_entry(bytes: &[u8]) -> Option<Broadcast> {
    use crate::backplane::sharded_wire::{self, Message};
    if let Ok(env) = crate::backplane::wire::decode(bytes) {
        return Some(env.broadcast);
    }
    match sharded_wire::decode(bytes) {
        Ok(Message::Broadcast { broadcast, .. }) => Some(broadcast),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(epoch: &str, ms: u64, seq: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset: Offset { ms, seq },
        }
    }

    fn entry(seq: u64) -> (Offset, Vec<u8>) {
        let offset = Offset { ms: 100 + seq, seq };
        let b = Broadcast {
            event: "u".into(),
            rooms: vec!["r".into()],
            position: Some(Position {
                epoch: "e".into(),
                offset,
            }),
            ..Broadcast::default()
        };
        (offset, crate::backplane::wire::encode("emitter", &b))
    }

    #[test]
    fn judge_gives_back_exactly_what_was_missed() {
        let head = Offset { ms: 103, seq: 3 };
        let got = judge(&pos("e", 101, 1), "e", head, vec![entry(2), entry(3)]);
        let Outcome::Recovered(b) = got else {
            panic!("{got:?}")
        };
        let seqs: Vec<u64> = b
            .iter()
            .map(|b| b.position.as_ref().unwrap().offset.seq)
            .collect();
        assert_eq!(seqs, [2, 3]);
        assert!(matches!(
            judge(&pos("e", 103, 3), "e", head, vec![]),
            Outcome::Recovered(v) if v.is_empty()
        ));
    }

    #[test]
    fn cluster_entries_in_the_sharded_format_are_replayed_too() {
        // What the cluster history script stores: the sharded adapter's message.
        let (offset, classic) = entry(2);
        let b = crate::backplane::wire::decode(&classic).unwrap().broadcast;
        let mut sharded = crate::backplane::sharded_wire::encode_open("emitter", &b);
        let offset_text = offset.to_string();
        for v in ["wsgateEpoch", "e", "wsgateOffset", &offset_text] {
            rmpv::encode::write_value(&mut sharded, &rmpv::Value::from(v)).unwrap();
        }
        for v in ["wsgateOrder", "7", "wsgateShard", "0a1b2c3d"] {
            rmpv::encode::write_value(&mut sharded, &rmpv::Value::from(v)).unwrap();
        }
        let mut b = b;
        b.order = Some(crate::backplane::position::Order {
            shard: 0x0a1b_2c3d,
            at: 7,
        });
        let got = judge(
            &pos("e", 101, 1),
            "e",
            Offset { ms: 102, seq: 2 },
            vec![(offset, sharded)],
        );
        assert!(
            matches!(&got, Outcome::Recovered(v) if *v == [b]),
            "{got:?}"
        );
        assert!(decode_entry(b"not a message").is_none());
    }

    #[test]
    fn judge_refuses_what_it_cannot_prove() {
        let head = Offset { ms: 103, seq: 3 };
        let lost = |since, entries| match judge(&since, "e", head, entries) {
            Outcome::Lost(r) => r,
            o => panic!("{o:?}"),
        };
        assert_eq!(
            lost(pos("x", 101, 1), vec![entry(2), entry(3)]),
            Reason::EpochChanged
        );
        assert_eq!(lost(pos("e", 104, 4), vec![]), Reason::EpochChanged);
        assert_eq!(lost(pos("e", 99, 3), vec![]), Reason::EpochChanged);
        assert_eq!(
            lost(pos("e", 100, 0), vec![entry(2), entry(3)]),
            Reason::Trimmed
        );
        assert_eq!(lost(pos("e", 101, 1), vec![entry(3)]), Reason::Trimmed);
        assert_eq!(
            lost(pos("e", 101, 1), vec![entry(3), entry(2)]),
            Reason::Trimmed
        );
    }
}
