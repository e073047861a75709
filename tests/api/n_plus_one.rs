//! The dashboard query costs the same number of SQL statements for 5 traces as for 50.

use serde_json::{Value, json};

use crate::helpers::{TestApp, on_postgres, spawn_app};

const DASHBOARD: &str = "query($n: Int) { traces(limit: $n, sort: STARTED_AT_DESC) { totalCount hasNextPage items {
    id name status startedAt durationMs usage { totalTokens costUsd }
    rootSpans { name spanType startedAt endedAt error usage { totalTokens costUsd }
      children { name spanType startedAt endedAt error usage { totalTokens costUsd }
        children { name spanType startedAt endedAt error usage { totalTokens costUsd } } } } } } }";

/// `n` traces, each a root with two children with two grandchildren each.
async fn seed(app: &TestApp, n: usize) {
    for i in 0..n {
        let tid = app
            .create_trace(json!({"name": format!("t{i}"), "startedAt": format!("2026-11-01T00:00:{:02}Z", i % 60)}))
            .await["id"]
            .clone();
        let root = uuid::Uuid::new_v4().to_string();
        let mut spans = vec![json!({"id": root, "traceId": tid, "name": "run", "spanType": "FUNCTION"})];
        for c in 0..2 {
            let child = uuid::Uuid::new_v4().to_string();
            spans.push(
                json!({"id": child, "traceId": tid, "parentId": root, "name": format!("c{c}"), "spanType": "TOOL"}),
            );
            for g in 0..2 {
                spans.push(
                    json!({"traceId": tid, "parentId": child, "name": format!("g{g}"), "spanType": "LLM",
                    "metadata": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.001}}),
                );
            }
        }
        app.add_spans(Value::Array(spans)).await;
    }
}

async fn statements_for(app: &TestApp, n: usize) -> u64 {
    let before = app.statements.get();
    let data = app.ok(DASHBOARD, json!({"n": n})).await;
    let after = app.statements.get();
    check_dashboard(&data, n);
    after - before
}

fn check_dashboard(data: &Value, n: usize) {
    let items = data["traces"]["items"].as_array().unwrap();
    assert_eq!(items.len(), n);
    for t in items {
        let grandchildren = &t["rootSpans"][0]["children"][1]["children"];
        assert_eq!(grandchildren.as_array().unwrap().len(), 2, "tree fully loaded");
        assert_eq!(grandchildren[0]["usage"]["totalTokens"], 15);
        assert_eq!(t["usage"]["totalTokens"], 60);
    }
}

/// A query sent over a WebSocket runs as over HTTP, on loaders of its own: each tree is
/// read once for the whole request, not again at each level.
#[tokio::test]
async fn the_dashboard_over_a_socket_costs_what_it_costs_over_http() {
    let app = spawn_app().await;
    seed(&app, 5).await;
    let over_http = statements_for(&app, 5).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    let before = app.statements.get();
    ws.subscribe("dashboard", DASHBOARD, json!({"n": 5})).await;
    let msg = ws.next_json(std::time::Duration::from_secs(5)).await;
    let over_socket = app.statements.get() - before;
    assert!(msg["payload"].get("errors").is_none(), "{msg}");
    check_dashboard(&msg["payload"]["data"], 5);
    assert_eq!(over_socket, over_http);
}

#[tokio::test]
async fn nested_dashboard_query_is_constant_in_statements() {
    let app = spawn_app().await;
    seed(&app, 50).await;
    let five = statements_for(&app, 5).await;
    let fifty = statements_for(&app, 50).await;
    assert_eq!(five, fifty, "statement count grows with the page: N+1");
    // Traces, totalCount, and the span trees of the page. Whether API keys exist is
    // remembered until a key changes.
    assert_eq!(fifty, 3);
}

/// A trace by id reads its row and, when the selection goes below it, its span tree: on
/// PostgreSQL in one statement, on SQLite (no round trips) in one each. Roots alone,
/// and a filtered list, use their own read.
#[tokio::test]
async fn a_trace_by_id_reads_its_row_and_its_tree_once_each() {
    let app = spawn_app().await;
    seed(&app, 1).await;
    let data = app.ok("{ traces { items { id } } }", json!({})).await;
    let id = data["traces"]["items"][0]["id"].clone();
    let statements = |query: &'static str, id: Value| {
        let app = &app;
        async move {
            let before = app.statements.get();
            let data = app.ok(query, json!({"id": id})).await;
            (app.statements.get() - before, data["trace"].clone())
        }
    };

    let (n, trace) = statements("query($id: UUID!) { trace(id: $id) { name } }", id.clone()).await;
    assert_eq!((n, &trace["name"]), (1, &json!("t0")), "no span field, no tree read");

    let with_tree = if on_postgres() { 1 } else { 2 };
    let (n, trace) = statements("query($id: UUID!) { trace(id: $id) { spans { name } } }", id.clone()).await;
    assert_eq!(n, with_tree);
    assert_eq!(trace["spans"].as_array().unwrap().len(), 7);

    let deep = "query($id: UUID!) { trace(id: $id) { rootSpans { name children { name children { name } } } } }";
    let (n, trace) = statements(deep, id.clone()).await;
    assert_eq!(n, with_tree);
    assert_eq!(trace["rootSpans"][0]["children"][1]["children"][1]["name"], "g1");

    let (n, trace) = statements(
        "query($id: UUID!) { trace(id: $id) { rootSpans { name } } }",
        id.clone(),
    )
    .await;
    assert_eq!((n, &trace["rootSpans"]), (2, &json!([{"name": "run"}])));

    // A filtered list reads only its own spans, not the tree beside the row.
    let tools = "query($id: UUID!) { trace(id: $id) { spans(filter: {spanType: TOOL}) { name } } }";
    let (n, trace) = statements(tools, id.clone()).await;
    assert_eq!((n, &trace["spans"]), (2, &json!([{"name": "c0"}, {"name": "c1"}])));

    let missing = json!(uuid::Uuid::new_v4().to_string());
    let (n, trace) = statements("query($id: UUID!) { trace(id: $id) { spans { name } } }", missing).await;
    assert_eq!((n, trace), (with_tree, Value::Null));

    // Several traces by id in one request: their rows and trees are read together.
    seed(&app, 1).await;
    let data = app.ok("{ traces { items { id } } }", json!({})).await;
    let (a, b) = (&data["traces"]["items"][0]["id"], &data["traces"]["items"][1]["id"]);
    assert_ne!(a, b);
    let before = app.statements.get();
    let both = app
        .ok(
            "query($a: UUID!, $b: UUID!) { a: trace(id: $a) { spans { name } } b: trace(id: $b) { spans { name } } }",
            json!({"a": a, "b": b}),
        )
        .await;
    assert_eq!(app.statements.get() - before, with_tree);
    assert_eq!(both["a"]["spans"].as_array().map(Vec::len), Some(7));
    assert_eq!(both["b"]["spans"].as_array().map(Vec::len), Some(7));
}

