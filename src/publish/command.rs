//! `wsgate publish`: turn command-line values into broadcasts and send them.

use std::time::Duration;

use time::OffsetDateTime;

use super::{PublishError, Publisher, demo_broadcasts};
use crate::{
    backplane::{Args, Broadcast, wire},
    config::PublishConfig,
};

fn read_json(what: &str, text: &str) -> Result<serde_json::Value, PublishError> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| PublishError::Input(format!("{what}: cannot read {path}: {e}")))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text)
        .map_err(|e| PublishError::Input(format!("{what}: expected JSON ({e})")))
}

fn broadcasts(cfg: &PublishConfig) -> Result<Vec<Broadcast>, PublishError> {
    if cfg.demo {
        return Ok(demo_broadcasts(OffsetDateTime::now_utc()));
    }
    let args = match &cfg.args {
        Some(a) => match read_json("--args", a)? {
            serde_json::Value::Array(items) => items.iter().map(wire::from_json).collect(),
            _ => return Err(PublishError::Input("--args: expected a JSON array".into())),
        },
        None => vec![wire::from_json(&read_json("--data", &cfg.data)?)],
    };
    if cfg.event.is_empty() {
        return Err(PublishError::Input(
            "--event: expected a non-empty event name".into(),
        ));
    }
    if !cfg.users.is_empty() && cfg.user_room_prefix.is_empty() {
        return Err(PublishError::Input(
            "--user: user rooms are off (--user-room-prefix is empty)".into(),
        ));
    }
    let mut rooms = cfg.rooms.clone();
    rooms.extend(
        cfg.users
            .iter()
            .map(|u| super::user_room(&cfg.user_room_prefix, u)),
    );
    rooms.extend(cfg.sockets.iter().cloned());
    Ok(vec![Broadcast {
        event: cfg.event.clone(),
        args: Args(args),
        rooms,
        except: cfg.except.clone(),
        volatile: cfg.volatile,
        sent_at: None,
        position: None,
        order: None,
    }])
}

/// Run `wsgate publish`. Fails on the first publish Redis refuses.
pub async fn run(cfg: PublishConfig) -> Result<(), PublishError> {
    let mut batch = broadcasts(&cfg)?;
    let url = cfg
        .redis_conn
        .url(cfg.redis_url.as_deref())
        .ok_or_else(|| PublishError::Input("--redis-url / WSGATE_REDIS_URL is needed".into()))?;
    let publisher = Publisher::with_settings(&url, cfg.redis_mode, &cfg.redis_conn)?
        .with_history(cfg.history.config())?
        .with_max_message_size(usize::try_from(cfg.max_message_size).unwrap_or(usize::MAX));
    let mut ticker = cfg.every.map(|d| {
        let mut t = tokio::time::interval(d.max(Duration::from_micros(1)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for n in 0..cfg.count {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        if cfg.demo && n > 0 {
            batch = demo_broadcasts(OffsetDateTime::now_utc());
        }
        for b in &mut batch {
            // Stamped per send, for the replicas' publish-to-socket latency histogram.
            b.sent_at = Some(OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e6);
            let receivers = publisher.publish(b).await?;
            tracing::debug!(event = %b.event, rooms = ?b.rooms, receivers, "published");
        }
    }
    Ok(())
}
