//! How wsgate reaches Redis, for every connection it makes (subscriber, publish pool,
//! history, permissions, `wsgate publish` / `revoke`, the cluster engine): the URL with
//! its user and password (ACL), TLS for `rediss://` (rustls, the Mozilla roots built in or
//! `--redis-ca-file`, a client certificate), and Sentinel, which names the primary anew
//! for each connection so that a reconnect after a failover reaches the new one.
//!
//! Files are read once, at start-up; a file that cannot be used is a settings error naming
//! its flag. Whatever fails later (a CA that does not match, a wrong password, no sentinel
//! answering) fails the connection, which the caller reports and retries.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures_util::{FutureExt, future::BoxFuture};
use redis::{
    Client, ConnectionAddr, IntoConnectionInfo, RedisResult, TlsCertificates,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};
use tokio::sync::Mutex;

/// What a connection needs besides the URL (`config::RedisConnArgs` gives it from the
/// flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// CA certificates (PEM) instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key: Option<PathBuf>,
    /// Sentinels, `host:port`; empty: the URL's server.
    pub sentinels: Vec<String>,
    /// The name the sentinels know the primary by.
    pub master: Option<String>,
    /// The sentinels' own password.
    pub sentinel_password: Option<String>,
}

/// Why the Redis settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file cannot be read or holds no usable PEM.
    #[error("{flag}: {path}: {why}")]
    File {
        /// The flag and variable naming the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// TLS material was given for a URL that does not use TLS.
    #[error(
        "--redis-ca-file / --redis-client-cert need a rediss:// URL in --redis-url / WSGATE_REDIS_URL"
    )]
    NotTls,
    /// The URL, or a sentinel address, is not usable.
    #[error("{what}: {source}")]
    Redis {
        /// The setting.
        what: &'static str,
        /// Why.
        source: redis::RedisError,
    },
}

/// Reaches the fleet's Redis (one server, or the primary Sentinel names). Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    target: Arc<Target>,
    tls: Option<TlsCertificates>,
}

enum Target {
    /// One server at a fixed address.
    Direct(Client),
    /// The primary the sentinels name at connection time.
    Sentinel {
        client: Mutex<SentinelClient>,
        master: String,
        sentinels: usize,
    },
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Reconnect delay cap with Sentinel: asking a sentinel is cheap, and the new primary is
/// there as soon as they agree, so the subscriber asks at least once a second.
const SENTINEL_BACKOFF_CAP: Duration = Duration::from_secs(1);

impl Connector {
    /// The connector for `url` (with Sentinel: only its scheme, user, password and db)
    /// and the TLS and Sentinel settings of `args`.
    pub fn new(url: &str, args: &Settings) -> Result<Self, ConnectError> {
        let tls_url = url.trim_start().starts_with("rediss://");
        let tls = tls(url, args)?;
        let bad_url = |source| ConnectError::Redis {
            what: "--redis-url / WSGATE_REDIS_URL",
            source,
        };
        let target = match &args.master {
            Some(master) if !args.sentinels.is_empty() => {
                let info = with_host(url).into_connection_info().map_err(bad_url)?;
                let redis = info.redis_settings();
                let sentinels = args
                    .sentinels
                    .iter()
                    .map(|hp| sentinel_addr(hp, tls_url))
                    .collect::<Result<Vec<_>, _>>()?;
                let count = sentinels.len();
                let mut b =
                    SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
                        .map_err(bad_url)?
                        .set_client_to_redis_db(redis.db());
                if let Some(user) = redis.username() {
                    b = b.set_client_to_redis_username(user);
                }
                if let Some(pw) = redis.password() {
                    b = b.set_client_to_redis_password(pw);
                }
                if let Some(pw) = &args.sentinel_password {
                    b = b.set_client_to_sentinel_password(pw);
                }
                if tls_url {
                    b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                    if let Some(certs) = &tls {
                        b = b
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs.clone());
                    }
                }
                let client = b.build().map_err(|source| ConnectError::Redis {
                    what: "--redis-sentinel / WSGATE_REDIS_SENTINEL",
                    source,
                })?;
                Target::Sentinel {
                    client: Mutex::new(client),
                    master: master.clone(),
                    sentinels: count,
                }
            }
            _ => Target::Direct(
                match &tls {
                    Some(certs) => Client::build_with_tls(url, certs.clone()),
                    None => Client::open(url),
                }
                .map_err(bad_url)?,
            ),
        };
        Ok(Self {
            target: Arc::new(target),
            tls,
        })
    }

