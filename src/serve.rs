//! `wsgate serve`: wire the modules together and run one replica until a signal.

use std::{io::Write, sync::Arc, time::Duration};

use socketioxide::SocketIo;
use time::OffsetDateTime;

use crate::{
    access::{self, AccessError},
    backplane::{
        Backplane, BackplaneError, cluster::ClusterBackplane, memory::MemoryBackplane,
        redis::RedisBackplane,
    },
    config::{RedisMode, ServeConfig, SlowConsumer},
    gateway::{self, Gateway, Limits},
    history::{History, Unavailable},
    http::{self, Readiness},
    publish,
    shutdown::{self, Shutdown},
};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
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
    /// The origin settings contradict each other.
    #[error(transparent)]
    Origin(#[from] http::origin::OriginError),
    /// Settings that do not fit together.
    #[error("{0}")]
    Config(String),
    /// The server failed while running.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

struct BackplaneReadiness(Arc<dyn Backplane>, Shutdown);

impl Readiness for BackplaneReadiness {
    fn check(&self) -> Result<(), &'static str> {
        if self.1.is_draining() {
            Err("draining")
        } else if self.0.is_ready() {
            Ok(())
        } else {
            Err("backplane disconnected")
        }
    }
}

/// How long the sockets still open after the drain window get to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long before `--drain-deadline` the process stops waiting and exits.
const EXIT_MARGIN: Duration = Duration::from_millis(500);

/// Run one replica until SIGINT or SIGTERM.
pub async fn run(
    cfg: ServeConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), ServeError> {
    let origins =
        http::origin::OriginPolicy::new(cfg.allowed_origins.clone(), cfg.cors_credentials)?;
    cfg.check().map_err(ServeError::Config)?;
    let access = access::from_config(&cfg)?;
    let history_cfg = cfg.history.config();
    let cluster = cfg.redis_mode.mode == RedisMode::Cluster;
    let (backplane, inbound, history): (Arc<dyn Backplane>, _, Arc<dyn History>) =
        match &cfg.redis_url {
            Some(_) if cluster && history_cfg.is_some() => {
                return Err(ServeError::Config(
                    "--history-size needs --redis-mode standalone: room history is not written \
                     in cluster mode yet (its publish script speaks the classic adapter format)"
                        .into(),
                ));
            }
            Some(url) if cluster => {
                let (b, rx) = ClusterBackplane::start(url)?;
                (Arc::new(b), rx, Arc::new(Unavailable))
            }
            Some(url) => {
                cfg.redis_mode.check(url).map_err(ServeError::Config)?;
                let (b, rx) = RedisBackplane::start_with_history(url, history_cfg)?;
                let history: Arc<dyn History> = match history_cfg {
                    Some(h) => Arc::new(b.history(h)),
                    None => Arc::new(Unavailable),
                };
                (Arc::new(b), rx, history)
            }
            None if cluster => {
                return Err(ServeError::Config(
                    "--redis-mode cluster needs the seed nodes in --redis-url / WSGATE_REDIS_URL"
                        .into(),
                ));
            }
            None => {
                // One replica, no Redis: nothing to recover from (joins answer
                // `recovered: false, reason: "unavailable"`).
                let (b, rx) = MemoryBackplane::new();
                (Arc::new(b), rx, Arc::new(Unavailable))
            }
        };

    let max_payload = usize::try_from(cfg.max_payload).unwrap_or(usize::MAX);
    let (overflow, overflows) = match cfg.slow_consumer {
        SlowConsumer::Disconnect => {
            let (overflow, reports) = crate::gateway::Overflow::channel();
            (overflow, Some(reports))
        }
        SlowConsumer::Drop => (crate::gateway::Overflow::ignore(), None),
    };
    let (layer, io) = SocketIo::builder()
        .with_adapter::<crate::gateway::Adapter>(overflow)
        .max_payload(cfg.max_payload)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .ws_read_buffer_size(cfg.ws_read_buffer)
        .max_buffer_size(cfg.max_buffer)
        .ping_interval(cfg.ping_interval)
        .ping_timeout(cfg.ping_timeout)
        .build_layer();
    let shutdown = Shutdown::new();
    let limits = Limits::new(cfg.max_connections, cfg.max_event_rate, cfg.event_burst);
    let gateway = Gateway::recovering(
        access.auth,
        access.authz,
        backplane.clone(),
        limits,
        shutdown.clone(),
        access.limits,
        history,
    );
    gateway.attach(&io);
    tokio::spawn(crate::gateway::deliver(
        io.clone(),
        gateway.clone(),
        inbound,
        cfg.coalesce_window,
    ));
    if let Some(reports) = overflows {
        tokio::spawn(crate::gateway::evict(
            io.clone(),
            gateway.clone(),
            reports,
            cfg.max_buffer,
        ));
    }

    if let Some(every) = cfg.demo_push {
        tokio::spawn(demo_push(backplane.clone(), every));
    }

    let readiness: Arc<dyn Readiness> = Arc::new(BackplaneReadiness(backplane, shutdown.clone()));
    tokio::spawn(publish_readiness(readiness.clone()));
    let mut app = http::router(layer, readiness, metrics).layer(
        axum::middleware::from_fn_with_state(shutdown.clone(), http::refuse::refuse_new_sessions),
    );
    if cfg.demo_page_enabled() {
        app = http::demo::with_demo_page(app);
    }
    let app = http::origin::guard(app, origins);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    let nodelay = cfg.tcp_nodelay;
    // The one line on stdout: lets scripts and tests that asked for port 0 find the port.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "WSGATE_LISTENING={local}");
    let _ = out.flush();
    drop(out);
    tracing::info!(addr = %local, redis = cfg.redis_url.is_some(), "wsgate listening");
    if cfg.demo_page_enabled() {
        let host = if local.ip().is_unspecified() {
            format!("localhost:{}", local.port())
        } else {
            local.to_string()
        };
        tracing::info!("demo page on http://{host}/ (--demo-page=false turns it off)");
    }

    let draining = {
        let shutdown = shutdown.clone();
        let window = cfg.drain_window;
        async move {
            shutdown::signal().await;
            shutdown.begin();
            tracing::info!("signal received: not ready, refusing new clients, draining");
            gateway::drain(&io, window).await;
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.close()).await;
        }
    };
    let deadline = async {
        shutdown.draining().await;
        tokio::time::sleep(cfg.drain_deadline.saturating_sub(EXIT_MARGIN)).await;
    };
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| no_delay(tcp, nodelay));
    tokio::select! {
        served = axum::serve(listener, app).with_graceful_shutdown(draining) => served?,
        () = deadline => tracing::warn!("drain deadline reached with connections still open; exiting"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Mirror `/readyz` in the `wsgate_ready` gauge, for alerts and dashboards.
async fn publish_readiness(readiness: Arc<dyn Readiness>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let ready = if readiness.check().is_ok() { 1.0 } else { 0.0 };
        metrics::gauge!("wsgate_ready").set(ready);
    }
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

/// `--tcp-nodelay`: updates are small frames; Nagle's algorithm holds one back until the
/// previous one is acknowledged (fewer segments, less CPU, a longer worst-case latency).
fn no_delay(tcp: &mut tokio::net::TcpStream, on: bool) {
    if let Err(e) = tcp.set_nodelay(on) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}
