//! A private `redis-server` for the fleet tests, a minimal RESP client, and the
//! `@socket.io/redis-emitter` wire encoding (to publish numbered messages directly).
//!
//! The Redis on 127.0.0.1:6379 is never used: every server here runs on a free port.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::free_port;

/// A reply of the RESP2 protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    pub fn as_strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                    Resp::Simple(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply<R: BufRead>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(std::io::Error::other(format!(
            "truncated RESP line {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let num = || {
        body.parse::<i64>()
            .map_err(|e| std::io::Error::other(format!("bad RESP number {body:?}: {e}")))
    };
    Ok(match line[0] {
        b'+' => Resp::Simple(body.clone()),
        b'-' => Resp::Error(body.clone()),
        b':' => Resp::Int(num()?),
        b'$' => {
            let n = num()?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(r)?);
                }
                Resp::Array(Some(items))
            }
        }
        other => {
            return Err(std::io::Error::other(format!(
                "unexpected RESP type byte {other:#x}"
            )));
        }
    })
}

/// Sends several commands on one connection (pipelined, one write) and reads all replies.
/// Bounded by 10 s.
pub async fn resp_pipeline(port: u16, commands: Vec<Vec<Vec<u8>>>) -> std::io::Result<Vec<Resp>> {
    let job = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Resp>> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut w = s.try_clone()?;
        let mut payload = Vec::new();
        for c in &commands {
            let args: Vec<&[u8]> = c.iter().map(|a| a.as_slice()).collect();
            payload.extend_from_slice(&encode_command(&args));
        }
        w.write_all(&payload)?;
        w.flush()?;
        let mut r = BufReader::new(s);
        let mut out = Vec::with_capacity(commands.len());
        for _ in 0..commands.len() {
            out.push(read_reply(&mut r)?);
        }
        Ok(out)
    });
    match timeout(Duration::from_secs(10), job).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "redis command timed out",
        )),
    }
}

/// One command, one reply.
pub async fn resp_command(port: u16, args: &[&[u8]]) -> std::io::Result<Resp> {
    let cmd = args.iter().map(|a| a.to_vec()).collect();
    let mut r = resp_pipeline(port, vec![cmd]).await?;
    Ok(r.remove(0))
}

/// A `redis-server` child process on a private loopback port.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    kind: Kind,
    /// Further `redis-server` arguments (ACLs, buffer limits, `--replicaof`, TLS).
    extra: Vec<String>,
}

/// What a [`RedisServer`] runs as, which decides how it is started and probed.
#[derive(Clone)]
enum Kind {
    /// A plain port, probed with PING.
    Plain,
    /// TLS only (`port` is the TLS port), probed by a TCP connect.
    Tls,
    /// A sentinel with this configuration file (it rewrites the file), probed with PING.
    Sentinel(std::path::PathBuf),
}

