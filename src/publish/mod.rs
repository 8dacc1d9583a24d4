//! The publisher that backend services use: a library (`wsgate::publish::Publisher`) and
//! the `wsgate publish` command. It writes exactly what `@socket.io/redis-emitter` writes
//! (uid `emitter`), so replicas cannot tell it from a Node backend.

mod command;
mod engine;
pub mod revoke;

use time::OffsetDateTime;

pub use command::run;

use crate::{
    backplane::{Args, BackplaneError, Broadcast, channel_for, wire},
    config::{RedisConnArgs, RedisMode, RedisModeArg},
};
use engine::Engine;

/// The uid the official emitter stamps on its messages.
pub const EMITTER_UID: &str = "emitter";

/// The rooms of the demo projects.
pub const DEMO_PROJECTS: [&str; 3] = ["project_one", "project_two", "project_three"];

/// The largest encoded message a publisher sends unless told otherwise (1 MiB). Redis
/// drops a subscriber (every replica's, at once) whose output buffer passes its
/// `client-output-buffer-limit pubsub` (default hard limit 32 MB, or 8 MB for 60 s); at
/// 1 MiB that takes 32 messages queued behind one busy replica, not one, and no Socket.IO
/// client needs a single update that large (`--max-payload` bounds what they send at 1 MiB too).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A command-line value is not usable.
    #[error("{0}")]
    Input(String),
    /// The encoded message is over the publisher's limit; nothing was sent.
    #[error(
        "message too large: {size} bytes encoded, the limit is {max} bytes \
         (--max-message-size / WSGATE_MAX_MESSAGE_SIZE; a message this large makes Redis drop \
         subscribers at its client-output-buffer-limit pubsub)"
    )]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Redis refused or was unreachable.
    #[error("cannot publish to Redis: {0}")]
    Backplane(#[from] BackplaneError),
}

/// Publishes updates into a wsgate (or Node socket.io) fleet through Redis.
#[derive(Debug, Clone)]
pub struct Publisher {
    inner: Engine,
    max_size: usize,
    /// What [`Publisher::to_user`] puts before a user id.
    user_room_prefix: String,
}

impl Publisher {
    /// A publisher for the fleet at `redis_url` (one Redis). Connects lazily, on the first
    /// publish.
    pub fn new(redis_url: &str) -> Result<Self, PublishError> {
        Self::with_mode(redis_url, RedisModeArg::default())
    }

    /// A publisher for a fleet on Redis Cluster, reached through `seeds` (comma-separated
    /// URLs): sharded pub/sub in the sharded adapter's format.
    pub fn cluster(seeds: &str) -> Result<Self, PublishError> {
        Self::with_mode(
            seeds,
            RedisModeArg {
                mode: RedisMode::Cluster,
            },
        )
    }

    /// A publisher for `redis_url` in the given `--redis-mode`.
    pub fn with_mode(redis_url: &str, mode: RedisModeArg) -> Result<Self, PublishError> {
        Self::with_settings(redis_url, mode, &RedisConnArgs::default())
    }

    /// A publisher for `redis_url` in `mode`, with the TLS and Sentinel settings of `conn`
    /// (`--redis-ca-file`, `--redis-sentinel`, ...).
    pub fn with_settings(
        redis_url: &str,
        mode: RedisModeArg,
        conn: &RedisConnArgs,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            inner: Engine::new(redis_url, mode, conn)?,
            max_size: DEFAULT_MAX_MESSAGE_SIZE,
            user_room_prefix: crate::backplane::DEFAULT_USER_ROOM_PREFIX.to_owned(),
        })
    }

    /// The same publisher, keeping every one-room update in the room's history (the
    /// replicas' `--history-size` / `--history-ttl`), so clients that opted in can recover
    /// it. `None`: plain emitter bytes (the sharded adapter's on a cluster). Never fails
    /// today; the `Result` keeps room for settings a fleet may refuse.
    pub fn with_history(
        self,
        history: Option<crate::backplane::stream::HistoryConfig>,
    ) -> Result<Self, PublishError> {
        Ok(Self {
            inner: self.inner.with_history(history),
            ..self
        })
    }

    /// The same publisher, refusing messages whose encoding is over `bytes`
    /// ([`DEFAULT_MAX_MESSAGE_SIZE`] unless set).
    pub fn with_max_message_size(self, bytes: usize) -> Self {
        Self {
            max_size: bytes,
            ..self
        }
    }

    /// Publish one update; returns how many subscribers (replicas) Redis handed it to.
    /// Refused with [`PublishError::TooLarge`] (nothing sent) over the size limit.
    pub async fn publish(&self, b: &Broadcast) -> Result<u64, PublishError> {
        self.check_size(b)?;
        Ok(self.inner.publish(b).await?)
    }

    /// Send `event` with `args` to every socket of `user` on every replica (its room
    /// `user:<user>`, or under the prefix set with [`Publisher::with_user_room_prefix`]).
    pub async fn to_user(&self, user: &str, event: &str, args: Args) -> Result<u64, PublishError> {
        let room = user_room(&self.user_room_prefix, user);
        self.publish(&to_room(room, event, args)).await
    }

    /// Send `event` with `args` to the one socket `sid` (the room named by its id, as
    /// Node's `to(id)`), on whichever replica holds it.
    pub async fn to_socket(&self, sid: &str, event: &str, args: Args) -> Result<u64, PublishError> {
        self.publish(&to_room(sid.to_owned(), event, args)).await
    }

    /// The same publisher, naming user rooms with `prefix` (the replicas'
    /// `--user-room-prefix`; [`crate::backplane::DEFAULT_USER_ROOM_PREFIX`] unless set).
    pub fn with_user_room_prefix(self, prefix: &str) -> Self {
        Self {
            user_room_prefix: prefix.to_owned(),
            ..self
        }
    }

    /// The emitter encoding's size against the limit (the cluster's JSON encoding and the
    /// history flags differ from it by a few bytes). Encoding once more costs a few µs per
    /// KB, small next to the Redis round trip of the publish.
    fn check_size(&self, b: &Broadcast) -> Result<(), PublishError> {
        let size = wire::encode(EMITTER_UID, b).len();
        if size > self.max_size {
            return Err(PublishError::TooLarge {
                size,
                max: self.max_size,
            });
        }
        Ok(())
    }
}

