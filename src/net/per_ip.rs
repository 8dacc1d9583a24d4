//! Per-client-IP counts: open TCP connections and Engine.IO sessions
//! (`--max-connections-per-ip`) and a token bucket of handshakes
//! (`--max-handshakes-per-ip-per-s`).
//!
//! One entry per client address; an IPv6 client is counted by its /64, the block one host
//! gets. An entry goes when its counts are zero and its bucket is full: at once when the
//! last hold of it ends with a full bucket, else at the next sweep (at most one a second,
//! when a new address comes). The table never holds more than [`MAX_ENTRIES`]: a new
//! address beyond it is refused (`ip_table_full`); idle entries leave within about a
//! second, so only that many distinct addresses *holding* connections can fill it. One
//! mutex, never held across an await; nothing is allocated for a refusal.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::telemetry::NetRefusal;

/// Most client addresses tracked at once (about 70 bytes each: 7 MB at most).
pub const MAX_ENTRIES: usize = 100_000;
/// The shortest time between two sweeps of the table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The per-IP limits; 0 is "no limit".
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct IpLimits {
    /// Open TCP connections, and Engine.IO sessions, per client address (each against it).
    pub connections: u32,
    /// Handshakes per second per client address (the bucket's refill rate; its size is
    /// the same number, at least 1).
    pub handshakes_per_s: f64,
}

impl IpLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.connections > 0 || self.handshakes_per_s > 0.0
    }

    fn burst(&self) -> f64 {
        self.handshakes_per_s.max(1.0)
    }
}

/// The address an entry is kept under: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match crate::net::forwarded::canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[derive(Debug)]
struct Entry {
    connections: u32,
    sessions: u32,
    /// Handshake tokens as of `at`.
    tokens: f64,
    at: Instant,
}

impl Entry {
    fn new(limits: &IpLimits, now: Instant) -> Self {
        Self {
            connections: 0,
            sessions: 0,
            tokens: limits.burst(),
            at: now,
        }
    }

    fn refill(&mut self, limits: &IpLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.handshakes_per_s).min(limits.burst());
        self.at = now;
    }

    /// Nothing held and nothing to remember.
    fn idle(&mut self, limits: &IpLimits, now: Instant) -> bool {
        if self.connections > 0 || self.sessions > 0 {
            return false;
        }
        if limits.handshakes_per_s <= 0.0 {
            return true;
        }
        self.refill(limits, now);
        self.tokens >= limits.burst()
    }
}

struct Table {
    map: HashMap<IpAddr, Entry>,
    last_sweep: Instant,
}

/// What a hold counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    Session,
}

/// The per-IP table of a replica.
pub struct PerIp {
    limits: IpLimits,
    table: Mutex<Table>,
    /// `wsgate_client_ips`.
    gauge: metrics::Gauge,
}

impl std::fmt::Debug for PerIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerIp")
            .field("limits", &self.limits)
            .finish()
    }
}

