use serde_json::{Value, json};

use crate::helpers::{id, spawn_app};
use crate::subscriptions::{next_data, subscribe};

const LIST: &str = "query($f: TraceFilter, $s: TraceSort, $l: Int, $o: Int) {
    traces(filter: $f, sort: $s, limit: $l, offset: $o) { totalCount hasNextPage items { id name } } }";

fn ids(page: &Value) -> Vec<String> {
    page["traces"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_trace_returns_it_and_reads_back() {
    let app = spawn_app().await;
    let (agent, product) = (id(), id());
    let created = app
        .create_trace(json!({"name": "support-chat", "agentId": agent, "productId": product,
            "startedAt": "2026-11-01T10:00:00.123456789Z", "metadata": {"env": "prod"}}))
        .await;
    assert_eq!(created["status"], "RUNNING");
    // Stored with microseconds, in UTC.
    assert_eq!(created["startedAt"], "2026-11-01T10:00:00.123456+00:00");
    let data = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { name agentId productId metadata spanCount durationMs
                usage { llmCalls totalTokens costUsd } agentUsage { id } } }",
            json!({"id": created["id"]}),
        )
        .await;
    let t = &data["trace"];
    assert_eq!(t["name"], "support-chat");
    assert_eq!(t["agentId"], agent);
    assert_eq!(t["productId"], product);
    assert_eq!(t["metadata"], json!({"env": "prod"}));
    assert_eq!(t["spanCount"], 0);
    assert_eq!(t["durationMs"], Value::Null);
    assert_eq!(t["usage"], json!({"llmCalls": 0, "totalTokens": 0, "costUsd": 0.0}));
    assert_eq!(t["agentUsage"], Value::Null);
}

#[tokio::test]
async fn unknown_trace_and_span_are_null() {
    let app = spawn_app().await;
    let data = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { id } span(id: $id) { id } }",
            json!({"id": id()}),
        )
        .await;
    assert_eq!(data, json!({"trace": null, "span": null}));
}

#[tokio::test]
async fn create_with_client_id_is_idempotent_and_conflicts_on_other_content() {
    let app = spawn_app().await;
    let tid = id();
    let input = json!({"id": tid, "name": "run", "startedAt": "2026-11-01T00:00:00Z", "metadata": {"a": 1}});
    let first = app.create_trace(input.clone()).await;
    let again = app.create_trace(input.clone()).await;
    assert_eq!(first, again);
    // A retry that leaves startedAt to its default still describes the same trace.
    let mut without_time = input.clone();
    without_time.as_object_mut().unwrap().remove("startedAt");
    assert_eq!(app.create_trace(without_time).await["id"], tid);

    let mut other = input.clone();
    other["name"] = json!("another");
    let q = "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id } }";
    assert_eq!(app.error_code(q, json!({"i": other})).await, "CONFLICT");
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn end_trace_writes_usage_once_and_repeats_are_no_ops() {
    let app = spawn_app().await;
    let agent = id();
    let t = app
        .create_trace(json!({"name": "r", "agentId": agent, "startedAt": "2026-11-01T00:00:00Z"}))
        .await;
    let tid = t["id"].as_str().unwrap();
    app.add_spans(json!([
        {"traceId": tid, "name": "llm", "spanType": "LLM", "startedAt": "2026-11-01T00:00:01Z",
         "metadata": {"model": "gpt-4o", "prompt_tokens": 100, "completion_tokens": 20, "cost": 0.01}},
        {"traceId": tid, "name": "llm2", "spanType": "LLM", "startedAt": "2026-11-01T00:00:02Z",
         "metadata": {"input_tokens": 50, "output_tokens": 5, "total_tokens": 55, "cost_usd": 0.02}},
        {"traceId": tid, "name": "tool", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:03Z",
         "metadata": {"input_tokens": 999}},
    ]))
    .await;
    let end = "mutation($id: UUID!, $at: DateTime, $e: String) { endTrace(id: $id, endedAt: $at, error: $e) {
        endedAt durationMs status agentUsage { agentId llmCalls inputTokens outputTokens totalTokens costUsd } } }";
    let at = "2026-11-01T00:00:10.5Z";
    let ended = app.ok(end, json!({"id": tid, "at": at})).await["endTrace"].clone();
    assert_eq!(ended["durationMs"], 10500.0);
    assert_eq!(ended["status"], "OK");
    let usage = &ended["agentUsage"];
    assert_eq!(usage["agentId"], agent);
    assert_eq!(usage["llmCalls"], 2);
    assert_eq!(usage["inputTokens"], 150);
    assert_eq!(usage["outputTokens"], 25);
    assert_eq!(usage["totalTokens"], 175);
    assert!((usage["costUsd"].as_f64().unwrap() - 0.03).abs() < 1e-12);

    // Retrying the same end (or with no time) changes nothing; another time conflicts.
    assert_eq!(app.ok(end, json!({"id": tid, "at": at})).await["endTrace"], ended);
    assert_eq!(app.ok(end, json!({"id": tid})).await["endTrace"], ended);
    let code = app
        .error_code(end, json!({"id": tid, "at": "2026-11-01T00:00:11Z"}))
        .await;
    assert_eq!(code, "CONFLICT");

    let records = app
        .ok(
            "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount items { traceId } } }",
            json!({"a": agent}),
        )
        .await;
    assert_eq!(records["agentUsage"]["totalCount"], 1);
}

