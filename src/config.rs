//! Every setting of every subcommand, from flags and `WSGATE_*` environment variables.
//!
//! clap does the parsing and the "bad value" messages (they name the flag, the variable and
//! the expected form); the checks that need more than one value or a file live in the
//! modules that own those values (`auth`, `authz`), which report errors naming the setting.

use crate::backplane::stream::HistoryConfig;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The `wsgate` command line.
#[derive(Debug, Parser)]
#[command(
    name = "wsgate",
    version,
    about = "A horizontally scaled Socket.IO gateway"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `wsgate`.
// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway replica.
    Serve(ServeConfig),
    /// Publish updates into a fleet through Redis, in the socket.io emitter wire format.
    Publish(PublishConfig),
    /// Load-test a fleet (wsgate or any socket.io fleet with the same contract).
    Bench(BenchConfig),
    /// Exit 0 when a replica's health endpoint answers 200 (container HEALTHCHECK).
    Healthcheck(HealthcheckConfig),
    /// Revoke a user's access fleet-wide (every replica acts on it at once).
    Revoke(RevokeConfig),
    /// Mint a demo HS256 JWT for local testing.
    Token(TokenConfig),
}

/// How the fleet's Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum RedisMode {
    /// One Redis (or a Sentinel-managed primary): classic pub/sub, the socket.io Redis
    /// adapter's format.
    #[default]
    Standalone,
    /// Redis Cluster (7+): sharded pub/sub in the format of the sharded adapter
    /// (`createShardedAdapter`). `--redis-url` lists seed nodes, comma-separated.
    Cluster,
}

/// The `--redis-mode` flag, shared by every subcommand that talks to the fleet's Redis.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct RedisModeArg {
    /// `standalone` (one Redis) or `cluster` (Redis Cluster, sharded pub/sub; give the seed
    /// nodes in `--redis-url`, comma-separated: `redis://10.0.0.1:6379,redis://10.0.0.2:6379`).
    #[arg(id = "redis_mode", long = "redis-mode", env = "WSGATE_REDIS_MODE", value_enum, default_value_t = RedisMode::Standalone)]
    pub mode: RedisMode,
}

impl RedisModeArg {
    /// Rejects several URLs without cluster mode, where only the first would be used.
    pub fn check(&self, url: &str) -> Result<(), String> {
        if self.mode == RedisMode::Standalone && url.contains(',') {
            return Err(format!(
                "--redis-url / WSGATE_REDIS_URL lists several nodes ({url}); \
                 that needs --redis-mode cluster (WSGATE_REDIS_MODE=cluster)"
            ));
        }
        Ok(())
    }
}

/// The fleet's Redis as `serve` and `publish` use it: the settings rules both state,
/// checked in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fleet {
    /// No Redis: one replica, in process (`serve` only).
    Local,
    /// One Redis, with room history when it is on.
    Standalone {
        /// The URL.
        url: String,
        /// Room history, `None` when off.
        history: Option<HistoryConfig>,
    },
    /// A Redis Cluster, with room history when it is on.
    Cluster {
        /// The seed nodes, comma-separated.
        seeds: String,
        /// Room history, `None` when off.
        history: Option<HistoryConfig>,
    },
}

impl RedisModeArg {
    /// The fleet's Redis from `--redis-url` (`None`: no Redis) and the history settings.
    pub fn fleet(
        &self,
        url: Option<&str>,
        history: Option<HistoryConfig>,
    ) -> Result<Fleet, String> {
        match (url, self.mode) {
            (None, RedisMode::Cluster) => Err(
                "--redis-mode cluster needs the seed nodes in --redis-url / WSGATE_REDIS_URL"
                    .into(),
            ),
            (None, RedisMode::Standalone) => Ok(Fleet::Local),
            (Some(url), RedisMode::Cluster) => Ok(Fleet::Cluster {
                seeds: url.into(),
                history,
            }),
            (Some(url), RedisMode::Standalone) => {
                self.check(url)?;
                Ok(Fleet::Standalone {
                    url: url.into(),
                    history,
                })
            }
        }
    }
}

/// How to reach the fleet's Redis beyond its URL: TLS material and Sentinel. Shared by
/// `serve`, `publish` and `revoke`, so every connection wsgate makes is set up alike.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisConnArgs {
    /// CA certificate(s), PEM, that a `rediss://` server (or sentinel) must present a
    /// certificate from, instead of the Mozilla roots built into wsgate (webpki-roots): a
    /// private or in-cluster CA is not among them.
    #[arg(long, env = "WSGATE_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Client certificate, PEM, for a Redis that verifies its clients (`tls-auth-clients
    /// yes`); with --redis-client-key.
    #[arg(long, env = "WSGATE_REDIS_CLIENT_CERT", requires = "redis_client_key")]
    pub redis_client_cert: Option<PathBuf>,

    /// The private key of --redis-client-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "WSGATE_REDIS_CLIENT_KEY", requires = "redis_client_cert")]
    pub redis_client_key: Option<PathBuf>,

    /// Find the primary through these Sentinels (`host:port`, comma-separated) and follow
    /// it when they fail over. `--redis-url` then only gives the scheme (`rediss` for TLS,
    /// to the sentinels too), user, password and db; its host is not used (absent:
    /// `redis://`).
    #[arg(
        long,
        env = "WSGATE_REDIS_SENTINEL",
        value_delimiter = ',',
        requires = "redis_sentinel_master"
    )]
    pub redis_sentinel: Vec<String>,

    /// The name the sentinels monitor the primary under (`sentinel monitor NAME ...`).
    #[arg(
        long,
        env = "WSGATE_REDIS_SENTINEL_MASTER",
        requires = "redis_sentinel"
    )]
    pub redis_sentinel_master: Option<String>,

    /// The sentinels' own password (`requirepass` in sentinel.conf), when they need one; the
    /// primary's password goes in `--redis-url`.
    #[arg(long, env = "WSGATE_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,
}

