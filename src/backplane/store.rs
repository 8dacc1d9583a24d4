//! Where the keys of room history and sessions live: the pooled connections of one Redis,
//! or the cluster connection (routed by key slot). Readers in `crate::history` take a
//! [`Conn`] and run the same commands and scripts on either; what only works on one Redis
//! (a pipeline or a script over keys of several rooms) they check with
//! [`Store::is_cluster`].

use futures_util::{FutureExt, future::BoxFuture};
use redis::{
    Cmd, Pipeline, RedisFuture, Value, aio::ConnectionLike, cluster_async::ClusterConnection,
};

use super::{BackplaneError, cluster::ClusterPublisher, pool};

/// The fleet's keys, on one Redis or on a Redis Cluster.
#[derive(Clone)]
pub enum Store {
    /// One Redis, through the publish pool.
    Single(pool::Pool),
    /// A Redis Cluster, through the publisher's connection.
    Cluster(ClusterPublisher),
}

/// One connection of a [`Store`].
pub enum Conn {
    /// A pooled connection to one Redis.
    Single(pool::Connection),
    /// The cluster connection (multiplexed, routed by each command's key).
    Cluster(ClusterConnection),
}

impl Store {
    /// A connection, waiting for the pool or connecting the cluster on first use.
    pub fn conn(&self) -> BoxFuture<'static, Result<Conn, BackplaneError>> {
        let store = self.clone();
        async move {
            Ok(match store {
                Store::Single(pool) => Conn::Single(pool.get().await?),
                Store::Cluster(p) => Conn::Cluster(p.connection().await?),
            })
        }
        .boxed()
    }

    /// Whether keys of different rooms may live on different nodes (no multi-room script,
    /// no pipeline across rooms).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Store::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
