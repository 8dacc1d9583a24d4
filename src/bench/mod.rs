//! `wsgate bench`: a load generator for a Socket.IO fleet with wsgate's client contract (docs/client-contract.md).
//!
//! Clients are raw WebSocket Engine.IO clients (see `client`); the publisher writes the
//! emitter wire format to Redis at a paced rate, stamping each update with a per-room
//! sequence number and its send time on the same monotonic clock the receivers read, so
//! latency needs no clock sync. Server CPU and RSS come from `/proc` for the given PIDs.
//! Output: one JSON object on stdout; a progress line on stderr while it runs.

mod client;
pub mod procstat;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::{
    backplane::{
        Args, BackplaneError, Broadcast, cluster::ClusterPublisher, connect::Connector,
        redis::RedisPublisher,
    },
    config::RedisMode,
    config::{BenchConfig, BenchMode},
};
use client::Tally;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is missing or unusable.
    #[error("{0}")]
    Config(String),
    /// A client failed to connect or join.
    #[error("client: {0}")]
    Client(String),
    /// Publishing failed.
    #[error("publish: {0}")]
    Publish(#[from] crate::backplane::BackplaneError),
    /// The deadline passed.
    #[error("deadline of {0:?} passed")]
    Deadline(Duration),
}

/// One monotonic clock for the publisher and every receiver.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// Microseconds since the run started.
    pub fn micros(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Run a benchmark; prints its JSON report on stdout.
pub async fn run(cfg: BenchConfig) -> Result<(), BenchError> {
    if cfg.rooms.is_empty() || cfg.urls.is_empty() {
        return Err(BenchError::Config(
            "need at least one --url and one --room".into(),
        ));
    }
    if let Some(url) = &cfg.redis_url {
        cfg.redis_mode.check(url).map_err(BenchError::Config)?;
    }
    let deadline = cfg.deadline;
    let report = tokio::time::timeout(deadline, measure(&cfg))
        .await
        .map_err(|_| BenchError::Deadline(deadline))??;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}

/// What connecting every client took.
struct Connected {
    clients: Vec<client::Client>,
    /// Clients that never joined.
    failed: usize,
    /// Clients that needed more than one attempt.
    retried: usize,
    /// Abandoned attempts by the stage they were stuck in ([`client::Progress::STAGES`]).
    stalls: [usize; 3],
    elapsed: Duration,
}

/// Connect every client.
async fn connect_all(cfg: &BenchConfig) -> Connected {
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(cfg.connect_concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..cfg.clients {
        let url = cfg.urls[i % cfg.urls.len()].clone();
        let room = i % cfg.rooms.len();
        let room_name = cfg.rooms[room].clone();
        let token = cfg.token.replace("{i}", &i.to_string());
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.ok()?;
            Some(connect_one(&url, &token, room, &room_name).await)
        });
    }
    let mut out = Connected {
        clients: Vec::with_capacity(cfg.clients),
        failed: 0,
        retried: 0,
        stalls: [0; 3],
        elapsed: Duration::ZERO,
    };
    let mut last_progress = Instant::now();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Some(attempt)) => {
                for stage in attempt.stalls {
                    out.stalls[stage] += 1;
                }
                match attempt.client {
                    Some(c) => {
                        out.clients.push(c);
                        out.retried += usize::from(attempt.attempts > 1);
                    }
                    None => out.failed += 1,
                }
            }
            _ => out.failed += 1,
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "bench: connected {}/{} ({} failed, {} retried)",
                out.clients.len(),
                cfg.clients,
                out.failed,
                out.retried
            );
            last_progress = Instant::now();
        }
    }
    out.elapsed = started.elapsed();
    out
}

/// How long one connect + authenticate + join may take before it is tried again. A
/// handshake whose packets the kernel dropped (a full listen queue, counted host-wide in
/// `TcpExtListenOverflows`) can otherwise wait for TCP's retransmissions far longer than
/// the run: the idle bench once stalled at 9,930 of 10,000 joined until its deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per client, the first included.
const ATTEMPTS: u32 = 3;

/// One client's connect: the client if it joined, the attempts it took, and the stage each
/// abandoned attempt was stuck in (an index into [`client::Progress::STAGES`]).
struct Attempt {
    client: Option<client::Client>,
    attempts: u32,
    stalls: Vec<usize>,
}

