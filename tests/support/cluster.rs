//! A private Redis Cluster (3 primaries, 3 replicas) on free loopback ports, for the
//! cluster-mode tests. Nodes are killed on drop; their config files live in a temporary
//! directory removed on drop. Every wait is bounded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use super::redis::{Resp, resp_command};

/// One `redis-server --cluster-enabled yes`.
pub struct Node {
    /// The plain port, which the harness's commands use.
    pub port: u16,
    /// With TLS, the port the cluster announces (its bus port is this + 10000).
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

impl Node {
    /// The port clients are sent to (`CLUSTER SLOTS`, `MOVED`).
    fn announced(&self) -> u16 {
        self.tls_port.unwrap_or(self.port)
    }
}

/// The cluster and where its files are.
pub struct RedisCluster {
    pub nodes: Vec<Node>,
    dir: PathBuf,
    /// `redis-server` arguments of a TLS cluster (certificates; see `start_tls`).
    tls: Vec<String>,
    /// The CA file `redis-cli` checks the nodes with, for a TLS cluster.
    ca: Option<PathBuf>,
}

/// A port P where both P and its cluster bus port P + 10000 are free.
fn free_cluster_port() -> u16 {
    loop {
        let p = super::free_port();
        if p < 55_000 && p != 6379 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
}

/// One slot range of `CLUSTER SLOTS`: first slot, last slot, primary port.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotRange {
    pub first: i64,
    pub last: i64,
    pub primary: u16,
}

async fn command(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    resp_command(port, &a).await
}

impl RedisCluster {
    /// Starts 6 nodes and joins them into 3 shards of a primary and a replica, with a
    /// node timeout of 1 s so that a failover takes about 2-3 s. Panics after 30 s.
    pub async fn start() -> RedisCluster {
        Self::start_with(Vec::new(), None).await
    }

    /// The same cluster with TLS between clients and nodes and between nodes
    /// (`tls-cluster`, `tls-replication`); every node keeps a plain port for the harness.
    /// `cert_args` name the server certificate, key and CA (`--tls-cert-file ...`).
    pub async fn start_tls(cert_args: Vec<String>, ca: PathBuf) -> RedisCluster {
        Self::start_with(cert_args, Some(ca)).await
    }

