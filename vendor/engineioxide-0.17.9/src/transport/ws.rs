//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{future::poll_fn, sync::Arc};

use futures_util::{
    SinkExt, StreamExt, TryStreamExt,
    stream::{SplitSink, SplitStream},
};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket,
    body::ResponseBody,
    config::EngineIoConfig,
    direct::SharedSink,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    socket::{InternalRx, QueuedPackets},
    transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    // wsgate hunk 11: the pending upgrade is taken out of the request here and the request's
    // head moves on as it is, instead of a clone of the whole head (headers, extensions) for
    // the upgrade beside the one the session keeps; the task holds the upgrade, not the request.
    let mut req = req;
    let ws_key = req
        .headers()
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();

    tokio::spawn(async move {
        let conn = on_upgrade.await.map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            Ok(conn) => on_init(engine.clone(), conn, protocol, sid, parts).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match res {
            Ok(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // wsgate hunk 4: a session opened on a websocket runs its heartbeat in this task (see below)
    // instead of a task of its own; a session upgraded from polling keeps the task it started.
    let inline_heartbeat = sid.is_none();
    // wsgate hunk 6: the handshake's state (the websocket's construction, the open packet or the
    // polling upgrade with its timeout) lives in a boxed future, freed once the session is
    // established, instead of sizing this task's future for the connection's whole life.
    let (socket, ws) = Box::pin(establish(&engine, conn, protocol, sid, req_data)).await?;
    let (tx, rx) = ws.split();

    // wsgate hunk 8: the sink is shared by the writer task and, for a session opened on a
    // websocket (no polling request may still hold the queue), the socket's senders.
    let tx = Arc::new(SharedSink::new(
        tx,
        socket.protocol == ProtocolVersion::V3,
        socket.cancellation_token.clone(),
    ));
    if inline_heartbeat && engine.config.direct_writes {
        socket.direct.set(tx.clone()).ok();
    }

    // Pipe between websocket and internal socket channel.
    tokio::spawn(forward_to_socket::<H, S>(socket.clone(), tx));

    // pipe between internal socket channel and websocket
    // wsgate hunk 4: the heartbeat of a session opened on a websocket is a timer polled beside
    // the reader, not a task: a task per socket costs its header, its scheduler slot and its
    // future (≈ 1.3 KB per idle connection). `heartbeat_job` only returns on a timeout, which
    // ends the session as the reader's errors do (`Error::HeartbeatTimeout`).
    // wsgate hunk 6: the futures are built inside the awaited expression, not bound first: a
    // future bound to a local and then moved into another is stored twice in this task.
    let config = &engine.config;
    match async {
        if inline_heartbeat {
            tokio::select! {
                res = forward_to_handler(&engine, rx, &socket) => res,
                res = socket.heartbeat_job(config.ping_interval, config.ping_timeout) => res,
            }
        } else {
            forward_to_handler(&engine, rx, &socket).await
        }
    }
    .with_cancellation_token(&socket.cancellation_token)
    .await
    {
        Some(Err(ref e)) => {
            let reason =
                Option::<DisconnectReason>::from(e).unwrap_or(DisconnectReason::TransportError);

            #[cfg(feature = "tracing")]
            tracing::debug!("error when handling packet: {:?}", e);
            engine.close_session(socket.id, reason);
        }
        Some(Ok(())) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "ws transport was closed");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
        }
        None => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "socket is closing");
        }
    }
    Ok(())
}

/// wsgate hunk 6: the first part of [`on_init`], boxed by it: build the websocket and either
/// open a new session (open packet) or upgrade a polling one. Returns the session's socket
/// and the websocket, or the error that ends the connection.
async fn establish<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(Arc<Socket<H::Data>>, WebSocketStream<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    let established = if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => return Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                (socket, ws)
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        (socket, ws)
    };
    Ok(established)
}

/// Forwards all packets received from a websocket to a EngineIo [`Socket`]
async fn forward_to_handler<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    mut rx: SplitStream<WebSocketStream<S>>,
    socket: &Arc<Socket<H::Data>>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some(msg) = rx.try_next().await? {
        match msg {
            Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
                Packet::Close => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!("[sid={}] closing session", socket.id);
                    engine.close_session(socket.id, DisconnectReason::TransportClose);
                    break;
                }
                Packet::Pong | Packet::Ping => {
                    // A pending notification means that the client is already known to be alive.
                    socket.heartbeat_tx.notify_one();
                    Ok::<(), Error>(())
                }
                Packet::Message(msg) => {
                    engine.handler.on_message(msg, socket.clone());
                    Ok(())
                }
                p => return Err(Error::BadPacket(p)),
            },
            Message::Binary(mut data) => {
                if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                    // The first byte is the message type, which we don't need.
                    data = data.split_off(1);
                }
                engine.handler.on_binary(data, socket.clone());
                Ok(())
            }
            Message::Close(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("websocket closed, closing session");
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                break;
            }
            _ => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "unexpected ws message");
                Ok(())
            }
        }?
    }
    Ok(())
}