/// The room of `user`'s sockets under the replicas' user-room `prefix`.
pub fn user_room(prefix: &str, user: &str) -> String {
    format!("{prefix}{user}")
}

/// A broadcast of `event` with `args` to the one room `room`.
fn to_room(room: String, event: &str, args: Args) -> Broadcast {
    Broadcast {
        event: event.to_owned(),
        args,
        rooms: vec![room],
        except: vec![],
        volatile: false,
        sent_at: None,
        position: None,
        order: None,
    }
}

/// The channel and bytes of a publish, without sending it.
pub fn encode(b: &Broadcast) -> (String, Vec<u8>) {
    (channel_for(b), wire::encode(EMITTER_UID, b))
}

/// Time as JavaScript's `Date.toISOString()` prints it.
fn iso_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_default()
}

/// The seed gateway's periodic push: `Hello, <project>! Time is -- <ISO time> --` on event
/// `chat`, one broadcast per demo project.
pub fn demo_broadcasts(now: OffsetDateTime) -> Vec<Broadcast> {
    let at = iso_time(now);
    DEMO_PROJECTS
        .iter()
        .map(|p| Broadcast {
            event: "chat".into(),
            args: Args(vec![format!("Hello, {p}! Time is -- {at} --").into()]),
            rooms: vec![(*p).into()],
            except: vec![],
            volatile: false,
            sent_at: None,
            position: None,
            order: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_bytes_equal_the_documented_example() {
        let b = Broadcast {
            event: "update".into(),
            args: Args(vec![wire::from_json(&serde_json::json!({"x": 1}))]),
            rooms: vec!["project_one".into()],
            except: vec![],
            volatile: false,
            sent_at: None,
            position: None,
            order: None,
        };
        let (channel, bytes) = encode(&b);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(channel, "socket.io#/#project_one#");
        assert_eq!(
            hex,
            "93a7656d697474657283a47479706502a46461746192a675706461746581a17801a36e7370a12f83a5726f6f6d7391ab70726f6a6563745f6f6e65a5666c61677380a665786365707490"
        );
    }

    #[test]
    fn a_user_and_a_socket_are_one_room_each() {
        let b = to_room(user_room("user:", "alice"), "n", Args(vec![1.into()]));
        assert_eq!(encode(&b).0, "socket.io#/#user:alice#");
        let b = to_room("AbCd_-0123456789".into(), "n", Args::default());
        assert_eq!(encode(&b).0, "socket.io#/#AbCd_-0123456789#");
        assert_eq!(b.rooms, ["AbCd_-0123456789"]);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_before_redis() {
        // Nothing listens on port 1: a refusal that is not `TooLarge` would mean a send.
        let p = Publisher::new("redis://127.0.0.1:1")
            .unwrap()
            .with_max_message_size(1024);
        let mut b = demo_broadcasts(OffsetDateTime::now_utc()).remove(0);
        b.args = Args(vec!["x".repeat(2000).into()]);
        let err = p.publish(&b).await.unwrap_err();
        assert!(
            matches!(err, PublishError::TooLarge { max: 1024, size } if size > 2000),
            "{err}"
        );
        assert!(err.to_string().contains("--max-message-size"), "{err}");
    }

    #[test]
    fn demo_text_matches_the_seed() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_775_643_160_000_000).unwrap();
        let b = demo_broadcasts(t);
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0].args.0[0].as_str(),
            Some("Hello, project_one! Time is -- 2026-11-27T10:34:03.160Z --")
        );
    }
}
