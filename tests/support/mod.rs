//! Shared harness for the wsgate integration tests.
//!
//! * [`Gateway`]: the real `wsgate serve` binary on a free loopback port, killed on drop.
//! * [`redis::RedisServer`]: a private `redis-server` on a free loopback port (never 6379),
//!   killable and restartable on the same port, killed on drop.
//! * [`client`]: a `rust_socketio` async client wrapped so that every event, ack and
//!   lifecycle change lands in a channel the test can wait on with a timeout.
//! * HTTP probes (`/healthz`, `/readyz`) over a raw HTTP/1.0 request, and `wsgate publish`
//!   run as a process.
//!
//! Every wait in here is bounded by a timeout.
//!
//! Run: `cargo test --test contract --test fleet` (needs `redis-server` on PATH for the
//! fleet tests). `WSGATE_TEST_ECHO=1` streams every gateway's stderr live; otherwise the
//! tail of a gateway's stderr is printed when a test panics.
#![allow(dead_code)]

pub mod client;
pub mod cluster;
pub mod redis;
pub mod tls;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

#[allow(unused_imports)]
pub use client::{ConnectOutcome, Creds, TestClient, Transport};

/// Path of the binary under test, built by cargo for the integration tests.
pub const WSGATE_BIN: &str = env!("CARGO_BIN_EXE_wsgate");

/// How long the binary may take to print `WSGATE_LISTENING=...`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Default bound for a single expected event / ack.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound for a `wsgate publish` process.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a whole test body under an overall timeout; panics (failing the test) when it is
/// exceeded. Dropping the body on timeout drops its gateways / redis servers, which kills
/// their processes.
pub async fn run_bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    if timeout(limit, body).await.is_err() {
        panic!("test did not finish within its overall timeout of {limit:?}");
    }
}

/// Waits until `check` returns `Some`, polling every `every`, for at most `within`.
pub async fn poll_until<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(v)) = timeout(remaining.max(Duration::from_millis(1)), check()).await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(every).await;
    }
}

/// Environment of a child process: the test's environment minus any `WSGATE_*` setting, so
/// that a developer's shell cannot change what the tests run.
fn hermetic(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WSGATE_") {
            cmd.env_remove(&k);
        }
    }
}

type Lines = Arc<Mutex<VecDeque<String>>>;

const KEEP_STDERR_LINES: usize = 400;

fn push_line(buf: &Lines, line: String, keep: usize) {
    let mut b = buf.lock().unwrap();
    if b.len() >= keep {
        b.pop_front();
    }
    b.push_back(line);
}

/// A running `wsgate serve` process.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub name: String,
    stderr: Lines,
    stdout: Lines,
}

impl Gateway {
    /// Starts `wsgate serve --listen 127.0.0.1:0 <args>` and waits for its
    /// `WSGATE_LISTENING=host:port` line. Panics (with the process's stderr) on failure.
    pub async fn start(args: &[&str]) -> Gateway {
        Self::start_named("wsgate", args).await
    }

    pub async fn start_named(name: &str, args: &[&str]) -> Gateway {
        match Self::try_start(name, args).await {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn try_start(name: &str, args: &[&str]) -> Result<Gateway, String> {
        Self::try_start_env(name, args, &[]).await
    }

    /// [`Gateway::try_start`] with extra environment variables (e.g. `RUST_LOG`).
    pub async fn try_start_env(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Gateway, String> {
        let mut cmd = Command::new(WSGATE_BIN);
        hermetic(&mut cmd);
        cmd.envs(env.iter().copied());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {WSGATE_BIN}: {e}"))?;

        let stderr: Lines = Arc::default();
        let stdout: Lines = Arc::default();
        let echo = std::env::var_os("WSGATE_TEST_ECHO").is_some();

        let err_pipe = child.stderr.take().expect("stderr piped");
        {
            let stderr = stderr.clone();
            let name = name.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(err_pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name} stderr] {line}");
                    }
                    push_line(&stderr, line, KEEP_STDERR_LINES);
                }
            });
        }

        let out_pipe = child.stdout.take().expect("stdout piped");
        let (tx, rx) = tokio::sync::oneshot::channel::<String>();
        {
            let stdout = stdout.clone();
            tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut lines = BufReader::new(out_pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    push_line(&stdout, line.clone(), KEEP_STDERR_LINES);
                    if let Some(v) = line.strip_prefix("WSGATE_LISTENING=")
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(v.trim().to_string());
                    }
                }
            });
        }

        let tail = joined;
        let addr = match timeout(STARTUP_TIMEOUT, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => {
                // stdout closed without the line: the process probably exited.
                let status = timeout(Duration::from_secs(5), child.wait()).await;
                sleep(Duration::from_millis(100)).await;
                return Err(format!(
                    "{name}: `wsgate serve {}` closed stdout without printing WSGATE_LISTENING= \
                     (exit: {status:?})\n--- stderr ---\n{}",
                    args.join(" "),
                    tail(&stderr)
                ));
            }
            Err(_) => {
                let _ = child.start_kill();
                return Err(format!(
                    "{name}: `wsgate serve {}` did not print WSGATE_LISTENING= within {STARTUP_TIMEOUT:?}\n\
                     --- stderr ---\n{}",
                    args.join(" "),
                    tail(&stderr)
                ));
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("{name}: bad WSGATE_LISTENING value {addr:?}: {e}"))?;
        Ok(Gateway {
            child,
            addr,
            name: name.to_string(),
            stderr,
            stdout,
        })
    }

    /// `http://127.0.0.1:PORT/` for the socket.io client.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn stderr_tail(&self) -> String {
        joined(&self.stderr)
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().iter().cloned().collect()
    }

    /// `None` while the process runs, its exit status once it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics when the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} ({}) exited unexpectedly with {status}\n--- stderr ---\n{}",
                self.name,
                self.addr,
                self.stderr_tail()
            );
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id (while it runs), e.g. to send it a signal.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.addr, path).await
    }

    /// Waits until `GET path` answers `want`; returns the time it took. Panics otherwise.
    pub async fn wait_status(&self, path: &str, want: u16, within: Duration) -> Duration {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            let r = self.get(path).await;
            if matches!(&r, Ok((s, _)) if *s == want) {
                break;
            }
            let last = r.map(|(s, _)| s).map_err(|e| e.to_string());
            if Instant::now() >= deadline {
                panic!(
                    "{} ({}): GET {path} did not answer {want} within {within:?}; last answer: {last:?}\n\
                     --- stderr ---\n{}",
                    self.name,
                    self.addr,
                    self.stderr_tail()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
        start.elapsed()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ({}) stderr (tail) ---\n{}\n--- end {} ---",
                self.name,
                self.addr,
                self.stderr_tail(),
                self.name
            );
        }
    }
}

