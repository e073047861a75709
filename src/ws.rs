//! GraphQL over WebSocket: `graphql-transport-ws` (the graphql-ws library's
//! PROTOCOL.md) and the legacy `graphql-ws` (subscriptions-transport-ws). Written here
//! rather than taken from async-graphql, whose handler closes with 1002/1011 where the
//! protocol asks for 44xx codes, has no init timeout and silently replaces a reused id.

use std::collections::HashMap;
use std::time::Duration;

use async_graphql::Request;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response as HttpResponse;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::auth::{Access, Auth, SocketSlot};
use crate::error::code;
use crate::graphql::Api;
use crate::graphql::fanout::Event;

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

/// Limits and timers of one connection.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    pub init_timeout: Duration,
    pub keepalive: Duration,
    pub max_subscriptions: usize,
    pub max_message_bytes: usize,
}

/// Lets the server end every open connection cleanly and wait until they have.
#[derive(Clone, Debug)]
pub struct WsShutdown {
    signal: watch::Sender<bool>,
    tracker: TaskTracker,
}

impl Default for WsShutdown {
    fn default() -> Self {
        Self {
            signal: watch::channel(false).0,
            tracker: TaskTracker::new(),
        }
    }
}

impl WsShutdown {
    /// Completes every subscription, closes every connection, and waits for them.
    pub async fn close_all(&self, grace: Duration) {
        let _ = self.signal.send(true);
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Transport,
    Legacy,
}

impl Protocol {
    fn names(self) -> (&'static str, &'static str, &'static str) {
        // (subscribe, next, stop) message types
        match self {
            Self::Transport => ("subscribe", "next", "complete"),
            Self::Legacy => ("start", "data", "stop"),
        }
    }
}

/// What a connection reads from its socket at a time. The library zero-fills as much of
/// its read buffer before every read attempt, and a connection's task tries a read each
/// time it wakes, so at its default of 128 KiB every event sent to a subscriber cost a
/// 128 KiB `memset`: 38% of the server's CPU with 100 subscribers (W5, perf). Client
/// messages are small; a larger one is read in several pieces.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// How often an open connection re-checks that its key is still active.
const KEY_RECHECK: Duration = Duration::from_secs(1);

pub fn upgrade(
    upgrade: WebSocketUpgrade,
    api: Api,
    settings: WsSettings,
    shutdown: WsShutdown,
    auth: Auth,
    header_key: Option<String>,
) -> HttpResponse {
    let upgrade = upgrade
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(settings.max_message_bytes)
        .max_frame_size(settings.max_message_bytes);
    let protocol = match upgrade.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(LEGACY_WS) => Protocol::Legacy,
        _ => Protocol::Transport,
    };
    upgrade.on_upgrade(move |socket| async move {
        let _running = shutdown.tracker.token();
        let connection = Connection {
            api,
            settings,
            protocol,
            auth,
            header_key,
            access: None,
            acked: false,
            init_received: false,
            subscriptions: HashMap::new(),
        };
        connection.run(socket, shutdown.signal.subscribe()).await;
    })
}

/// What a subscription task hands the connection: a message for the client, and whether
/// the subscription is over with it.
struct Outgoing {
    id: String,
    /// The message as sent: serialized by the subscription's own task.
    message: String,
    last: bool,
}

enum Step {
    Continue,
    Close(u16, String),
}

struct Connection {
    api: Api,
    settings: WsSettings,
    protocol: Protocol,
    auth: Auth,
    /// A key sent as the upgrade request's `Authorization` header.
    header_key: Option<String>,
    /// Set by `connection_init`, with the key's WebSocket slot.
    access: Option<(Access, SocketSlot)>,
    acked: bool,
    init_received: bool,
    subscriptions: HashMap<String, JoinHandle<()>>,
}

