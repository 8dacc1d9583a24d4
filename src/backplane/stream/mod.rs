//! A room's stream: the updates of one room kept in Redis (XADD) by the same script that
//! publishes them (PUBLISH), so every positioned update is both in the stream and on the
//! channel, or neither. This side writes; `crate::history` reads.
//!
//! An offset is the stream entry id `<ms>-<n>` where `n` counts the room's updates one by
//! one, so a gap is visible from the offsets alone. The epoch names the stream's
//! incarnation: a Redis that lost its data starts a new one, and no client is replayed a
//! history that is not its own.

pub mod keys;

use std::{sync::LazyLock, time::Duration};

use ::redis::{Script, Value};

use super::{BackplaneError, position::Position};

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

    pub(crate) fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn epoch_ttl_ms(&self) -> u64 {
        self.ttl_ms().saturating_add(EPOCH_GRACE.as_millis() as u64)
    }
}

/// KEYS: stream, meta. ARGV: channel, the message without its last flags (the flags map
/// is the last value and its header already counts them), max entries, max age (ms), the
/// epoch to start if the room has none, the meta's lifetime (ms), and `cluster` on a Redis
/// Cluster (else empty). Returns `{receivers, epoch, offset, order}`.
///
/// The order `g` is Redis time in microseconds, raised above the room's last one (`lg`)
/// if the clock went back. Scripts run one at a time and each takes more than a
/// microsecond, so across every room of one Redis `g` follows the publish order, which is
/// the order a subscriber receives them in: one number tells every room's position of a
/// client that got everything up to it (stock connection-state recovery,
/// `crate::history::session`). Each entry also keeps the room's previous order (`p`), so a
/// reader can tell a complete tail from a trimmed one.
///
/// On a Redis Cluster each primary has its own clock and a replica one connection per
/// node, so the order holds per node only: the script also writes its node (`wsgateShard`,
/// the node id's first 8 hex digits; the entry's `s`, and `q` the previous entry's), and
/// publishes with `SPUBLISH` (the channel hashes to the keys' slot) in the sharded
/// adapter's format.
const PUBLISH: &str = r#"
local cluster = ARGV[7] == 'cluster'
local m = redis.call('HMGET', KEYS[2], 'e', 'n', 'ms', 'lg', 'ls')
local epoch, seq, last, lg, ls = m[1], 1, 0, tonumber(m[4] or '0'), m[5] or '0'
if epoch then
  seq = tonumber(m[2]) + 1
  last = tonumber(m[3])
else
  epoch = ARGV[5]
end
local t = redis.call('TIME')
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(us / 1000)
if now < last then now = last end
local g = us
if g <= lg then g = lg + 1 end
local gs = string.format('%d', g)
local id = string.format('%d-%d', now, seq)
local msg, shard, publish = nil, '0', 'PUBLISH'
if cluster then
  shard = string.sub(redis.call('CLUSTER', 'MYID'), 1, 8)
  publish = 'SPUBLISH'
  msg = ARGV[2] .. cmsgpack.pack('wsgateEpoch', epoch, 'wsgateOffset', id, 'wsgateOrder', gs, 'wsgateShard', shard)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], id, 'm', msg, 'g', gs, 'p', string.format('%d', lg), 's', shard, 'q', ls)
else
  msg = ARGV[2] .. cmsgpack.pack('wsgateEpoch', epoch, 'wsgateOffset', id, 'wsgateOrder', gs)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], id, 'm', msg, 'g', gs, 'p', string.format('%d', lg))
end
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', now - tonumber(ARGV[4])))
redis.call('HSET', KEYS[2], 'e', epoch, 'n', string.format('%d', seq), 'ms', string.format('%d', now), 'id', id, 'lg', gs, 'ls', shard)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {redis.call(publish, ARGV[1], msg), epoch, id, gs}
"#;

static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH));

/// A new random epoch (only used when the room has none yet).
pub(crate) fn new_epoch() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..16].to_owned()
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Run the publish script for `channel` with `prefix` (see [`super::wire::encode_open`],
/// or [`super::sharded_wire::encode_open`] with `cluster`). Returns how many subscribers
/// received it and its position.
pub async fn publish(
    conn: &mut impl ::redis::aio::ConnectionLike,
    cfg: &HistoryConfig,
    channel: &str,
    prefix: &[u8],
    cluster: bool,
) -> Result<(u64, Position), BackplaneError> {
    let reply: Value = PUBLISH_SCRIPT
        .key(keys::key_for("stream", channel))
        .key(keys::key_for("meta", channel))
        .arg(channel)
        .arg(prefix)
        .arg(cfg.size)
        .arg(cfg.ttl_ms())
        .arg(new_epoch())
        .arg(cfg.epoch_ttl_ms())
        .arg(if cluster { "cluster" } else { "" })
        .invoke_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Err(BackplaneError::Reply("publish: not an array"));
    };
    match parts.as_slice() {
        [Value::Int(n), epoch, id, _order] => {
            let epoch = text(epoch).ok_or(BackplaneError::Reply("publish: epoch"))?;
            let offset = text(id)
                .and_then(|s| s.parse().ok())
                .ok_or(BackplaneError::Reply("publish: offset"))?;
            Ok((u64::try_from(*n).unwrap_or(0), Position { epoch, offset }))
        }
        _ => Err(BackplaneError::Reply("publish: shape")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_off_at_zero() {
        assert_eq!(HistoryConfig::enabled(0, Duration::from_secs(1)), None);
        assert!(HistoryConfig::enabled(1, Duration::from_secs(1)).is_some());
    }
}
