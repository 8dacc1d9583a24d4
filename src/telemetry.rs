//! The Prometheus recorder and the list of every metric wsgate exports, with its help
//! text, so `/metrics` is self-describing (promtool lints missing help) and every bounded
//! label value exists at zero from start-up (alerts and dashboards see a series, not a gap).
//! Label values are fixed sets chosen in code: never a user id, room or token.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds, from 100 µs (a fan-out to a few sockets) to 10 s.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets of the histograms that count things (updates, bytes) rather than time.
const SIZE_BUCKETS: [f64; 13] = [
    0.0, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
];

/// Declares label value enums: each value's text (`as_str`), every value (`ALL`,
/// `VALUES`), and for an enum that is the one label of a counter (`for "name" "label"`),
/// `count` / `increment` and its row in [`LABELLED`], which [`install`] creates at zero.
macro_rules! labels {
    ($(
        $(#[$doc:meta])*
        $name:ident $(for $metric:literal $key:literal)? {
            $($variant:ident = $value:literal),+ $(,)?
        }
    )+) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
            pub enum $name {
                $(#[doc = concat!("`", $value, "`")] $variant),+
            }

            impl $name {
                /// Every value, in declaration order.
                pub const ALL: &'static [Self] = &[$(Self::$variant),+];
                /// Every value's text, in declaration order.
                pub const VALUES: &'static [&'static str] = &[$($value),+];

                /// The label value.
                pub const fn as_str(self) -> &'static str {
                    match self {
                        $(Self::$variant => $value),+
                    }
                }
            }

            $(
                impl $name {
                    /// Count one under this value.
                    pub fn count(self) {
                        self.increment(1);
                    }

                    /// Count `n` under this value: through the handle kept at
                    /// [`install`] (one atomic add), or through the `counter!` macro
                    /// before it (which allocates the labelled key at every call).
                    pub fn increment(self, n: u64) {
                        match Self::handles().get().and_then(|h| h.get(self as usize)) {
                            Some(counter) => counter.increment(n),
                            None => metrics::counter!($metric, $key => self.as_str()).increment(n),
                        }
                    }

                    /// One handle per value, in declaration order, once kept.
                    fn handles() -> &'static std::sync::OnceLock<Box<[metrics::Counter]>> {
                        static HANDLES: std::sync::OnceLock<Box<[metrics::Counter]>> =
                            std::sync::OnceLock::new();
                        &HANDLES
                    }

                    /// Keep a handle per value from the recorder installed now.
                    fn keep_handles() {
                        let _ = Self::handles().set(
                            Self::ALL
                                .iter()
                                .map(|v| metrics::counter!($metric, $key => v.as_str()))
                                .collect(),
                        );
                    }
                }
            )?
        )+

        /// Every counter with one label: its name, the label's name and every value.
        pub const LABELLED: &[(&str, &str, &[&str])] = &[
            $($(($metric, $key, $name::VALUES),)?)+
        ];

        /// Keep the handles of every counter with one label (see `increment`).
        const KEEP_HANDLES: &[fn()] = &[
            $($({ let _ = $metric; $name::keep_handles },)?)+
        ];
    };
}