impl RedisConnArgs {
    /// The settings a Redis connection is made with.
    pub fn settings(&self) -> crate::backplane::connect::Settings {
        crate::backplane::connect::Settings {
            ca_file: self.redis_ca_file.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
            sentinels: self.redis_sentinel.clone(),
            master: self.redis_sentinel_master.clone(),
            sentinel_password: self.redis_sentinel_password.clone(),
        }
    }

    /// Whether the primary is found through Sentinel.
    pub fn sentinel(&self) -> bool {
        !self.redis_sentinel.is_empty()
    }

    /// The `--redis-url` to use: as given, or with Sentinel and no URL, `redis://` to a host
    /// that is never contacted (only the URL's scheme and credentials are read).
    pub fn url(&self, url: Option<&str>) -> Option<String> {
        match url {
            Some(u) => Some(u.to_owned()),
            None if self.sentinel() => Some(SENTINEL_DEFAULT_URL.to_owned()),
            None => None,
        }
    }

    /// Sentinel only in standalone mode: a cluster has no sentinels.
    pub fn fits(&self, mode: RedisMode) -> Result<(), String> {
        if self.sentinel() && mode == RedisMode::Cluster {
            return Err(
                "--redis-sentinel needs --redis-mode standalone: a Redis Cluster fails \
                 over by itself, give its nodes in --redis-url"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The URL used with Sentinel when `--redis-url` is absent (its host is never contacted).
pub const SENTINEL_DEFAULT_URL: &str = "redis://sentinel-primary";

/// What `wsgate bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// Clients join rooms; updates are published through Redis at a paced rate.
    Fanout,
    /// Clients connect, authenticate and join, then stay idle while memory is sampled.
    Idle,
}

/// Settings of `wsgate bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// Gateway base URL (repeatable; clients are spread round-robin), e.g. `http://127.0.0.1:3000`.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,

    /// Redis URL the publisher writes to (needed in `fanout` mode).
    #[arg(long, env = "WSGATE_REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_mode: RedisModeArg,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = BenchMode::Fanout)]
    pub mode: BenchMode,

    /// Number of clients.
    #[arg(long, default_value_t = 2000)]
    pub clients: usize,

    /// Rooms the clients are spread over (each client joins one).
    #[arg(long = "room", default_values_t = ["project_one".to_string(), "project_two".to_string(), "project_three".to_string()])]
    pub rooms: Vec<String>,

    /// Token every client authenticates with (it must be allowed to join every room);
    /// `{i}` in it becomes the client's index, for one user per client with a token table.
    #[arg(long, default_value = "valid-token-2")]
    pub token: String,

    /// Publishes per second (spread over the rooms, round-robin).
    #[arg(long, default_value_t = 100)]
    pub rate: u64,

    /// How long to publish (or, in `idle` mode, to stay connected before sampling).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,

    /// Server processes whose CPU and RSS are sampled from /proc (repeatable).
    #[arg(long = "pid")]
    pub pids: Vec<u32>,

    /// Hard stop: the run ends by then whatever happens.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub deadline: Duration,
}

/// Settings of `wsgate healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckConfig {
    /// URL to GET (plain HTTP).
    #[arg(
        long,
        env = "WSGATE_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:3000/healthz"
    )]
    pub url: String,
}

/// Where identities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthSource {
    /// The token table (`--tokens`, or the demo tokens).
    Table,
    /// JWTs verified with `--jwt-secret`, `--jwt-public-key` or `--jwt-jwks`.
    Jwt,
    /// The application's identity hook (`--auth-url`).
    Http,
}

/// Where permissions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthzSource {
    /// The permission table (`--permissions`, or the demo permissions).
    Table,
    /// The JWT projects claim (`--jwt-projects-claim`).
    Claim,
    /// A Redis set per user (`--perm-key-template`), cached per replica.
    Redis,
    /// The application's permission hook (`--authz-url`), cached per replica.
    Http,
}

/// Identity and access settings of `wsgate serve` (flattened into [`ServeConfig`]).
#[derive(Debug, Clone, Args)]
pub struct IdentityConfig {
    /// Identity source: `table`, `jwt` or `http`.
    #[arg(long = "auth", env = "WSGATE_AUTH", value_enum, default_value_t = AuthSource::Table)]
    pub auth: AuthSource,

