//! Sessions of Socket.IO's stock connection-state recovery (`--connection-state-recovery`),
//! kept in Redis so that they outlive the replica that held them.
//!
//! A session is what a stock client's next CONNECT (`{pid, offset}`) needs to be given
//! back: its user, and each room it joined with the room's fleet order at the join (a
//! client is owed nothing of a room from before it joined). Joins and `leave_project`
//! write it at once, so a replica killed without warning loses nothing of it; while the
//! socket is connected its replica keeps it alive ([`SessionStore::keep`]), and on
//! disconnect it lives `--connection-state-recovery` longer ([`SessionStore::release`]).
//!
//! What the client missed is read from the rooms' streams by fleet order
//! (`opts.flags.wsgateOrder`, see `crate::backplane::stream`): one script reads every
//! room of the session at once, so the heads it reports are one instant of the fleet.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use ::redis::{Script, Value};
use futures_util::{FutureExt, future::BoxFuture};

use super::{Broadcast, HistoryError, Reason, keys};
use crate::backplane::{
    position::{Clock, Order, parse_shard, shard_text},
    room_channel,
    store::{Conn, Store},
    stream::text,
};

/// Longest session id accepted from a client (ours are 32 hex digits).
pub const MAX_PID: usize = 64;

/// Whether `pid` could be one of ours (so a client cannot name arbitrary keys).
pub fn valid_pid(pid: &str) -> bool {
    !pid.is_empty()
        && pid.len() <= MAX_PID
        && pid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new random session id.
pub fn new_pid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user it belongs to: only the same user gets it back.
    pub user: String,
    /// Each room and its fleet order when the socket joined it.
    pub rooms: Vec<(String, u64)>,
}

/// What a client that received everything up to its offset missed in its rooms.
#[derive(Debug)]
pub enum Resume {
    /// Everything is there: `replay` (every room's missed updates, in fleet order; empty
    /// with a check) and each room's last order at the time of the read (`heads`): later
    /// updates are live.
    Complete {
        /// The missed updates, in fleet order (per shard on a cluster).
        replay: Vec<Broadcast>,
        /// Room -> its last order when read.
        heads: HashMap<String, Order>,
    },
    /// Some are gone, or the offset is not this fleet's.
    Lost(Reason),
}

/// Where stock recovery's sessions live.
pub trait SessionStore: Send + Sync + 'static {
    /// The session `pid`, if it is still kept.
    fn load(&self, pid: &str) -> BoxFuture<'static, Result<Option<Session>, HistoryError>>;
    /// Record that `pid` (of `user`) joined `room`; a room it was in already keeps its
    /// first order. Returns the order recorded.
    fn add_room(
        &self,
        pid: &str,
        user: &str,
        room: &str,
    ) -> BoxFuture<'static, Result<u64, HistoryError>>;
    /// Record that `pid` left `room` (`leave_project`, or a room it may no longer see).
    fn remove_room(&self, pid: &str, room: &str) -> BoxFuture<'static, Result<(), HistoryError>>;
    /// Keep the sessions of connected sockets alive.
    fn keep(&self, pids: Vec<String>) -> BoxFuture<'static, Result<(), HistoryError>>;
    /// The socket of `pid` disconnected: keep the session for the recovery window only.
    fn release(&self, pid: &str) -> BoxFuture<'static, Result<(), HistoryError>>;
    /// What a client at `offset` missed in `rooms` (each with its order at the join).
    /// `check`: only whether everything is there (no replay is read).
    fn resume(
        &self,
        offset: Clock,
        rooms: Vec<(String, u64)>,
        check: bool,
    ) -> BoxFuture<'static, Result<Resume, HistoryError>>;
    /// Where a replica starting now stands in the fleet order: on one Redis its time in
    /// µs (every update published so far is at or before it); on a cluster nothing yet
    /// (each shard's order is learnt from its first update). Fails while Redis is away.
    fn start(&self) -> BoxFuture<'static, Result<Clock, HistoryError>>;
    /// Whether offsets are written for a cluster (`c...`) or one Redis (decimal).
    fn is_cluster(&self) -> bool;
    /// How many bytes of Redis memory each room's history takes (`MEMORY USAGE` of its
    /// stream, 0 for a room without one), for the `wsgate_history_room_bytes` histogram.
    fn room_bytes(&self, rooms: Vec<String>) -> BoxFuture<'static, Result<Vec<u64>, HistoryError>>;
}