/// Forwards all packets waiting to be sent to the websocket
///
/// The websocket stream is flushed only when the internal channel is drained
///
/// wsgate hunk 8: the sink is shared with the socket's senders, which write a packet
/// themselves when nothing is queued and this task does not hold the sink. This task takes
/// the sink when something is queued, or when a sender left bytes it could not flush without
/// waiting; it writes what is queued, flushes, and puts the sink back.
async fn forward_to_socket<H: EngineIoHandler, S>(
    socket: Arc<Socket<H::Data>>,
    sink: Arc<SharedSink<S>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock.
    let Some(mut internal_rx) = socket
        .internal_rx
        .lock()
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before starting the ws writer");
        close_sink(&sink).await;
        return;
    };
    let InternalRx {
        buffered_rx,
        volatile_rx,
        ..
    } = &mut *internal_rx;

    // wsgate hunk 7: what to write is decided by the `select!`, and written after it, by one
    // `write_packets` future: the writes' state is not laid out three times beside the
    // `select!`'s futures in this task's future, which lives as long as the connection.
    enum Next {
        /// Packets are queued, or a direct write left bytes to flush.
        Write,
        Volatile(QueuedPackets),
        Flush,
        Stop,
    }

    // Forward buffered packets until the channel is closed or the session is cancelled.
    loop {
        // wsgate hunk 8: a queued packet is only taken once this task holds the sink (below):
        // a sender that finds the queue empty and the sink free writes past nothing.
        let next = tokio::select! {
            biased;
            queued = poll_fn(|cx| buffered_rx.poll_queued(cx)) => match queued {
                true => Next::Write,
                false => Next::Stop,
            },
            () = poll_fn(|cx| sink.poll_handed_over(cx)) => Next::Write,
            _ = socket.cancellation_token.cancelled() => Next::Stop,
            Ok(()) = volatile_rx.changed() => match volatile_rx.borrow_and_update().clone() {
                Some(packets) => Next::Volatile(packets),
                None => Next::Flush,
            },
        };
        if matches!(next, Next::Stop) {
            break;
        }
        let Some(mut tx) = sink.take() else { break };
        if let Next::Volatile(packets) = next {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "ws volatile flush");
            write_packets(&socket, &mut tx, packets).await;
        }
        while let Ok(packets) = buffered_rx.try_recv() {
            write_packets(&socket, &mut tx, packets).await;
        }

        #[cfg(feature = "tracing")]
        tracing::trace!(sid = %socket.id, "ws flush");
        tx.flush().await.ok();
        sink.put_back(tx);
    }

    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");
    close_sink(&sink).await;
}

/// wsgate hunk 8: flush and close the websocket's sink, which senders no longer get.
async fn close_sink<S>(sink: &SharedSink<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if let Some(mut tx) = sink.take() {
        tx.flush().await.ok();
        tx.close().await.ok();
    }
}