    /// Permission source: `table`, `claim`, `redis` or `http`.
    #[arg(long = "authz", env = "WSGATE_AUTHZ", value_enum, default_value_t = AuthzSource::Table)]
    pub authz: AuthzSource,

    /// JWT shared secret (HS256/384/512).
    #[arg(long, env = "WSGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// JWT PEM public key file (RSA, EC P-256/P-384, Ed25519).
    #[arg(long, env = "WSGATE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// JWKS file; keys chosen by `kid`, reloaded when the file changes or on SIGHUP.
    #[arg(long, env = "WSGATE_JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,

    /// How often the JWKS file's modification time is checked.
    #[arg(long, env = "WSGATE_JWT_JWKS_POLL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub jwt_jwks_poll: Duration,

    /// Accepted JWT algorithms, comma-separated (e.g. `RS256,PS256`). Empty: every
    /// algorithm the key type allows.
    #[arg(long, env = "WSGATE_JWT_ALGORITHMS", value_delimiter = ',')]
    pub jwt_algorithms: Vec<String>,

    /// Accepted `iss` values, comma-separated. Empty: `iss` is not checked.
    #[arg(long, env = "WSGATE_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,

    /// Accepted `aud` values, comma-separated. Empty: `aud` is not checked.
    #[arg(long, env = "WSGATE_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// Clock skew allowed on `exp` and `nbf` at the handshake (e.g. `30s`).
    #[arg(long, env = "WSGATE_JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// The claim holding the user id.
    #[arg(long, env = "WSGATE_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// Accept a number in the user claim as the user id (its JSON text, e.g. `42`). Off by
    /// default: RFC 7519 makes `sub` a string, and a token whose user claim is a number is
    /// refused (`wsgate_auth_refusals_total{reason="numeric_sub"}`).
    #[arg(long, env = "WSGATE_JWT_NUMERIC_SUB", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub jwt_numeric_sub: bool,

    /// The claim holding the list of project ids (for `--authz claim`).
    #[arg(long, env = "WSGATE_JWT_PROJECTS_CLAIM", default_value = "projects")]
    pub jwt_projects_claim: String,

    /// Redis key of a user's permission set; `{user}` is replaced by the user id.
    #[arg(
        long,
        env = "WSGATE_PERM_KEY_TEMPLATE",
        default_value = "wsgate:perm:{user}"
    )]
    pub perm_key_template: String,

    /// How long a replica keeps a user's permissions from Redis.
    #[arg(long, env = "WSGATE_PERM_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub perm_cache_ttl: Duration,

    /// How many users' permissions a replica keeps at most.
    #[arg(long, env = "WSGATE_PERM_CACHE_SIZE", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub perm_cache_size: u64,

    /// The identity hook of `--auth http`: `POST {"token"}`, answered `{"user", "exp"?,
    /// "projects"?}` (2xx) or 401 / 403.
    #[arg(long, env = "WSGATE_AUTH_URL")]
    pub auth_url: Option<String>,

    /// How long a replica keeps the identity hook's answer for a token (by its digest).
    #[arg(long, env = "WSGATE_AUTH_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_cache_ttl: Duration,

    /// The permission hook of `--authz http`: `POST {"user", "project"}`, answered
    /// `{"allow": bool}` (2xx), 403 or 404.
    #[arg(long, env = "WSGATE_AUTHZ_URL")]
    pub authz_url: Option<String>,

    /// Most time one hook call may take; past it the handshake or join is refused.
    #[arg(long, env = "WSGATE_HOOK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub hook_timeout: Duration,

    /// PEM file of the CA (one or more certificates) that signed an `https://` hook
    /// backend's certificate, trusted besides the built-in roots (a private CA).
    #[arg(long, env = "WSGATE_HOOK_CA_FILE")]
    pub hook_ca_file: Option<std::path::PathBuf>,

    /// A header added to every hook call, `Name: value` (repeatable); `${VAR}` in the
    /// value is read from the environment, so the secret stays out of process lists.
    #[arg(long, env = "WSGATE_HOOK_HEADER", hide_env_values = true)]
    pub hook_header: Vec<String>,

    /// A handshake header copied into every hook call (repeatable or comma-separated,
    /// e.g. `Cookie`).
    #[arg(long, env = "WSGATE_HOOK_FORWARD_HEADER", value_delimiter = ',')]
    pub hook_forward_header: Vec<String>,

    /// Most concurrent connections of one user on this replica (absent: no limit).
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_USER")]
    pub max_connections_per_user: Option<std::num::NonZeroUsize>,

    /// Most rooms one socket may be in (absent: no limit).
    #[arg(long, env = "WSGATE_MAX_ROOMS_PER_SOCKET")]
    pub max_rooms_per_socket: Option<std::num::NonZeroUsize>,

    /// Every authenticated socket is also in the room `<prefix><userId>`, so a backend
    /// reaches all of a user's sockets with `to("user:alice")`; clients cannot join or
    /// leave such rooms. Empty: no user rooms.
    #[arg(long, env = "WSGATE_USER_ROOM_PREFIX", default_value = crate::backplane::DEFAULT_USER_ROOM_PREFIX)]
    pub user_room_prefix: String,
}

