//! Fleet-wide revocation: the library call ([`Publisher::revoke`]) and `wsgate revoke`.
//! Both publish one [`Control::Revoke`] on the control channel; every replica acts on it.

use super::{PublishError, Publisher};
use crate::{
    config::RevokeConfig,
    {backplane::Control, clock::now_ms},
};

impl Publisher {
    /// Revoke `user`'s access to `project` (or, with `None`, to every room the permission
    /// source no longer grants) on every replica. Returns how many replicas received it.
    pub async fn revoke(&self, user: &str, project: Option<&str>) -> Result<u64, PublishError> {
        if user.is_empty() {
            return Err(PublishError::Input("--user: empty user id".into()));
        }
        let msg = Control::Revoke {
            user: user.to_owned(),
            project: project.map(str::to_owned),
            at_ms: Some(now_ms()),
        };
        Ok(self.inner.publish_control(msg.encode()).await?)
    }
}

/// `wsgate revoke`: publish one revocation and print how many replicas received it.
pub async fn run(cfg: RevokeConfig) -> Result<(), PublishError> {
    let url = cfg
        .redis_conn
        .url(cfg.redis_url.as_deref())
        .ok_or_else(|| PublishError::Input("--redis-url / WSGATE_REDIS_URL is needed".into()))?;
    let publisher = Publisher::with_settings(&url, cfg.redis_mode, &cfg.redis_conn)?;
    let n = publisher.revoke(&cfg.user, cfg.project.as_deref()).await?;
    println!(
        "revoked user={} project={} replicas={n}",
        cfg.user,
        cfg.project.as_deref().unwrap_or("*")
    );
    Ok(())
}