#[tokio::test]
async fn concurrent_end_trace_writes_one_usage_record() {
    let app = spawn_app().await;
    let agent = id();
    let tid = app.create_trace(json!({"name": "r", "agentId": agent})).await["id"].clone();
    let end = "mutation($id: UUID!) { endTrace(id: $id) { id } }";
    let calls = (0..8).map(|_| app.gql(end, json!({"id": tid})));
    let results = futures::future::join_all(calls).await;
    // Each call either ended the trace or found it ended; none failed otherwise.
    for body in &results {
        if let Some(errors) = body.get("errors") {
            assert_eq!(errors[0]["extensions"]["code"], "CONFLICT", "{body}");
        }
    }
    let records = app
        .ok(
            "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount } }",
            json!({"a": agent}),
        )
        .await;
    assert_eq!(records["agentUsage"]["totalCount"], 1);
}

#[tokio::test]
async fn late_spans_of_an_ended_trace_update_its_usage_record() {
    let app = spawn_app().await;
    let tid = app
        .create_trace(json!({"name": "r", "startedAt": "2026-11-01T00:00:00Z", "endedAt": "2026-11-01T00:01:00Z"}))
        .await["id"]
        .clone();
    app.add_spans(json!([{"traceId": tid, "name": "late", "spanType": "LLM",
        "startedAt": "2026-11-01T00:00:30Z", "metadata": {"input_tokens": 3, "output_tokens": 4, "cost_usd": 1.5}}]))
        .await;
    let data = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { usage { totalTokens } agentUsage { llmCalls totalTokens costUsd } } }",
            json!({"id": tid}),
        )
        .await;
    assert_eq!(data["trace"]["usage"]["totalTokens"], 7);
    assert_eq!(
        data["trace"]["agentUsage"],
        json!({"llmCalls": 1, "totalTokens": 7, "costUsd": 1.5})
    );
}

