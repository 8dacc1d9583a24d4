//! `wsgate serve`: wire the modules together and run one replica until a signal.
//!
//! [`run`] reads as the replica's life: start the backplane, build Socket.IO and the
//! gateway, start the supervised background tasks ([`tasks`]), listen and announce, then
//! serve until drained, or until a task ends unexpectedly.

mod accept;
mod tasks;

use std::{io::Write, sync::Arc, time::Duration};

use socketioxide::SocketIo;
use time::OffsetDateTime;

use crate::{
    access::{self, AccessError},
    backplane::{
        Backplane, BackplaneError, EngineTask, InboundRx,
        cluster::ClusterBackplane,
        connect::{self, Connector},
        memory::MemoryBackplane,
        redis::RedisBackplane,
        store::Store,
    },
    config::{Fleet, ServeConfig, SlowConsumer},
    gateway::{self, Gateway, Limits},
    history::{
        History, Unavailable,
        redis::RedisHistory,
        session::{RedisSessions, SessionStore},
    },
    http::{self, Readiness},
    net, publish,
    shutdown::{self, Shutdown},
    telemetry::TimeoutKind,
};
use tasks::{Failed, Tasks};

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Identity and access settings are unusable.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The Redis URL is unusable.
    #[error("--redis-url / WSGATE_REDIS_URL: {0}")]
    Backplane(#[from] BackplaneError),
    /// A Redis TLS file or Sentinel setting is unusable (the message names it).
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
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
    /// A background task ended while the replica ran.
    #[error("background task {task} ended ({how}); the replica cannot serve without it")]
    TaskEnded {
        /// Its name.
        task: &'static str,
        /// Returned, or the panic.
        how: String,
    },
}

/// Ready while the backplane is connected, no background task has ended, the replica is
/// not draining, and (with stock recovery) it can offer sessions: a client sent to a
/// replica that cannot yet would get no `pid`, and so no recovery on its next return.
struct ReplicaReadiness {
    backplane: Arc<dyn Backplane>,
    shutdown: Shutdown,
    failed: Failed,
    gateway: Arc<gateway::Gateway>,
}

