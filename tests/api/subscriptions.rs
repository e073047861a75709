use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, WsClient, generate, id, import, on_postgres, spawn_app, spawn_app_with};

const WAIT: Duration = Duration::from_secs(5);
const ADDED: &str =
    "subscription($t: UUID, $k: SpanType) { spanAdded(traceId: $t, spanType: $k) { name traceId spanType } }";

/// Subscribes over graphql-transport-ws and waits until the server has registered it.
pub(crate) async fn subscribe(app: &TestApp, path: &str, query: &str, variables: Value) -> WsClient {
    let mut ws = app.ws_at(path, "graphql-transport-ws").await;
    ws.init().await;
    ws.send(json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        .await;
    // The subscribe frame is handled asynchronously; give it a moment before writing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws
}

pub(crate) async fn next_data(ws: &mut WsClient, field: &str) -> Value {
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["type"], "next", "{msg}");
    msg["payload"]["data"][field].clone()
}

#[tokio::test]
async fn span_added_reaches_a_filtered_subscriber_in_order() {
    let app = spawn_app().await;
    let t1 = app.create_trace(json!({"name": "a"})).await["id"].clone();
    let t2 = app.create_trace(json!({"name": "b"})).await["id"].clone();
    let mut ws = subscribe(&app, "/graphql/ws", ADDED, json!({"t": t1, "k": "TOOL"})).await;
    let batch = json!([
        {"id": id(), "traceId": t2, "name": "other-trace", "spanType": "TOOL"},
        {"id": id(), "traceId": t1, "name": "llm", "spanType": "LLM"},
        {"id": id(), "traceId": t1, "name": "first", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:00Z"},
        {"id": id(), "traceId": t1, "name": "second", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"},
    ]);
    app.add_spans(batch.clone()).await;
    for want in ["first", "second"] {
        let span = next_data(&mut ws, "spanAdded").await;
        assert_eq!(span["name"], want);
        assert_eq!(span["traceId"], t1);
    }
    // A retried batch publishes nothing twice: the next event is the new span.
    app.add_spans(batch).await;
    app.add_spans(json!([{"traceId": t1, "name": "third", "spanType": "TOOL"}]))
        .await;
    assert_eq!(next_data(&mut ws, "spanAdded").await["name"], "third");
}

#[tokio::test]
async fn subscriptions_work_on_the_graphiql_url_too() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "a"})).await["id"].clone();
    let mut ws = subscribe(&app, "/graphql", ADDED, json!({"t": tid})).await;
    app.add_spans(json!([{"traceId": tid, "name": "s", "spanType": "TEXT"}]))
        .await;
    assert_eq!(next_data(&mut ws, "spanAdded").await["name"], "s");
}

#[tokio::test]
async fn legacy_graphql_ws_protocol() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "a"})).await["id"].clone();
    let mut ws = app.ws_at("/graphql/ws", "graphql-ws").await;
    ws.init().await;
    ws.send(json!({"id": "1", "type": "start", "payload": {"query": ADDED, "variables": {"t": tid}}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.add_spans(json!([{"traceId": tid, "name": "legacy", "spanType": "TOOL"}]))
        .await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["type"], "data", "{msg}");
    assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], "legacy");
}

