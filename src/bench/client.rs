//! One benchmark client: raw Engine.IO v4 / Socket.IO v5 frames over a WebSocket, cheaper
//! per received message than any full client library, so the generator does not become the
//! bottleneck it measures.

use std::sync::atomic::{AtomicU8, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};

use super::{BenchError, Clock};

/// Read buffer per client: updates are small, and tungstenite initializes the whole buffer
/// for every read.
const READ_BUFFER: usize = 4096;

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Updates received, duplicates included.
    pub received: u64,
    /// Updates whose sequence number was not above the previous one.
    pub out_of_order: u64,
    /// Updates received twice.
    pub duplicates: u64,
    /// Distinct sequence numbers received.
    pub distinct: u64,
}

/// How far one connect attempt got, read when it is abandoned at its time limit: a stalled
/// attempt then says what it was waiting for (the websocket handshake, the CONNECT reply,
/// or the join's answer), which tells a dropped SYN from a server that lost a packet.
#[derive(Debug, Default)]
pub struct Progress(AtomicU8);

impl Progress {
    /// The names of the stages, in order; the report counts stalls by these.
    pub const STAGES: [&'static str; 3] = ["handshake", "connect", "join"];

    fn set(&self, stage: u8) {
        self.0.store(stage, Ordering::Relaxed);
    }

    /// The stage the attempt was in, an index into [`Progress::STAGES`].
    pub fn stage(&self) -> usize {
        usize::from(self.0.load(Ordering::Relaxed)).min(Self::STAGES.len() - 1)
    }
}

/// A connected, joined client ready to read updates.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// The room it joined.
    pub room: usize,
}

fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{base}/socket.io/?EIO=4&transport=websocket")
}

fn text(m: Message) -> Option<String> {
    match m {
        Message::Text(t) => Some(t.as_str().to_owned()),
        _ => None,
    }
}

impl Client {
    /// Open, authenticate and join `room_name`; answers pings on the way. `progress` says
    /// how far it got.
    pub async fn connect(
        base: &str,
        token: &str,
        room: usize,
        room_name: &str,
        progress: &Progress,
    ) -> Result<Self, BenchError> {
        // tungstenite zero-fills its whole read buffer (128 KiB by default) before every
        // read: with a small buffer the generator spent most of its CPU in memset.
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(ws_url(base), Some(config), true)
                .await
                .map_err(|e| BenchError::Client(format!("connect {base}: {e}")))?;
        progress.set(1);
        let auth = serde_json::json!({ "token": token });
        let join = serde_json::json!(["join_project", { "projectId": room_name }]);
        ws.send(Message::text(format!("40{auth}")))
            .await
            .map_err(|e| BenchError::Client(e.to_string()))?;
        let mut joined = false;
        while let Some(m) = ws.next().await {
            let m = m.map_err(|e| BenchError::Client(e.to_string()))?;
            let Some(t) = text(m) else { continue };
            if t == "2" {
                let _ = ws.send(Message::text("3")).await;
            } else if t.starts_with("40") {
                progress.set(2);
                ws.send(Message::text(format!("42{join}")))
                    .await
                    .map_err(|e| BenchError::Client(e.to_string()))?;
            } else if t.starts_with("44") {
                return Err(BenchError::Client(format!("refused: {t}")));
            } else if t.starts_with("42[\"join_project\"") {
                joined = true;
                break;
            } else if t.starts_with("42[\"exception\"") {
                return Err(BenchError::Client(format!("join refused: {t}")));
            }
        }
        if !joined {
            return Err(BenchError::Client("closed before joining".into()));
        }
        Ok(Self { ws, room })
    }

    /// Read updates until the connection closes or `stop` fires. Latencies (µs) are kept
    /// in the client's own list and merged into the histogram once at the end: a shared,
    /// locked histogram per message cost more than the message itself.
    pub async fn read(
        mut self,
        clock: Clock,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> (Tally, Vec<u32>) {
        let mut tally = Tally::default();
        let mut latencies = Vec::new();
        let mut seen: Vec<u64> = Vec::new();
        let mut last = 0u64;
        let stopped = stop.changed();
        tokio::pin!(stopped);
        loop {
            let m = tokio::select! {
                biased;
                m = self.ws.next() => m,
                _ = &mut stopped => break,
            };
            let Some(Ok(Message::Text(t))) = m else {
                match m {
                    Some(Ok(_)) => continue,
                    _ => break,
                }
            };
            if t.as_str() == "2" {
                let _ = self.ws.send(Message::text("3")).await;
                continue;
            }
            let Some((seq, sent_us)) = parse_update(t.as_str()) else {
                continue;
            };
            let latency = clock.micros().saturating_sub(sent_us).max(1);
            latencies.push(u32::try_from(latency).unwrap_or(u32::MAX));
            tally.received += 1;
            if seq <= last && tally.received > 1 {
                tally.out_of_order += 1;
            }
            last = seq;
            let idx = seq as usize;
            if seen.len() <= idx {
                seen.resize(idx + 1, 0);
            }
            if seen[idx] > 0 {
                tally.duplicates += 1;
            } else {
                tally.distinct += 1;
            }
            seen[idx] += 1;
        }
        let _ = self.ws.close(None).await;
        (tally, latencies)
    }
}

/// Read `42["bench",{"s":SEQ,"t":MICROS}]` without a JSON parser.
fn parse_update(t: &str) -> Option<(u64, u64)> {
    let rest = t.strip_prefix("42[\"bench\",{\"s\":")?;
    let (seq, rest) = rest.split_once(",\"t\":")?;
    let sent = rest.split(['}', ',']).next()?;
    Some((seq.parse().ok()?, sent.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_updates_and_urls() {
        assert_eq!(
            parse_update(r#"42["bench",{"s":12,"t":3456}]"#),
            Some((12, 3456))
        );
        assert_eq!(parse_update(r#"42["chat","x"]"#), None);
        assert_eq!(
            ws_url("http://127.0.0.1:3000/"),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
    }
}
