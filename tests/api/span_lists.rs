//! Span and trace lists whose selection holds only plain fields are answered in one pass,
//! beside the engine; the answer must be the engine's, byte for byte. Wrapping a selection in an
//! inline fragment (`... { }`) changes nothing in the answer but sends it to the engine.

use serde_json::{Value, json};

use crate::helpers::{TestApp, generate, import, spawn_app};

const SPAN_FIELDS: &str = "__typename id traceId parentId name kind: spanType startedAt endedAt durationMs
    inputText outputText error metadata flagged
    usage { __typename model provider inputTokens outputTokens totalTokens costUsd costSource llmCalls }";

const TRACE_FIELDS: &str = "__typename id name agentId productId startedAt endedAt durationMs state: status
    error metadata spanCount flaggedSpanCount
    usage { __typename model provider inputTokens outputTokens totalTokens costUsd costSource llmCalls }";

/// `fields` as a selection, for the one-pass path or the engine.
fn wrapped(fields: &str, engine: bool) -> String {
    if engine {
        format!("{{ ... {{ {fields} }} }}")
    } else {
        format!("{{ {fields} }}")
    }
}

/// A span selection `depth` levels of children deep, for the one-pass path or the engine.
fn selection(depth: usize, engine: bool) -> String {
    let children = match depth {
        0 => String::new(),
        _ => format!(" children {}", selection(depth - 1, engine)),
    };
    wrapped(&format!("{SPAN_FIELDS}{children}"), engine)
}

fn count_spans(list: &Value) -> usize {
    list.as_array()
        .unwrap()
        .iter()
        .map(|span| 1 + span.get("children").map_or(0, count_spans))
        .sum()
}

/// Asks `query(false)` (one pass) and `query(true)` (the engine); the answers must be
/// the same text, keys in the same order. Returns the first's `data`.
async fn same_answer(app: &TestApp, query: impl Fn(bool) -> String, case: &str) -> Value {
    let one_pass = app.gql_text(&query(false), json!({})).await;
    let engine = app.gql_text(&query(true), json!({})).await;
    assert_eq!(one_pass, engine, "{case}");
    let answer: Value = serde_json::from_str(&one_pass).unwrap();
    assert!(answer.get("errors").is_none(), "{case}: {answer}");
    answer["data"].clone()
}