/// Connect one client, again after a failure or a stalled attempt.
async fn connect_one(url: &str, token: &str, room: usize, room_name: &str) -> Attempt {
    let mut stalls = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let progress = client::Progress::default();
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client::Client::connect(url, token, room, room_name, &progress),
        )
        .await;
        match outcome {
            Ok(Ok(c)) => {
                return Attempt {
                    client: Some(c),
                    attempts: attempt,
                    stalls,
                };
            }
            Ok(Err(e)) => tracing::debug!(error = %e, attempt, "client failed"),
            Err(_) => {
                let stage = progress.stage();
                let waiting_for = client::Progress::STAGES[stage];
                tracing::warn!(attempt, waiting_for, url, "client attempt stalled");
                stalls.push(stage);
            }
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
    }
    Attempt {
        client: None,
        attempts: ATTEMPTS,
        stalls,
    }
}

async fn measure(cfg: &BenchConfig) -> Result<serde_json::Value, BenchError> {
    let baseline = procstat::total(&cfg.pids);
    let Connected {
        clients,
        failed,
        retried,
        stalls,
        elapsed: connect_time,
    } = connect_all(cfg).await;
    let connected = clients.len();
    let connect_rate = connected as f64 / connect_time.as_secs_f64().max(1e-9);
    // The servers' CPU over the connect phase: per connect, the cost a core pays for one
    // (1e6 / it = connects per second per core), whatever the generator's share of the cores.
    let connect_cpu = procstat::total(&cfg.pids).cpu_seconds - baseline.cpu_seconds;
    eprintln!(
        "bench: {connected} clients joined in {connect_time:.2?} ({connect_rate:.0}/s), {failed} failed, {retried} retried"
    );
    let mut report = json!({
        "mode": format!("{:?}", cfg.mode).to_lowercase(),
        "clients": cfg.clients,
        "connected": connected,
        "connect_failed": failed,
        "connect_retried": retried,
        "connect_stalls": client::Progress::STAGES
            .iter()
            .zip(stalls)
            .map(|(stage, n)| (stage.to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "connect_seconds": connect_time.as_secs_f64(),
        "connects_per_second": connect_rate,
        "server_cpu_seconds_connecting": connect_cpu,
        "server_cpu_us_per_connect": connect_cpu * 1e6 / connected.max(1) as f64,
        "server_pids": cfg.pids,
    });

    if cfg.mode == BenchMode::Idle {
        tokio::time::sleep(cfg.duration).await;
        let after = procstat::total(&cfg.pids);
        let per_conn =
            after.rss_bytes.saturating_sub(baseline.rss_bytes) as f64 / connected.max(1) as f64;
        report["server_rss_bytes_before"] = json!(baseline.rss_bytes);
        report["server_rss_bytes_after"] = json!(after.rss_bytes);
        report["server_rss_bytes_per_connection"] = json!(per_conn);
        drop(clients);
        return Ok(report);
    }

    fanout(cfg, clients, report).await
}

/// Fan-out mode: readers on every client, a paced publisher on a thread of its own, then
/// loss, order, latency and the server's CPU per delivery added to `report`.
async fn fanout(
    cfg: &BenchConfig,
    clients: Vec<client::Client>,
    mut report: serde_json::Value,
) -> Result<serde_json::Value, BenchError> {
    let url = cfg
        .redis_url
        .clone()
        .ok_or_else(|| BenchError::Config("fanout mode needs --redis-url".into()))?;
    let clock = Clock(Instant::now());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut readers = Vec::with_capacity(clients.len());
    for c in clients {
        let room = c.room;
        let h = tokio::spawn(c.read(clock, stop_rx.clone()));
        readers.push((room, h));
    }

    let cpu_before = procstat::total(&cfg.pids);
    let own_before = procstat::sample(std::process::id()).unwrap_or_default();
    // The publisher gets a thread and runtime of its own: sharing the readers' runtime,
    // its ticks were starved exactly when the fleet delivered fastest.
    let pcfg = cfg.clone();
    let publisher = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::Config(e.to_string()))
            .and_then(|rt| rt.block_on(publish_paced(&pcfg, &url, clock)))
    });
    let paced = tokio::task::spawn_blocking(move || publisher.join())
        .await
        .map_err(|e| BenchError::Config(e.to_string()))?
        .map_err(|_| BenchError::Config("publisher thread panicked".into()))??;
    // Let the last updates arrive, then stop the readers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_after = procstat::total(&cfg.pids);
    let own_after = procstat::sample(std::process::id()).unwrap_or_default();
    let _ = stop_tx.send(true);

    let (all, expected, hist) = tally(readers, &paced.published).await?;
    let Tally {
        received,
        distinct,
        duplicates: dups,
        out_of_order: ooo,
    } = all;
    let per_delivery = |cpu: f64| {
        if received > 0 {
            cpu * 1e6 / received as f64
        } else {
            0.0
        }
    };
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let cpu = cpu_after.cpu_seconds - cpu_before.cpu_seconds;
    report["rate_per_second"] = json!(cfg.rate);
    report["published"] = json!(paced.total);
    report["publish_failed"] = json!(paced.failed);
    report["publish_seconds"] = json!(paced.seconds);
    report["deliveries_expected"] = json!(expected);
    report["deliveries_received"] = json!(received);
    report["lost"] = json!(expected.saturating_sub(distinct));
    report["duplicates"] = json!(dups);
    report["out_of_order"] = json!(ooo);
    report["deliveries_per_second"] = json!(received as f64 / paced.seconds.max(1e-9));
    report["latency_ms"] =
        json!({"p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": hist.max() as f64 / 1000.0});
    report["server_cpu_seconds"] = json!(cpu);
    report["server_cpu_us_per_delivery"] = json!(per_delivery(cpu));
    report["server_rss_bytes"] = json!(cpu_after.rss_bytes);
    // The generator's own cost, so a reader can see it is far below the fleet's (it shares
    // the machine's cores with the fleet under test).
    let own = own_after.cpu_seconds - own_before.cpu_seconds;
    report["generator_cpu_seconds"] = json!(own);
    report["generator_cpu_us_per_delivery"] = json!(per_delivery(own));
    Ok(report)
}

