use serde_json::{Value, json};

use crate::helpers::{TestApp, id, spawn_app};

const ADD: &str = "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id } }";

async fn trace(app: &TestApp, agent: &str) -> String {
    app.create_trace(json!({"name": "run", "agentId": agent, "startedAt": "2026-11-01T00:00:00Z"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn add_span_with_every_field_reads_back() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let q = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id traceId parentId name spanType startedAt endedAt
        durationMs inputText outputText error metadata flagged flags { id }
        usage { model provider inputTokens outputTokens totalTokens costUsd llmCalls } } }";
    let span = app
        .ok(
            q,
            json!({"i": {"traceId": tid, "name": "openai.chat", "spanType": "LLM",
                "startedAt": "2026-11-01T00:00:01Z", "endedAt": "2026-11-01T00:00:01.25Z",
                "inputText": "hi", "outputText": "hello", "error": null,
                "metadata": {"provider": "openai", "model": "gpt-4o", "input_tokens": 12, "output_tokens": 3, "cost_usd": 0.001}}}),
        )
        .await["addSpan"]
        .clone();
    assert_eq!(span["traceId"], tid);
    assert_eq!(span["parentId"], Value::Null);
    assert_eq!(span["spanType"], "LLM");
    assert_eq!(span["durationMs"], 250.0);
    assert_eq!(span["inputText"], "hi");
    assert_eq!(span["outputText"], "hello");
    assert_eq!(span["flagged"], false);
    assert_eq!(span["flags"], json!([]));
    assert_eq!(
        span["usage"],
        json!({"model": "gpt-4o", "provider": "openai", "inputTokens": 12, "outputTokens": 3,
               "totalTokens": 15, "costUsd": 0.001, "llmCalls": 1})
    );
    let tool = app
        .ok(q, json!({"i": {"traceId": tid, "name": "search", "spanType": "TOOL"}}))
        .await;
    assert_eq!(tool["addSpan"]["usage"], Value::Null);
}

#[tokio::test]
async fn nested_span_fields_resolve() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let (root, child, grandchild) = (id(), id(), id());
    app.add_spans(json!([
        {"id": grandchild, "traceId": tid, "parentId": child, "name": "g", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:03Z"},
        {"id": root, "traceId": tid, "name": "root", "spanType": "FUNCTION", "startedAt": "2026-11-01T00:00:01Z"},
        {"id": child, "traceId": tid, "parentId": root, "name": "c", "spanType": "LLM", "startedAt": "2026-11-01T00:00:02Z"},
        {"traceId": tid, "parentId": root, "name": "c2", "spanType": "TEXT", "startedAt": "2026-11-01T00:00:04Z"},
    ]))
    .await;
    let data = app
        .ok(
            "query($id: UUID!, $t: UUID!) { span(id: $id) { name parent { name parent { name } } trace { id spanCount }
                children { name } } trace(id: $t) { rootSpans { name children { name children { name } } }
                spans { name } tools: spans(filter: {spanType: TOOL}) { name } } }",
            json!({"id": grandchild, "t": tid}),
        )
        .await;
    assert_eq!(data["span"]["parent"]["name"], "c");
    assert_eq!(data["span"]["parent"]["parent"]["name"], "root");
    assert_eq!(data["span"]["trace"]["id"], tid);
    assert_eq!(data["span"]["trace"]["spanCount"], 4);
    assert_eq!(data["span"]["children"], json!([]));
    let roots = &data["trace"]["rootSpans"];
    assert_eq!(names(roots), vec!["root"]);
    assert_eq!(names(&roots[0]["children"]), vec!["c", "c2"]);
    assert_eq!(names(&roots[0]["children"][0]["children"]), vec!["g"]);
    assert_eq!(names(&data["trace"]["spans"]), vec!["root", "c", "g", "c2"]);
    assert_eq!(names(&data["trace"]["tools"]), vec!["g"]);
}