/// Room history (zero-loss recovery), shared by `serve` and `publish`.
#[derive(Debug, Clone, Copy, Args)]
pub struct HistoryArgs {
    /// Updates kept per room in a Redis Stream, so clients that opted in can recover what
    /// they missed across reconnects (0, the default: no history, publishes are the plain
    /// emitter bytes). Publishers and replicas should use the same value.
    #[arg(long, env = "WSGATE_HISTORY_SIZE", default_value_t = 0)]
    pub history_size: u64,

    /// How long an update stays recoverable at most (e.g. `10m`).
    #[arg(long, env = "WSGATE_HISTORY_TTL", default_value = "10m", value_parser = parse_history_ttl)]
    pub history_ttl: Duration,
}

impl HistoryArgs {
    /// The history settings, `None` when history is off.
    pub fn config(&self) -> Option<HistoryConfig> {
        HistoryConfig::enabled(self.history_size, self.history_ttl)
    }
}

fn parse_recovery_window(s: &str) -> Result<Duration, String> {
    parse_at_least(s, "2m", Duration::from_secs(1))
}

fn parse_history_ttl(s: &str) -> Result<Duration, String> {
    parse_at_least(s, "10m", Duration::from_millis(1))
}

/// A duration of at least `min`; the error shows `example` and `min`.
fn parse_at_least(s: &str, example: &str, min: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration such as {example} ({e})"))?;
    if d < min {
        return Err(format!(
            "expected a duration of at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(d)
}

/// Settings of `wsgate revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeConfig {
    /// Redis URL of the fleet (`redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS). Optional with `--redis-sentinel`.
    #[arg(long, env = "WSGATE_REDIS_URL", value_parser = parse_redis_url,
          required_unless_present = "redis_sentinel")]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_mode: RedisModeArg,

    #[command(flatten)]
    pub redis_conn: RedisConnArgs,

    /// The user whose access is revoked.
    #[arg(long)]
    pub user: String,

    /// The project revoked. Absent: every room the permission source no longer grants.
    #[arg(long)]
    pub project: Option<String>,
}

/// Settings of `wsgate token`.
#[derive(Debug, Clone, Args)]
pub struct TokenConfig {
    /// The HS256 secret (the same as the gateway's `--jwt-secret`).
    #[arg(long, env = "WSGATE_JWT_SECRET", hide_env_values = true)]
    pub secret: String,

    /// The user id (`sub`).
    #[arg(long)]
    pub user: String,

    /// Projects for the `projects` claim, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub projects: Vec<String>,

    /// Lifetime of the token (e.g. `1h`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// `iss` claim.
    #[arg(long)]
    pub issuer: Option<String>,

    /// `aud` claim.
    #[arg(long)]
    pub audience: Option<String>,
}