/// wsgate hunk 7: feed one queue entry's packets to the websocket (without flushing), as
/// `forward_to_socket`'s former `map_fn!` did for each packet.
async fn write_packets<D, S>(
    socket: &Socket<D>,
    tx: &mut SplitSink<WebSocketStream<S>, Message>,
    packets: QueuedPackets,
) where
    D: Default + Send + Sync + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    for item in packets {
        let res = match item {
            Packet::Binary(bin) | Packet::BinaryV3(bin) => {
                if socket.protocol == ProtocolVersion::V3 {
                    // v3 protocol requires packet type as the first byte.
                    // This requires a new buffer. This is OK as it is only for the V3 protocol.
                    let mut buff = Vec::with_capacity(bin.len() + 1);
                    buff.push(0x04);
                    buff.extend(bin);
                    tx.feed(Message::Binary(buff.into())).await
                } else {
                    tx.feed(Message::Binary(bin)).await
                }
            }
            // A Noop Packet maybe sent by the server to upgrade from a polling connection
            // In the case that the packet was not poll in time it will remain in the buffer and therefore
            // it should be discarded here
            Packet::Noop => Ok(()),
            item => {
                let packet = String::from(item);
                tx.feed(Message::Text(packet.into())).await
            }
        };
        if let Err(_e) = res {
            #[cfg(feature = "tracing")]
            tracing::debug!("[sid={}] error sending packet: {}", socket.id, _e);
        }
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    // wsgate hunk 5: queued past the bound (one control packet) instead of waiting for a slot
    socket
        .internal_tx
        .send_unbounded(Packet::Noop.into())
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    fn shared(
        socket: &Socket<()>,
        tx: SplitSink<WebSocketStream<DuplexStream>, Message>,
    ) -> Arc<SharedSink<DuplexStream>> {
        Arc::new(SharedSink::new(
            tx,
            false,
            socket.cancellation_token.clone(),
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    #[derive(Debug)]
    struct ReasonHandler(tokio::sync::mpsc::UnboundedSender<DisconnectReason>);
    impl EngineIoHandler for ReasonHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
            self.0.send(reason).ok();
        }
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    /// wsgate hunk 4: a session opened on a websocket has two tasks (the reader, which also
    /// runs the heartbeat, and the writer), pings its client and ends when no pong comes.
    #[tokio::test]
    async fn websocket_session_runs_its_heartbeat_in_the_reader_task() {
        let (reasons_tx, mut reasons) = tokio::sync::mpsc::unbounded_channel();
        let config = EngineIoConfig::builder()
            .ping_interval(Duration::from_millis(50))
            .ping_timeout(Duration::from_millis(50))
            .build();
        let engine = Arc::new(EngineIo::new(Arc::new(ReasonHandler(reasons_tx)), config));
        let metrics = tokio::runtime::Handle::current().metrics();
        let tasks_before = metrics.num_alive_tasks();

        let (server, client) = tokio::io::duplex(1024);
        let parts = Request::<()>::default().into_parts().0;
        let conn = tokio::spawn(on_init(engine, server, ProtocolVersion::V4, None, parts));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;

        let open = client.next().await.unwrap().unwrap();
        assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
        let ping = client.next().await.unwrap().unwrap();
        assert_eq!(ping, Message::text("2"));
        assert_eq!(metrics.num_alive_tasks() - tasks_before, 2);

        // The client never answers: the heartbeat ends the session.
        let reason = tokio::time::timeout(TIMEOUT, reasons.recv())
            .await
            .expect("the heartbeat should close the session");
        assert_eq!(reason, Some(DisconnectReason::HeartbeatTimeout));
        conn.await.unwrap().unwrap();
    }

    /// wsgate hunk 6: the reader task's future does not carry the handshake's state (the
    /// websocket's construction, the open packet, the upgrade and its timeout) for the
    /// connection's life: 1,872 bytes before the hunk, 1,192 after (with `tracing`; 840
    /// without), on Rust 1.95.
    #[tokio::test]
    async fn the_reader_future_does_not_hold_the_handshake() {
        let engine = Arc::new(EngineIo::new(
            Arc::new(StubHandler),
            EngineIoConfig::default(),
        ));
        let (server, _client) = tokio::io::duplex(64);
        let parts = Request::<()>::default().into_parts().0;
        let reader = on_init(engine, server, ProtocolVersion::V4, None, parts);
        let size = std::mem::size_of_val(&reader);
        assert!(size < 1_500, "on_init's future is {size} bytes");
    }

    /// wsgate hunk 7: the writer task's future, which lives as long as the connection, holds
    /// the `select!` or one write at a time: 1,912 bytes before the hunk, 808 after (with
    /// `tracing`), on Rust 1.95.
    #[tokio::test]
    async fn the_writer_future_is_small() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let tx = shared(&socket, tx);
        let writer = forward_to_socket::<StubHandler, _>(socket, tx);
        let size = std::mem::size_of_val(&writer);
        assert!(size < 1_200, "forward_to_socket's future is {size} bytes");
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn writer_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let tx = shared(&socket, tx);

        let polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "the writer should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the writer should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    #[tokio::test]
    async fn writer_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let tx = shared(&socket, tx);

        let _polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), tx));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }

    /// wsgate hunk 8: a socket with a shared sink and nothing queued gets its packet written
    /// by the sender: no writer task runs here.
    #[tokio::test]
    async fn an_idle_socket_is_written_by_its_sender() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let sink = shared(&socket, tx);
        socket.direct.set(sink.clone()).ok();

        for msg in ["a", "b"] {
            socket.reserve().unwrap().emit(Str::from(msg));
        }
        socket
            .reserve()
            .unwrap()
            .emit_binary(Bytes::from_static(b"c"));
        for expected in [
            Message::text("4a"),
            Message::text("4b"),
            Message::binary(&b"c"[..]),
        ] {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
            assert_eq!(msg.unwrap().unwrap().unwrap(), expected);
        }
        // Nothing went through the queue.
        assert!(
            socket
                .internal_rx
                .lock()
                .await
                .buffered_rx
                .try_recv()
                .is_err()
        );
    }

    /// wsgate hunk 8: a client that does not read: direct writes until the transport is full,
    /// then the writer task holds the sink and packets queue up to the bound; once the
    /// client reads, it gets every accepted packet, in order.
    #[tokio::test]
    async fn a_stalled_socket_queues_up_to_its_bound_and_loses_nothing_in_order() {
        let config = EngineIoConfig::builder().max_buffer_size(8).build();
        let socket = Arc::new(Socket::<()>::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &config,
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ));
        let (server, client) = tokio::io::duplex(256);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let (tx, _rx) = server.split();
        let sink = shared(&socket, tx);
        socket.direct.set(sink.clone()).ok();
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), sink));

        let payload = "x".repeat(40);
        let mut accepted = 0;
        while let Ok(permit) = socket.reserve() {
            permit.emit(Str::from(format!("{accepted:04}{payload}")));
            accepted += 1;
            tokio::task::yield_now().await;
            assert!(accepted < 1_000, "the bound should be reached");
        }
        // The transport took some, the queue holds its bound.
        assert!(accepted > 8, "{accepted}");

        for i in 0..accepted {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
            let msg = msg.expect("every accepted packet").unwrap().unwrap();
            assert_eq!(msg, Message::text(format!("4{i:04}{payload}")));
        }
        // Drained: the next packet is written directly again.
        socket.reserve().unwrap().emit(Str::from("after"));
        let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
        assert_eq!(msg.unwrap().unwrap().unwrap(), Message::text("4after"));

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .unwrap()
            .unwrap();
    }

    /// wsgate hunk 8: a packet queued before (a ping, or a packet that found the sink busy)
    /// keeps its place: the next one is queued behind it, not written past it.
    #[tokio::test]
    async fn a_queued_packet_is_not_overtaken() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let sink = shared(&socket, tx);
        socket.direct.set(sink.clone()).ok();

        socket.send(Packet::Ping).unwrap();
        socket.reserve().unwrap().emit(Str::from("a"));
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), sink));
        for expected in [Message::text("2"), Message::text("4a")] {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
            assert_eq!(msg.unwrap().unwrap().unwrap(), expected);
        }
        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .unwrap()
            .unwrap();
    }

    /// wsgate hunk 8: inside `write_batch`, direct writes wait for the end of the poll and
    /// are flushed together, in order.
    #[tokio::test]
    async fn a_batch_flushes_its_sockets_when_its_poll_ends() {
        use futures_util::FutureExt;
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let sink = shared(&socket, tx);
        socket.direct.set(sink.clone()).ok();

        crate::write_batch(async {
            for msg in ["a", "b", "c"] {
                socket.reserve().unwrap().emit(Str::from(msg));
            }
            assert!(client.next().now_or_never().is_none(), "not flushed yet");
        })
        .await;
        for expected in ["4a", "4b", "4c"] {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
            assert_eq!(msg.unwrap().unwrap().unwrap(), Message::text(expected));
        }
        // Outside a batch, a packet is flushed at once.
        socket.reserve().unwrap().emit(Str::from("d"));
        let msg = client
            .next()
            .now_or_never()
            .expect("flushed")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4d"));
    }

    /// wsgate hunk 8: over TCP too, an idle socket's packets are written directly, also past
    /// the 128 I/O polls of tokio's cooperative budget for one task poll (300 writes here).
    #[tokio::test]
    async fn over_tcp_an_idle_socket_is_written_by_its_sender() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            WebSocketStream::from_raw_socket(stream, Role::Client, None).await
        });
        let (server, _) = listener.accept().await.unwrap();
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let mut client = client.await.unwrap();
        let socket = socket();
        let (tx, _rx) = server.split();
        let sink = Arc::new(SharedSink::new(
            tx,
            false,
            socket.cancellation_token.clone(),
        ));
        socket.direct.set(sink.clone()).ok();
        let writer = tokio::spawn(forward_to_socket::<StubHandler, _>(socket.clone(), sink));

        // A packet through the queue first (as a session's first packets are).
        socket.send(Packet::Ping).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
        assert_eq!(msg.unwrap().unwrap().unwrap(), Message::text("2"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        for i in 0..300 {
            socket.reserve().unwrap().emit(Str::from(format!("{i}")));
            assert!(
                socket.internal_tx.is_empty_for_test(),
                "packet {i} was queued"
            );
        }
        for i in 0..300 {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await;
            assert_eq!(
                msg.unwrap().unwrap().unwrap(),
                Message::text(format!("4{i}"))
            );
        }
        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .unwrap()
            .unwrap();
    }
}