/// A page asked only for its counts reads no rows; asked for its rows through a
/// fragment, it reads them. Asked for both, it counts once.
#[tokio::test]
async fn a_page_asked_only_for_its_counts_reads_no_rows() {
    let app = spawn_app().await;
    seed(&app, 3).await;
    let agent = uuid::Uuid::new_v4().to_string();
    let tid = app.create_trace(json!({"name": "run", "agentId": agent})).await["id"].clone();
    app.add_spans(json!([{"traceId": tid, "name": "llm", "spanType": "LLM",
        "metadata": {"input_tokens": 10, "output_tokens": 5}}]))
        .await;
    app.ok("mutation($t: UUID!) { endTrace(id: $t) { id } }", json!({"t": tid}))
        .await;
    let counted = |query: &'static str, variables: Value| {
        let app = &app;
        async move {
            let before = app.statements.get();
            let data = app.ok(query, variables).await;
            (data, app.statements.get() - before)
        }
    };
    let (data, statements) = counted("{ traces { totalCount } spans { totalCount } }", json!({})).await;
    assert_eq!(data["traces"]["totalCount"], 4, "{data}");
    assert_eq!(data["spans"]["totalCount"], 22, "{data}");
    assert_eq!(statements, 2, "one count each, no page");
    let (data, statements) = counted(
        "query($a: UUID) { agentUsage(filter: {agent: $a}) { totals { totalTokens } } }",
        json!({"a": agent}),
    )
    .await;
    assert_eq!(data["agentUsage"]["totals"]["totalTokens"], 15, "{data}");
    assert_eq!(statements, 1, "the agent's kept totals, no page");
    let (data, statements) = counted(
        "{ traces { ...rows } } fragment rows on TracePage { hasNextPage items { id } }",
        json!({}),
    )
    .await;
    assert_eq!(data["traces"]["items"].as_array().map(Vec::len), Some(4), "{data}");
    assert_eq!(data["traces"]["hasNextPage"], false);
    assert_eq!(statements, 1, "the page");

    // Counted beside the rows, once per page however often it is shown.
    let (data, statements) = counted(
        "{ traces(limit: 3) { a: totalCount items { id } ...n } spans(limit: 2) { totalCount items { id } }
           agentUsage { b: totalCount c: totalCount items { traceId } } }
         fragment n on TracePage { totalCount }",
        json!({}),
    )
    .await;
    assert_eq!(
        (&data["traces"]["a"], &data["traces"]["totalCount"]),
        (&json!(4), &json!(4)),
        "{data}"
    );
    assert_eq!(data["traces"]["items"].as_array().map(Vec::len), Some(3), "{data}");
    assert_eq!(data["spans"]["totalCount"], 22, "{data}");
    assert_eq!(data["spans"]["items"].as_array().map(Vec::len), Some(2), "{data}");
    assert_eq!(
        (&data["agentUsage"]["b"], &data["agentUsage"]["c"]),
        (&json!(1), &json!(1)),
        "{data}"
    );
    assert_eq!(data["agentUsage"]["items"][0]["traceId"], tid, "{data}");
    assert_eq!(statements, 6, "a page and a count for each list");

    // Totals count their records: beside them, `totalCount` costs nothing more, for an
    // agent's kept totals and for records summed over a window alike.
    let (data, statements) = counted(
        "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount totals { totalTokens } again: totals { llmCalls } } }",
        json!({"a": agent}),
    )
    .await;
    assert_eq!(
        data["agentUsage"],
        json!({"totalCount": 1, "totals": {"totalTokens": 15}, "again": {"llmCalls": 1}})
    );
    assert_eq!(statements, 1, "the agent's kept totals, once");
    let (data, statements) = counted(
        "query($a: UUID) { agentUsage(filter: {agent: $a, createdAfter: \"2000-01-01T00:00:00Z\"}) {
           totalCount totals { totalTokens } items { traceId } } }",
        json!({"a": agent}),
    )
    .await;
    assert_eq!(
        data["agentUsage"],
        json!({"totalCount": 1, "totals": {"totalTokens": 15}, "items": [{"traceId": tid}]})
    );
    assert_eq!(statements, 2, "the page, and the sums with their count");
}