impl Connection {
    async fn run(mut self, socket: WebSocket, mut shutdown: watch::Receiver<bool>) {
        let (mut sink, mut stream) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
        let init_deadline = tokio::time::sleep(self.settings.init_timeout);
        tokio::pin!(init_deadline);
        let mut keepalive = tokio::time::interval(self.settings.keepalive);
        keepalive.tick().await;
        let mut recheck = tokio::time::interval(KEY_RECHECK);
        recheck.tick().await;

        let close = loop {
            tokio::select! {
                () = &mut init_deadline, if !self.init_received => {
                    break Some((4408, "Connection initialisation timeout".to_owned()));
                }
                incoming = stream.next() => {
                    let text = match incoming {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break None,
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => break Some((4400, "Binary messages are not supported".to_owned())),
                        Some(Ok(_)) => continue,
                    };
                    match self.handle(text.as_str(), &out_tx, &mut sink).await {
                        Step::Continue => {}
                        Step::Close(code, reason) => break Some((code, reason)),
                    }
                }
                Some(out) = out_rx.recv() => {
                    if out.last {
                        self.subscriptions.remove(&out.id);
                    }
                    if sink.send(Message::text(out.message)).await.is_err() {
                        break None;
                    }
                }
                _ = keepalive.tick(), if self.acked => {
                    let ping = match self.protocol {
                        Protocol::Transport => json!({"type": "ping"}),
                        Protocol::Legacy => json!({"type": "ka"}),
                    };
                    if send(&mut sink, &ping).await.is_err() {
                        break None;
                    }
                }
                _ = recheck.tick(), if matches!(self.access, Some((Access::Key(_), _))) => {
                    let access = self.access.as_ref().map(|(a, _)| a.clone()).unwrap_or_default();
                    if !self.auth.still_active(&access).await {
                        break Some((4403, "Forbidden: the API key was revoked".to_owned()));
                    }
                }
                _ = shutdown.changed() => {
                    // Completed, not cut: each subscriber learns its stream ended.
                    for id in self.subscriptions.keys() {
                        let _ = send(&mut sink, &json!({"type": "complete", "id": id})).await;
                    }
                    break Some((1001, "Server is shutting down".to_owned()));
                }
            }
        };
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
        if let Some((code, reason)) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    }