/// KEYS: session, the room's meta (on one Redis). ARGV: user, room field, lifetime (ms),
/// the room's last order (on a cluster, where the meta is in another slot: read first).
/// Returns the order recorded for the room.
const ADD_ROOM: &str = r#"
local lg = ARGV[4]
if KEYS[2] then lg = redis.call('HGET', KEYS[2], 'lg') or '0' end
redis.call('HSET', KEYS[1], 'u', ARGV[1])
redis.call('HSETNX', KEYS[1], ARGV[2], lg)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGET', KEYS[1], ARGV[2])
"#;

/// KEYS: stream and meta of each room. ARGV: `check` or `read`, how many shards the
/// client's offset names, each shard and its order (`0` on one Redis), then each room's
/// order at the join. Returns `{now, {status, head, head shard, order1, msg1, ...}, ...}`
/// per room, entries oldest first (`msg` empty with `check`). An entry is the client's
/// when its order is at or before the client's order in the entry's shard, or before
/// the join. A room's tail is complete when the walk back reaches such an entry, or one
/// whose previous entry (`p`, in shard `q`) is; running out of entries first means some
/// were trimmed.
const RESUME: &str = r#"
local check = ARGV[1] == 'check'
local shards, at = tonumber(ARGV[2]), {}
for k = 1, shards do at[ARGV[1 + 2 * k]] = tonumber(ARGV[2 + 2 * k]) end
local t = redis.call('TIME')
local out = {string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))}
for i = 1, #KEYS / 2 do
  local stream, meta = KEYS[2 * i - 1], KEYS[2 * i]
  local joined = tonumber(ARGV[2 + 2 * shards + i])
  local function start(shard)
    local a = at[shard or '0'] or 0
    if a > joined then return a end
    return joined
  end
  local h = redis.call('HMGET', meta, 'lg', 'ls')
  local lg, ls = h[1] or '0', h[2] or '0'
  local status, got = 'ok', {}
  if tonumber(lg) > start(ls) then
    status = 'trimmed'
    local hi, done = '+', false
    while not done do
      local batch = redis.call('XREVRANGE', stream, hi, '-', 'COUNT', 128)
      for _, e in ipairs(batch) do
        local f = {}
        for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
        local g = tonumber(f['g'] or '')
        if not g then status = 'unavailable'; done = true; break end
        if g <= start(f['s']) then status = 'ok'; done = true; break end
        got[#got + 1] = f
        if tonumber(f['p'] or '') and tonumber(f['p']) <= start(f['q']) then
          status = 'ok'; done = true; break
        end
        hi = '(' .. e[1]
      end
      if #batch < 128 then done = true end
    end
  end
  local r = {status, lg, ls}
  for k = #got, 1, -1 do
    r[#r + 1] = got[k]['g']
    r[#r + 1] = check and '' or got[k]['m']
  end
  out[#out + 1] = r
end
return out
"#;

static ADD_ROOM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADD_ROOM));
static RESUME_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESUME));

/// The Redis key of session `pid`.
fn session_key(pid: &str) -> String {
    format!("wsgate:session:{pid}")
}