#[tokio::test]
async fn batch_retry_never_duplicates_and_conflicts_on_other_content() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let batch = json!([
        {"id": id(), "traceId": tid, "name": "a", "spanType": "LLM", "startedAt": "2026-11-01T00:00:01Z",
         "metadata": {"input_tokens": 10, "output_tokens": 1}},
        {"id": id(), "traceId": tid, "name": "b", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:02Z"},
    ]);
    let first = app.add_spans(batch.clone()).await;
    let again = app.add_spans(batch.clone()).await;
    assert_eq!(first, again);
    // A retry may also overlap a new span: only the new one is added.
    let mut bigger = batch.as_array().unwrap().clone();
    bigger.push(json!({"traceId": tid, "name": "c", "spanType": "TEXT"}));
    app.add_spans(Value::Array(bigger)).await;
    let t = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { spanCount usage { totalTokens llmCalls } } }",
            json!({"id": tid}),
        )
        .await;
    assert_eq!(
        t["trace"],
        json!({"spanCount": 3, "usage": {"totalTokens": 11, "llmCalls": 1}})
    );

    let mut changed = batch.clone();
    changed[1]["name"] = json!("renamed");
    let body = app.gql(ADD, json!({"i": changed})).await;
    assert_eq!(crate::helpers::error_code(&body), "CONFLICT");
    assert_eq!(app.counts().await, (1, 3));
}

/// A full batch takes more than one INSERT (500 rows each, and on PostgreSQL a reused
/// generic plan from 100 rows): every span is stored once, in input order, a retry adds
/// nothing, and a batch that conflicts at its last span writes nothing.
#[tokio::test]
async fn a_full_batch_is_stored_whole_and_retried_without_duplicates() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let ids: Vec<String> = (0..1000).map(|_| id()).collect();
    let batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, sid)| {
            // Every tenth span is a root; the rest hang under the span before them.
            let parent = (i % 10 != 0).then(|| ids[i - 1].clone());
            json!({"id": sid, "traceId": tid, "parentId": parent, "name": format!("s{i}"), "spanType": "LLM",
                   "startedAt": format!("2026-11-01T00:{:02}:{:02}Z", i / 60, i % 60),
                   "metadata": {"input_tokens": 2, "output_tokens": 1}})
        })
        .collect();
    let stored = app.add_spans(Value::Array(batch.clone())).await;
    let stored_ids: Vec<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(stored_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(app.add_spans(Value::Array(batch.clone())).await, stored, "a retry");
    let of_trace = json!({"id": tid});
    let usage = "query($id: UUID!) { trace(id: $id) { spanCount usage { totalTokens } rootSpans { name } } }";
    let t = app.ok(usage, of_trace.clone()).await;
    assert_eq!(t["trace"]["spanCount"], 1000);
    assert_eq!(t["trace"]["usage"]["totalTokens"], 3000);
    assert_eq!(t["trace"]["rootSpans"].as_array().map(Vec::len), Some(100));

    let mut conflicting = batch;
    for span in conflicting.iter_mut() {
        span["id"] = json!(id());
        span["parentId"] = Value::Null;
    }
    conflicting[999] = json!({"id": ids[0], "traceId": tid, "name": "other", "spanType": "TOOL"});
    let body = app.gql(ADD, json!({"i": conflicting})).await;
    assert_eq!(crate::helpers::error_code(&body), "CONFLICT", "{body}");
    assert_eq!(app.counts().await, (1, 1000), "nothing of the refused batch is stored");
    assert_eq!(app.ok(usage, of_trace).await, t);
}