labels! {
    /// How a Socket.IO handshake ended.
    ConnectResult for "wsgate_connects_total" "result" {
        Ok = "ok",
        Unauthorized = "unauthorized",
        Limited = "limited",
        Draining = "draining",
    }

    /// How a `join_project` ended.
    JoinResult for "wsgate_joins_total" "result" {
        Ok = "ok",
        Denied = "denied",
        Invalid = "invalid",
        Limited = "limited",
    }

    /// What an opted-in join (recover / since) got.
    RecoveryResult for "wsgate_recoveries_total" "result" {
        Fresh = "fresh",
        Recovered = "recovered",
        Trimmed = "trimmed",
        EpochChanged = "epoch_changed",
        Unavailable = "unavailable",
    }

    /// What a stock client's CONNECT with `{pid, offset}` got (connection-state recovery).
    SessionRecovery for "wsgate_session_recoveries_total" "result" {
        Recovered = "recovered",
        Expired = "expired",
        Trimmed = "trimmed",
        EpochChanged = "epoch_changed",
        Unavailable = "unavailable",
    }

    /// A client event, by name (`Other`: any event without a handler).
    EventName for "wsgate_events_received_total" "event" {
        Message = "message",
        JoinProject = "join_project",
        LeaveProject = "leave_project",
        AuthRefresh = "auth_refresh",
        Other = "other",
    }

    /// What happened to one socket's copy of a broadcast.
    DeliveryOutcome for "wsgate_deliveries_total" "outcome" {
        Sent = "sent",
        DroppedBufferFull = "dropped_buffer_full",
        DroppedClosed = "dropped_closed",
        Volatile = "volatile",
    }

    /// A message received from the backplane, by kind.
    BackplaneKind for "wsgate_backplane_messages_total" "kind" {
        Broadcast = "broadcast",
        Request = "request",
        Control = "control",
    }

    /// Why a connected Redis subscriber session ended (it reconnects and subscribes again).
    BackplaneDrop for "wsgate_backplane_disconnects_total" "reason" {
        Closed = "closed",
        PingTimeout = "ping_timeout",
        Error = "error",
    }

    /// Why a backplane message did not decode.
    DecodeErrorKind for "wsgate_backplane_decode_errors_total" "kind" {
        NotMsgpack = "not_msgpack",
        NotEnvelope = "not_envelope",
        BadPacket = "bad_packet",
        BadOpts = "bad_opts",
        ShardedEncoding = "sharded_encoding",
        ShardedShape = "sharded_shape",
        BadControl = "bad_control",
        BadRequest = "bad_request",
    }

    /// Where a permission lookup of the Redis source was answered from.
    AuthzLookup for "wsgate_authz_lookups_total" "result" {
        Hit = "hit",
        Miss = "miss",
        Error = "error",
    }

    /// A per-identity limit.
    LimitKind for "wsgate_limit_refusals_total" "limit" {
        ConnectionsPerUser = "connections_per_user",
        RoomsPerSocket = "rooms_per_socket",
    }

    /// How an `auth_refresh` ended.
    AuthRefreshResult for "wsgate_auth_refresh_total" "result" {
        Ok = "ok",
        Refused = "refused",
    }

    /// The Engine.IO transport of a request refused for its Origin.
    OriginTransport for "wsgate_origin_refused_total" "transport" {
        Websocket = "websocket",
        Polling = "polling",
        Other = "other",
    }

    /// A connection closed by a timeout of the gateway's (README, "Hardening").
    TimeoutKind for "wsgate_timeouts_total" "kind" {
        Idle = "idle",
        HeaderRead = "header_read",
        KeepAlive = "keep_alive",
        Connect = "connect",
    }

    /// What refused a connection or an Engine.IO handshake before any session existed
    /// (README, "Hardening").
    NetRefusal for "wsgate_network_refusals_total" "limit" {
        Sessions = "sessions",
        ConnectionsPerIp = "connections_per_ip",
        SessionsPerIp = "sessions_per_ip",
        HandshakesPerIp = "handshakes_per_ip",
        IpTableFull = "ip_table_full",
        ProxyHeader = "proxy_header",
    }

    /// Why a credential was refused (`wsgate_auth_refusals_total{reason}`).
    AuthRefusal {
        Missing = "missing",
        Unknown = "unknown",
        TooLong = "too_long",
        Malformed = "malformed",
        AlgNone = "alg_none",
        AlgNotAllowed = "alg_not_allowed",
        UnknownKey = "unknown_key",
        BadSignature = "bad_signature",
        Expired = "expired",
        NotYetValid = "not_yet_valid",
        WrongIssuer = "wrong_issuer",
        WrongAudience = "wrong_audience",
        BadClaim = "bad_claim",
        NumericSub = "numeric_sub",
        OtherUser = "other_user",
        HookFailed = "hook_failed",
    }

    /// When a credential was refused (`wsgate_auth_refusals_total{stage}`).
    AuthStage {
        Handshake = "handshake",
        Refresh = "refresh",
    }

    /// An HTTP hook (`wsgate_hook_*{hook}`): `--auth http` or `--authz http`.
    Hook {
        Auth = "auth",
        Authz = "authz",
    }

    /// How one HTTP hook call ended (`wsgate_hook_calls_total{result}`).
    HookResult {
        Allow = "allow",
        Deny = "deny",
        Error = "error",
        Timeout = "timeout",
    }
}

