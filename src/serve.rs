//! `wsgate serve`: wire the modules together and run one replica until a signal.

use std::{io::Write, sync::Arc, time::Duration};

use socketioxide::SocketIo;
use time::OffsetDateTime;

use crate::{
    access::{self, AccessError},
    auth::LoadError,
    backplane::{Backplane, BackplaneError, memory::MemoryBackplane, redis::RedisBackplane},
    config::ServeConfig,
    gateway::Gateway,
    http::{self, Readiness},
    publish,
};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A token or permission file is unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Identity and access settings are unusable.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The Redis URL is unusable.
    #[error("--redis-url / WSGATE_REDIS_URL: {0}")]
    Backplane(#[from] BackplaneError),
    /// The listen address cannot be bound.
    #[error("--listen / WSGATE_LISTEN: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

struct BackplaneReadiness(Arc<dyn Backplane>);

impl Readiness for BackplaneReadiness {
    fn check(&self) -> Result<(), &'static str> {
        if self.0.is_ready() {
            Ok(())
        } else {
            Err("backplane disconnected")
        }
    }
}

/// How long connected clients get to be closed on shutdown before the process exits.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Run one replica until SIGINT or SIGTERM.
pub async fn run(
    cfg: ServeConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), ServeError> {
    let access = access::from_config(&cfg)?;
    let (backplane, inbound): (Arc<dyn Backplane>, _) = match &cfg.redis_url {
        Some(url) => {
            let (b, rx) = RedisBackplane::start(url)?;
            (Arc::new(b), rx)
        }
        None => {
            let (b, rx) = MemoryBackplane::new();
            (Arc::new(b), rx)
        }
    };

    let max_payload = usize::try_from(cfg.max_payload).unwrap_or(usize::MAX);
    let (layer, io) = SocketIo::builder()
        .max_payload(cfg.max_payload)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .max_buffer_size(cfg.max_buffer)
        .ping_interval(cfg.ping_interval)
        .ping_timeout(cfg.ping_timeout)
        .build_layer();
    let gateway = Gateway::with_limits(access.auth, access.authz, backplane.clone(), access.limits);
    gateway.attach(&io);
    tokio::spawn(crate::gateway::deliver(
        io.clone(),
        gateway.clone(),
        inbound,
    ));

    if let Some(every) = cfg.demo_push {
        tokio::spawn(demo_push(backplane.clone(), every));
    }

    let app = http::router(layer, Arc::new(BackplaneReadiness(backplane)), metrics);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    // The one line on stdout: lets scripts and tests that asked for port 0 find the port.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "WSGATE_LISTENING={local}");
    let _ = out.flush();
    drop(out);
    tracing::info!(addr = %local, redis = cfg.redis_url.is_some(), "wsgate listening");

    let closing = io.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: closing client connections");
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing.close()).await;
        })
        .await?;
    Ok(())
}

async fn demo_push(backplane: Arc<dyn Backplane>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for b in publish::demo_broadcasts(OffsetDateTime::now_utc()) {
            if let Err(e) = backplane.publish(b).await {
                tracing::debug!(error = %e, "demo push failed");
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