#[tokio::test]
async fn same_id_twice_in_one_batch() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let span =
        json!({"id": id(), "traceId": tid, "name": "a", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"});
    let out = app.add_spans(json!([span, span])).await;
    assert_eq!(out[0], out[1]);
    let mut other = span.clone();
    other["name"] = json!("b");
    assert_eq!(app.error_code(ADD, json!({"i": [span, other]})).await, "CONFLICT");
    assert_eq!(app.counts().await, (1, 1));
}

#[tokio::test]
async fn a_bad_span_rejects_the_whole_batch() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let body = app
        .gql(
            ADD,
            json!({"i": [
                {"traceId": tid, "name": "ok", "spanType": "TOOL"},
                {"traceId": tid, "name": "bad", "spanType": "TOOL", "metadata": "not an object"},
            ]}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&body), "BAD_USER_INPUT");
    assert_eq!(body["errors"][0]["extensions"]["field"], "inputs[1].metadata");
    let body = app
        .gql(
            ADD,
            json!({"i": [
                {"traceId": tid, "name": "ok", "spanType": "TOOL"},
                {"traceId": tid, "parentId": id(), "name": "orphan", "spanType": "TOOL"},
            ]}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&body), "NOT_FOUND");
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn parent_must_be_in_the_same_trace() {
    let app = spawn_app().await;
    let agent = id();
    let (t1, t2) = (trace(&app, &agent).await, trace(&app, &agent).await);
    let parent = app
        .add_spans(json!([{"traceId": t1, "name": "p", "spanType": "FUNCTION"}]))
        .await[0]["id"]
        .clone();
    let stored = app
        .gql(
            ADD,
            json!({"i": [{"traceId": t2, "parentId": parent, "name": "c", "spanType": "TOOL"}]}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&stored), "BAD_USER_INPUT");
    let p2 = id();
    let in_batch = app
        .gql(
            ADD,
            json!({"i": [{"id": p2, "traceId": t1, "name": "p", "spanType": "FUNCTION"},
                          {"traceId": t2, "parentId": p2, "name": "c", "spanType": "TOOL"}]}),
        )
        .await;
    assert_eq!(crate::helpers::error_code(&in_batch), "BAD_USER_INPUT");
    assert_eq!(app.counts().await, (2, 1));
}

#[tokio::test]
async fn parent_cycles_are_rejected() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let (a, b, c) = (id(), id(), id());
    let cycle = json!([
        {"id": a, "traceId": tid, "parentId": c, "name": "a", "spanType": "TOOL"},
        {"id": b, "traceId": tid, "parentId": a, "name": "b", "spanType": "TOOL"},
        {"id": c, "traceId": tid, "parentId": b, "name": "c", "spanType": "TOOL"},
    ]);
    assert_eq!(app.error_code(ADD, json!({"i": cycle})).await, "BAD_USER_INPUT");
    let own = json!([{"id": a, "traceId": tid, "parentId": a, "name": "a", "spanType": "TOOL"}]);
    assert_eq!(app.error_code(ADD, json!({"i": own})).await, "BAD_USER_INPUT");
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn span_filters_and_sorts() {
    let app = spawn_app().await;
    let (a, b) = (id(), id());
    let product = id();
    let ta = app
        .create_trace(json!({"name": "ra", "agentId": a, "productId": product}))
        .await["id"]
        .clone();
    let tb = app.create_trace(json!({"name": "rb", "agentId": b})).await["id"].clone();
    app.add_spans(json!([
        {"traceId": ta, "name": "s1", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z", "endedAt": "2026-11-01T00:00:04Z"},
        {"traceId": ta, "name": "s2", "spanType": "LLM", "startedAt": "2026-11-01T00:00:02Z", "endedAt": "2026-11-01T00:00:03Z",
         "metadata": {"cost_usd": 0.5}},
        {"traceId": ta, "name": "s3", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:03Z", "error": "timeout"},
        {"traceId": tb, "name": "s4", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:04Z", "endedAt": "2026-11-01T00:00:09Z"},
        {"traceId": tb, "name": "s5", "spanType": "LLM", "startedAt": "2026-11-01T00:00:05Z", "metadata": {"cost_usd": 2.0}},
    ]))
    .await;
    let s3 = app
        .ok("{ spans(filter: {name: \"s3\"}) { items { id } } }", json!({}))
        .await["spans"]["items"][0]["id"]
        .clone();
    app.ok(
        "mutation($id: UUID!) { flagSpan(id: $id, reason: \"r\") { id } }",
        json!({"id": s3}),
    )
    .await;

    let q = "query($f: SpanFilter, $s: SpanSort) { spans(filter: $f, sort: $s) { totalCount items { name } } }";
    let cases = [
        (json!({"traceId": ta}), "STARTED_AT_ASC", vec!["s1", "s2", "s3"]),
        (json!({"agent": b}), "STARTED_AT_ASC", vec!["s4", "s5"]),
        (json!({"productId": product}), "STARTED_AT_ASC", vec!["s1", "s2", "s3"]),
        (json!({"spanType": "TOOL"}), "STARTED_AT_ASC", vec!["s1", "s3", "s4"]),
        (
            json!({"spanType": "TOOL", "agent": a}),
            "STARTED_AT_DESC",
            vec!["s3", "s1"],
        ),
        (json!({"name": "s2"}), "STARTED_AT_ASC", vec!["s2"]),
        (json!({"hasError": true}), "STARTED_AT_ASC", vec!["s3"]),
        (
            json!({"hasError": false}),
            "STARTED_AT_ASC",
            vec!["s1", "s2", "s4", "s5"],
        ),
        (json!({"flagged": true}), "STARTED_AT_DESC", vec!["s3"]),
        (
            json!({"startedAfter": "2026-11-01T00:00:03Z"}),
            "STARTED_AT_ASC",
            vec!["s3", "s4", "s5"],
        ),
        (
            json!({"startedBefore": "2026-11-01T00:00:03Z"}),
            "STARTED_AT_ASC",
            vec!["s1", "s2"],
        ),
        (json!({}), "DURATION_DESC", vec!["s4", "s1", "s2", "s5", "s3"]),
        (json!({}), "DURATION_ASC", vec!["s2", "s1", "s4", "s3", "s5"]),
        (json!({}), "COST_DESC", vec!["s5", "s2"]),
    ];
    for (filter, sort, want) in cases {
        let data = app.ok(q, json!({"f": filter, "s": sort})).await;
        let got = names(&data["spans"]["items"]);
        if sort == "COST_DESC" {
            assert_eq!(&got[..2], &want[..], "{filter} {sort}");
        } else {
            assert_eq!(got, want, "{filter} {sort}");
            assert_eq!(data["spans"]["totalCount"], want.len());
        }
    }
    let trace = app
        .ok("query($id: UUID!) { trace(id: $id) { status } }", json!({"id": ta}))
        .await;
    assert_eq!(trace["trace"]["status"], "ERROR", "a span error marks its trace");
}

#[tokio::test]
async fn end_span_sets_end_output_and_error() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let sid = app
        .add_spans(json!([{"traceId": tid, "name": "t", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"}]))
        .await[0]["id"]
        .clone();
    let end = "mutation($id: UUID!, $at: DateTime, $o: String, $e: String) {
        endSpan(id: $id, endedAt: $at, outputText: $o, error: $e) { endedAt durationMs outputText error trace { status } } }";
    let vars = json!({"id": sid, "at": "2026-11-01T00:00:02Z", "o": "done", "e": "partial"});
    let ended = app.ok(end, vars.clone()).await["endSpan"].clone();
    assert_eq!(ended["durationMs"], 1000.0);
    assert_eq!(ended["outputText"], "done");
    assert_eq!(ended["error"], "partial");
    assert_eq!(ended["trace"]["status"], "ERROR");
    assert_eq!(app.ok(end, vars).await["endSpan"], ended);
    let other = json!({"id": sid, "at": "2026-11-01T00:00:05Z"});
    assert_eq!(app.error_code(end, other).await, "CONFLICT");
    let before = json!({"id": sid, "at": "2026-11-01T00:00:00Z"});
    let tid2 = trace(&app, &id()).await;
    let s2 = app
        .add_spans(json!([{"traceId": tid2, "name": "t", "spanType": "TOOL", "startedAt": "2026-11-01T00:00:01Z"}]))
        .await[0]["id"]
        .clone();
    assert_eq!(
        app.error_code(end, json!({"id": s2, "at": before["at"]})).await,
        "BAD_USER_INPUT"
    );
    assert_eq!(app.error_code(end, json!({"id": id()})).await, "NOT_FOUND");
}

#[tokio::test]
async fn flag_and_unflag_keep_every_flag() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let sid = app
        .add_spans(json!([{"traceId": tid, "name": "reply", "spanType": "TEXT"}]))
        .await[0]["id"]
        .clone();
    let flag = "mutation($id: UUID!, $r: String!) { flagSpan(id: $id, reason: $r) {
        flagged flags { spanId reason createdAt resolvedAt } trace { flaggedSpanCount } } }";
    let unflag = "mutation($id: UUID!) { unflagSpan(id: $id) { flagged flags { reason resolvedAt } trace { flaggedSpanCount } } }";
    let first = app.ok(flag, json!({"id": sid, "r": "wrong refund amount"})).await["flagSpan"].clone();
    assert_eq!(first["flagged"], true);
    assert_eq!(first["flags"][0]["spanId"], sid);
    assert_eq!(first["flags"][0]["reason"], "wrong refund amount");
    assert_eq!(first["trace"]["flaggedSpanCount"], 1);
    let second = app.ok(flag, json!({"id": sid, "r": "rude"})).await["flagSpan"].clone();
    assert_eq!(second["flags"].as_array().unwrap().len(), 2);
    assert_eq!(second["trace"]["flaggedSpanCount"], 1, "one span, counted once");
    let cleared = app.ok(unflag, json!({"id": sid})).await["unflagSpan"].clone();
    assert_eq!(cleared["flagged"], false);
    assert_eq!(cleared["trace"]["flaggedSpanCount"], 0);
    let flags = cleared["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2);
    assert!(flags.iter().all(|f| f["resolvedAt"].is_string()));
    // Unflagging twice is harmless.
    assert_eq!(
        app.ok(unflag, json!({"id": sid})).await["unflagSpan"]["trace"]["flaggedSpanCount"],
        0
    );
    assert_eq!(app.error_code(flag, json!({"id": id(), "r": "x"})).await, "NOT_FOUND");
    assert_eq!(app.error_code(unflag, json!({"id": id()})).await, "NOT_FOUND");
    assert_eq!(
        app.error_code(flag, json!({"id": sid, "r": "  "})).await,
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn concurrent_retries_of_a_batch_store_each_span_once() {
    // A small batch, and a large one that takes two INSERT statements (500 rows each;
    // on PostgreSQL under a reused generic plan).
    for spans in [20, 600] {
        concurrent_retries(spans).await;
    }
}

async fn concurrent_retries(spans: usize) {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let batch: Vec<Value> = (0..spans)
        .map(|i| {
            json!({"id": id(), "traceId": tid, "name": format!("s{i}"), "spanType": "LLM",
                   "startedAt": "2026-11-01T00:00:01Z", "metadata": {"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.25}})
        })
        .collect();
    let calls = (0..6).map(|_| app.gql(ADD, json!({"i": batch})));
    for body in futures::future::join_all(calls).await {
        assert!(body.get("errors").is_none(), "a retry must succeed: {body}");
    }
    let t = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { spanCount usage { llmCalls totalTokens costUsd } } }",
            json!({"id": tid}),
        )
        .await;
    let n = spans as f64;
    assert_eq!(
        t["trace"],
        json!({"spanCount": spans, "usage": {"llmCalls": spans, "totalTokens": 2 * spans, "costUsd": 0.25 * n}})
    );
    assert_eq!(app.counts().await, (1, spans as u64));
}

#[tokio::test]
async fn large_fields_are_read_wherever_a_tree_or_a_page_shows_them() {
    let app = spawn_app().await;
    let tid = trace(&app, &id()).await;
    let (root, child) = (id(), id());
    app.add_spans(json!([
        {"id": root, "traceId": tid, "name": "root", "spanType": "FUNCTION", "inputText": "r-in", "metadata": {"k": "root"}},
        {"id": child, "traceId": tid, "parentId": root, "name": "child", "spanType": "TOOL", "outputText": "c-out"},
        {"traceId": tid, "parentId": child, "name": "leaf", "spanType": "LLM", "inputText": "l-in", "metadata": {"model": "m"}},
    ]))
    .await;
    let data = app
        .ok(
            "query($t: UUID!) {
               light: traces { items { rootSpans { name children { name children { name } } } } }
               deep: traces { items { rootSpans { name children { children { inputText metadata } } } } }
               one: trace(id: $t) { rootSpans { inputText metadata children { name outputText } }
                                    spans { name inputText } }
               page: spans { items { name } }
               twice: spans { names: items { name } texts: items { ... on Span { inputText metadata } } }
               spread: spans { items { ...Output } } }
             fragment Output on Span { outputText }",
            json!({"t": tid}),
        )
        .await;
    let light = &data["light"]["items"][0]["rootSpans"][0];
    assert_eq!(light["children"][0]["children"][0]["name"], "leaf");
    let leaf = &data["deep"]["items"][0]["rootSpans"][0]["children"][0]["children"][0];
    assert_eq!(leaf["inputText"], "l-in");
    assert_eq!(leaf["metadata"], json!({"model": "m"}));
    let one = &data["one"];
    assert_eq!(one["rootSpans"][0]["inputText"], "r-in");
    assert_eq!(one["rootSpans"][0]["metadata"], json!({"k": "root"}));
    assert_eq!(one["rootSpans"][0]["children"][0]["outputText"], "c-out");
    let inputs: Vec<&Value> = one["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["inputText"])
        .collect();
    assert_eq!(inputs, [&json!("r-in"), &Value::Null, &json!("l-in")]);

    // A page of spans leaves the large fields out only when no selection of its items
    // shows one, however the selection is written.
    assert_eq!(data["page"]["items"][2], json!({"name": "leaf"}));
    assert_eq!(data["twice"]["names"][0], json!({"name": "root"}));
    assert_eq!(
        data["twice"]["texts"][0],
        json!({"inputText": "r-in", "metadata": {"k": "root"}})
    );
    assert_eq!(
        data["twice"]["texts"][2],
        json!({"inputText": "l-in", "metadata": {"model": "m"}})
    );
    assert_eq!(data["spread"]["items"][1], json!({"outputText": "c-out"}));
}

#[tokio::test]
async fn texts_and_values_that_need_escaping_are_stored_exactly() {
    // Characters that SQL, JSON and array literals treat specially, in every kind of
    // column, read back by a later request (so from the database, not from the write's
    // answer).
    let app = spawn_app().await;
    let awkward = "a \"quoted\" \\back\\slash\\, {braced}, NULL\nnew line\ttab é 漢字 🙂";
    let metadata = json!({"note": awkward, "NULL": null, "nested": {"\"k\\": ["{", "}", ","]},
                          "model": "gpt-4o", "input_tokens": 7, "output_tokens": 5, "cost_usd": 0.30000000000000004});
    let tid = app
        .ok(
            "mutation($i: [CreateTraceInput!]!) { createTraces(inputs: $i) { id } }",
            json!({"i": [{"name": awkward, "agentId": id(), "startedAt": "2026-11-01T00:00:00.000001Z", "metadata": metadata}]}),
        )
        .await["createTraces"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spans: Vec<Value> = ["NULL", "", awkward]
        .iter()
        .enumerate()
        .map(|(n, text)| {
            json!({"traceId": tid, "name": format!("{text}{n}"), "spanType": "LLM",
                   "startedAt": format!("2026-11-01T00:00:0{n}.123456Z"), "endedAt": "2026-11-01T00:00:09.999999Z",
                   "inputText": text, "outputText": awkward, "error": text, "metadata": metadata})
        })
        .collect();
    app.ok(ADD, json!({"i": spans})).await;

    let read = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { name startedAt metadata usage { totalTokens costUsd }
                spans { name startedAt endedAt inputText outputText error metadata usage { model costUsd } } } }",
            json!({"id": tid}),
        )
        .await["trace"]
        .clone();
    assert_eq!(read["name"], awkward);
    assert_eq!(read["startedAt"], "2026-11-01T00:00:00.000001+00:00");
    assert_eq!(read["metadata"], metadata);
    assert_eq!(read["usage"], json!({"totalTokens": 36, "costUsd": 0.9000000000000001}));
    let stored = read["spans"].as_array().unwrap();
    assert_eq!(stored.len(), 3);
    for (n, (span, text)) in stored.iter().zip(["NULL", "", awkward]).enumerate() {
        assert_eq!(span["name"], format!("{text}{n}"));
        assert_eq!(span["startedAt"], format!("2026-11-01T00:00:0{n}.123456+00:00"));
        assert_eq!(span["endedAt"], "2026-11-01T00:00:09.999999+00:00");
        assert_eq!(span["inputText"], text);
        assert_eq!(span["outputText"], awkward);
        assert_eq!(span["error"], text);
        assert_eq!(span["metadata"], metadata);
        assert_eq!(
            span["usage"],
            json!({"model": "gpt-4o", "costUsd": 0.30000000000000004})
        );
    }
}
