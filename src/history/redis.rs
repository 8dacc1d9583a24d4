//! The Redis side of history: the read script (epoch, head and the entries after a
//! position, one atomic step). The publish script is `crate::backplane::stream`'s.

use std::sync::LazyLock;

use ::redis::{Script, Value};
use futures_util::{FutureExt, future::BoxFuture};

use super::{
    History, HistoryConfig, HistoryError, Offset, Outcome, Position, Recovery, judge, keys,
};
use crate::backplane::{
    room_channel,
    store::Store,
    stream::{new_epoch, text},
};

/// KEYS: stream, meta. ARGV: the offset to read after (empty: none), max entries, the epoch
/// to start if the room has none, the meta's lifetime (ms). Returns `{epoch, head, entries}`.
const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[2], 'e', epoch, 'n', 0, 'ms', 0, 'id', '0-0')
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local head = redis.call('HGET', KEYS[2], 'id') or '0-0'
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
end
return {epoch, head, entries}
"#;

static READ_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(READ));

/// One XRANGE entry: `[id, [field, value, ...]]` with the message under `m`.
fn entry(v: &Value) -> Option<(Offset, Vec<u8>)> {
    let Value::Array(e) = v else { return None };
    let [id, Value::Array(fields)] = e.as_slice() else {
        return None;
    };
    let offset = text(id)?.parse().ok()?;
    let mut it = fields.iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if text(k).as_deref() == Some("m")
            && let Value::BulkString(b) = v
        {
            return Some((offset, b.clone()));
        }
    }
    None
}

/// Room history in Redis, read by the gateway when a client rejoins.
pub struct RedisHistory {
    store: Store,
    cfg: HistoryConfig,
}

impl RedisHistory {
    /// History of the fleet in `store` (one Redis or a cluster: a room's keys share a
    /// slot), bounded as `cfg` says.
    pub fn new(store: Store, cfg: HistoryConfig) -> Self {
        Self { store, cfg }
    }
}

impl History for RedisHistory {
    fn read(
        &self,
        room: &str,
        since: Option<Position>,
    ) -> BoxFuture<'static, Result<Recovery, HistoryError>> {
        let conn = self.store.conn();
        let cfg = self.cfg;
        let channel = room_channel(room);
        async move {
            let mut conn = conn.await?;
            let after = since
                .as_ref()
                .map(|p| p.offset.to_string())
                .unwrap_or_default();
            let reply: Value = READ_SCRIPT
                .key(keys::key_for("stream", &channel))
                .key(keys::key_for("meta", &channel))
                .arg(after)
                .arg(cfg.size)
                .arg(new_epoch())
                .arg(cfg.epoch_ttl_ms())
                .invoke_async(&mut conn)
                .await?;
            let Value::Array(parts) = reply else {
                return Err(HistoryError::Reply("read: not an array"));
            };
            let [epoch, head, Value::Array(entries)] = parts.as_slice() else {
                return Err(HistoryError::Reply("read: shape"));
            };
            let epoch = text(epoch).ok_or(HistoryError::Reply("read: epoch"))?;
            let head: Offset = text(head)
                .and_then(|s| s.parse().ok())
                .ok_or(HistoryError::Reply("read: head"))?;
            let outcome = match &since {
                None => Outcome::Fresh,
                Some(since) => {
                    let entries = entries
                        .iter()
                        .map(entry)
                        .collect::<Option<Vec<_>>>()
                        .ok_or(HistoryError::Reply("read: entry"))?;
                    judge(since, &epoch, head, entries)
                }
            };
            Ok(Recovery {
                head: Position {
                    epoch,
                    offset: head,
                },
                outcome,
            })
        }
        .boxed()
    }
}