/// The session hash's field of `room` (`u` holds the user).
fn room_field(room: &str) -> String {
    format!("r:{room}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Sessions in the fleet's Redis (one Redis or a cluster).
pub struct RedisSessions {
    store: Store,
    /// How long a session outlives its socket (`--connection-state-recovery`).
    away: Duration,
    /// How long a connected socket's session lives between two [`SessionStore::keep`]s.
    alive: Duration,
}

impl RedisSessions {
    /// Sessions kept `away` after their socket disconnected; connected ones are kept for
    /// `alive` after each write or keep.
    pub fn new(store: Store, away: Duration, alive: Duration) -> Self {
        Self { store, away, alive }
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        v => text(v)?.parse().ok(),
    }
}

/// Commands sent one by one on a cluster (keys in many slots), at most this many at once.
const CLUSTER_CONCURRENCY: usize = 64;

/// Run `cmds` (single-key commands whose replies are ignored): one pipeline per thousand
/// on one Redis; on a cluster, concurrently, since a pipeline must stay on one node.
async fn run_all(store: &Store, cmds: Vec<::redis::Cmd>) -> Result<(), HistoryError> {
    use futures_util::{StreamExt, TryStreamExt, stream};
    if store.is_cluster() {
        stream::iter(cmds)
            .map(|cmd| async move {
                let mut conn = store.conn().await?;
                cmd.exec_async(&mut conn).await?;
                Ok::<_, HistoryError>(())
            })
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        return Ok(());
    }
    let mut conn = store.conn().await?;
    for chunk in cmds.chunks(1000) {
        let mut pipe = ::redis::pipe();
        for cmd in chunk {
            pipe.add_command(cmd.clone()).ignore();
        }
        pipe.exec_async(&mut conn).await?;
    }
    Ok(())
}

/// How the resume script names `shard` (what the publish script writes in `s`).
fn shard_arg(cluster: bool, shard: u32) -> String {
    if cluster {
        shard_text(shard)
    } else {
        "0".to_owned()
    }
}

/// One run of the resume script over `rooms`.
async fn resume_script(
    conn: &mut Conn,
    cluster: bool,
    offset: &Clock,
    rooms: &[(String, u64)],
    check: bool,
) -> Result<Value, HistoryError> {
    let mut script = RESUME_SCRIPT.prepare_invoke();
    for (room, _) in rooms {
        let channel = room_channel(room);
        script
            .key(keys::key_for("stream", &channel))
            .key(keys::key_for("meta", &channel));
    }
    script
        .arg(if check { "check" } else { "read" })
        .arg(offset.parts().len());
    for (shard, at) in offset.parts() {
        script.arg(shard_arg(cluster, *shard)).arg(*at);
    }
    for (_, joined) in rooms {
        script.arg(*joined);
    }
    Ok(script.invoke_async(conn).await?)
}

impl SessionStore for RedisSessions {
    fn load(&self, pid: &str) -> BoxFuture<'static, Result<Option<Session>, HistoryError>> {
        let conn = self.store.conn();
        let key = session_key(pid);
        async move {
            let mut conn = conn.await?;
            let fields: Vec<(String, String)> = ::redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await?;
            let mut user = None;
            let mut rooms = Vec::new();
            for (k, v) in fields {
                if k == "u" {
                    user = Some(v);
                } else if let Some(room) = k.strip_prefix("r:") {
                    let at = v
                        .parse()
                        .map_err(|_| HistoryError::Reply("session: order"))?;
                    rooms.push((room.to_owned(), at));
                }
            }
            Ok(user.map(|user| Session { user, rooms }))
        }
        .boxed()
    }

    fn add_room(
        &self,
        pid: &str,
        user: &str,
        room: &str,
    ) -> BoxFuture<'static, Result<u64, HistoryError>> {
        let conn = self.store.conn();
        let cluster = self.store.is_cluster();
        let (key, user, field) = (session_key(pid), user.to_owned(), room_field(room));
        let meta = keys::key_for("meta", &room_channel(room));
        let alive = millis(self.alive);
        async move {
            let mut conn = conn.await?;
            let mut script = ADD_ROOM_SCRIPT.prepare_invoke();
            script.key(key).arg(user).arg(field).arg(alive);
            if cluster {
                // The room's meta is in its own slot: read it first. Its order only grows,
                // so the one recorded is still at or before anything the socket gets.
                let lg: Option<String> = ::redis::cmd("HGET")
                    .arg(&meta)
                    .arg("lg")
                    .query_async(&mut conn)
                    .await?;
                script.arg(lg.unwrap_or_else(|| "0".to_owned()));
            } else {
                script.key(meta);
            }
            let v: Value = script.invoke_async(&mut conn).await?;
            number(&v).ok_or(HistoryError::Reply("session: add_room"))
        }
        .boxed()
    }

    fn remove_room(&self, pid: &str, room: &str) -> BoxFuture<'static, Result<(), HistoryError>> {
        let conn = self.store.conn();
        let (key, field) = (session_key(pid), room_field(room));
        async move {
            let mut conn = conn.await?;
            ::redis::cmd("HDEL")
                .arg(key)
                .arg(field)
                .exec_async(&mut conn)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn keep(&self, pids: Vec<String>) -> BoxFuture<'static, Result<(), HistoryError>> {
        let store = self.store.clone();
        let alive = millis(self.alive);
        async move {
            let cmds = pids
                .iter()
                .map(|pid| {
                    let mut c = ::redis::cmd("PEXPIRE");
                    c.arg(session_key(pid)).arg(alive);
                    c
                })
                .collect();
            run_all(&store, cmds).await
        }
        .boxed()
    }

    fn release(&self, pid: &str) -> BoxFuture<'static, Result<(), HistoryError>> {
        let conn = self.store.conn();
        let (key, away) = (session_key(pid), millis(self.away));
        async move {
            let mut conn = conn.await?;
            ::redis::cmd("PEXPIRE")
                .arg(key)
                .arg(away)
                .exec_async(&mut conn)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn resume(
        &self,
        offset: Clock,
        rooms: Vec<(String, u64)>,
        check: bool,
    ) -> BoxFuture<'static, Result<Resume, HistoryError>> {
        let store = self.store.clone();
        async move {
            if !store.is_cluster() {
                let mut conn = store.conn().await?;
                let reply = resume_script(&mut conn, false, &offset, &rooms, check).await?;
                return judge(Some(offset.get(0)), &rooms, reply);
            }
            // On a cluster each room is read on its own node, one script per room: a room's
            // entries and head are one instant, and each room's replay is complete up to
            // its head, which is all the delivery task needs (it dedups per room).
            let reads = rooms.iter().map(|room| {
                let (store, offset) = (&store, &offset);
                async move {
                    let mut conn = store.conn().await?;
                    resume_script(&mut conn, true, offset, std::slice::from_ref(room), check).await
                }
            });
            let replies = futures_util::future::try_join_all(reads).await?;
            let mut joined = vec![Value::Int(0)];
            for reply in replies {
                let Value::Array(mut parts) = reply else {
                    return Err(HistoryError::Reply("resume: not an array"));
                };
                if parts.len() != 2 {
                    return Err(HistoryError::Reply("resume: shape"));
                }
                joined.push(parts.swap_remove(1));
            }
            judge(None, &rooms, Value::Array(joined))
        }
        .boxed()
    }

    fn room_bytes(&self, rooms: Vec<String>) -> BoxFuture<'static, Result<Vec<u64>, HistoryError>> {
        let conn = self.store.conn();
        async move {
            let mut conn = conn.await?;
            let mut sizes = Vec::with_capacity(rooms.len());
            // One key each (a cluster cannot pipeline keys of several slots); a sample of
            // at most a few rooms per keep-alive.
            for room in &rooms {
                let size: Option<u64> = ::redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(keys::key_for("stream", &room_channel(room)))
                    .query_async(&mut conn)
                    .await?;
                sizes.push(size.unwrap_or_default());
            }
            Ok(sizes)
        }
        .boxed()
    }

    fn start(&self) -> BoxFuture<'static, Result<Clock, HistoryError>> {
        let conn = self.store.conn();
        let cluster = self.store.is_cluster();
        async move {
            let mut conn = conn.await?;
            if cluster {
                ::redis::cmd("PING").exec_async(&mut conn).await?;
                return Ok(Clock::default());
            }
            let (s, us): (u64, u64) = ::redis::cmd("TIME").query_async(&mut conn).await?;
            Ok(Clock::single(
                s.saturating_mul(1_000_000).saturating_add(us),
            ))
        }
        .boxed()
    }

    fn is_cluster(&self) -> bool {
        self.store.is_cluster()
    }
}