/// A client's reading task: what it saw and its latencies (µs).
type Reader = tokio::task::JoinHandle<(Tally, Vec<u32>)>;

/// The readers' tallies summed, the deliveries their rooms' publishes called for, and
/// every latency in one histogram.
async fn tally(
    readers: Vec<(usize, Reader)>,
    published: &[u64],
) -> Result<(Tally, u64, Histogram<u64>), BenchError> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .map_err(|e| BenchError::Config(e.to_string()))?;
    let (mut all, mut expected) = (Tally::default(), 0u64);
    for (room, h) in readers {
        if let Ok((t, latencies)) = h.await {
            for l in latencies {
                let _ = hist.record(u64::from(l));
            }
            all.received += t.received;
            all.distinct += t.distinct;
            all.duplicates += t.duplicates;
            all.out_of_order += t.out_of_order;
        }
        expected += published[room];
    }
    Ok((all, expected, hist))
}

/// The bench's publisher: the emitter's format on one Redis, the sharded adapter's on a
/// cluster (what a backend would send in each case).
enum BenchPublisher {
    Single(RedisPublisher),
    Cluster(ClusterPublisher),
}

impl BenchPublisher {
    fn new(url: &str, mode: RedisMode) -> Result<Self, BackplaneError> {
        let uid = crate::publish::EMITTER_UID;
        Ok(match mode {
            RedisMode::Standalone => Self::Single(RedisPublisher::new(
                &Connector::new(url, &Default::default())?,
                uid,
            )?),
            RedisMode::Cluster => Self::Cluster(ClusterPublisher::new(url, uid, None)?),
        })
    }

    async fn publish(&self, b: &Broadcast) -> Result<u64, BackplaneError> {
        match self {
            Self::Single(p) => p.publish(b).await,
            Self::Cluster(p) => p.publish(b).await,
        }
    }
}

/// What the publisher did.
struct Paced {
    published: Vec<u64>,
    total: u64,
    failed: u64,
    seconds: f64,
}

/// Publish `rate` updates per second for `duration`, round-robin over the rooms, each
/// stamped with its room's next sequence number and the send time. A failed publish is
/// counted (its sequence number is not reused, so receivers count it as lost).
async fn publish_paced(cfg: &BenchConfig, url: &str, clock: Clock) -> Result<Paced, BenchError> {
    let publisher = BenchPublisher::new(url, cfg.redis_mode.mode)?;
    let wall = Instant::now();
    let mut published = vec![0u64; cfg.rooms.len()];
    let mut failed = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cfg.rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (cfg.rate as f64 * cfg.duration.as_secs_f64()).round() as u64;
    let mut last_progress = Instant::now();
    for n in 0..total {
        tick.tick().await;
        let room = (n as usize) % cfg.rooms.len();
        published[room] += 1;
        let payload = rmpv::Value::Map(vec![
            ("s".into(), published[room].into()),
            ("t".into(), clock.micros().into()),
        ]);
        let b = Broadcast {
            event: "bench".into(),
            args: Args(vec![payload]),
            rooms: vec![cfg.rooms[room].clone()],
            except: vec![],
            volatile: false,
            sent_at: None,
            position: None,
            order: None,
        };
        if let Err(e) = publisher.publish(&b).await {
            failed += 1;
            tracing::warn!(error = %e, "publish failed");
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("bench: published {}/{total}", n + 1);
            last_progress = Instant::now();
        }
    }
    Ok(Paced {
        published,
        total,
        failed,
        seconds: wall.elapsed().as_secs_f64(),
    })
}