#[tokio::test]
async fn one_pass_span_lists_answer_as_the_engine_does() {
    let app = spawn_app().await;
    let (_dir, path) = generate(5);
    import(&app.database_url, &path);

    for (field, depth) in [("rootSpans", 3), ("rootSpans", 0), ("spans", 0)] {
        let query = |engine| {
            format!(
                "{{ traces(limit: 5) {{ items {{ {field} {} }} }} }}",
                selection(depth, engine)
            )
        };
        let one_pass = same_answer(&app, query, &format!("{field}, {depth} levels deep")).await;
        let items = one_pass["traces"]["items"].as_array().unwrap();
        let spans: usize = items.iter().map(|t| count_spans(&t[field])).sum();
        let expected = if field == "rootSpans" && depth == 0 { 5 } else { 100 };
        assert_eq!(spans, expected, "{field}, {depth} levels deep: every span answered");
    }

    // A page of spans: its items have no tree, so asking for children goes to the engine.
    for depth in [0, 1] {
        let query = |engine| format!("{{ spans(limit: 100) {{ items {} }} }}", selection(depth, engine));
        let one_pass = same_answer(&app, query, &format!("a page of spans, {depth} levels deep")).await;
        assert_eq!(count_spans(&one_pass["spans"]["items"]), 100 + depth * 95);
    }

    // The answer holds every kind of value: LLM usage and its absence, errors, nesting.
    let answer = app
        .ok(
            &format!("{{ traces(limit: 5) {{ items {{ spans {} }} }} }}", selection(0, false)),
            json!({}),
        )
        .await;
    let spans: Vec<&Value> = answer["traces"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .collect();
    assert!(spans.iter().any(|s| s["usage"]["costUsd"].is_number()));
    assert!(spans.iter().any(|s| s["usage"].is_null()));
    assert!(spans.iter().any(|s| s["parentId"].is_string()));
    assert!(spans.iter().any(|s| s["inputText"].is_string()));
}

/// A list asked for twice under one key is answered twice and merged by the engine:
/// the answer is the one of a single selection holding both. (Lists answered in one
/// pass could not be merged; such a document sends its lists to the engine.)
#[tokio::test]
async fn lists_asked_for_twice_under_one_key_are_merged() {
    let app = spawn_app().await;
    let (_dir, path) = generate(3);
    import(&app.database_url, &path);

    for (twice, once) in [
        (
            "{ traces(limit: 3) { items { rootSpans { name } rootSpans { id children { name } } } } }",
            "{ traces(limit: 3) { items { rootSpans { name id children { name } } } } }",
        ),
        (
            "{ traces(limit: 3) { items { name } ...more } } fragment more on TracePage { items { id spans { id } } }",
            "{ traces(limit: 3) { items { name id spans { id } } } }",
        ),
        (
            "{ spans(limit: 20) { items { name } items { id durationMs } } }",
            "{ spans(limit: 20) { items { name id durationMs } } }",
        ),
    ] {
        // The engine's merge may order an object's keys otherwise: values are compared.
        let merged = app.ok(twice, json!({})).await;
        assert_eq!(merged, app.ok(once, json!({})).await, "{twice}");
        assert!(merged.to_string().contains(r#""id":"#), "{merged}");
    }
}

#[tokio::test]
async fn one_pass_trace_lists_answer_as_the_engine_does() {
    let app = spawn_app().await;
    let (_dir, path) = generate(5);
    import(&app.database_url, &path);
    // Beside the imported runs (ended, with agents and products): one still running and
    // one that failed, neither with an agent, product or spans.
    let created = app
        .ok(
            r#"mutation { running: createTrace(input: {name: "running"}) { id }
                failed: createTrace(input: {name: "failed", metadata: {k: [1, "two"]}}) { id } }"#,
            json!({}),
        )
        .await;
    app.ok(
        "mutation($id: UUID!) { endTrace(id: $id, error: \"it broke\") { id } }",
        json!({"id": created["failed"]["id"]}),
    )
    .await;

    let query = |engine| format!("{{ traces(limit: 10) {{ items {} }} }}", wrapped(TRACE_FIELDS, engine));
    let one_pass = same_answer(&app, query, "a page of traces").await;
    let items = one_pass["traces"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 7, "every trace answered");
    let states: Vec<&str> = items.iter().map(|t| t["state"].as_str().unwrap()).collect();
    for state in ["OK", "RUNNING", "ERROR"] {
        assert!(states.contains(&state), "{state} in {states:?}");
    }
    assert!(items.iter().any(|t| t["agentId"].is_null() && t["endedAt"].is_null()));
    assert!(
        items
            .iter()
            .any(|t| t["agentId"].is_string() && t["durationMs"].is_number())
    );
    assert!(items.iter().any(|t| t["usage"]["costUsd"].is_number()));
    assert!(items.iter().any(|t| t["metadata"]["k"][1] == "two"));

    // A page reads its traces' metadata only when a selection of its items shows it,
    // under any alias or through a named fragment; beside a selection without it, too.
    let shown = app
        .ok(
            "{ plain: traces(limit: 10) { items { name } }
               aliased: traces(limit: 10) { items { name meta: metadata } }
               spread: traces(limit: 10) { items { name } items { ...meta } } }
             fragment meta on Trace { metadata }",
            json!({}),
        )
        .await;
    let failed = |page: &str| {
        shown[page]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "failed")
            .cloned()
            .unwrap()
    };
    assert_eq!(failed("plain"), json!({"name": "failed"}));
    assert_eq!(failed("aliased")["meta"], json!({"k": [1, "two"]}));
    assert_eq!(failed("spread")["metadata"], json!({"k": [1, "two"]}));

    // With a field that loads, the whole list goes to the engine, and answers as before.
    let with_spans = app
        .ok(
            "{ traces(limit: 10) { items { name spanCount spans { id } } } }",
            json!({}),
        )
        .await;
    for trace in with_spans["traces"]["items"].as_array().unwrap() {
        assert_eq!(
            trace["spans"].as_array().unwrap().len() as u64,
            trace["spanCount"].as_u64().unwrap()
        );
    }
}