/// What happens to a socket that cannot keep up (docs/client-contract.md, "Slow clients").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowConsumer {
    /// Tell it and disconnect it; it reconnects and refetches (or recovers) its state.
    Disconnect,
    /// Skip the update for that socket and count it.
    Drop,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings of `wsgate serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on (`host:port`; port 0 picks a free port, printed on stdout as
    /// `WSGATE_LISTENING=host:port`).
    #[arg(long, env = "WSGATE_LISTEN", default_value = "0.0.0.0:3000")]
    pub listen: SocketAddr,

    /// Redis URL of the fleet's backplane (`redis://[user:password@]host:port[/db]`,
    /// `rediss://` for TLS). Absent: an in-process backplane, for a single replica (unless
    /// `--redis-sentinel` names the primary).
    #[arg(long, env = "WSGATE_REDIS_URL", value_parser = parse_redis_url)]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_mode: RedisModeArg,

    #[command(flatten)]
    pub redis_conn: RedisConnArgs,

    /// Token table: a JSON or TOML file mapping token -> user id. Absent: the demo tokens.
    #[arg(long, env = "WSGATE_TOKENS")]
    pub tokens: Option<PathBuf>,

    /// Permission table: a JSON or TOML file mapping user id -> list of project ids.
    /// Absent: the demo permissions.
    #[arg(long, env = "WSGATE_PERMISSIONS")]
    pub permissions: Option<PathBuf>,

    /// Largest inbound websocket message or polling request body (e.g. `1MiB`, `65536`).
    /// A client over it is disconnected.
    #[arg(long, env = "WSGATE_MAX_PAYLOAD", default_value = "1MiB", value_parser = parse_size)]
    pub max_payload: u64,

    /// Read buffer of each websocket connection (e.g. `1KiB`). Inbound traffic is small
    /// (joins, acks), so a small buffer saves memory per idle connection.
    #[arg(long, env = "WSGATE_WS_READ_BUFFER", default_value = "1KiB", value_parser = parse_buffer)]
    pub ws_read_buffer: usize,

    /// Packets queued per socket before it counts as a slow consumer (see --slow-consumer).
    #[arg(long, env = "WSGATE_MAX_BUFFER", default_value_t = 4096)]
    pub max_buffer: usize,

    /// Bytes queued per socket past which it counts as a slow consumer too (e.g. `16MiB`):
    /// the bound in memory whatever the messages' size (DESIGN.md section 5). The update that
    /// crosses it is still queued; the next one finds the queue full.
    #[arg(long, env = "WSGATE_MAX_BUFFER_BYTES", default_value = "16MiB", value_parser = parse_buffer_bytes)]
    pub max_buffer_bytes: usize,

    /// Write an update to a websocket with nothing queued straight from the delivery task
    /// instead of waking the socket's writer task (vendored engineioxide hunk 8): 7-28 % less
    /// CPU per delivery in BENCHMARKS.md's runs. `false` sends every packet through the
    /// socket's queue and writer task, as the published engineioxide does.
    #[arg(long, env = "WSGATE_DIRECT_WRITES", num_args = 0..=1, default_missing_value = "true",
          default_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub direct_writes: bool,

    /// Send each frame at once (TCP_NODELAY) instead of letting Nagle's algorithm hold a
    /// small frame until the previous one is acknowledged. Measured at 66,700 deliveries/s:
    /// worst latency 15–20 ms instead of 25–45 ms, for 5–15 % more CPU per delivery.
    #[arg(long, env = "WSGATE_TCP_NODELAY", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub tcp_nodelay: bool,

    /// Wait this long after an update arrives before delivering it and whatever came
    /// meanwhile (`0s`, the default: deliver at once). Up to `100ms`: trades that much
    /// latency for fewer socket writes and TCP segments when updates come often.
    #[arg(long, env = "WSGATE_COALESCE_WINDOW", default_value = "0s", value_parser = parse_coalesce_window)]
    pub coalesce_window: Duration,

    /// What happens to a socket whose queue (--max-buffer) is full when an update comes:
    /// `disconnect` tells it (`exception` "Too slow: disconnected") and disconnects it, so
    /// it never misses an update unknowingly; `drop` only counts the missed update
    /// (socketioxide's own behaviour, about 0.3 µs less CPU per recipient: BENCHMARKS.md).
    #[arg(long, env = "WSGATE_SLOW_CONSUMER", value_enum, default_value_t = SlowConsumer::Disconnect)]
    pub slow_consumer: SlowConsumer,

    /// Engine.IO ping interval (e.g. `25s`).
    #[arg(long, env = "WSGATE_PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// Engine.IO ping timeout (e.g. `20s`).
    #[arg(long, env = "WSGATE_PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub ping_timeout: Duration,

    /// Publish the demo `chat` update to each demo project at this interval (e.g. `5s`),
    /// through the backplane. Absent: no demo updates.
    #[arg(long, env = "WSGATE_DEMO_PUSH", value_parser = humantime::parse_duration)]
    pub demo_push: Option<Duration>,

    /// Log format (`text` or `json`); the level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "WSGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Web origins whose pages may open a socket (comma-separated): `*` (any, only when
    /// set), `self` (the origin the gateway was reached at), `scheme://host[:port]`, or
    /// `scheme://host:*` (any port). Requests without `Origin` (non-browser clients) always
    /// pass; a browser request from another origin is refused with 403.
    #[arg(
        long,
        env = "WSGATE_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = crate::http::origin::DEFAULT_ALLOWED_ORIGINS,
        value_parser = parse_origin_pattern
    )]
    pub allowed_origins: Vec<crate::http::origin::OriginPattern>,

    /// Let pages of the allowed origins send cookies / HTTP auth with long-polling requests
    /// (`Access-Control-Allow-Credentials: true`). Not allowed with `--allowed-origins '*'`.
    #[arg(long, env = "WSGATE_CORS_CREDENTIALS", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub cors_credentials: bool,

    /// Serve the demo page at `/` (`--demo-page`, `--demo-page=false`). Absent: on exactly
    /// when the demo identities are in use (neither `--tokens` nor `--permissions` given).
    #[arg(long, env = "WSGATE_DEMO_PAGE", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub demo_page: Option<bool>,

    /// Most Engine.IO sessions this replica holds, counted from the handshake (connected to
    /// Socket.IO or not, so abandoned handshakes cannot exhaust memory); a handshake over it
    /// gets HTTP 503 before any session exists, and a stock client retries with its
    /// backoff. 0: no limit.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Inbound events per second allowed per socket (token bucket refill rate); an event
    /// over it is answered with an `exception` `Rate limited` and not handled. 0 (the
    /// default, so existing clients see no change): no limit. The k8s base sets 50.
    #[arg(long, env = "WSGATE_MAX_EVENT_RATE", default_value_t = 0)]
    pub max_event_rate: u32,

    /// Events a socket may send at once before `--max-event-rate` applies (bucket size).
    #[arg(long, env = "WSGATE_EVENT_BURST", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_burst: u32,

    /// A socket that keeps sending over `--max-event-rate` for this long (its events refused
    /// with no pause of a second or more) has its transport closed, counted in
    /// `wsgate_event_flood_disconnects_total`; the stock client reconnects by itself, with
    /// its backoff. `0s`: never closed (only refused). Default `2s`: a burst or a short
    /// spike is only refused, a client that floods is gone within about 2 s.
    #[arg(long, env = "WSGATE_EVENT_FLOOD_WINDOW", default_value = "2s", value_parser = humantime::parse_duration)]
    pub event_flood_window: Duration,

    /// A TCP connection that sends no byte within this long of its accept is closed
    /// (`wsgate_timeouts_total{kind="idle"}`). Clients send their request at once, so 10 s
    /// is ample on a slow mobile network and frees a silent connection's descriptor.
    #[arg(long, env = "WSGATE_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// A request head (request line and headers) must be complete within this long of
    /// when the gateway starts waiting for it: the accept, or the end of the previous
    /// response on a keep-alive connection (so it is also the keep-alive timeout). Over it
    /// the connection is closed (`wsgate_timeouts_total{kind="header_read"|"keep_alive"}`).
    /// Default 20 s: a head is a few hundred bytes.
    #[arg(long, env = "WSGATE_HEADER_READ_TIMEOUT", default_value = "20s", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,

    /// An Engine.IO session whose client has not sent the Socket.IO CONNECT within this long
    /// of the handshake is closed (`wsgate_timeouts_total{kind="connect"}`). Node's default
    /// is 45 s; stock clients send CONNECT right after the handshake's answer (one round
    /// trip), so 10 s covers slow networks while an abandoned session (about 9 KB) lives a
    /// quarter as long.
    #[arg(long, env = "WSGATE_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub connect_timeout: Duration,

    /// On SIGTERM, connected clients are disconnected in batches spread over this window,
    /// so they reconnect to other replicas without a thundering herd (e.g. `10s`).
    #[arg(long, env = "WSGATE_DRAIN_WINDOW", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_window: Duration,

    /// On SIGTERM, the process exits (code 0) at the latest this long after the signal;
    /// must be longer than `--drain-window` (e.g. `20s`).
    #[arg(long, env = "WSGATE_DRAIN_DEADLINE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_deadline: Duration,

    /// Client addresses and per-IP limits (issue 20; section "Client network" below).
    #[command(flatten)]
    pub network: NetworkArgs,

    /// Identity and access.
    #[command(flatten)]
    pub identity: IdentityConfig,

    /// Room history.
    #[command(flatten)]
    pub history: HistoryArgs,

    /// Socket.IO's connection-state recovery for stock clients (the Node option
    /// `maxDisconnectionDuration`), fleet-wide: a client that comes back within this long,
    /// on any replica, gets `socket.recovered`, its rooms (re-authorized) and every update
    /// it missed (e.g. `2m`; off by default). Needs room history (`--history-size`) and
    /// Redis (standalone or cluster); every update then carries its offset as a last
    /// argument.
    #[arg(long, env = "WSGATE_CONNECTION_STATE_RECOVERY", value_parser = parse_recovery_window)]
    pub connection_state_recovery: Option<Duration>,

    /// Test hook: `NAME:DELAY` makes the background task NAME (e.g. `delivery`) panic
    /// DELAY after start, to show that a replica whose task ended stops being ready and
    /// exits non-zero. Never set it in production.
    #[arg(long, env = "WSGATE_FAIL_TASK", hide = true, value_parser = parse_fail_task)]
    pub fail_task: Option<(String, Duration)>,
}