impl RedisServer {
    /// Starts a fresh server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with further `redis-server` arguments, e.g.
    /// `["--client-output-buffer-limit", "pubsub 64kb 0 0"]`.
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        Self::launch(
            free_port(),
            Kind::Plain,
            extra.iter().map(|s| s.to_string()).collect(),
        )
        .await
    }

    /// A TLS-only server: `args_for(port)` gives its TLS arguments (see
    /// `support::tls::TestPki::redis_args`). Commands of this harness do not speak TLS.
    pub async fn start_tls(args_for: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let port = free_port();
        Self::launch(port, Kind::Tls, args_for(port)).await
    }

    /// A sentinel (`redis-server --sentinel`) watching the primary at `primary_port` under
    /// `name`, with a quorum of `quorum` and a short down-after time (`down_after_ms`);
    /// `extra` are further arguments (e.g. a TLS port). Its plain port is probed and
    /// commanded.
    pub async fn start_sentinel(
        name: &str,
        primary_port: u16,
        quorum: u32,
        down_after_ms: u64,
        extra: Vec<String>,
    ) -> RedisServer {
        let port = free_port();
        let conf = std::env::temp_dir().join(format!(
            "wsgate-sentinel-{port}-{}.conf",
            std::process::id()
        ));
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {name} 127.0.0.1 {primary_port} {quorum}\n\
                 sentinel down-after-milliseconds {name} {down_after_ms}\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n"
            ),
        )
        .expect("write sentinel.conf");
        Self::launch(port, Kind::Sentinel(conf), extra).await
    }

    async fn launch(port: u16, kind: Kind, extra: Vec<String>) -> RedisServer {
        assert_ne!(port, 6379, "the shared Redis on 6379 must never be used");
        let mut r = RedisServer {
            port,
            child: None,
            kind,
            extra,
        };
        r.spawn().await;
        r
    }

    /// Whether the server answers, by the probe its kind allows.
    async fn probe(&self) -> Result<(), String> {
        match self.kind {
            Kind::Tls => tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Kind::Plain | Kind::Sentinel(_) => match resp_command(self.port, &[b"PING"]).await {
                Ok(Resp::Simple(s)) if s == "PONG" => Ok(()),
                // Up, with a password (`--requirepass`).
                Ok(Resp::Error(e)) if e.starts_with("NOAUTH") => Ok(()),
                Ok(other) => Err(format!("PING answered {other:?}")),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let dir = std::env::temp_dir();
        let mut last_err;
        // The port may still be held for a moment after a kill: retry for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cmd = Command::new("redis-server");
            match &self.kind {
                Kind::Sentinel(conf) => {
                    cmd.arg(conf).arg("--sentinel");
                }
                Kind::Plain | Kind::Tls => {
                    cmd.arg("--save").arg("").arg("--appendonly").arg("no");
                }
            }
            if !matches!(self.kind, Kind::Tls) {
                cmd.arg("--port").arg(self.port.to_string());
            }
            let mut child = cmd
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--dir")
                .arg(&dir)
                .args(&self.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("cannot spawn redis-server (is it installed and on PATH?)");
            // Wait for PING while the process is alive.
            let ping_deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_err = format!("redis-server exited with {status}");
                    break;
                }
                match self.probe().await {
                    Ok(()) => {
                        self.child = Some(child);
                        return;
                    }
                    Err(e) => last_err = e,
                }
                if Instant::now() >= ping_deadline {
                    break;
                }
                sleep(Duration::from_millis(25)).await;
            }
            let _ = child.kill().await;
            if Instant::now() >= deadline {
                panic!(
                    "redis-server on port {} did not come up: {last_err}",
                    self.port
                );
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits until the port refuses connections.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.probe().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis on {} still answers after kill",
                self.port
            );
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() needs kill() first");
        self.spawn().await;
    }

    pub async fn command(&self, args: &[&str]) -> Resp {
        let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
        resp_command(self.port, &a)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?} on {}: {e}", self.port))
    }

    /// `PUBSUB CHANNELS` (all channels with at least one subscriber).
    pub async fn pubsub_channels(&self) -> Vec<String> {
        let mut v = self.command(&["PUBSUB", "CHANNELS"]).await.as_strings();
        v.sort();
        v
    }

    /// `PUBSUB NUMSUB channel`.
    pub async fn numsub(&self, channel: &str) -> i64 {
        match self.command(&["PUBSUB", "NUMSUB", channel]).await {
            Resp::Array(Some(items)) if items.len() == 2 => match items[1] {
                Resp::Int(n) => n,
                ref other => panic!("PUBSUB NUMSUB answered {other:?}"),
            },
            other => panic!("PUBSUB NUMSUB answered {other:?}"),
        }
    }

    /// Waits until `channel` has at least `n` subscribers; panics after `within`.
    pub async fn wait_numsub_at_least(&self, channel: &str, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.numsub(channel).await;
            if got >= n {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "channel {channel:?} has {got} subscribers after {within:?}, expected >= {n}; \
                     channels: {:?}",
                    self.pubsub_channels().await
                );
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// Publishes raw bytes to a channel; returns the number of receivers Redis reports.
    pub async fn publish_raw(&self, channel: &str, payload: &[u8]) -> i64 {
        match resp_command(self.port, &[b"PUBLISH", channel.as_bytes(), payload])
            .await
            .unwrap_or_else(|e| panic!("PUBLISH on {}: {e}", self.port))
        {
            Resp::Int(n) => n,
            other => panic!("PUBLISH answered {other:?}"),
        }
    }

    /// Publishes many (channel, payload) pairs back to back on one connection.
    pub async fn publish_many(&self, msgs: &[(String, Vec<u8>)]) {
        let cmds = msgs
            .iter()
            .map(|(c, p)| vec![b"PUBLISH".to_vec(), c.as_bytes().to_vec(), p.clone()])
            .collect();
        let replies = resp_pipeline(self.port, cmds)
            .await
            .unwrap_or_else(|e| panic!("pipelined PUBLISH on {}: {e}", self.port));
        for r in replies {
            assert!(matches!(r, Resp::Int(_)), "PUBLISH answered {r:?}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        if let Kind::Sentinel(conf) = &self.kind {
            let _ = std::fs::remove_file(conf);
        }
    }
}

/// Channel of a broadcast to all, or to several rooms.
pub const ALL_CHANNEL: &str = "socket.io#/#";

/// Channel of a broadcast to exactly one room.
pub fn room_channel(room: &str) -> String {
    format!("socket.io#/#{room}#")
}

/// Room channels (`socket.io#/#<room>#`) among `channels`, as room names.
pub fn rooms_of(channels: &[String]) -> Vec<String> {
    channels
        .iter()
        .filter_map(|c| c.strip_prefix(ALL_CHANNEL))
        .filter_map(|r| r.strip_suffix('#'))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

fn json_to_msgpack(v: &Json) -> rmpv::Value {
    match v {
        Json::Null => rmpv::Value::Nil,
        Json::Bool(b) => rmpv::Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or_default())
            }
        }
        Json::String(s) => rmpv::Value::from(s.as_str()),
        Json::Array(a) => rmpv::Value::Array(a.iter().map(json_to_msgpack).collect()),
        Json::Object(o) => rmpv::Value::Map(
            o.iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

/// The message `@socket.io/redis-emitter` publishes for
/// `emitter.to(rooms).except(except).emit(event, ...args)`: msgpack
/// `[uid, {type: 2, data: [event, ...args], nsp: "/"}, {rooms, flags: {}, except}]`.
pub fn emitter_message(event: &str, args: &[Json], rooms: &[&str], except: &[&str]) -> Vec<u8> {
    let mut data = vec![rmpv::Value::from(event)];
    data.extend(args.iter().map(json_to_msgpack));
    let strs = |xs: &[&str]| rmpv::Value::Array(xs.iter().map(|r| rmpv::Value::from(*r)).collect());
    let msg = rmpv::Value::Array(vec![
        rmpv::Value::from("emitter"),
        rmpv::Value::Map(vec![
            (rmpv::Value::from("type"), rmpv::Value::from(2)),
            (rmpv::Value::from("data"), rmpv::Value::Array(data)),
            (rmpv::Value::from("nsp"), rmpv::Value::from("/")),
        ]),
        rmpv::Value::Map(vec![
            (rmpv::Value::from("rooms"), strs(rooms)),
            (rmpv::Value::from("flags"), rmpv::Value::Map(vec![])),
            (rmpv::Value::from("except"), strs(except)),
        ]),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &msg).expect("msgpack encoding");
    out
}

/// The channel the emitter uses for `rooms`: the room's own channel for exactly one room,
/// the broadcast channel otherwise.
pub fn emitter_channel(rooms: &[&str]) -> String {
    if rooms.len() == 1 {
        room_channel(rooms[0])
    } else {
        ALL_CHANNEL.to_string()
    }
}
