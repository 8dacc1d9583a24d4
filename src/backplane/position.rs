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
}
