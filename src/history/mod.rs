//! Room history: the updates of each room kept in a Redis Stream, so a client that was away
//! (network blip, drained or killed replica) can be given back what it missed.
//!
//! Publishing with history runs one Lua script (`redis.rs`): XADD the message to the
//! room's stream, then PUBLISH the very same bytes on the room's channel. The message
//! carries its position in `opts.flags` (`wsgateEpoch`, `wsgateOffset`), which Node
//! servers ignore. An offset is the stream entry id `<ms>-<n>` where `n` counts the room's
//! updates one by one, so a gap is visible from the offsets alone. The epoch names the
//! stream's incarnation: a Redis that lost its data starts a new one, and no client is
//! replayed a history that is not its own.
//!
//! The gateway never speaks Redis: it asks a [`History`] (`redis::RedisHistory`, or
//! [`Unavailable`] without Redis) and gets a [`Recovery`].

pub mod keys;
pub mod redis;

use std::{fmt, str::FromStr, time::Duration};

use futures_util::{FutureExt, future::BoxFuture};

use crate::backplane::Broadcast;

/// Flag key of the stream's epoch in `opts.flags`.
pub const EPOCH_FLAG: &str = "wsgateEpoch";
/// Flag key of the update's offset in `opts.flags`.
pub const OFFSET_FLAG: &str = "wsgateOffset";
/// Longest epoch accepted from a client (ours are 16 hex digits).
pub const MAX_EPOCH: usize = 64;
/// How much longer than the stream a room's epoch is kept after its last update: a client
/// coming back to a room that went quiet learns it missed nothing instead of a new epoch.
pub const EPOCH_GRACE: Duration = Duration::from_secs(24 * 3600);

/// How much history each room keeps. History is on when `size > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most entries kept per room.
    pub size: u64,
    /// Entries older than this (at the time of a later publish) are trimmed; a room with
    /// no publish for this long loses its stream.
    pub ttl: Duration,
}

impl HistoryConfig {
    /// `Some` when `size` turns history on.
    pub fn enabled(size: u64, ttl: Duration) -> Option<Self> {
        (size > 0).then_some(Self { size, ttl })
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn epoch_ttl_ms(&self) -> u64 {
        self.ttl_ms().saturating_add(EPOCH_GRACE.as_millis() as u64)
    }
}

/// A stream entry id `<ms>-<n>`: `n` is the room's update count, one more per update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offset {
    /// Milliseconds part (Redis time at the publish, never decreasing).
    pub ms: u64,
    /// The update's number in its room, from 1.
    pub seq: u64,
}

impl Offset {
    /// The offset before any update.
    pub const ZERO: Offset = Offset { ms: 0, seq: 0 };
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for Offset {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(());
        }
        Ok(Offset {
            ms: ms.parse().map_err(drop)?,
            seq: seq.parse().map_err(drop)?,
        })
    }
}

/// Where an update sits in its room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The stream's incarnation.
    pub epoch: String,
    /// The entry.
    pub offset: Offset,
}

impl Position {
    /// `{epoch, offset}` as JSON, for join answers.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"epoch": self.epoch, "offset": self.offset.to_string()})
    }
}

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
    Pool(#[from] deadpool_redis::PoolError),
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
        match crate::backplane::wire::decode(&bytes) {
            Ok(env) if env.broadcast.position.as_ref().map(|p| p.offset) == Some(offset) => {
                out.push(env.broadcast)
            }
            // Not a message this history wrote: do not guess.
            _ => return Outcome::Lost(Reason::Unavailable),
        }
    }
    Outcome::Recovered(out)
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
    fn offsets_parse_strictly() {
        assert_eq!("12-3".parse(), Ok(Offset { ms: 12, seq: 3 }));
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1-+2",
            "1 -2",
            "99999999999999999999999-1",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad}");
        }
        assert_eq!(Offset { ms: 5, seq: 9 }.to_string(), "5-9");
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

    #[test]
    fn config_off_at_zero() {
        assert_eq!(HistoryConfig::enabled(0, Duration::from_secs(1)), None);
        assert!(HistoryConfig::enabled(1, Duration::from_secs(1)).is_some());
    }
}
