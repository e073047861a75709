//! The graphql-transport-ws protocol's rules, each with its close code.

use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{hold_writes_to, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(5);
const SUB: &str = "subscription { spanAdded { name } }";

#[tokio::test]
async fn no_connection_init_in_time_closes_4408() {
    let app = spawn_app_with(|c| c.ws_init_timeout_ms = 200).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    assert_eq!(ws.close_code(WAIT).await, 4408);
}

#[tokio::test]
async fn subscribe_before_ack_closes_4401() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.subscribe("1", SUB, json!({})).await;
    assert_eq!(ws.close_code(WAIT).await, 4401);
}

#[tokio::test]
async fn a_second_connection_init_closes_4429() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.send(json!({"type": "connection_init"})).await;
    assert_eq!(ws.close_code(WAIT).await, 4429);
}

#[tokio::test]
async fn a_reused_subscription_id_closes_4409() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("same", SUB, json!({})).await;
    ws.subscribe("same", SUB, json!({})).await;
    assert_eq!(ws.close_code(WAIT).await, 4409);
}

#[tokio::test]
async fn invalid_messages_close_4400() {
    let app = spawn_app().await;
    let cases = [
        Message::text("not json"),
        Message::text("[1, 2]"),
        Message::text(r#"{"type": "launch_rockets"}"#),
        Message::text(r#"{"type": "subscribe", "payload": {"query": "{ __typename }"}}"#),
        Message::text(r#"{"type": "subscribe", "id": "1", "payload": "nope"}"#),
        Message::binary(vec![1u8, 2, 3]),
    ];
    for message in cases {
        let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
        ws.init().await;
        ws.socket.send(message.clone()).await.unwrap();
        assert_eq!(ws.close_code(WAIT).await, 4400, "{message:?}");
    }
    // The reason names what is wrong, not an empty type.
    for message in [r#"{"id": "1"}"#, r#"{"type": 5}"#] {
        let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
        ws.init().await;
        ws.socket.send(Message::text(message)).await.unwrap();
        let (code, reason) = ws.close_frame(WAIT).await;
        assert_eq!(code, 4400, "{message}");
        assert_eq!(reason, "Invalid message: `type` must be a string", "{message}");
    }
}

#[tokio::test]
async fn the_server_pings_and_answers_pings() {
    let app = spawn_app_with(|c| c.ws_keepalive_secs = 1).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.send(json!({"type": "ping", "payload": {"n": 7}})).await;
    let mut got_pong = false;
    let mut got_ping = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while !(got_pong && got_ping) && tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(WAIT, futures::StreamExt::next(&mut ws.socket)).await
        else {
            continue;
        };
        let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
        match msg["type"].as_str() {
            Some("pong") => {
                assert_eq!(msg["payload"], json!({"n": 7}));
                got_pong = true;
            }
            Some("ping") => got_ping = true,
            _ => {}
        }
    }
    assert!(got_pong, "pong answers ping");
    assert!(got_ping, "keep-alive ping within the interval");
}

#[tokio::test]
async fn oversized_frames_end_the_connection() {
    let app = spawn_app_with(|c| c.ws_max_message_bytes = 1024).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    let big = format!("{{\"type\":\"ping\",\"payload\":{{\"x\":\"{}\"}}}}", "x".repeat(4096));
    let _ = ws.socket.send(Message::text(big)).await;
    // The connection ends (1009 "message too big", or a reset); it does not answer.
    let code = ws.close_code(WAIT).await;
    assert!(code == 1009 || code == 0, "closed with {code}");
}

/// The server reads its sockets a few kilobytes at a time: a message many times that,
/// within the message limit, still arrives whole (a ping's payload comes back as sent).
#[tokio::test]
async fn a_message_larger_than_a_read_arrives_whole() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    let text: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    ws.send(json!({"type": "ping", "payload": {"text": text}})).await;
    let pong = ws.next_json(WAIT).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["payload"]["text"] == text.as_str(), "the payload comes back whole");
}

