//! Where an update sits in its room's history: a field of the wire message
//! (`opts.flags.wsgateEpoch` / `wsgateOffset`), read by the codecs and written by the
//! history publish script. Node servers ignore the flags.

use std::{fmt, str::FromStr};

/// Flag key of the stream's epoch in `opts.flags`.
pub const EPOCH_FLAG: &str = "wsgateEpoch";
/// Flag key of the update's offset in `opts.flags`.
pub const OFFSET_FLAG: &str = "wsgateOffset";
/// Flag key of the update's place in the fleet order (`opts.flags.wsgateOrder`, decimal
/// microseconds of Redis time, strictly increasing across every room of one Redis): what
/// stock connection-state recovery gives clients as their offset.
pub const ORDER_FLAG: &str = "wsgateOrder";
/// Flag key of the shard that ordered the update (`opts.flags.wsgateShard`, 8 hex digits of
/// the Redis Cluster node id that ran the publish script). Absent on one Redis: one clock.
pub const SHARD_FLAG: &str = "wsgateShard";
/// Longest epoch accepted from a client (ours are 16 hex digits).
pub const MAX_EPOCH: usize = 64;

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
        Ok(Offset {
            ms: parse_number(ms).ok_or(())?,
            seq: parse_number(seq).ok_or(())?,
        })
    }
}

/// A number as positions and orders are written: 1 to 20 decimal digits and nothing else
/// (no sign, no space), within `u64`. Read from the wire and from clients, so strict.
pub fn parse_number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// An update's place in the fleet order: Redis time in µs (`at`) on the node that published
/// it (`shard`; 0 on one Redis). Orders of one shard follow its publish order; orders of
/// two shards are not comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    /// The shard (a Redis Cluster node id's first 32 bits; 0 on one Redis).
    pub shard: u32,
    /// Redis time in µs, strictly increasing per shard.
    pub at: u64,
}

impl Order {
    /// An order on one Redis (shard 0).
    pub fn single(at: u64) -> Self {
        Order { shard: 0, at }
    }

    /// The order written in `flags`: the order's digits and, on a cluster, the shard's hex.
    pub fn parse(at: &str, shard: Option<&str>) -> Option<Self> {
        let shard = match shard {
            None => 0,
            Some(s) => parse_shard(s)?,
        };
        Some(Order {
            shard,
            at: parse_number(at)?,
        })
    }

    /// The shard as the publish script writes it (8 lowercase hex digits).
    pub fn shard_hex(&self) -> String {
        shard_text(self.shard)
    }
}

/// A shard as the publish script writes it (`wsgateShard`, entry field `s`): 8 lowercase
/// hex digits.
pub fn shard_text(shard: u32) -> String {
    format!("{shard:08x}")
}

/// A shard written by the publish script (8 hex digits), the inverse of [`shard_text`].
pub fn parse_shard(s: &str) -> Option<u32> {
    (s.len() == 8)
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// How far a client (or a replica) got in every shard: the largest order delivered per
/// shard. On one Redis it is one number, written in decimal exactly as before shards
/// existed; on a Redis Cluster it is `c` then `<shard hex>.<order>` per shard, joined by
/// `_` (shards sorted): what a stock client keeps as its offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clock {
    /// `(shard, order)`, sorted by shard, one entry per shard.
    parts: Vec<(u32, u64)>,
}

/// Most shards a client's offset may name (a cluster has far fewer primaries).
pub const MAX_SHARDS: usize = 64;

impl Clock {
    /// The clock of one Redis at `at`.
    pub fn single(at: u64) -> Self {
        Clock {
            parts: vec![(0, at)],
        }
    }

    /// The order reached in `shard` (0 when none).
    pub fn get(&self, shard: u32) -> u64 {
        self.parts
            .binary_search_by_key(&shard, |(s, _)| *s)
            .map_or(0, |i| self.parts[i].1)
    }

    /// Move `o`'s shard up to `o` (never down).
    pub fn advance(&mut self, o: Order) {
        match self.parts.binary_search_by_key(&o.shard, |(s, _)| *s) {
            Ok(i) => self.parts[i].1 = self.parts[i].1.max(o.at),
            Err(i) => self.parts.insert(i, (o.shard, o.at)),
        }
    }

    /// Every shard's order.
    pub fn parts(&self) -> &[(u32, u64)] {
        &self.parts
    }

    /// Whether nothing is known (a cluster replica before its first update).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The offset string a client keeps: decimal on one Redis, `c...` on a cluster.
    pub fn render(&self, cluster: bool) -> String {
        use std::fmt::Write;
        if !cluster {
            return self.get(0).to_string();
        }
        let mut out = String::with_capacity(1 + self.parts.len() * 26);
        out.push('c');
        for (i, (shard, at)) in self.parts.iter().enumerate() {
            let sep = if i == 0 { "" } else { "_" };
            // Writing into a String cannot fail.
            let _ = write!(out, "{sep}{shard:08x}.{at}");
        }
        out
    }

    /// A client's offset, strictly: decimal (one Redis) or `c...` (a cluster); anything
    /// else is not ours.
    pub fn parse(s: &str) -> Option<Self> {
        let Some(rest) = s.strip_prefix('c') else {
            return parse_number(s).map(Clock::single);
        };
        let mut clock = Clock::default();
        if rest.is_empty() {
            return Some(clock);
        }
        for (i, part) in rest.split('_').enumerate() {
            if i >= MAX_SHARDS {
                return None;
            }
            let (shard, at) = part.split_once('.')?;
            let o = Order::parse(at, Some(shard))?;
            if clock.get(o.shard) != 0 {
                return None;
            }
            clock.advance(o);
        }
        Some(clock)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn clocks_round_trip_and_parse_strictly() {
        let mut c = Clock::default();
        assert_eq!(c.render(true), "c");
        c.advance(Order {
            shard: 0xbeef,
            at: 7,
        });
        c.advance(Order { shard: 0x12, at: 9 });
        c.advance(Order {
            shard: 0xbeef,
            at: 5,
        });
        assert_eq!(c.render(true), "c00000012.9_0000beef.7");
        assert_eq!(Clock::parse(&c.render(true)), Some(c.clone()));
        assert_eq!(c.get(0xbeef), 7);
        assert_eq!(c.get(1), 0);
        assert_eq!(Clock::parse("c"), Some(Clock::default()));
        assert_eq!(Clock::parse("42"), Some(Clock::single(42)));
        assert_eq!(Clock::single(42).render(false), "42");
        for bad in [
            "",
            "c_",
            "c1.2",
            "c0000000g.1",
            "c00000001.1_00000001.2",
            "c00000001.",
            "c00000001.-1",
            "You have joined p!",
            "x1",
        ] {
            assert_eq!(Clock::parse(bad), None, "{bad}");
        }
        let many: Vec<String> = (0..=MAX_SHARDS).map(|i| format!("{i:08x}.1")).collect();
        assert_eq!(Clock::parse(&format!("c{}", many.join("_"))), None);
    }
}