    async fn start_with(tls: Vec<String>, ca: Option<PathBuf>) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "wsgate-cluster-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut c = RedisCluster {
            nodes: Vec::new(),
            dir,
            tls,
            ca,
        };
        for _ in 0..6 {
            let node = c.start_node().await;
            c.nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &c.ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        create.arg("--cluster").arg("create");
        for n in &c.nodes {
            create.arg(format!("127.0.0.1:{}", n.announced()));
        }
        create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = timeout(Duration::from_secs(30), create.output())
            .await
            .expect("redis-cli --cluster create timed out")
            .expect("cannot run redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        c.wait_ok(Duration::from_secs(20)).await;
        c.wait_replicas_synced(Duration::from_secs(20)).await;
        c
    }

    /// Waits until every replica's link to its primary is up.
    async fn wait_replicas_synced(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for p in self.live_ports() {
            loop {
                let info = match command(p, &["INFO", "replication"]).await {
                    Ok(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
                    _ => String::new(),
                };
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                assert!(Instant::now() < deadline, "replica {p} not synced: {info}");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// One node on free ports, answering PING. The ports are free when picked, but another
    /// process (a parallel test, an outgoing connection's ephemeral port on the bus port)
    /// can take one before redis-server binds it: a node that exits at start is started
    /// again on other ports, at most 5 times.
    async fn start_node(&self) -> Node {
        for _ in 0..5 {
            let (port, tls_port) = if self.ca.is_some() {
                (super::free_port(), Some(free_cluster_port()))
            } else {
                (free_cluster_port(), None)
            };
            let mut child = self.spawn(port, tls_port);
            if answers_ping(port, &mut child).await {
                return Node {
                    port,
                    tls_port,
                    child: Some(child),
                };
            }
            let _ = child.kill().await;
        }
        panic!("no redis-server cluster node came up in 5 tries");
    }

    fn spawn(&self, port: u16, tls_port: Option<u16>) -> Child {
        let mut cmd = Command::new("redis-server");
        if let Some(tls) = tls_port {
            cmd.args(["--tls-port", &tls.to_string()])
                .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
                .args(["--tls-auth-clients", "no"])
                .args(&self.tls);
        }
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            .args(["--save", "", "--appendonly", "no"])
            // A replica syncs at once (not after the default 5 s diskless delay) and may take
            // over whatever its sync state, so a failover never waits on either.
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .args(["--cluster-replica-validity-factor", "0"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot spawn redis-server (is it installed and on PATH?)")
    }

    /// Seed URLs for `--redis-url` in cluster mode (all nodes, comma-separated).
    pub fn seeds(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://127.0.0.1:{}", n.announced()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Runs a command on the first live node that answers.
    pub async fn command(&self, args: &[&str]) -> Resp {
        let mut last = None;
        for p in self.live_ports() {
            match command(p, args).await {
                Ok(r) => return r,
                Err(e) => last = Some(e),
            }
        }
        panic!("no cluster node answered {args:?}: {last:?}");
    }

    /// Runs a command on the node at `port`.
    pub async fn command_on(&self, port: u16, args: &[&str]) -> Resp {
        command(port, args)
            .await
            .unwrap_or_else(|e| panic!("{args:?} on {port}: {e}"))
    }

    /// `CLUSTER KEYSLOT key`.
    pub async fn keyslot(&self, key: &str) -> i64 {
        match self.command(&["CLUSTER", "KEYSLOT", key]).await {
            Resp::Int(n) => n,
            other => panic!("CLUSTER KEYSLOT answered {other:?}"),
        }
    }

    /// The slot map as the node at `port` sees it.
    pub async fn slots_on(&self, port: u16) -> Vec<SlotRange> {
        let r = self.command_on(port, &["CLUSTER", "SLOTS"]).await;
        let Resp::Array(Some(ranges)) = r else {
            panic!("CLUSTER SLOTS answered {r:?}");
        };
        ranges
            .into_iter()
            .filter_map(|range| {
                let Resp::Array(Some(parts)) = range else {
                    return None;
                };
                let (Resp::Int(first), Resp::Int(last)) = (&parts[0], &parts[1]) else {
                    return None;
                };
                let Resp::Array(Some(node)) = &parts[2] else {
                    return None;
                };
                let Resp::Int(port) = node[1] else {
                    return None;
                };
                Some(SlotRange {
                    first: *first,
                    last: *last,
                    primary: port as u16,
                })
            })
            .collect()
    }

    /// The primary port serving `slot`, as the first live node sees it.
    pub async fn owner(&self, slot: i64) -> u16 {
        let port = self.live_ports()[0];
        self.slots_on(port)
            .await
            .iter()
            .find(|r| r.first <= slot && slot <= r.last)
            .map(|r| r.primary)
            .unwrap_or_else(|| panic!("no owner for slot {slot}"))
    }

    /// The distinct primaries' ports.
    pub async fn primaries(&self) -> Vec<u16> {
        let mut p: Vec<u16> = self
            .slots_on(self.live_ports()[0])
            .await
            .iter()
            .map(|r| r.primary)
            .collect();
        p.sort();
        p.dedup();
        p
    }

    /// `CLUSTER MYID` of the node at `port`.
    pub async fn node_id(&self, port: u16) -> String {
        match self.command_on(port, &["CLUSTER", "MYID"]).await {
            Resp::Bulk(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("CLUSTER MYID answered {other:?}"),
        }
    }

    /// SIGKILLs the node at `port`.
    pub async fn kill(&mut self, port: u16) {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("no such node");
        if let Some(mut c) = n.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Waits until every live node reports `cluster_state:ok` and agrees that every
    /// primary is live (a failover has completed).
    pub async fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live = self.live_ports();
            let announced: Vec<u16> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(Node::announced)
                .collect();
            let mut ok = true;
            for &p in &live {
                let state = match command(p, &["CLUSTER", "INFO"]).await {
                    Ok(Resp::Bulk(Some(b))) => String::from_utf8_lossy(&b).into_owned(),
                    _ => String::new(),
                };
                if !state.contains("cluster_state:ok") {
                    ok = false;
                    break;
                }
                let slots = self.slots_on(p).await;
                let covered: i64 = slots.iter().map(|r| r.last - r.first + 1).sum();
                // A TLS node names its TLS or its plain port, as the asking connection is.
                let known = |p: &u16| live.contains(p) || announced.contains(p);
                if covered != 16384 || slots.iter().any(|r| !known(&r.primary)) {
                    ok = false;
                    break;
                }
            }
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ok within {within:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the node on `port` answers PING within 10 s (`false` at once if it exited).
async fn answers_ping(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Resp::Simple(s)) = command(port, &["PING"]).await
            && s == "PONG"
        {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        sleep(Duration::from_millis(25)).await;
    }
    false
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                let _ = c.start_kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