#[tokio::test]
async fn span_updated_follows_ends_and_flags_once_each() {
    let app = spawn_app().await;
    let agent = id();
    let tid = app.create_trace(json!({"name": "a", "agentId": agent})).await["id"].clone();
    let sid = app
        .add_spans(json!([{"traceId": tid, "name": "s", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:00Z"}]))
        .await[0]["id"]
        .clone();
    let query = "subscription($a: UUID) { spanUpdated(agent: $a) { id endedAt flagged } }";
    let mut ws = subscribe(&app, "/graphql/ws", query, json!({"a": agent})).await;
    let end = "mutation($id: UUID!) { endSpan(id: $id, endedAt: \"2026-11-01T00:00:01Z\") { id } }";
    app.ok(end, json!({"id": sid})).await;
    app.ok(end, json!({"id": sid})).await; // a retry: no event
    app.ok(
        "mutation($id: UUID!) { flagSpan(id: $id, reason: \"r\") { id } }",
        json!({"id": sid}),
    )
    .await;
    app.ok(
        "mutation($id: UUID!) { unflagSpan(id: $id) { id } }",
        json!({"id": sid}),
    )
    .await;
    app.ok(
        "mutation($id: UUID!) { unflagSpan(id: $id) { id } }",
        json!({"id": sid}),
    )
    .await; // already clear: no event
    let ended = next_data(&mut ws, "spanUpdated").await;
    assert_eq!(ended["endedAt"], "2026-11-01T00:00:01+00:00");
    assert_eq!(next_data(&mut ws, "spanUpdated").await["flagged"], true);
    assert_eq!(next_data(&mut ws, "spanUpdated").await["flagged"], false);
    // Nothing more: the no-ops published nothing. A new change is the next event.
    app.ok(
        "mutation($id: UUID!) { flagSpan(id: $id, reason: \"again\") { id } }",
        json!({"id": sid}),
    )
    .await;
    assert_eq!(next_data(&mut ws, "spanUpdated").await["flagged"], true);
}

#[tokio::test]
async fn trace_ended_is_filtered_by_agent() {
    let app = spawn_app().await;
    let (mine, other) = (id(), id());
    let query = "subscription($a: UUID) { traceEnded(agent: $a) { id name status } }";
    let mut ws = subscribe(&app, "/graphql/ws", query, json!({"a": mine})).await;
    let end = "mutation($id: UUID!) { endTrace(id: $id) { id } }";
    let theirs = app.create_trace(json!({"name": "theirs", "agentId": other})).await["id"].clone();
    app.ok(end, json!({"id": theirs})).await;
    let ours = app.create_trace(json!({"name": "ours", "agentId": mine})).await["id"].clone();
    app.ok(end, json!({"id": ours})).await;
    let ended = next_data(&mut ws, "traceEnded").await;
    assert_eq!(ended["name"], "ours");
    assert_eq!(ended["status"], "OK");
}

/// Lists in a live event are answered in one pass, written as JSON at once, as in a
/// query's answer; over WebSocket they arrive whole, equal to a query of the same.
#[tokio::test]
async fn live_events_carry_lists_answered_in_one_pass() {
    let app = spawn_app().await;
    let query = "subscription { traceEnded { id name rootSpans { name children { name inputText } } } }";
    let mut ws = subscribe(&app, "/graphql/ws", query, json!({})).await;
    let tid = app.create_trace(json!({"name": "run"})).await["id"].clone();
    let root = id();
    app.add_spans(json!([
        {"id": root, "traceId": tid, "name": "root", "spanType": "FUNCTION"},
        {"traceId": tid, "parentId": root, "name": "child \"quoted\"", "spanType": "TOOL", "inputText": "line\nbreak"},
    ]))
    .await;
    app.ok("mutation($id: UUID!) { endTrace(id: $id) { id } }", json!({"id": tid}))
        .await;
    let ended = next_data(&mut ws, "traceEnded").await;
    assert_eq!(
        ended["rootSpans"],
        json!([{"name": "root", "children": [{"name": "child \"quoted\"", "inputText": "line\nbreak"}]}])
    );
    let read = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { id name rootSpans { name children { name inputText } } } }",
            json!({"id": tid}),
        )
        .await;
    assert_eq!(ended, read["trace"]);
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_how_much_it_missed() {
    let app = spawn_app_with(|c| c.live_buffer = 4).await;
    let tid = app.create_trace(json!({"name": "a"})).await["id"].clone();
    let mut ws = subscribe(&app, "/graphql/ws", ADDED, json!({"t": tid})).await;
    // One batch publishes all its spans before the subscriber can run: it lags by 16.
    let batch: Vec<Value> = (0..20)
        .map(|i| json!({"traceId": tid, "name": format!("s{i}"), "spanType": "TOOL"}))
        .collect();
    app.add_spans(Value::Array(batch)).await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["type"], "next", "{msg}");
    let error = &msg["payload"]["errors"][0];
    assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{msg}");
    assert!(error["message"].as_str().unwrap().contains("16"), "{msg}");
    let done = ws.next_json(WAIT).await;
    assert_eq!(
        done["type"], "complete",
        "the subscription ends after the lag error: {done}"
    );
}

#[tokio::test]
async fn on_postgres_events_cross_server_instances_once() {
    if !on_postgres() {
        eprintln!("skipped: SQLite serves one instance; set TRACEGRAPH_TEST_DATABASE_URL");
        return;
    }
    let a = spawn_app().await;
    let b = a.second_instance().await;
    let tid = a.create_trace(json!({"name": "cross"})).await["id"].clone();
    let mut on_b = subscribe(&b, "/graphql/ws", ADDED, json!({"t": tid})).await;
    let ended_query = "subscription { traceEnded { id } }";
    let mut ends_on_b = subscribe(&b, "/graphql/ws", ended_query, json!({})).await;
    let batch = json!([
        {"id": id(), "traceId": tid, "name": "one", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"},
        {"id": id(), "traceId": tid, "name": "two", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:02Z"},
    ]);
    a.add_spans(batch.clone()).await;
    assert_eq!(next_data(&mut on_b, "spanAdded").await["name"], "one");
    assert_eq!(next_data(&mut on_b, "spanAdded").await["name"], "two");
    // Beyond NOTIFY's 8000-byte payload: 250 spans in one batch, each with a large input.
    let big = "x".repeat(20_000);
    let many: Vec<Value> = (0..250)
        .map(|i| json!({"traceId": tid, "name": format!("bulk{i}"), "spanType": "LLM", "inputText": big}))
        .collect();
    a.add_spans(Value::Array(many)).await;
    for i in 0..250 {
        assert_eq!(next_data(&mut on_b, "spanAdded").await["name"], format!("bulk{i}"));
    }
    // Received once: a retry on A and a new span on B itself; the next event is B's span.
    a.add_spans(batch).await;
    b.add_spans(json!([{"traceId": tid, "name": "three", "spanType": "TOOL"}]))
        .await;
    assert_eq!(next_data(&mut on_b, "spanAdded").await["name"], "three");
    a.ok("mutation($id: UUID!) { endTrace(id: $id) { id } }", json!({"id": tid}))
        .await;
    assert_eq!(next_data(&mut ends_on_b, "traceEnded").await["id"], tid);
}

#[tokio::test]
async fn on_postgres_an_import_reaches_live_subscribers() {
    if !on_postgres() {
        eprintln!("skipped: an import on SQLite is another process with no live feed to share");
        return;
    }
    let app = spawn_app().await;
    let mut ends = subscribe(&app, "/graphql/ws", "subscription { traceEnded { id } }", json!({})).await;
    let (_dir, path) = generate(5);
    let ended: std::collections::HashSet<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|r| r["kind"] == "trace" && r["ended_at"].is_string())
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!ended.is_empty());
    import(&app.database_url, &path);
    let mut received = std::collections::HashSet::new();
    for _ in 0..ended.len() {
        received.insert(
            next_data(&mut ends, "traceEnded").await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(received, ended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_concurrent_writers_arrive_once_in_write_order_per_trace() {
    let app = spawn_app().await;
    let (writers, per_writer) = (4, 250);
    let mut traces = Vec::new();
    for w in 0..writers {
        traces.push(
            app.create_trace(json!({"name": format!("w{w}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let query = "subscription { spanAdded { traceId name } }";
    let mut ws = subscribe(&app, "/graphql/ws", query, json!({})).await;
    let add = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }";
    let writes = traces.iter().map(|tid| {
        let app = &app;
        async move {
            for i in 0..per_writer {
                app.ok(
                    add,
                    json!({"i": {"traceId": tid, "name": format!("{i}"), "spanType": "TOOL"}}),
                )
                .await;
            }
        }
    });
    futures::future::join_all(writes).await;
    let mut seen: std::collections::HashMap<String, Vec<u32>> = std::collections::HashMap::new();
    for _ in 0..writers * per_writer {
        let span = next_data(&mut ws, "spanAdded").await;
        let name: u32 = span["name"].as_str().unwrap().parse().unwrap();
        seen.entry(span["traceId"].as_str().unwrap().to_owned())
            .or_default()
            .push(name);
    }
    for tid in &traces {
        let want: Vec<u32> = (0..per_writer).collect();
        assert_eq!(seen[tid], want, "trace {tid}: every span once, in write order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_overflows_alone_while_99_others_get_everything() {
    let app = spawn_app_with(|c| c.live_buffer = 512).await;
    let tid = app.create_trace(json!({"name": "busy"})).await["id"].clone();
    let small = "subscription($t: UUID) { spanAdded(traceId: $t) { name } }";
    let big = "subscription($t: UUID) { spanAdded(traceId: $t) { name inputText } }";
    let (stalled, healthy) = stalled_and_healthy(&app, (big, 1), (small, 99), &tid).await;
    write_and_check(&app, &tid, stalled, healthy, 30).await;
}

async fn subscribe_quiet(app: &TestApp, query: &str, variables: Value) -> WsClient {
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe("1", query, variables).await;
    ws
}

/// One subscriber whose socket takes in little, and `healthy.1` that read, on `tid`.
async fn stalled_and_healthy(
    app: &TestApp,
    stalled: (&str, usize),
    healthy: (&str, usize),
    tid: &Value,
) -> (WsClient, Vec<WsClient>) {
    let mut slow = app.ws_with_small_window().await;
    slow.init().await;
    slow.subscribe("s", stalled.0, json!({"t": tid})).await;
    let mut readers = Vec::new();
    for _ in 0..healthy.1 {
        readers.push(subscribe_quiet(app, healthy.0, json!({"t": tid})).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (slow, readers)
}

/// Writes `batches` of 50 spans with 10 KB inputs; every healthy subscriber gets them
/// all in order, and the stalled one, once it reads, what fit in its buffers, then the
/// lag error (at its field), then the end.
async fn write_and_check(app: &TestApp, tid: &Value, mut stalled: WsClient, healthy: Vec<WsClient>, batches: usize) {
    let per_batch = 50;
    let total = batches * per_batch;
    // How many events each healthy subscriber has read: the writer waits for them after
    // each batch, so that "healthy" means reading, not keeping pace with the writer on
    // a loaded machine. The stalled one never reads, and overflows either way.
    let read: Vec<Arc<AtomicUsize>> = healthy.iter().map(|_| Arc::default()).collect();
    let readers: Vec<_> = healthy
        .into_iter()
        .zip(&read)
        .map(|(mut ws, read)| {
            let read = read.clone();
            tokio::spawn(async move {
                let mut names = Vec::with_capacity(total);
                while names.len() < total {
                    let msg = ws.next_json(Duration::from_secs(60)).await;
                    assert_eq!(msg["type"], "next", "{msg}");
                    let name = msg["payload"]["data"]["spanAdded"]["name"].as_str();
                    names.push(
                        name.unwrap_or_else(|| panic!("a healthy subscriber got {msg}"))
                            .to_owned(),
                    );
                    read.store(names.len(), Ordering::Relaxed);
                }
                names
            })
        })
        .collect();
    let prompt = "p".repeat(10_000);
    for b in 0..batches {
        let batch: Vec<Value> = (0..per_batch)
            .map(|i| json!({"traceId": tid, "name": format!("{}", b * per_batch + i), "spanType": "LLM", "inputText": prompt}))
            .collect();
        app.add_spans(Value::Array(batch)).await;
        let written = (b + 1) * per_batch;
        let caught_up = async {
            // A reader that ended early panicked: its join below tells why.
            while read.iter().any(|r| r.load(Ordering::Relaxed) < written) && !readers.iter().any(|r| r.is_finished()) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), caught_up)
            .await
            .expect("healthy subscribers read each batch");
    }
    let want: Vec<String> = (0..total).map(|i| i.to_string()).collect();
    for reader in readers {
        assert_eq!(
            reader.await.unwrap(),
            want,
            "a healthy subscriber gets every span in order"
        );
    }
    let mut received = 0;
    loop {
        let msg = stalled.next_json(Duration::from_secs(10)).await;
        assert_eq!(msg["type"], "next", "{msg}");
        if let Some(error) = msg["payload"]["errors"].get(0) {
            assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{msg}");
            assert!(error["message"].as_str().unwrap().contains("lagged"), "{msg}");
            assert_eq!(error["path"], json!(["spanAdded"]), "{msg}");
            assert_eq!(stalled.next_json(Duration::from_secs(10)).await["type"], "complete");
            break;
        }
        received += 1;
    }
    assert!(
        received < total,
        "the stalled subscriber overflowed (got {received} of {total})"
    );
}

#[tokio::test]
async fn span_added_filters_by_agent_and_product() {
    let app = spawn_app().await;
    let (agent, product) = (id(), id());
    let mine = app
        .create_trace(json!({"name": "m", "agentId": agent, "productId": product}))
        .await["id"]
        .clone();
    let same_agent_other_product = app.create_trace(json!({"name": "o", "agentId": agent})).await["id"].clone();
    let other = app.create_trace(json!({"name": "x", "productId": product})).await["id"].clone();
    let query = "subscription($a: UUID, $p: UUID) { spanAdded(agent: $a, productId: $p) { name } }";
    let mut ws = subscribe(&app, "/graphql/ws", query, json!({"a": agent, "p": product})).await;
    let by_product = "subscription($p: UUID) { spanAdded(productId: $p) { name } }";
    let mut ws_product = subscribe(&app, "/graphql/ws", by_product, json!({"p": product})).await;
    app.add_spans(json!([
        {"traceId": same_agent_other_product, "name": "agent-only", "spanType": "TOOL"},
        {"traceId": other, "name": "product-only", "spanType": "TOOL"},
        {"traceId": mine, "name": "both", "spanType": "TOOL"},
    ]))
    .await;
    assert_eq!(next_data(&mut ws, "spanAdded").await["name"], "both");
    assert_eq!(next_data(&mut ws_product, "spanAdded").await["name"], "product-only");
    assert_eq!(next_data(&mut ws_product, "spanAdded").await["name"], "both");
}

/// Identical subscriptions share one execution; each subscriber still gets every event
/// in order, and one that stops reading falls behind alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_share_one_execution_and_lag_alone() {
    let app = spawn_app_with(|c| c.live_buffer = 64).await;
    let tid = app.create_trace(json!({"name": "shared"})).await["id"].clone();
    let other = app.create_trace(json!({"name": "other"})).await["id"].clone();
    let query = "subscription($t: UUID) { spanAdded(traceId: $t) { name inputText } }";
    let (stalled, healthy) = stalled_and_healthy(&app, (query, 1), (query, 3), &tid).await;
    let _elsewhere = subscribe_quiet(&app, query, json!({"t": other})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.metric("tracegraph_live_executions").await,
        2,
        "one per distinct subscription"
    );
    write_and_check(&app, &tid, stalled, healthy, 10).await;
}