/// The resume script's reply as a [`Resume`]: every room complete, or the first reason
/// one is not. On one Redis (`offset` is its one order), an offset after Redis's own clock
/// was never given by this fleet.
fn judge(
    offset: Option<u64>,
    rooms: &[(String, u64)],
    reply: Value,
) -> Result<Resume, HistoryError> {
    let Value::Array(parts) = reply else {
        return Err(HistoryError::Reply("resume: not an array"));
    };
    let Some((now, per_room)) = parts.split_first() else {
        return Err(HistoryError::Reply("resume: empty"));
    };
    let now = number(now).ok_or(HistoryError::Reply("resume: time"))?;
    if offset.is_some_and(|o| o > now) {
        return Ok(Resume::Lost(Reason::EpochChanged));
    }
    if per_room.len() != rooms.len() {
        return Err(HistoryError::Reply("resume: rooms"));
    }
    let mut replay = Vec::new();
    let mut heads = HashMap::with_capacity(rooms.len());
    for ((room, _), r) in rooms.iter().zip(per_room) {
        let Value::Array(r) = r else {
            return Err(HistoryError::Reply("resume: room"));
        };
        let [status, head, head_shard, entries @ ..] = r.as_slice() else {
            return Err(HistoryError::Reply("resume: room shape"));
        };
        match text(status).as_deref() {
            Some("ok") => {}
            Some("trimmed") => return Ok(Resume::Lost(Reason::Trimmed)),
            Some("unavailable") => return Ok(Resume::Lost(Reason::Unavailable)),
            _ => return Err(HistoryError::Reply("resume: status")),
        }
        let at = number(head).ok_or(HistoryError::Reply("resume: head"))?;
        // `0` (one Redis, or a room never published to) is shard 0.
        let shard = match text(head_shard).as_deref() {
            None | Some("0") => Some(0),
            Some(s) => parse_shard(s),
        }
        .ok_or(HistoryError::Reply("resume: head shard"))?;
        heads.insert(room.clone(), Order { shard, at });
        for pair in entries.chunks(2) {
            let [order, Value::BulkString(bytes)] = pair else {
                return Err(HistoryError::Reply("resume: entry"));
            };
            if bytes.is_empty() {
                continue; // a check
            }
            let order = number(order).ok_or(HistoryError::Reply("resume: order"))?;
            match super::decode_entry(bytes) {
                Some(b) if b.order.map(|o| o.at) == Some(order) => replay.push(b),
                // Not a message this history wrote: do not guess.
                _ => return Ok(Resume::Lost(Reason::Unavailable)),
            }
        }
    }
    // Each shard's updates in its order; shards interleaved by time.
    replay.sort_by_key(|b| b.order.map(|o| (o.at, o.shard)));
    Ok(Resume::Complete { replay, heads })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_from_clients_are_checked() {
        assert!(valid_pid(&new_pid()));
        for bad in ["", "a b", "a:b", "x\u{1}", &"a".repeat(MAX_PID + 1)] {
            assert!(!valid_pid(bad), "{bad:?}");
        }
    }

    fn entry(room: &str, order: u64) -> [Value; 2] {
        let b = Broadcast {
            event: "u".into(),
            rooms: vec![room.into()],
            order: Some(Order::single(order)),
            ..Broadcast::default()
        };
        [
            Value::BulkString(order.to_string().into_bytes()),
            Value::BulkString(crate::backplane::wire::encode("emitter", &b)),
        ]
    }

    fn room(status: &str, head: u64, entries: Vec<[Value; 2]>) -> Value {
        let mut v = vec![
            Value::BulkString(status.into()),
            Value::BulkString(head.to_string().into_bytes()),
            Value::BulkString(b"0".to_vec()),
        ];
        v.extend(entries.into_iter().flatten());
        Value::Array(v)
    }

    #[test]
    fn replay_merges_rooms_in_fleet_order() {
        let rooms = vec![("a".to_owned(), 0), ("b".to_owned(), 0)];
        let reply = Value::Array(vec![
            Value::Int(1000),
            room("ok", 30, vec![entry("a", 10), entry("a", 30)]),
            room("ok", 20, vec![entry("b", 20)]),
        ]);
        let Resume::Complete { replay, heads } = judge(Some(5), &rooms, reply).unwrap() else {
            panic!()
        };
        let orders: Vec<_> = replay.iter().map(|b| b.order.unwrap().at).collect();
        assert_eq!(orders, [10, 20, 30]);
        assert_eq!(heads["a"], Order::single(30));
        assert_eq!(heads["b"], Order::single(20));
    }

    #[test]
    fn lost_when_a_room_is_trimmed_or_the_offset_is_from_the_future() {
        let rooms = vec![("a".to_owned(), 0), ("b".to_owned(), 0)];
        let reply = || {
            Value::Array(vec![
                Value::Int(1000),
                room("ok", 30, vec![entry("a", 30)]),
                room("trimmed", 20, vec![]),
            ])
        };
        assert!(matches!(
            judge(Some(5), &rooms, reply()).unwrap(),
            Resume::Lost(Reason::Trimmed)
        ));
        assert!(matches!(
            judge(Some(5000), &rooms, reply()).unwrap(),
            Resume::Lost(Reason::EpochChanged)
        ));
    }

    #[test]
    fn an_entry_whose_order_does_not_match_is_not_replayed() {
        let rooms = vec![("a".to_owned(), 0)];
        let [_, bytes] = entry("a", 10);
        let reply = Value::Array(vec![
            Value::Int(1000),
            room("ok", 11, vec![[Value::BulkString(b"11".to_vec()), bytes]]),
        ]);
        assert!(matches!(
            judge(Some(5), &rooms, reply).unwrap(),
            Resume::Lost(Reason::Unavailable)
        ));
    }
}