/// Count one HTTP hook call by hook and result, and its latency.
pub fn hook_call(hook: Hook, result: HookResult, seconds: f64) {
    hook_calls(hook, result).increment(1);
    metrics::histogram!("wsgate_hook_seconds", "hook" => hook.as_str()).record(seconds);
}

/// Count an HTTP hook answer served from this replica's cache.
pub fn hook_cache_hit(hook: Hook) {
    hook_cache_hits(hook).increment(1);
}

fn hook_calls(hook: Hook, result: HookResult) -> metrics::Counter {
    metrics::counter!(
        "wsgate_hook_calls_total",
        "hook" => hook.as_str(),
        "result" => result.as_str()
    )
}

fn hook_cache_hits(hook: Hook) -> metrics::Counter {
    metrics::counter!("wsgate_hook_cache_hits_total", "hook" => hook.as_str())
}

/// Count a refused credential under its reason and stage.
pub fn auth_refusal(reason: AuthRefusal, stage: AuthStage) {
    auth_refusals(reason, stage).increment(1);
}

fn auth_refusals(reason: AuthRefusal, stage: AuthStage) -> metrics::Counter {
    metrics::counter!(
        "wsgate_auth_refusals_total",
        "reason" => reason.as_str(),
        "stage" => stage.as_str()
    )
}

/// Counters without labels, created at zero.
const UNLABELLED: [&str; 9] = [
    "wsgate_event_flood_disconnects_total",
    "wsgate_backplane_reconnects_total",
    "wsgate_backplane_resubscribes_total",
    "wsgate_events_limited_total",
    "wsgate_drain_disconnects_total",
    "wsgate_slow_consumer_disconnects_total",
    "wsgate_overflow_reports_dropped_total",
    "wsgate_token_expired_total",
    "wsgate_revocations_total",
];

/// Install the global recorder (histograms with buckets, so quantiles can be aggregated
/// across replicas), describe every metric and create every counter series at zero.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = builder()?.install_recorder()?;
    describe();
    declare();
    for keep in KEEP_HANDLES {
        keep();
    }
    Ok(handle)
}

fn builder() -> Result<PrometheusBuilder, BuildError> {
    let mut b = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("wsgate_".into()), &BUCKETS)?;
    // Sizes and counts, not seconds (full names are matched before the prefix).
    for name in ["wsgate_history_room_bytes", "wsgate_session_replay_updates"] {
        b = b.set_buckets_for_metric(Matcher::Full(name.into()), &SIZE_BUCKETS)?;
    }
    Ok(b)
}

/// Every counter series at zero (every value of its labels), and the replica's gauges.
fn declare() {
    for (name, label, values) in LABELLED {
        for value in *values {
            metrics::counter!(*name, *label => *value).absolute(0);
        }
    }
    for &reason in AuthRefusal::ALL {
        for &stage in AuthStage::ALL {
            auth_refusals(reason, stage).absolute(0);
        }
    }
    for &hook in Hook::ALL {
        hook_cache_hits(hook).absolute(0);
        for &result in HookResult::ALL {
            hook_calls(hook, result).absolute(0);
        }
    }
    for name in UNLABELLED {
        metrics::counter!(name).absolute(0);
    }
    for name in [
        "wsgate_connections",
        "wsgate_draining",
        "wsgate_ready",
        "wsgate_sessions",
        "wsgate_engine_sessions",
        "wsgate_client_ips",
    ] {
        metrics::gauge!(name).set(0.0);
    }
}

