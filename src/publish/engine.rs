//! Which Redis a [`Publisher`](super::Publisher) writes to: one Redis (classic pub/sub, the
//! emitter's format) or a Redis Cluster (sharded pub/sub, the sharded adapter's format).

use crate::{
    backplane::connect::{self, Connector},
    backplane::{
        BackplaneError, Broadcast, CONTROL_CHANNEL, cluster::ClusterPublisher,
        redis::RedisPublisher,
    },
    config::{RedisConnArgs, RedisMode, RedisModeArg},
};

use super::{EMITTER_UID, PublishError};

/// The transport under a publisher.
#[derive(Debug, Clone)]
pub(crate) enum Engine {
    /// One Redis.
    Single(RedisPublisher),
    /// A Redis Cluster reached through seed nodes.
    Cluster(ClusterPublisher),
}

impl Engine {
    /// The engine for `url` in `mode` (a cluster takes comma-separated seeds), connected
    /// as `conn` says (TLS, Sentinel).
    pub(crate) fn new(
        url: &str,
        mode: RedisModeArg,
        conn: &RedisConnArgs,
    ) -> Result<Self, PublishError> {
        mode.check(url).map_err(PublishError::Input)?;
        conn.fits(mode.mode).map_err(PublishError::Input)?;
        let settings = conn.settings();
        let tls = |e: connect::ConnectError| PublishError::Input(e.to_string());
        Ok(match mode.mode {
            RedisMode::Standalone => Engine::Single(RedisPublisher::new(
                &Connector::new(url, &settings).map_err(tls)?,
                EMITTER_UID,
            )?),
            RedisMode::Cluster => Engine::Cluster(ClusterPublisher::new(
                url,
                EMITTER_UID,
                connect::tls(url, &settings).map_err(tls)?.as_ref(),
            )?),
        })
    }

    /// The same engine, writing one-room updates into room history too (the script speaks
    /// the classic adapter's format on one Redis, the sharded adapter's on a cluster).
    pub(crate) fn with_history(
        self,
        history: Option<crate::backplane::stream::HistoryConfig>,
    ) -> Self {
        match self {
            Engine::Single(p) => Engine::Single(p.with_history(history)),
            Engine::Cluster(p) => Engine::Cluster(p.with_history(history)),
        }
    }

    /// Publish one broadcast on its channel, in the format the fleet's adapter reads.
    pub(crate) async fn publish(&self, b: &Broadcast) -> Result<u64, BackplaneError> {
        match self {
            Engine::Single(p) => p.publish(b).await,
            Engine::Cluster(p) => p.publish(b).await,
        }
    }

    /// Publish a control message (revocation). Classic pub/sub in both cases: a cluster
    /// forwards `PUBLISH` to every node, where replicas listen for it.
    pub(crate) async fn publish_control(&self, bytes: Vec<u8>) -> Result<u64, BackplaneError> {
        match self {
            Engine::Single(p) => p.publish_raw(CONTROL_CHANNEL, bytes).await,
            Engine::Cluster(p) => p.publish_classic(CONTROL_CHANNEL, bytes).await,
        }
    }
}