/// `GET path` with a raw HTTP/1.0 request; returns (status, body). Bounded by 5 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let r = http_request(addr, "GET", path, &[]).await?;
    Ok((r.status, r.body))
}

/// An answer to [`http_request`].
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// The header lines, as received.
    pub head: String,
    pub body: String,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// `METHOD path` with extra headers, as a raw HTTP/1.0 request read to EOF, or as HTTP/1.1
/// when the headers ask for an `Upgrade` (then the answer is returned as soon as its head
/// arrived: the body, if any, may be cut). Bounded by 5 s.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpAnswer> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await?;
        let upgrade = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("upgrade"));
        let mut req = if upgrade {
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n")
        } else {
            format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n")
        };
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if upgrade && text.contains("\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status_line = text.lines().next().unwrap_or_default().to_string();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("bad HTTP status line {status_line:?}"))
            })?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok(HttpAnswer {
            status,
            head: head.to_string(),
            body: body.to_string(),
        })
    };
    match timeout(Duration::from_secs(5), fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{method} {path} on {addr} timed out"),
        )),
    }
}

/// Result of a `wsgate publish` run.
#[derive(Debug)]
pub struct ProcOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ProcOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `wsgate publish <args>` to completion (bounded by `PUBLISH_TIMEOUT`; killed when
/// it takes longer, which is an error).
pub async fn run_publish(args: &[&str]) -> Result<ProcOutput, String> {
    run_wsgate("publish", args, PUBLISH_TIMEOUT).await
}

/// Runs `wsgate <sub> <args>` to completion within `limit`.
pub async fn run_wsgate(sub: &str, args: &[&str], limit: Duration) -> Result<ProcOutput, String> {
    let mut cmd = Command::new(WSGATE_BIN);
    hermetic(&mut cmd);
    cmd.arg(sub)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = match timeout(limit, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(format!("cannot run wsgate {sub}: {e}")),
        Err(_) => {
            return Err(format!(
                "`wsgate {sub} {}` did not finish within {limit:?}",
                args.join(" ")
            ));
        }
    };
    Ok(ProcOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `wsgate publish <args>` and panics unless it exits 0.
pub async fn publish_ok(args: &[&str]) {
    match run_publish(args).await {
        Ok(o) if o.success() => {}
        Ok(o) => panic!(
            "`wsgate publish {}` failed with {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.status,
            o.stdout,
            o.stderr
        ),
        Err(e) => panic!("{e}"),
    }
}

/// Runs `wsgate revoke <args>` (within 20 s) and panics unless it exits 0; returns its
/// output (stdout reports how many replicas got it).
pub async fn revoke_ok(args: &[&str]) -> ProcOutput {
    match run_wsgate("revoke", args, Duration::from_secs(20)).await {
        Ok(o) if o.success() => o,
        Ok(o) => panic!(
            "`wsgate revoke {}` failed with {}\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.status,
            o.stdout,
            o.stderr
        ),
        Err(e) => panic!("{e}"),
    }
}

/// A free TCP port on 127.0.0.1 (never 6379).
pub fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if port != 6379 {
            return port;
        }
    }
}

/// The captured lines of a child's output, one string.
fn joined(lines: &Lines) -> String {
    lines
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}