fn describe() {
    describe_gauge!(
        "wsgate_connections",
        "Live Socket.IO connections on this replica."
    );
    describe_gauge!(
        "wsgate_ready",
        "1 while /readyz answers 200 (backplane connected and not draining)."
    );
    describe_gauge!("wsgate_draining", "1 once SIGTERM started the drain.");
    describe_counter!(
        "wsgate_connects_total",
        "Socket.IO handshakes by result: ok, unauthorized, limited (--max-connections-per-user; --max-connections refuses earlier, at the Engine.IO handshake: wsgate_network_refusals_total), draining."
    );
    describe_counter!(
        "wsgate_joins_total",
        "join_project requests by result: ok, denied, invalid, limited (--max-rooms-per-socket)."
    );
    describe_counter!(
        "wsgate_recoveries_total",
        "Opted-in joins (recover / since) by result: fresh, recovered, trimmed, epoch_changed, unavailable."
    );
    describe_counter!(
        "wsgate_session_recoveries_total",
        "Stock clients' CONNECTs with {pid, offset} (--connection-state-recovery) by result: recovered (rooms and missed updates given back), expired (no such session, another user's, or past the window), trimmed (history lost some), epoch_changed (an offset this fleet never gave), unavailable (Redis unreachable, or an offset that is not one of ours)."
    );
    describe_gauge!(
        "wsgate_sessions",
        "Sockets with a recoverable session on this replica (--connection-state-recovery), as of the last keep-alive."
    );
    describe_histogram!(
        "wsgate_session_replay_updates",
        "Missed updates replayed per recovered session."
    );
    describe_histogram!(
        "wsgate_history_room_bytes",
        "Redis memory of a room's history (MEMORY USAGE of its stream), sampled for up to 16 of this replica's rooms per session keep-alive (--connection-state-recovery)."
    );
    describe_counter!(
        "wsgate_events_received_total",
        "Client events by name (message, join_project, leave_project, auth_refresh, other)."
    );
    describe_counter!(
        "wsgate_events_limited_total",
        "Client events refused by the per-socket rate limit (--max-event-rate)."
    );
    describe_counter!(
        "wsgate_deliveries_total",
        "Per-socket deliveries of backplane broadcasts by outcome: sent, dropped_buffer_full, dropped_closed, volatile (offered; skips are not reported)."
    );
    describe_counter!(
        "wsgate_slow_consumer_disconnects_total",
        "Sockets disconnected because their queue (--max-buffer packets) was full when an update came: they missed it and were told (exception, then disconnect)."
    );
    describe_counter!(
        "wsgate_overflow_reports_dropped_total",
        "Overflow reports the eviction task could not take at once (the socket is reported again on its next missed update)."
    );
    describe_counter!(
        "wsgate_drain_disconnects_total",
        "Clients disconnected by the drain after SIGTERM."
    );
    describe_histogram!(
        "wsgate_fanout_seconds",
        Unit::Seconds,
        "Time to queue one backplane message on every matching local socket."
    );
    describe_backplane();
    describe_access();
}

fn describe_backplane() {
    describe_counter!(
        "wsgate_backplane_messages_total",
        "Messages received from the backplane by kind: broadcast, request, control (revocations)."
    );
    describe_counter!(
        "wsgate_backplane_decode_errors_total",
        "Backplane messages dropped because they do not decode, by kind: not_msgpack, not_envelope, bad_packet, bad_opts, sharded_encoding, sharded_shape, bad_control, bad_request."
    );
    describe_gauge!(
        "wsgate_backplane_connected",
        "1 while the Redis subscriber connection is up."
    );
    describe_gauge!(
        "wsgate_backplane_subscriptions",
        "Room channels this replica is subscribed to."
    );
    describe_counter!(
        "wsgate_backplane_reconnects_total",
        "Reconnection attempts of the Redis subscriber."
    );
    describe_counter!(
        "wsgate_backplane_disconnects_total",
        "Connected Redis subscriber sessions (one Redis or Sentinel's primary) that ended, by reason: closed (Redis closed it: CLIENT KILL, client-output-buffer-limit pubsub, restart, failover), ping_timeout, error; each is followed by a reconnect that subscribes every wanted channel again."
    );
    describe_counter!(
        "wsgate_backplane_resubscribes_total",
        "Shard channels a Redis Cluster node dropped (slot moved) that were subscribed again."
    );
}