fn parse_fail_task(s: &str) -> Result<(String, Duration), String> {
    let (name, delay) = s
        .split_once(':')
        .ok_or("expected NAME:DELAY, e.g. delivery:2s")?;
    const TASKS: [&str; 6] = [
        "delivery",
        "eviction",
        "backplane",
        "readiness",
        "demo_push",
        "sessions",
    ];
    if !TASKS.contains(&name) {
        return Err(format!(
            "unknown task {name:?}; one of {}",
            TASKS.join(", ")
        ));
    }
    let delay = humantime::parse_duration(delay).map_err(|e| e.to_string())?;
    Ok((name.to_owned(), delay))
}

impl ServeConfig {
    /// The checks that involve more than one setting; the message names them.
    pub fn check(&self) -> Result<(), String> {
        if self.connection_state_recovery.is_some() {
            if self.history.config().is_none() {
                return Err("--connection-state-recovery / WSGATE_CONNECTION_STATE_RECOVERY needs room history: \
                     set --history-size / WSGATE_HISTORY_SIZE (e.g. 1000) on the replicas and the publishers"
                    .into());
            }
            if self.redis_url.is_none() {
                return Err(
                    "--connection-state-recovery / WSGATE_CONNECTION_STATE_RECOVERY needs Redis \
                     (--redis-url, standalone or cluster): sessions and history live there"
                        .into(),
                );
            }
        }
        self.network.check()?;
        if self.drain_deadline <= self.drain_window {
            return Err(format!(
                "--drain-deadline / WSGATE_DRAIN_DEADLINE ({}) must be longer than --drain-window / WSGATE_DRAIN_WINDOW ({})",
                humantime::format_duration(self.drain_deadline),
                humantime::format_duration(self.drain_window)
            ));
        }
        Ok(())
    }

