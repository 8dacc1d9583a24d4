//! The connection pool of publishes, history reads and permission lookups: deadpool over a
//! [`Connector`], so a pooled connection is made like every other (TLS, ACL user, the
//! primary Sentinel names now). A connection that stops answering fails its recycle check
//! and is replaced by a new one, which after a failover reaches the new primary.

use std::{
    ops::{Deref, DerefMut},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use deadpool::managed::{self, Metrics, Object, RecycleError, RecycleResult};
use redis::{RedisError, aio::ConnectionLike, aio::MultiplexedConnection};

use super::connect::Connector;

/// How long a pooled connection waits for a reply. The `redis` crate's default (500 ms) is
/// shorter than a busy Redis or a loaded host answers a script in, and a timed-out call
/// counts as Redis being unavailable (a session not resumed, a join answered without
/// history).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool of multiplexed connections to the fleet's Redis.
pub type Pool = managed::Pool<Manager, Connection>;

/// Why no connection could be taken from the pool.
pub type PoolError = managed::PoolError<RedisError>;

/// Makes and checks the pool's connections.
pub struct Manager {
    connector: Connector,
    pings: AtomicUsize,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

impl managed::Manager for Manager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        let config =
            redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.connector
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// `UNWATCH` + `PING` with a fresh token, as deadpool-redis does: a connection Redis
    /// closed, or one that answers someone else's reply, is not handed out again.
    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        let token = self.pings.fetch_add(1, Ordering::Relaxed).to_string();
        let (n,) = redis::Pipeline::with_capacity(2)
            .cmd("UNWATCH")
            .ignore()
            .cmd("PING")
            .arg(&token)
            .query_async::<(String,)>(conn)
            .await?;
        if n == token {
            Ok(())
        } else {
            Err(RecycleError::message("unexpected PING reply"))
        }
    }
}

/// A connection taken from the pool, back in it when dropped.
pub struct Connection(Object<Manager>);

impl From<Object<Manager>> for Connection {
    fn from(o: Object<Manager>) -> Self {
        Self(o)
    }
}

impl Deref for Connection {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.0
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.0
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A pool of `size` connections made by `connector`, waiting at most `timeout` for one.
pub fn pool(connector: Connector, size: usize, timeout: Duration) -> Result<Pool, String> {
    let manager = Manager {
        connector,
        pings: AtomicUsize::new(0),
    };
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}