/// The help texts of delivery latency, who may connect and what is refused or closed.
fn describe_access() {
    describe_histogram!(
        "wsgate_publish_latency_seconds",
        Unit::Seconds,
        "From the publisher's stamp (opts.flags.wsgateSentAt) to the queueing on local sockets."
    );
    describe_counter!(
        "wsgate_origin_refused_total",
        "Browser requests refused for their Origin, by transport: websocket, polling, other."
    );
    describe_counter!(
        "wsgate_auth_refusals_total",
        "Refused credentials by reason (missing, unknown, too_long, malformed, alg_none, alg_not_allowed, unknown_key, bad_signature, expired, not_yet_valid, wrong_issuer, wrong_audience, bad_claim, numeric_sub, other_user, hook_failed) and stage (handshake, refresh)."
    );
    describe_counter!(
        "wsgate_auth_refresh_total",
        "auth_refresh events by result: ok, refused."
    );
    describe_counter!(
        "wsgate_token_expired_total",
        "Sockets disconnected at their token's exp."
    );
    describe_counter!(
        "wsgate_authz_lookups_total",
        "Permission lookups of the Redis source by result: hit (cache), miss (Redis), error."
    );
    describe_counter!(
        "wsgate_hook_calls_total",
        "HTTP hook calls (--auth http, --authz http) by hook (auth, authz) and result: allow, deny, error (connection refused, unexpected status, unparsable body), timeout (--hook-timeout). Errors and timeouts refuse."
    );
    describe_histogram!(
        "wsgate_hook_seconds",
        Unit::Seconds,
        "Latency of HTTP hook calls by hook (auth, authz), timeouts included."
    );
    describe_counter!(
        "wsgate_hook_cache_hits_total",
        "HTTP hook answers served from this replica's cache (or shared with a concurrent identical call), by hook: auth, authz."
    );
    describe_counter!(
        "wsgate_revocations_total",
        "Fleet-wide revocations applied on this replica."
    );
    describe_histogram!(
        "wsgate_revoke_seconds",
        Unit::Seconds,
        "From a revocation's publish to this replica acting on it."
    );
    describe_counter!(
        "wsgate_timeouts_total",
        "Connections closed by a timeout, by kind: idle (no byte within --idle-timeout), header_read (request head incomplete at --header-read-timeout), keep_alive (no next request within --header-read-timeout), connect (no Socket.IO CONNECT within --connect-timeout of the Engine.IO handshake)."
    );
    describe_counter!(
        "wsgate_event_flood_disconnects_total",
        "Sockets whose transport was closed for exceeding --max-event-rate for --event-flood-window."
    );
    describe_counter!(
        "wsgate_network_refusals_total",
        "Connections and Engine.IO handshakes refused before any session existed, by limit: sessions (--max-connections: HTTP 503), connections_per_ip (--max-connections-per-ip, TCP connections: 429 and closed), sessions_per_ip (--max-connections-per-ip, sessions: 429), handshakes_per_ip (--max-handshakes-per-ip-per-s: 429), ip_table_full (too many client addresses tracked: 503), proxy_header (--proxy-protocol: a trusted peer's connection without a valid header, closed)."
    );
    describe_gauge!(
        "wsgate_engine_sessions",
        "Engine.IO sessions open on this replica, with or without a Socket.IO connection; they count toward --max-connections."
    );
    describe_gauge!(
        "wsgate_client_ips",
        "Client addresses in the per-IP table (--max-connections-per-ip, --max-handshakes-per-ip-per-s)."
    );
    describe_counter!(
        "wsgate_limit_refusals_total",
        "Per-identity limit refusals by limit: connections_per_user, rooms_per_socket."
    );
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeMap, BTreeSet},
        fs,
        path::Path,
    };

    use super::*;

    fn names_in(text: &str, out: &mut BTreeSet<String>) {
        for (i, _) in text.match_indices("\"wsgate_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `"wsgate_"` alone is the buckets' prefix, not a name.
            if !name.ends_with('_') {
                out.insert(name);
            }
        }
    }

    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                names_in(&fs::read_to_string(&p).unwrap(), out);
            }
        }
    }

    /// The first string literal at the start of `text` (after blanks), and what follows it.
    fn literal(text: &str) -> Option<(&str, &str)> {
        let rest = text.trim_start().strip_prefix('"')?;
        let end = rest.find('"')?;
        Some((&rest[..end], &rest[end + 1..]))
    }

    /// Every `describe_*!(name, [unit,] help)` of this file: name -> help text.
    fn described() -> BTreeMap<String, String> {
        let here = include_str!("telemetry.rs");
        let mut out = BTreeMap::new();
        for kind in [
            "describe_counter!(",
            "describe_gauge!(",
            "describe_histogram!(",
        ] {
            for (i, _) in here.match_indices(kind) {
                let Some((name, rest)) = literal(&here[i + kind.len()..]) else {
                    continue;
                };
                let rest = rest.trim_start().trim_start_matches(',');
                let rest = rest.trim_start().trim_start_matches("Unit::Seconds,");
                if let Some((help, _)) = literal(rest) {
                    out.insert(name.to_owned(), help.to_owned());
                }
            }
        }
        out
    }

    /// promtool rejects a metric without help text: every `wsgate_*` name anywhere in the
    /// code (call sites, label declarations, the series created at zero) must be described.
    #[test]
    fn every_metric_in_the_code_is_described() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        walk(&src, &mut used);
        let described = described();
        assert!(described.len() >= 25, "the describe list was not read");
        let missing: Vec<_> = used
            .iter()
            .filter(|n| !described.contains_key(*n))
            .collect();
        assert!(missing.is_empty(), "not described: {missing:?}");
    }

    /// A dashboard author reads the values of a label from its help text: each declared
    /// value is named there.
    #[test]
    fn every_label_value_is_in_its_help_text() {
        let described = described();
        let auth = (
            "wsgate_auth_refusals_total",
            "reason",
            [AuthRefusal::VALUES, AuthStage::VALUES].concat(),
        );
        let labelled = LABELLED.iter().map(|(n, l, v)| (*n, *l, v.to_vec()));
        for (name, _, values) in labelled.chain([auth]) {
            let help = &described[name];
            let words: BTreeSet<_> = help
                .split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .collect();
            for value in values {
                assert!(words.contains(value), "{name}: {value} not in {help:?}");
            }
        }
    }

    /// `install` creates every counter series (every value of its labels) at zero.
    #[test]
    fn every_counter_series_exists_from_start_up() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            declare();
        });
        let text = handle.render();
        let mut expected: Vec<String> = Vec::new();
        for (name, label, values) in LABELLED {
            expected.extend(
                values
                    .iter()
                    .map(|v| format!("{name}{{{label}=\"{v}\"}} 0")),
            );
        }
        for reason in AuthRefusal::VALUES {
            for stage in AuthStage::VALUES {
                expected.push(format!(
                    "wsgate_auth_refusals_total{{reason=\"{reason}\",stage=\"{stage}\"}} 0"
                ));
            }
        }
        expected.extend(UNLABELLED.iter().map(|n| format!("{n} 0")));
        let lines: BTreeSet<&str> = text.lines().collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|e| !lines.contains(e.as_str()))
            .collect();
        assert!(missing.is_empty(), "not at zero: {missing:?}\n{text}");
        let uncreated: Vec<_> = described()
            .into_keys()
            .filter(|n| n.ends_with("_total"))
            .filter(|n| !text.lines().any(|l| l.starts_with(&format!("{n} "))))
            .filter(|n| !text.lines().any(|l| l.starts_with(&format!("{n}{{"))))
            .collect();
        assert!(uncreated.is_empty(), "counters not created: {uncreated:?}");
    }
}