    /// Whether `/` serves the demo page: as asked, else only in the embedded default, where
    /// its demo tokens work.
    pub fn demo_page_enabled(&self) -> bool {
        self.demo_page.unwrap_or(
            self.tokens.is_none()
                && self.permissions.is_none()
                && self.identity.auth == AuthSource::Table
                && self.identity.authz == AuthzSource::Table,
        )
    }
}

/// Settings of `wsgate publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishConfig {
    /// Redis URL of the fleet (`redis://[user:password@]host:port[/db]`, `rediss://` for
    /// TLS). Optional with `--redis-sentinel`.
    #[arg(long, env = "WSGATE_REDIS_URL", value_parser = parse_redis_url,
          required_unless_present = "redis_sentinel")]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub redis_mode: RedisModeArg,

    #[command(flatten)]
    pub redis_conn: RedisConnArgs,

    /// Target room (repeatable). None: every socket of the namespace.
    #[arg(long = "room")]
    pub rooms: Vec<String>,

    /// Room whose members must not receive the update (repeatable).
    #[arg(long = "except")]
    pub except: Vec<String>,

    /// Target every socket of this user, on every replica (repeatable): the user room
    /// `<--user-room-prefix><user>`.
    #[arg(long = "user")]
    pub users: Vec<String>,

    /// Target this socket (repeatable): the room named by its id, as Node's `to(id)`.
    #[arg(long = "socket")]
    pub sockets: Vec<String>,

    /// The replicas' `--user-room-prefix`, which `--user` names rooms with.
    #[arg(long, env = "WSGATE_USER_ROOM_PREFIX", default_value = crate::backplane::DEFAULT_USER_ROOM_PREFIX)]
    pub user_room_prefix: String,

    /// Event name the clients receive.
    #[arg(long, default_value = "chat")]
    pub event: String,

    /// The event's argument as JSON, or `@path` to read it from a file. A JSON array is sent
    /// as one array argument; use `--args` for several arguments.
    #[arg(long, default_value = "null", conflicts_with = "args")]
    pub data: String,

    /// Several arguments, as a JSON array whose elements become the arguments.
    #[arg(long)]
    pub args: Option<String>,

    /// Mark the update volatile: replicas may skip it for sockets that are not ready.
    #[arg(long)]
    pub volatile: bool,

    /// Publish every DURATION (e.g. `1s`) until `--count` updates were sent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,

    /// Number of updates to publish.
    #[arg(long, default_value_t = 1)]
    pub count: u64,

    /// Largest message to publish (its encoded size, e.g. `1MiB`, `256KiB`); a larger one is
    /// refused with an error and nothing is sent. Redis drops every subscribed replica when
    /// one message overflows its `client-output-buffer-limit pubsub` (README, "Hardening").
    #[arg(long, env = "WSGATE_MAX_MESSAGE_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_message_size: u64,

    /// Reproduce the seed's periodic push: `Hello, <project>! Time is -- <time> --` on event
    /// `chat` to each demo project (with `--every`, repeatedly).
    #[arg(long)]
    pub demo: bool,

    /// Room history.
    #[command(flatten)]
    pub history: HistoryArgs,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s
        .trim()
        .parse()
        .map_err(|e| format!("expected a size such as 1048576, 64KiB or 1MiB ({e})"))?;
    if size.as_u64() == 0 {
        return Err("expected a size above zero".into());
    }
    Ok(size.as_u64())
}

fn parse_buffer(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    usize::try_from(n)
        .ok()
        .filter(|n| (256..=16 << 20).contains(n))
        .ok_or_else(|| "expected a size between 256 and 16MiB".into())
}

fn parse_buffer_bytes(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    usize::try_from(n)
        .ok()
        .filter(|n| *n >= 1024)
        .ok_or_else(|| "expected a size of at least 1KiB".into())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_at_least(s, "10s", Duration::from_millis(10))
}

fn parse_coalesce_window(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            (d <= Duration::from_millis(100))
                .then_some(d)
                .ok_or_else(|| "expected a duration of at most 100ms (e.g. 0s, 2ms, 10ms)".into())
        })
}

fn parse_origin_pattern(s: &str) -> Result<crate::http::origin::OriginPattern, String> {
    s.parse()
        .map_err(|e: crate::http::origin::OriginError| e.to_string())
}