impl Readiness for ReplicaReadiness {
    fn check(&self) -> Result<(), &'static str> {
        if self.shutdown.is_draining() {
            Err("draining")
        } else if self.failed.task().is_some() {
            Err("a background task ended")
        } else if !self.gateway.sessions_ready() {
            Err("connection-state recovery not ready (session store not reached yet)")
        } else if self.backplane.is_ready() {
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

/// Run one replica until SIGINT or SIGTERM (exit 0 once drained), or until a background
/// task ends (an error: the replica cannot serve without it).
pub async fn run(
    cfg: ServeConfig,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), ServeError> {
    let origins =
        http::origin::OriginPolicy::new(cfg.allowed_origins.clone(), cfg.cors_credentials)?;
    cfg.check().map_err(ServeError::Config)?;
    let access = access::from_config(&cfg)?;
    let mut tasks = Tasks::new(cfg.fail_task.clone());
    let fleet = start_backplane(&cfg, &mut tasks)?;
    let shutdown = Shutdown::new();
    let (layer, io, overflows) = build_socketio(&cfg);
    let gateway = Gateway::recovering(
        access.auth,
        access.authz,
        fleet.backplane.clone(),
        Limits::new(cfg.max_connections, cfg.max_event_rate, cfg.event_burst)
            .with_flood_window(cfg.event_flood_window),
        shutdown.clone(),
        access.limits,
        fleet.history,
    );
    let gateway = with_recovery(gateway, &cfg, fleet.sessions, &io, &mut tasks);
    tasks.spawn(
        "delivery",
        gateway::deliver(
            io.clone(),
            gateway.clone(),
            fleet.inbound,
            cfg.coalesce_window,
        ),
    );
    if let Some(reports) = overflows {
        tasks.spawn(
            "eviction",
            gateway::evict(io.clone(), gateway.clone(), reports, cfg.max_buffer),
        );
    }
    if let Some(every) = cfg.demo_push {
        tasks.spawn("demo_push", demo_push(fleet.backplane.clone(), every));
    }
    let readiness: Arc<dyn Readiness> = Arc::new(ReplicaReadiness {
        backplane: fleet.backplane,
        shutdown: shutdown.clone(),
        failed: tasks.failed(),
        gateway: gateway.clone(),
    });
    tasks.spawn("readiness", publish_readiness(readiness.clone()));

    let mut app = http::router(layer, readiness, metrics, &cfg.identity.hook_forward_header).layer(
        axum::middleware::from_fn_with_state(shutdown.clone(), http::refuse::refuse_new_sessions),
    );
    if cfg.demo_page_enabled() {
        app = http::demo::with_demo_page(app);
    }
    let app = http::origin::guard(app, origins);
    let listener = listen(&cfg).await?;
    let draining = drain(io, shutdown.clone(), cfg.drain_window);
    let deadline = async {
        shutdown.draining().await;
        tokio::time::sleep(cfg.drain_deadline.saturating_sub(EXIT_MARGIN)).await;
    };
    let conns = accept::ConnSettings {
        idle: cfg.idle_timeout,
        header_read: cfg.header_read_timeout,
        nodelay: cfg.tcp_nodelay,
        proxy_protocol: cfg.network.proxy_protocol,
    };
    let admission = admission(&cfg);
    tokio::select! {
        () = accept::serve(listener, app, admission, conns, draining) => {},
        () = deadline => tracing::warn!("drain deadline reached with connections still open; exiting"),
        (task, how) = tasks.ended() => {
            tracing::error!(task, how = %how, "background task ended; not ready, exiting");
            return Err(ServeError::TaskEnded { task, how });
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Who may open an Engine.IO session: `--max-connections` sessions in all, and the
/// per-IP limits when any is set.
fn admission(cfg: &ServeConfig) -> Arc<net::Admission> {
    let limits = cfg.network.ip_limits();
    let per_ip = limits.any().then(|| net::PerIp::new(limits));
    net::Admission::new(
        cfg.max_connections,
        per_ip,
        cfg.network.trusted_proxies.clone(),
    )
}

/// Set the user rooms' prefix, turn stock connection-state recovery on when `sessions`
/// says it is, attach the gateway to `io`, and keep the sessions alive in a supervised task.
fn with_recovery(
    gateway: Arc<gateway::Gateway>,
    cfg: &ServeConfig,
    sessions: Option<Sessions>,
    io: &gateway::Io,
    tasks: &mut Tasks,
) -> Arc<gateway::Gateway> {
    let gateway = gateway.with_user_room_prefix(&cfg.identity.user_room_prefix);
    let gateway = match sessions {
        Some((store, keep_every)) => {
            gateway.with_connection_state_recovery(gateway::resume::Csr::new(store, keep_every))
        }
        None => gateway,
    };
    gateway.attach(io);
    if gateway.has_connection_state_recovery() {
        tasks.spawn(
            "sessions",
            gateway::resume::keep_alive(gateway.clone(), io.clone()),
        );
    }
    gateway
}

/// The running backplane and what the gateway reads from it.
struct Backend {
    backplane: Arc<dyn Backplane>,
    inbound: InboundRx,
    history: Arc<dyn History>,
    /// Stock recovery's sessions and how often to keep them alive, when it is on.
    sessions: Option<Sessions>,
}

/// Stock recovery's session store and how often to keep connected sockets' sessions alive.
type Sessions = (Arc<dyn SessionStore>, Duration);

/// Start the engine the settings name; its subscriber task joins `tasks`.
fn start_backplane(cfg: &ServeConfig, tasks: &mut Tasks) -> Result<Backend, ServeError> {
    cfg.redis_conn
        .fits(cfg.redis_mode.mode)
        .map_err(ServeError::Config)?;
    let url = cfg.redis_conn.url(cfg.redis_url.as_deref());
    let fleet = cfg
        .redis_mode
        .fleet(url.as_deref(), cfg.history.config())
        .map_err(ServeError::Config)?;
    let mut sessions = None;
    let (backplane, inbound, history, task): (Arc<dyn Backplane>, _, Arc<dyn History>, _) =
        match fleet {
            Fleet::Local => {
                // One replica, no Redis: nothing to recover from (joins answer
                // `recovered: false, reason: "unavailable"`).
                let (b, rx) = MemoryBackplane::new();
                (Arc::new(b), rx, Arc::new(Unavailable), None)
            }
            Fleet::Standalone { url, history } => {
                let connector = Connector::new(&url, &cfg.redis_conn.settings())?;
                let (b, rx, task) = RedisBackplane::start(&connector, history)?;
                let store = Store::Single(b.pool().clone());
                let (history, s) = history_and_sessions(cfg, store, history);
                sessions = s;
                (Arc::new(b), rx, history, Some(task))
            }
            Fleet::Cluster { seeds, history } => {
                let tls = connect::tls(&seeds, &cfg.redis_conn.settings())?;
                let (b, rx, task) = ClusterBackplane::start(&seeds, tls.as_ref(), history)?;
                let store = Store::Cluster(b.publisher().clone());
                let (history, s) = history_and_sessions(cfg, store, history);
                sessions = s;
                (Arc::new(b), rx, history, Some(task))
            }
        };
    if let Some(task) = task {
        tasks.spawn("backplane", task as EngineTask);
    }
    Ok(Backend {
        backplane,
        inbound,
        history,
        sessions,
    })
}

/// Room history's reader and, with `--connection-state-recovery`, the session store, on
/// the fleet's Redis (one or a cluster).
fn history_and_sessions(
    cfg: &ServeConfig,
    store: Store,
    history: Option<crate::history::HistoryConfig>,
) -> (Arc<dyn History>, Option<Sessions>) {
    let Some(h) = history else {
        return (Arc::new(Unavailable), None);
    };
    let sessions = cfg
        .connection_state_recovery
        .map(|away| session_store(store.clone(), away, h));
    (Arc::new(RedisHistory::new(store, h)), sessions)
}

/// Stock recovery's session store: a session lives `away` after its socket left; a
/// connected socket's is kept alive twice per `keep_every` (at most 30 s apart).
fn session_store(store: Store, away: Duration, history: crate::history::HistoryConfig) -> Sessions {
    if history.ttl < away {
        tracing::warn!(
            history_ttl = %humantime::format_duration(history.ttl),
            window = %humantime::format_duration(away),
            "--history-ttl is shorter than --connection-state-recovery: clients away longer than the history keeps updates will not be recovered"
        );
    }
    let keep_every = (away / 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
    let store = RedisSessions::new(store, away, away + keep_every * 2);
    (Arc::new(store), keep_every)
}

/// The Socket.IO layer with wsgate's adapter and limits, and the overflow reports of slow
/// consumers (`None` with `--slow-consumer drop`).
fn build_socketio(
    cfg: &ServeConfig,
) -> (
    socketioxide::layer::SocketIoLayer<gateway::Adapter>,
    gateway::Io,
    Option<gateway::OverflowRx>,
) {
    let max_payload = usize::try_from(cfg.max_payload).unwrap_or(usize::MAX);
    let (overflow, overflows) = match cfg.slow_consumer {
        SlowConsumer::Disconnect => {
            let (overflow, reports) = gateway::Overflow::channel();
            (overflow, Some(reports))
        }
        SlowConsumer::Drop => (gateway::Overflow::ignore(), None),
    };
    let (layer, io) = SocketIo::builder()
        .with_adapter::<gateway::Adapter>(overflow)
        .max_payload(cfg.max_payload)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .ws_read_buffer_size(cfg.ws_read_buffer)
        .max_buffer_size(cfg.max_buffer)
        .max_buffer_bytes(cfg.max_buffer_bytes)
        .direct_writes(cfg.direct_writes)
        .ping_interval(cfg.ping_interval)
        .ping_timeout(cfg.ping_timeout)
        .connect_timeout(cfg.connect_timeout)
        .on_connect_timeout(|| TimeoutKind::Connect.count())
        .build_layer();
    (layer, io, overflows)
}

/// Bind the listen address and announce it: `WSGATE_LISTENING=host:port` on stdout (the
/// one line there: scripts and tests that asked for port 0 find the port), then the log.
async fn listen(cfg: &ServeConfig) -> Result<tokio::net::TcpListener, ServeError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "WSGATE_LISTENING={local}");
    let _ = out.flush();
    drop(out);
    let redis = cfg.redis_url.is_some() || cfg.redis_conn.sentinel();
    tracing::info!(addr = %local, redis, "wsgate listening");
    if cfg.demo_page_enabled() {
        let host = if local.ip().is_unspecified() {
            format!("localhost:{}", local.port())
        } else {
            local.to_string()
        };
        tracing::info!("demo page on http://{host}/ (--demo-page=false turns it off)");
    }
    Ok(listener)
}

/// At the first signal: not ready, refuse new clients, close the rest over `window`.
async fn drain(io: gateway::Io, shutdown: Shutdown, window: Duration) {
    shutdown::signal().await;
    shutdown.begin();
    tracing::info!("signal received: not ready, refusing new clients, draining");
    gateway::drain(&io, window).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.close()).await;
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
