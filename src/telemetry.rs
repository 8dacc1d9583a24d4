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

/// Counters and their bounded label values, created at zero.
const LABELLED: [(&str, &str, &[&str]); 6] = [
    (
        "wsgate_recoveries_total",
        "result",
        &[
            "fresh",
            "recovered",
            "trimmed",
            "epoch_changed",
            "unavailable",
        ],
    ),
    (
        "wsgate_connects_total",
        "result",
        &["ok", "unauthorized", "limited", "draining"],
    ),
    ("wsgate_joins_total", "result", &["ok", "denied", "invalid"]),
    (
        "wsgate_events_received_total",
        "event",
        &["message", "join_project", "leave_project", "other"],
    ),
    (
        "wsgate_deliveries_total",
        "outcome",
        &["sent", "dropped_buffer_full", "dropped_closed", "volatile"],
    ),
    (
        "wsgate_backplane_messages_total",
        "kind",
        &["broadcast", "request"],
    ),
];

/// Install the global recorder (histograms with buckets, so quantiles can be aggregated
/// across replicas) and describe every metric.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("wsgate_".into()), &BUCKETS)?
        .install_recorder()?;
    describe();
    for (name, label, values) in LABELLED {
        for value in values {
            metrics::counter!(name, label => *value).absolute(0);
        }
    }
    for name in [
        "wsgate_backplane_reconnects_total",
        "wsgate_backplane_resubscribes_total",
        "wsgate_events_limited_total",
        "wsgate_drain_disconnects_total",
        "wsgate_slow_consumer_disconnects_total",
        "wsgate_overflow_reports_dropped_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for name in ["wsgate_connections", "wsgate_draining", "wsgate_ready"] {
        metrics::gauge!(name).set(0.0);
    }
    Ok(handle)
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
        "Socket.IO handshakes by result: ok, unauthorized, limited (--max-connections), draining."
    );
    describe_counter!(
        "wsgate_joins_total",
        "join_project requests by result: ok, denied, invalid."
    );
    describe_counter!(
        "wsgate_recoveries_total",
        "Opted-in joins (recover / since) by result: fresh, recovered, trimmed, epoch_changed, unavailable."
    );
    describe_counter!(
        "wsgate_events_received_total",
        "Client events by name (message, join_project, leave_project, other)."
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
    describe_counter!(
        "wsgate_backplane_messages_total",
        "Messages received from the backplane by kind: broadcast, request."
    );
    describe_counter!(
        "wsgate_backplane_decode_errors_total",
        "Backplane messages dropped because they do not decode, by kind."
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
        "wsgate_backplane_resubscribes_total",
        "Shard channels a Redis Cluster node dropped (slot moved) that were subscribed again."
    );
    describe_histogram!(
        "wsgate_fanout_seconds",
        Unit::Seconds,
        "Time to queue one backplane message on every matching local socket."
    );
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
        "Refused credentials by reason (alg_none, expired, bad_signature, ...) and stage (handshake, refresh)."
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
        "wsgate_revocations_total",
        "Fleet-wide revocations applied on this replica."
    );
    describe_histogram!(
        "wsgate_revoke_seconds",
        Unit::Seconds,
        "From a revocation's publish to this replica acting on it."
    );
    describe_counter!(
        "wsgate_limit_refusals_total",
        "Per-identity limit refusals by limit: connections_per_user, rooms_per_socket."
    );
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, fs, path::Path};

    fn names_in(text: &str, out: &mut BTreeSet<String>) {
        for (i, _) in text.match_indices("\"wsgate_") {
            let name: String = text[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.insert(name);
        }
    }

    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("telemetry.rs") {
                names_in(&fs::read_to_string(&p).unwrap(), out);
            }
        }
    }

    /// promtool rejects a metric without help text: every `wsgate_*` name used anywhere in
    /// the code must be described here.
    #[test]
    fn every_metric_in_the_code_is_described() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        walk(&src, &mut used);
        let here = fs::read_to_string(src.join("telemetry.rs")).unwrap();
        let missing: Vec<_> = used
            .iter()
            .filter(|n| !here.contains(&format!("\"{n}\"")))
            .collect();
        assert!(
            missing.is_empty(),
            "not described in telemetry.rs: {missing:?}"
        );
    }
}