    /// A client for the server to connect to now: the URL's, or the primary the sentinels
    /// name at this moment (checked to be a primary).
    /// Boxed: the sentinel lookup is a deep future, and every caller's would grow by it.
    pub fn client(&self) -> BoxFuture<'_, RedisResult<Client>> {
        async move {
            match &*self.target {
                Target::Direct(c) => Ok(c.clone()),
                Target::Sentinel { client, .. } => {
                    client.lock().await.async_get_client().await.map_err(|e| {
                        redis::RedisError::from((
                            e.kind(),
                            "no primary from the sentinels",
                            e.to_string(),
                        ))
                    })
                }
            }
        }
        .boxed()
    }

    /// The TLS material for the cluster engine's builder (`None`: the built-in roots).
    pub fn certificates(&self) -> Option<TlsCertificates> {
        self.tls.clone()
    }

    /// The longest wait between two reconnect attempts of a subscriber.
    pub fn backoff_cap(&self, direct: Duration) -> Duration {
        match &*self.target {
            Target::Direct(_) => direct,
            Target::Sentinel { .. } => SENTINEL_BACKOFF_CAP.min(direct),
        }
    }

    /// What is being reached, for log lines (never a password).
    pub fn describe(&self) -> String {
        match &*self.target {
            Target::Direct(c) => match c.get_connection_info().addr() {
                ConnectionAddr::Tcp(h, p) => format!("redis {h}:{p}"),
                ConnectionAddr::TcpTls { host, port, .. } => format!("redis {host}:{port} (tls)"),
                other => format!("redis {other}"),
            },
            Target::Sentinel {
                master, sentinels, ..
            } => format!("sentinel primary {master:?} ({sentinels} sentinels)"),
        }
    }
}

/// With Sentinel the URL's host is never used and may be left out (`rediss://`); the
/// parser wants one, so a stand-in is put there.
fn with_host(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut u) if u.host_str().is_none_or(str::is_empty) => {
            let _ = u.set_host(Some("sentinel-primary"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A sentinel's address from `host:port`, with TLS when the URL has it.
fn sentinel_addr(hostport: &str, tls: bool) -> Result<ConnectionAddr, ConnectError> {
    let scheme = if tls { "rediss" } else { "redis" };
    format!("{scheme}://{}", hostport.trim())
        .into_connection_info()
        .map(|i| i.addr().clone())
        .map_err(|source| ConnectError::Redis {
            what: "--redis-sentinel / WSGATE_REDIS_SENTINEL (host:port, comma-separated)",
            source,
        })
}

/// The CA and client certificate of `args` for `url` (one URL, or a cluster's seeds), read
/// and checked once; `None` when neither is given (a `rediss://` URL then uses the system
/// roots).
pub fn tls(url: &str, args: &Settings) -> Result<Option<TlsCertificates>, ConnectError> {
    let certs = read_certificates(args)?;
    if certs.is_some() && !url.trim_start().starts_with("rediss://") {
        return Err(ConnectError::NotTls);
    }
    Ok(certs)
}

fn read_certificates(args: &Settings) -> Result<Option<TlsCertificates>, ConnectError> {
    let root_cert = args
        .ca_file
        .as_deref()
        .map(|p| read_pem(p, "--redis-ca-file / WSGATE_REDIS_CA_FILE", "CERTIFICATE"))
        .transpose()?;
    let client_tls = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_pem(
                cert,
                "--redis-client-cert / WSGATE_REDIS_CLIENT_CERT",
                "CERTIFICATE",
            )?,
            client_key: read_pem(key, "--redis-client-key / WSGATE_REDIS_CLIENT_KEY", "KEY")?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// The file's bytes, when it holds a PEM block whose label ends in `label`.
fn read_pem(path: &Path, flag: &'static str, label: &str) -> Result<Vec<u8>, ConnectError> {
    let err = |why: String| ConnectError::File {
        flag,
        path: path.display().to_string(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().any(|l| {
        l.strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if !found {
        return Err(err(format!("no PEM {label} block")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Settings {
        Settings::default()
    }

    #[test]
    fn plain_and_tls_urls_connect_directly() {
        let c = Connector::new("redis://u:secret@127.0.0.1:7000/2", &args()).unwrap();
        assert_eq!(c.describe(), "redis 127.0.0.1:7000");
        let c = Connector::new("rediss://example.com:6380", &args()).unwrap();
        assert_eq!(c.describe(), "redis example.com:6380 (tls)");
    }

    #[test]
    fn tls_files_are_checked_and_need_rediss() {
        let dir = std::env::temp_dir().join(format!("wsgate-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let a = Settings {
            ca_file: Some(ca.clone()),
            ..args()
        };
        let e = Connector::new("rediss://h:1", &a).unwrap_err().to_string();
        assert!(e.contains("--redis-ca-file") && e.contains("no PEM"), "{e}");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = Connector::new("redis://h:1", &a).unwrap_err().to_string();
        assert!(e.contains("rediss://"), "{e}");
        let missing = Settings {
            ca_file: Some(dir.join("absent.pem")),
            ..args()
        };
        let e = Connector::new("rediss://h:1", &missing).unwrap_err();
        assert!(e.to_string().contains("absent.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sentinel_names_the_primary() {
        let a = Settings {
            sentinels: vec!["10.0.0.1:26379".into(), "10.0.0.2:26379".into()],
            master: Some("mymaster".into()),
            ..args()
        };
        let c = Connector::new("redis://:pw@ignored/1", &a).unwrap();
        assert_eq!(c.describe(), "sentinel primary \"mymaster\" (2 sentinels)");
        assert!(Connector::new("rediss://", &a).is_ok());
        assert_eq!(with_host("rediss://"), "rediss://sentinel-primary");
        assert_eq!(
            c.backoff_cap(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
    }
}
