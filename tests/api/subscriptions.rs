use std::time::Duration;

use serde_json::json;

use crate::helpers::{id, spawn_app};

const SUB: &str =
    "subscription($t: UUID, $k: SpanType) { spanAdded(traceId: $t, spanType: $k) { name traceId spanType } }";

#[tokio::test]
async fn span_added_reaches_a_filtered_subscriber_in_order() {
    let app = spawn_app().await;
    let t1 = app.create_trace(json!({"name": "a"})).await["id"].clone();
    let t2 = app.create_trace(json!({"name": "b"})).await["id"].clone();
    let mut ws = app.ws("graphql-transport-ws").await;
    ws.init().await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": SUB, "variables": {"t": t1, "k": "TOOL"}}}))
        .await;
    // Give the subscription a moment to register before writing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let batch = json!([
        {"id": id(), "traceId": t2, "name": "other-trace", "spanType": "TOOL"},
        {"id": id(), "traceId": t1, "name": "llm", "spanType": "LLM"},
        {"id": id(), "traceId": t1, "name": "first", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:00Z"},
        {"id": id(), "traceId": t1, "name": "second", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"},
    ]);
    app.add_spans(batch.clone()).await;
    for want in ["first", "second"] {
        let msg = ws.next_json(Duration::from_secs(5)).await;
        assert_eq!(msg["type"], "next", "{msg}");
        assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], want);
        assert_eq!(msg["payload"]["data"]["spanAdded"]["traceId"], t1);
    }
    // A retried batch publishes nothing twice: the next event is the new span.
    app.add_spans(batch).await;
    app.add_spans(json!([{"traceId": t1, "name": "third", "spanType": "TOOL"}]))
        .await;
    let msg = ws.next_json(Duration::from_secs(5)).await;
    assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], "third", "{msg}");
}