#[tokio::test]
async fn subscriptions_per_connection_are_capped_with_an_error() {
    let app = spawn_app_with(|c| c.ws_max_subscriptions = 2).await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("a", SUB, json!({})).await;
    ws.subscribe("b", SUB, json!({})).await;
    ws.subscribe("c", SUB, json!({})).await;
    let refused = ws.next_json(WAIT).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "c");
    assert_eq!(refused["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
    // The two within the cap still work.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.add_spans(json!([{"traceId": tid, "name": "s", "spanType": "TOOL"}]))
        .await;
    let mut ids = vec![];
    for _ in 0..2 {
        let msg = ws.next_json(WAIT).await;
        assert_eq!(msg["type"], "next", "{msg}");
        ids.push(msg["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test]
async fn an_invalid_operation_gets_an_error_message() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("1", "subscription { spanAdded { noSuchField } }", json!({}))
        .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // The id is free again: the operation ended.
    ws.subscribe("1", "{ __typename }", json!({})).await;
    assert_eq!(ws.next_json(WAIT).await["type"], "next");
    assert_eq!(ws.next_json(WAIT).await["type"], "complete");
}

#[tokio::test]
async fn a_malformed_id_in_a_subscription_is_refused_with_the_form_expected() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    let query = "subscription($t: UUID) { spanAdded(traceId: $t) { id } }";
    ws.subscribe("1", query, json!({"t": "zz"})).await;
    let msg = ws.next_json(WAIT).await;
    // Refused as it starts: an `error` message, or a `next` carrying only errors.
    let error = match msg["type"].as_str() {
        Some("error") => &msg["payload"][0],
        _ => &msg["payload"]["errors"][0],
    };
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("a UUID is 32 hexadecimal digits"), "{msg}");
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{msg}");
}

#[tokio::test]
async fn queries_and_mutations_run_over_the_socket_too() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe(
        "m",
        "mutation { createTrace(input: {name: \"over-ws\"}) { name } }",
        json!({}),
    )
    .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["payload"]["data"]["createTrace"]["name"], "over-ws");
    assert_eq!(ws.next_json(WAIT).await["type"], "complete");
    // Past the 4 KiB of the document cache, a query and a subscription are told apart
    // and run alike.
    let padding = format!("# {}\n", "x".repeat(5000));
    ws.subscribe(
        "q",
        &format!("{padding}{{ traces {{ items {{ id name }} }} }}"),
        json!({}),
    )
    .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["payload"]["data"]["traces"]["items"][0]["name"], "over-ws", "{msg}");
    assert_eq!(ws.next_json(WAIT).await["type"], "complete");
    let trace = msg["payload"]["data"]["traces"]["items"][0]["id"].clone();
    ws.subscribe(
        "s",
        &format!("{padding}subscription {{ spanAdded {{ name }} }}"),
        json!({}),
    )
    .await;
    // The subscribe frame is handled asynchronously, as in `subscriptions::subscribe`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.add_spans(json!([{"traceId": trace, "name": "live", "spanType": "TOOL"}]))
        .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["id"], "s", "{msg}");
    assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], "live", "{msg}");
}

/// Two agents sharing a key may send the very same mutation at the same moment: each
/// must be carried out, not answered with the other's result.
#[tokio::test]
async fn identical_mutations_on_two_sockets_each_run() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let add = "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"step\", spanType: TOOL}) { id } }";
    // Another client's transaction holds both writes, so the second arrives while the
    // first is still running.
    let blocker = hold_writes_to(&app.database_url, &tid).await;
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
        ws.init().await;
        ws.subscribe("add", add, json!({"t": tid})).await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.rollback().await.unwrap();
    let mut added = Vec::new();
    for ws in &mut sockets {
        let msg = ws.next_json(WAIT).await;
        let id = msg["payload"]["data"]["addSpan"]["id"].as_str().map(str::to_owned);
        added.push(id.unwrap_or_else(|| panic!("a span added: {msg}")));
        assert_eq!(ws.next_json(WAIT).await["type"], "complete");
    }
    assert_ne!(added[0], added[1]);
    let trace = app
        .ok("query($t: UUID!) { trace(id: $t) { spans { id } } }", json!({"t": tid}))
        .await;
    let mut stored: Vec<_> = trace["trace"]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|span| span["id"].as_str().unwrap().to_owned())
        .collect();
    stored.sort();
    added.sort();
    assert_eq!(stored, added);
}

#[tokio::test]
async fn a_mutation_over_the_socket_has_the_request_time_limit() {
    let app = spawn_app().await;
    let hurried = app.second_instance_with(|c| c.request_timeout_ms = 300).await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let blocker = hold_writes_to(&app.database_url, &tid).await;
    let mut ws = hurried.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe(
        "add",
        "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"late\", spanType: TOOL}) { id } }",
        json!({"t": tid}),
    )
    .await;
    let msg = ws.next_json(WAIT).await;
    blocker.rollback().await.unwrap();
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(msg["payload"][0]["extensions"]["code"], "LIMIT_EXCEEDED", "{msg}");
    assert_eq!(
        msg["payload"][0]["extensions"]["limit"], "request timeout in milliseconds",
        "{msg}"
    );
    assert_eq!(app.counts().await, (1, 0), "the span was not kept");
}

#[tokio::test]
async fn complete_from_the_client_stops_a_subscription() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("1", SUB, json!({})).await;
    ws.send(json!({"type": "complete", "id": "1"})).await;
    ws.subscribe("2", SUB, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.add_spans(json!([{"traceId": tid, "name": "s", "spanType": "TOOL"}]))
        .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["id"], "2", "only the live subscription hears it: {msg}");
}

#[tokio::test]
async fn shutdown_completes_open_subscriptions() {
    let mut app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("live", SUB, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.shut_down().await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg, json!({"type": "complete", "id": "live"}));
    assert_eq!(ws.close_code(WAIT).await, 1001);
}