/// One Redis URL, or (for `--redis-mode cluster`) several separated by commas.
fn parse_redis_url(s: &str) -> Result<String, String> {
    let ok = |u: &str| {
        redis::parse_redis_url(u.trim())
            .is_some_and(|u| matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix"))
    };
    if !s.is_empty() && s.split(',').all(ok) {
        Ok(s.to_owned())
    } else {
        Err(
            "expected a Redis URL such as redis://127.0.0.1:6379/0, or for \
             --redis-mode cluster seed nodes separated by commas"
                .into(),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Client network: who the client is behind proxies, and per-IP limits (README, "Hardening").

/// `wsgate serve`'s client-network settings.
#[derive(Debug, Clone, Args, Default)]
pub struct NetworkArgs {
    /// Most open TCP connections, and separately most Engine.IO sessions, per client
    /// address (an IPv6 client by its /64). Over it a handshake gets HTTP 429, a TCP
    /// connection a 429 and its close. 0 (the default): no limit, because without
    /// `--trusted-proxies` every client behind a load balancer has the balancer's address.
    /// A long-polling session uses up to two connections.
    #[arg(long, env = "WSGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: u32,

    /// Engine.IO handshakes per second per client address (a token bucket of as many, at
    /// least 1); over it a handshake gets HTTP 429 and the client retries with its backoff.
    /// 0 (the default): no limit, for the same reason as `--max-connections-per-ip`.
    #[arg(long, env = "WSGATE_MAX_HANDSHAKES_PER_IP_PER_S", default_value_t = 0.0,
          value_parser = parse_rate)]
    pub max_handshakes_per_ip_per_s: f64,

    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers (and PROXY protocol headers,
    /// with `--proxy-protocol`) name the client: comma-separated CIDRs or addresses (e.g.
    /// `10.0.0.0/8,fd00::/8`). From any other peer the headers are ignored. The client is
    /// the right-most address that is not a trusted proxy. Empty (the default): the TCP
    /// peer is the client.
    #[arg(long, env = "WSGATE_TRUSTED_PROXIES", default_value = "",
          value_parser = crate::net::forwarded::parse_list)]
    pub trusted_proxies: crate::net::TrustedProxies,

    /// Connections from `--trusted-proxies` start with a PROXY protocol header (v1 or v2),
    /// whose source address is the client; one without a valid header within
    /// `--header-read-timeout` is closed. Connections from other peers are served as they
    /// are (health checks, a kubelet).
    #[arg(long, env = "WSGATE_PROXY_PROTOCOL", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = clap::builder::BoolishValueParser::new())]
    pub proxy_protocol: bool,
}

impl NetworkArgs {
    /// The per-IP limits.
    pub fn ip_limits(&self) -> crate::net::IpLimits {
        crate::net::IpLimits {
            connections: self.max_connections_per_ip,
            handshakes_per_s: self.max_handshakes_per_ip_per_s,
        }
    }

    /// The rules between these settings.
    pub fn check(&self) -> Result<(), String> {
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err(
                "--proxy-protocol / WSGATE_PROXY_PROTOCOL needs --trusted-proxies / \
                 WSGATE_TRUSTED_PROXIES: the proxies whose headers name the client"
                    .into(),
            );
        }
        Ok(())
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("expected a number of handshakes per second, 0 or more (e.g. 5, 0.5)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_units_and_reject_garbage() {
        assert_eq!(parse_buffer_bytes("16MiB"), Ok(16 << 20));
        assert!(
            parse_buffer_bytes("100")
                .unwrap_err()
                .contains("at least 1KiB")
        );
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn network_settings_are_checked() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("fast").is_err());
        let mut n = NetworkArgs {
            proxy_protocol: true,
            ..NetworkArgs::default()
        };
        assert!(n.check().unwrap_err().contains("--trusted-proxies"));
        n.trusted_proxies = crate::net::forwarded::parse_list("10.0.0.0/8").unwrap();
        assert!(n.check().is_ok());
    }

    #[test]
    fn timeouts_have_a_floor() {
        assert_eq!(parse_timeout("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_timeout("0s").unwrap_err().contains("at least 10ms"));
        assert!(
            parse_history_ttl("0s")
                .unwrap_err()
                .contains("at least 1ms")
        );
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn coalesce_window_is_bounded() {
        assert_eq!(parse_coalesce_window("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_coalesce_window("10ms"), Ok(Duration::from_millis(10)));
        assert!(
            parse_coalesce_window("1s")
                .unwrap_err()
                .contains("at most 100ms")
        );
        assert!(parse_coalesce_window("soon").is_err());
    }

    #[test]
    fn command_line_is_consistent() {
        // Catches clashing argument ids between flattened groups (e.g. two `mode`s).
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::try_parse_from([
            "wsgate",
            "bench",
            "--url",
            "http://x",
            "--redis-mode",
            "cluster",
            "--mode",
            "idle",
        ])
        .unwrap();
        let Command::Bench(b) = cli.command else {
            panic!("not bench")
        };
        assert_eq!(b.redis_mode.mode, RedisMode::Cluster);
        assert_eq!(b.mode, BenchMode::Idle);
    }

    #[test]
    fn redis_urls_are_checked() {
        assert!(parse_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(parse_redis_url("http://x").is_err());
        assert!(parse_redis_url("nonsense").is_err());
        assert!(parse_redis_url("redis://a:1,redis://b:2").is_ok());
        assert!(parse_redis_url("redis://a:1,http://b").is_err());
        let standalone = RedisModeArg::default();
        assert!(standalone.check("redis://a:1").is_ok());
        assert!(standalone.check("redis://a:1,redis://b:2").is_err());
        let cluster = RedisModeArg {
            mode: RedisMode::Cluster,
        };
        assert!(cluster.check("redis://a:1,redis://b:2").is_ok());
    }
}