#[tokio::test]
async fn an_agents_whole_history_totals_equal_the_sum_of_its_records() {
    let app = spawn_app().await;
    let (a, b) = (id(), id());
    let llm = |tid: &Value, tokens: i64, cost: f64| {
        json!({"traceId": tid, "name": "llm", "spanType": "LLM",
               "metadata": {"input_tokens": tokens, "output_tokens": 1, "cost_usd": cost}})
    };
    let end = "mutation($id: UUID!) { endTrace(id: $id) { id } }";
    // Ended after its spans, twice (the repeat counts nothing).
    let t1 = app.create_trace(json!({"name": "r", "agentId": a})).await["id"].clone();
    app.add_spans(json!([llm(&t1, 10, 0.5)])).await;
    app.ok(end, json!({"id": t1})).await;
    app.ok(end, json!({"id": t1})).await;
    // Written ended, then a late span.
    let t2 = app
        .create_trace(json!({"name": "r", "agentId": a, "startedAt": "2026-11-01T00:00:00Z",
                             "endedAt": "2026-11-01T00:01:00Z"}))
        .await["id"]
        .clone();
    app.add_spans(json!([llm(&t2, 20, 0.25)])).await;
    // Ended by eight calls at once.
    let t3 = app.create_trace(json!({"name": "r", "agentId": a})).await["id"].clone();
    app.add_spans(json!([llm(&t3, 30, 0.125)])).await;
    futures::future::join_all((0..8).map(|_| app.gql(end, json!({"id": t3})))).await;
    // Another agent's, an agent-less one, and one still running.
    let other = app.create_trace(json!({"name": "r", "agentId": b})).await["id"].clone();
    app.add_spans(json!([llm(&other, 1000, 9.0)])).await;
    app.ok(end, json!({"id": other})).await;
    let nobody = app.create_trace(json!({"name": "r"})).await["id"].clone();
    app.add_spans(json!([llm(&nobody, 1000, 9.0)])).await;
    app.ok(end, json!({"id": nobody})).await;
    let running = app.create_trace(json!({"name": "r", "agentId": a})).await["id"].clone();
    app.add_spans(json!([llm(&running, 1000, 9.0)])).await;

    let totals = "query($f: AgentUsageFilter) { agentUsage(filter: $f) { totalCount totals { llmCalls inputTokens outputTokens totalTokens costUsd } } }";
    // The agent alone reads its kept totals; a time window sums the records themselves.
    let kept = app.ok(totals, json!({"f": {"agent": a}})).await["agentUsage"].clone();
    let summed = app
        .ok(
            totals,
            json!({"f": {"agent": a, "createdAfter": "2000-01-01T00:00:00Z"}}),
        )
        .await["agentUsage"]
        .clone();
    assert_eq!(kept, summed);
    assert_eq!(kept["totalCount"], 3);
    assert_eq!(
        kept["totals"],
        json!({"llmCalls": 3, "inputTokens": 60, "outputTokens": 3, "totalTokens": 63, "costUsd": 0.875})
    );
    let unknown = app.ok(totals, json!({"f": {"agent": id()}})).await["agentUsage"].clone();
    assert_eq!(
        unknown["totals"],
        json!({"llmCalls": 0, "inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "costUsd": 0.0})
    );
}

#[tokio::test]
async fn concurrent_batch_ends_across_agents_all_succeed() {
    let app = spawn_app().await;
    let agents = [id(), id(), id()];
    let end = "mutation($i: [EndTraceInput!]!) { endTraces(inputs: $i) { id } }";
    // Each batch meets the agents in another order: taken as given, two batches would
    // lock two agents' totals in opposite orders.
    let mut batches = Vec::new();
    for batch in 0..8 {
        let mut inputs = Vec::new();
        for i in 0..9 {
            let agent = &agents[(i + batch) % 3];
            let t = app.create_trace(json!({"name": "r", "agentId": agent})).await["id"].clone();
            inputs.push(json!({"id": t}));
        }
        if batch % 2 == 1 {
            inputs.reverse();
        }
        batches.push(inputs);
    }
    let results = futures::future::join_all(batches.iter().map(|inputs| app.gql(end, json!({"i": inputs})))).await;
    for body in &results {
        assert!(body.get("errors").is_none(), "{body}");
    }
    let records = "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount } }";
    for agent in agents {
        assert_eq!(
            app.ok(records, json!({"a": agent})).await["agentUsage"]["totalCount"],
            24
        );
    }
}

/// Five traces a minute apart: names t0..t4, agents alternate, t3 fails, t4 runs.
async fn five_traces(app: &crate::helpers::TestApp) -> (String, String, String) {
    let (a, b, product) = (id(), id(), id());
    for i in 0..5 {
        let agent = if i % 2 == 0 { &a } else { &b };
        let mut input = json!({"name": format!("t{i}"), "agentId": agent, "productId": product,
            "startedAt": format!("2026-11-01T00:0{i}:00Z")});
        if i < 4 {
            // Durations 10s, 20s, 30s, 40s.
            input["endedAt"] = json!(format!("2026-11-01T00:0{i}:{}Z", (i + 1) * 10));
        }
        if i == 3 {
            input["error"] = json!("boom");
        }
        let t = app.create_trace(input).await;
        if i == 1 {
            let span = app
                .add_spans(json!([{"traceId": t["id"], "name": "s", "spanType": "LLM", "metadata": {"cost_usd": 9.0}}]))
                .await;
            app.ok(
                "mutation($id: UUID!) { flagSpan(id: $id, reason: \"wrong\") { id } }",
                json!({"id": span[0]["id"]}),
            )
            .await;
        }
    }
    (a, b, product)
}

#[tokio::test]
async fn trace_filters() {
    let app = spawn_app().await;
    let (a, b, product) = five_traces(&app).await;
    let cases = [
        (json!({"agent": a}), vec!["t4", "t2", "t0"]),
        (json!({"agent": b}), vec!["t3", "t1"]),
        (json!({"productId": product}), vec!["t4", "t3", "t2", "t1", "t0"]),
        (json!({"productId": id()}), vec![]),
        (json!({"name": "t2"}), vec!["t2"]),
        (json!({"startedAfter": "2026-11-01T00:02:00Z"}), vec!["t4", "t3", "t2"]),
        (json!({"startedBefore": "2026-11-01T00:02:00Z"}), vec!["t1", "t0"]),
        (json!({"status": "RUNNING"}), vec!["t4"]),
        (json!({"status": "ERROR"}), vec!["t3"]),
        (json!({"status": "OK"}), vec!["t2", "t1", "t0"]),
        (json!({"hasError": true}), vec!["t3"]),
        (json!({"hasError": false}), vec!["t4", "t2", "t1", "t0"]),
        (json!({"hasFlaggedSpans": true}), vec!["t1"]),
        (json!({"hasFlaggedSpans": false}), vec!["t4", "t3", "t2", "t0"]),
        (
            json!({"agent": a, "startedAfter": "2026-11-01T00:01:00Z"}),
            vec!["t4", "t2"],
        ),
    ];
    for (filter, want) in cases {
        let page = app.ok(LIST, json!({"f": filter})).await;
        assert_eq!(ids(&page), want, "filter {filter}");
        assert_eq!(page["traces"]["totalCount"], want.len(), "filter {filter}");
    }
}

#[tokio::test]
async fn trace_sorts() {
    let app = spawn_app().await;
    five_traces(&app).await;
    let cases = [
        ("STARTED_AT_ASC", vec!["t0", "t1", "t2", "t3", "t4"]),
        ("STARTED_AT_DESC", vec!["t4", "t3", "t2", "t1", "t0"]),
        ("ENDED_AT_ASC", vec!["t0", "t1", "t2", "t3", "t4"]),
        ("ENDED_AT_DESC", vec!["t3", "t2", "t1", "t0", "t4"]),
        ("DURATION_ASC", vec!["t0", "t1", "t2", "t3", "t4"]),
        ("DURATION_DESC", vec!["t3", "t2", "t1", "t0", "t4"]),
        ("COST_DESC", vec!["t1"]),
    ];
    for (sort, want) in cases {
        let page = app.ok(LIST, json!({"s": sort})).await;
        let got = ids(&page);
        assert_eq!(&got[..want.len()], &want[..], "sort {sort}");
    }
    let cheapest = ids(&app.ok(LIST, json!({"s": "COST_ASC"})).await);
    assert_eq!(cheapest.last().unwrap(), "t1");
}

#[tokio::test]
async fn pagination_edges() {
    let app = spawn_app().await;
    five_traces(&app).await;
    let page = |l: i64, o: i64| app.ok(LIST, json!({"l": l, "o": o, "s": "STARTED_AT_ASC"}));
    let first = page(2, 0).await;
    assert_eq!(ids(&first), vec!["t0", "t1"]);
    assert_eq!(first["traces"]["hasNextPage"], true);
    assert_eq!(first["traces"]["totalCount"], 5);
    let last = page(2, 4).await;
    assert_eq!(ids(&last), vec!["t4"]);
    assert_eq!(last["traces"]["hasNextPage"], false);
    let exact = page(5, 0).await;
    assert_eq!(ids(&exact).len(), 5);
    assert_eq!(exact["traces"]["hasNextPage"], false);
    let beyond = page(2, 10).await;
    assert_eq!(ids(&beyond), Vec::<String>::new());
    assert_eq!(beyond["traces"]["hasNextPage"], false);
    assert_eq!(beyond["traces"]["totalCount"], 5);
    let max = page(500, 0).await;
    assert_eq!(ids(&max).len(), 5);
}

#[tokio::test]
async fn empty_store_gives_an_empty_page() {
    let app = spawn_app().await;
    let page = app.ok(LIST, json!({})).await;
    assert_eq!(
        page["traces"],
        json!({"totalCount": 0, "hasNextPage": false, "items": []})
    );
}

#[tokio::test]
async fn batches_of_traces_are_created_and_ended_all_or_nothing() {
    let app = crate::helpers::spawn_app_with(|c| c.max_batch_spans = 3).await;
    let agent = id();
    let create = "mutation($i: [CreateTraceInput!]!) { createTraces(inputs: $i) { id name } }";
    let inputs: Vec<Value> = (0..3)
        .map(|i| json!({"id": id(), "name": format!("b{i}"), "agentId": agent, "startedAt": "2026-11-01T00:00:00Z"}))
        .collect();
    let created = app.ok(create, json!({"i": inputs})).await;
    assert_eq!(created["createTraces"].as_array().unwrap().len(), 3);
    assert_eq!(
        app.ok(create, json!({"i": inputs})).await,
        created,
        "a retried batch is a no-op"
    );

    let mut bad = vec![json!({"name": "fine"}), json!({"name": ""})];
    let body = app.gql(create, json!({"i": bad.clone()})).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "inputs[1].name");
    bad[1] = json!({"name": "x"});
    bad.extend([json!({"name": "y"}), json!({"name": "z"})]);
    assert_eq!(app.error_code(create, json!({"i": bad})).await, "LIMIT_EXCEEDED");
    assert_eq!(app.counts().await, (3, 0), "nothing of a refused batch");

    let end = "mutation($i: [EndTraceInput!]!) { endTraces(inputs: $i) { id endedAt agentUsage { id } } }";
    let ends: Vec<Value> = inputs
        .iter()
        .map(|t| json!({"id": t["id"], "endedAt": "2026-11-01T00:01:00Z"}))
        .collect();
    let mut with_unknown = ends.clone();
    with_unknown[2] = json!({"id": id()});
    assert_eq!(app.error_code(end, json!({"i": with_unknown})).await, "NOT_FOUND");
    let running = app
        .ok("{ traces(filter: {status: RUNNING}) { totalCount } }", json!({}))
        .await;
    assert_eq!(running["traces"]["totalCount"], 3, "none ended by the refused batch");
    let ended = app.ok(end, json!({"i": ends})).await;
    let in_order: Vec<&Value> = ended["endTraces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(
        in_order,
        inputs.iter().map(|t| &t["id"]).collect::<Vec<_>>(),
        "answers in input order"
    );
    for t in ended["endTraces"].as_array().unwrap() {
        assert!(t["agentUsage"]["id"].is_string(), "{t}");
    }
    // A batch naming a trace twice ends it once; another time for it conflicts.
    let twice = app.ok(end, json!({"i": [ends[0], ends[0]]})).await;
    assert_eq!(twice["endTraces"][0], twice["endTraces"][1]);
    let other_time = json!({"id": inputs[0]["id"], "endedAt": "2026-11-01T00:02:00Z"});
    assert_eq!(
        app.error_code(end, json!({"i": [ends[1], other_time]})).await,
        "CONFLICT"
    );
    let usage = app
        .ok(
            "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount } }",
            json!({"a": agent}),
        )
        .await;
    assert_eq!(usage["agentUsage"]["totalCount"], 3);
}

/// An id repeated inside one batch is judged against its earlier occurrence, as if the
/// two came one after the other: the same content is one row, other content a conflict
/// that writes nothing.
#[tokio::test]
async fn ids_repeated_within_one_batch() {
    let app = spawn_app().await;
    let agent = id();
    let create = "mutation($i: [CreateTraceInput!]!) { createTraces(inputs: $i) { id name } }";
    let (a, b) = (id(), id());
    let same = json!({"id": a, "name": "a", "agentId": agent, "startedAt": "2026-11-01T00:00:00Z"});
    let other = json!({"id": b, "name": "b", "agentId": agent, "startedAt": "2026-11-01T00:00:00Z"});
    let body = app.ok(create, json!({"i": [same, other, same]})).await;
    assert_eq!(body["createTraces"][0], body["createTraces"][2]);
    assert_eq!(app.counts().await.0, 2);
    let c = id();
    let first = json!({"id": c, "name": "c"});
    let differing = json!({"id": c, "name": "not c"});
    assert_eq!(
        app.error_code(create, json!({"i": [first, differing]})).await,
        "CONFLICT"
    );
    assert_eq!(app.counts().await.0, 2, "nothing of the refused batch");

    let mut ends = subscribe(&app, "/graphql/ws", "subscription { traceEnded { id } }", json!({})).await;
    let end = "mutation($i: [EndTraceInput!]!) { endTraces(inputs: $i) { id endedAt agentUsage { totalTokens } } }";
    let at = |t: &str| json!({"id": a, "endedAt": t});
    assert_eq!(
        app.error_code(
            end,
            json!({"i": [at("2026-11-01T00:01:00Z"), at("2026-11-01T00:02:00Z")]})
        )
        .await,
        "CONFLICT",
        "two different ends of one running trace"
    );
    let running = app
        .ok("{ traces(filter: {status: RUNNING}) { totalCount } }", json!({}))
        .await;
    assert_eq!(running["traces"]["totalCount"], 2, "none ended by the refused batch");
    let both = app
        .ok(
            end,
            json!({"i": [at("2026-11-01T00:01:00Z"), {"id": b}, at("2026-11-01T00:01:00Z")]}),
        )
        .await;
    assert_eq!(both["endTraces"][0], both["endTraces"][2]);
    assert_eq!(both["endTraces"][0]["endedAt"], "2026-11-01T00:01:00+00:00");
    let mut heard = vec![
        next_data(&mut ends, "traceEnded").await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        next_data(&mut ends, "traceEnded").await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    heard.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(heard, expected, "each end published once");
    let usage = app
        .ok(
            "query($a: UUID) { agentUsage(filter: {agent: $a}) { totalCount totals { llmCalls } } }",
            json!({"a": agent}),
        )
        .await;
    assert_eq!(usage["agentUsage"]["totalCount"], 2, "one record per trace: {usage}");
    // A third end, the same again, publishes nothing: the next event is another trace's.
    app.ok(end, json!({"i": [at("2026-11-01T00:01:00Z")]})).await;
    let d = app.create_trace(json!({"name": "d"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(end, json!({"i": [{"id": d}]})).await;
    assert_eq!(
        next_data(&mut ends, "traceEnded").await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        d
    );
}