    async fn handle(
        &mut self,
        text: &str,
        out: &mpsc::Sender<Outgoing>,
        sink: &mut (impl SinkExt<Message> + Unpin),
    ) -> Step {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            return Step::Close(4400, "Invalid message: not a JSON object".into());
        };
        let Some(kind) = msg.get("type").and_then(Value::as_str) else {
            return Step::Close(4400, "Invalid message: `type` must be a string".into());
        };
        let id = msg.get("id").and_then(Value::as_str).map(str::to_owned);
        let (subscribe, _, stop) = self.protocol.names();
        match kind {
            "connection_init" => {
                if self.init_received {
                    return Step::Close(4429, "Too many initialisation requests".into());
                }
                let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                if !payload.is_object() && !payload.is_null() {
                    return Step::Close(
                        4400,
                        "Invalid message: connection_init payload must be an object".into(),
                    );
                }
                self.init_received = true;
                let key = init_key(&payload).or_else(|| self.header_key.clone());
                let access = match self.auth.resolve(key.as_deref()).await {
                    Ok(access) => access,
                    Err(e) => return Step::Close(4403, format!("Forbidden: {e}")),
                };
                match self.auth.open_socket(&access) {
                    Ok(slot) => self.access = Some((access, slot)),
                    Err(e) => return Step::Close(4403, format!("Forbidden: {e}")),
                }
                self.acked = true;
                let _ = send(sink, &json!({"type": "connection_ack"})).await;
                if self.protocol == Protocol::Legacy {
                    let _ = send(sink, &json!({"type": "ka"})).await;
                }
                Step::Continue
            }
            "ping" if self.protocol == Protocol::Transport => {
                let mut pong = json!({"type": "pong"});
                if let Some(payload) = msg.get("payload") {
                    pong["payload"] = payload.clone();
                }
                let _ = send(sink, &pong).await;
                Step::Continue
            }
            "pong" if self.protocol == Protocol::Transport => Step::Continue,
            "connection_terminate" if self.protocol == Protocol::Legacy => Step::Close(1000, "Terminated".into()),
            k if k == subscribe => {
                let Some(id) = id.filter(|id| !id.is_empty()) else {
                    return Step::Close(4400, format!("Invalid message: {subscribe} needs an id"));
                };
                if !self.acked {
                    return Step::Close(4401, "Unauthorized".into());
                }
                if self.subscriptions.contains_key(&id) {
                    return Step::Close(4409, format!("Subscriber for {id} already exists"));
                }
                let request = match msg.get("payload").cloned().map(serde_json::from_value::<Request>) {
                    Some(Ok(request)) => request.data(self.access.as_ref().map(|(a, _)| a.clone()).unwrap_or_default()),
                    _ => {
                        return Step::Close(
                            4400,
                            format!("Invalid message: {subscribe} payload is not a GraphQL request"),
                        );
                    }
                };
                if self.subscriptions.len() >= self.settings.max_subscriptions {
                    let error = json!({
                        "message": format!("too many subscriptions on this connection (max {})", self.settings.max_subscriptions),
                        "extensions": {"code": code::LIMIT_EXCEEDED, "limit": "subscriptions per connection",
                                       "max": self.settings.max_subscriptions}
                    });
                    let _ = send(sink, &error_message(self.protocol, &id, vec![error])).await;
                    return Step::Continue;
                }
                let task = self.start(id.clone(), request, out.clone());
                self.subscriptions.insert(id, task);
                Step::Continue
            }
            k if k == stop => {
                if let Some(task) = id.and_then(|id| self.subscriptions.remove(&id)) {
                    task.abort();
                }
                Step::Continue
            }
            other => Step::Close(4400, format!("Invalid message: unknown type {other:?}")),
        }
    }

    fn start(&self, id: String, request: Request, out: mpsc::Sender<Outgoing>) -> JoinHandle<()> {
        let api_key = match &self.access {
            Some((Access::Key(key), _)) => Some(key.id),
            _ => None,
        };
        let mut membership = self.api.subscribe(request, api_key);
        let protocol = self.protocol;
        tokio::spawn(async move {
            let (_, next, _) = protocol.names();
            let quoted_id = serde_json::to_string(&id).unwrap_or_default();
            loop {
                let event = membership.next().await;
                let (message, last) = match &*event {
                    // The shared payload is spliced in as it is: serialized once for all.
                    Event::Next(payload) => (
                        format!(r#"{{"type":"{next}","id":{quoted_id},"payload":{payload}}}"#),
                        false,
                    ),
                    // Refused before execution: the protocol's `error`, which ends it.
                    Event::Refused(errors) => (error_message(protocol, &id, errors.clone()).to_string(), true),
                    Event::Done => (json!({"type": "complete", "id": id}).to_string(), true),
                };
                // A full queue waits here: the shared buffer, not memory, absorbs the lag.
                let sent = out
                    .send(Outgoing {
                        id: id.clone(),
                        message,
                        last,
                    })
                    .await;
                if sent.is_err() || last {
                    return;
                }
            }
        })
    }
}

/// The key in a `connection_init` payload, as clients commonly send it.
fn init_key(payload: &Value) -> Option<String> {
    ["Authorization", "authorization", "apiKey", "token"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

fn error_message(protocol: Protocol, id: &str, errors: Vec<Value>) -> Value {
    match protocol {
        Protocol::Transport => json!({"type": "error", "id": id, "payload": errors}),
        Protocol::Legacy => {
            json!({"type": "error", "id": id, "payload": errors.into_iter().next().unwrap_or_default()})
        }
    }
}

async fn send(sink: &mut (impl SinkExt<Message> + Unpin), message: &Value) -> Result<(), ()> {
    sink.send(Message::text(message.to_string())).await.map_err(|_| ())
}