impl PerIp {
    /// An empty table enforcing `limits`.
    pub fn new(limits: IpLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::new(Table {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            gauge: metrics::gauge!("wsgate_client_ips"),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A TCP connection from `ip`: counted while the hold lives, or refused.
    pub fn connection(self: &Arc<Self>, ip: IpAddr) -> Result<IpHold, NetRefusal> {
        self.hold(ip, Kind::Connection, Instant::now())
    }

    /// An Engine.IO handshake from `ip`: takes a token, and counts a session while the
    /// hold lives, or is refused.
    pub fn handshake(self: &Arc<Self>, ip: IpAddr) -> Result<IpHold, NetRefusal> {
        self.hold(ip, Kind::Session, Instant::now())
    }

    fn hold(self: &Arc<Self>, ip: IpAddr, kind: Kind, now: Instant) -> Result<IpHold, NetRefusal> {
        let key = key(ip);
        let limits = self.limits;
        let mut table = self.lock();
        if !table.map.contains_key(&key) {
            if table.map.len() >= MAX_ENTRIES || now.duration_since(table.last_sweep) >= SWEEP_EVERY
            {
                sweep(&mut table, &limits, now);
                self.gauge.set(table.map.len() as f64);
            }
            if table.map.len() >= MAX_ENTRIES {
                return Err(NetRefusal::IpTableFull);
            }
        }
        let fresh = !table.map.contains_key(&key);
        let entry = table
            .map
            .entry(key)
            .or_insert_with(|| Entry::new(&limits, now));
        let admitted = admit(entry, &limits, kind, now);
        if admitted.is_err() && fresh {
            // Never the case (a new entry has every token and no count), but a refusal
            // must not leave an entry behind.
            table.map.remove(&key);
        }
        if fresh && admitted.is_ok() {
            self.gauge.set(table.map.len() as f64);
        }
        admitted?;
        Ok(IpHold {
            table: self.clone(),
            key,
            kind,
        })
    }

    /// Whether TCP connections are counted (`--max-connections-per-ip` set).
    pub fn counts_connections(&self) -> bool {
        self.limits.connections > 0
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn release(&self, key: IpAddr, kind: Kind) {
        let limits = self.limits;
        let mut table = self.lock();
        let Some(entry) = table.map.get_mut(&key) else {
            return;
        };
        match kind {
            Kind::Connection => entry.connections = entry.connections.saturating_sub(1),
            Kind::Session => entry.sessions = entry.sessions.saturating_sub(1),
        }
        if entry.idle(&limits, Instant::now()) {
            table.map.remove(&key);
            self.gauge.set(table.map.len() as f64);
        }
    }
}

/// Count one more `kind` in `entry`, or say which limit refuses it.
fn admit(entry: &mut Entry, limits: &IpLimits, kind: Kind, now: Instant) -> Result<(), NetRefusal> {
    match kind {
        Kind::Connection => {
            if limits.connections > 0 && entry.connections >= limits.connections {
                return Err(NetRefusal::ConnectionsPerIp);
            }
            entry.connections += 1;
        }
        Kind::Session => {
            if limits.handshakes_per_s > 0.0 {
                entry.refill(limits, now);
                if entry.tokens < 1.0 {
                    return Err(NetRefusal::HandshakesPerIp);
                }
                entry.tokens -= 1.0;
            }
            if limits.connections > 0 && entry.sessions >= limits.connections {
                return Err(NetRefusal::SessionsPerIp);
            }
            entry.sessions += 1;
        }
    }
    Ok(())
}

fn sweep(table: &mut Table, limits: &IpLimits, now: Instant) {
    table.map.retain(|_, e| !e.idle(limits, now));
    table.last_sweep = now;
}

/// One connection or session counted under its client address until dropped.
pub struct IpHold {
    table: Arc<PerIp>,
    key: IpAddr,
    kind: Kind,
}

impl std::fmt::Debug for IpHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpHold").field("kind", &self.kind).finish()
    }
}

impl Drop for IpHold {
    fn drop(&mut self) {
        self.table.release(self.key, self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_and_sessions_count_apart_and_entries_go_at_zero() {
        let t = PerIp::new(IpLimits {
            connections: 2,
            handshakes_per_s: 0.0,
        });
        let a = ip("192.0.2.1");
        let c1 = t.connection(a).unwrap();
        let c2 = t.connection(a).unwrap();
        assert_eq!(t.connection(a).unwrap_err(), NetRefusal::ConnectionsPerIp);
        let s1 = t.handshake(a).unwrap();
        let s2 = t.handshake(a).unwrap();
        assert_eq!(t.handshake(a).unwrap_err(), NetRefusal::SessionsPerIp);
        // Another address is not affected.
        let other = t.connection(ip("192.0.2.2")).unwrap();
        assert_eq!(t.len(), 2);
        drop((c1, s1));
        let again = t.connection(a).unwrap();
        drop((c2, s2, again, other));
        assert!(t.is_empty(), "every entry gone when its counts are zero");
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let t = PerIp::new(IpLimits {
            connections: 1,
            handshakes_per_s: 0.0,
        });
        let _h = t.connection(ip("2001:db8:1:2::1")).unwrap();
        assert!(t.connection(ip("2001:db8:1:2:ffff::9")).is_err());
        assert!(t.connection(ip("2001:db8:1:3::1")).is_ok());
        let _v4 = t.connection(ip("::ffff:192.0.2.7")).unwrap();
        assert!(t.connection(ip("192.0.2.7")).is_err(), "mapped is IPv4");
    }

    #[test]
    fn handshakes_are_a_token_bucket() {
        let limits = IpLimits {
            connections: 0,
            handshakes_per_s: 2.0,
        };
        let mut e = Entry::new(&limits, Instant::now());
        let t0 = e.at;
        assert!(admit(&mut e, &limits, Kind::Session, t0).is_ok());
        assert!(admit(&mut e, &limits, Kind::Session, t0).is_ok());
        assert_eq!(
            admit(&mut e, &limits, Kind::Session, t0),
            Err(NetRefusal::HandshakesPerIp)
        );
        let later = t0 + Duration::from_millis(600);
        assert!(
            admit(&mut e, &limits, Kind::Session, later).is_ok(),
            "refilled"
        );
        e.sessions = 0;
        assert!(!e.idle(&limits, later), "bucket not full yet: remembered");
        assert!(e.idle(&limits, later + Duration::from_secs(1)));
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let limits = IpLimits {
            connections: 0,
            handshakes_per_s: 0.001,
        };
        let t = PerIp::new(limits);
        let now = Instant::now();
        let mut holds = Vec::new();
        for i in 0..MAX_ENTRIES as u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            holds.push(t.hold(a, Kind::Connection, now).unwrap());
        }
        let new = ip("203.0.113.1");
        assert_eq!(
            t.hold(new, Kind::Connection, now).unwrap_err(),
            NetRefusal::IpTableFull
        );
        assert_eq!(t.len(), MAX_ENTRIES, "a refusal adds nothing");
        // Handshake-only entries (bucket not full) are swept once their bucket is full.
        drop(holds.drain(..10));
        assert_eq!(t.len(), MAX_ENTRIES - 10);
        let a = ip("198.51.100.1");
        drop(t.hold(a, Kind::Session, now).unwrap());
        assert_eq!(t.len(), MAX_ENTRIES - 9, "bucket not full: kept");
        let later = Instant::now() + Duration::from_secs(2000);
        let _kept = t.hold(new, Kind::Connection, later).unwrap();
        assert_eq!(t.len(), MAX_ENTRIES - 9, "swept the one, added the new");
    }
}
