//! Costs from the price table, user overrides and patterns, unknown models; and the
//! review workflow.

use serde_json::{Value, json};
use tracegraph::app::App;
use tracegraph::config::Config;

use crate::helpers::{TestApp, error_code, id, spawn_app, spawn_app_with, test_database};

const ADD: &str =
    "mutation($t: UUID!, $m: JSON) { addSpan(input: {traceId: $t, name: \"call\", spanType: LLM, metadata: $m}) {
    usage { model costUsd costSource totalTokens } } }";

async fn usage_of(app: &TestApp, trace: &Value, metadata: Value) -> Value {
    app.ok(ADD, json!({"t": trace, "m": metadata})).await["addSpan"]["usage"].clone()
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-12
}

#[tokio::test]
async fn cost_is_reported_computed_or_unknown_never_silently_zero() {
    let app = spawn_app().await;
    let trace = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let reported = usage_of(
        &app,
        &trace,
        json!({"model": "gpt-4o", "input_tokens": 1000, "cost_usd": 0.5}),
    )
    .await;
    assert_eq!(reported["costSource"], "REPORTED");
    assert!(close(&reported["costUsd"], 0.5));
    let computed = usage_of(
        &app,
        &trace,
        json!({"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}),
    )
    .await;
    assert_eq!(computed["costSource"], "COMPUTED");
    assert!(
        close(&computed["costUsd"], (1000.0 * 2.50 + 100.0 * 10.00) / 1e6),
        "{computed}"
    );
    let pattern = usage_of(
        &app,
        &trace,
        json!({"model": "claude-sonnet-4-20250514", "prompt_tokens": 2000, "completion_tokens": 10}),
    )
    .await;
    assert_eq!(pattern["costSource"], "COMPUTED");
    assert!(
        close(&pattern["costUsd"], (2000.0 * 3.0 + 10.0 * 15.0) / 1e6),
        "{pattern}"
    );
    let unknown = usage_of(&app, &trace, json!({"model": "homegrown-7b", "input_tokens": 10})).await;
    assert_eq!(unknown["costSource"], "UNKNOWN_MODEL");
    assert_eq!(unknown["costUsd"], Value::Null);
    let no_model = usage_of(&app, &trace, json!({"input_tokens": 10})).await;
    assert_eq!(no_model["costSource"], "UNKNOWN_MODEL");
    let nothing = usage_of(&app, &trace, json!({})).await;
    assert_eq!(nothing["costSource"], Value::Null);

    let summary = app
        .ok(
            "{ usageSummary(groupBy: [MODEL]) { model llmCalls unpricedCalls costUsd } }",
            json!({}),
        )
        .await;
    let rows = summary["usageSummary"].as_array().unwrap();
    let unknown_row = rows.iter().find(|r| r["model"] == "homegrown-7b").unwrap();
    assert_eq!(unknown_row["unpricedCalls"], 1);
    assert_eq!(unknown_row["costUsd"], 0.0);
    let trace_usage = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { usage { llmCalls costUsd } } }",
            json!({"id": trace}),
        )
        .await;
    let want = 0.5 + (1000.0 * 2.50 + 100.0 * 10.00) / 1e6 + (2000.0 * 3.0 + 10.0 * 15.0) / 1e6;
    assert!(close(&trace_usage["trace"]["usage"]["costUsd"], want), "{trace_usage}");
    assert_eq!(trace_usage["trace"]["usage"]["llmCalls"], 6);
}

#[tokio::test]
async fn usage_numbers_are_bounded_so_totals_always_add_up() {
    let app = spawn_app().await;
    let trace = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let add = "mutation($s: [AddSpanInput!]!) { addSpans(inputs: $s) { id } }";
    let span = |metadata: Value| json!({"traceId": trace, "name": "call", "spanType": "LLM", "metadata": metadata});
    for (metadata, field) in [
        (json!({"input_tokens": i64::MAX}), "inputs[0].metadata.input_tokens"),
        (
            json!({"completion_tokens": "1000000001"}),
            "inputs[0].metadata.completion_tokens",
        ),
        (json!({"cost_usd": 1e308}), "inputs[0].metadata.cost_usd"),
    ] {
        let body = app
            .gql(add, json!({"s": [span(metadata.clone()), span(metadata)]}))
            .await;
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }
    assert_eq!(app.counts().await, (1, 0), "nothing written");

    // The largest numbers a span may report, many times over, add up exactly.
    let largest = json!({"input_tokens": 1_000_000_000, "cost_usd": 1e9});
    for _ in 0..2 {
        let spans: Vec<Value> = (0..3).map(|_| span(largest.clone())).collect();
        let body = app.gql(add, json!({"s": spans})).await;
        assert!(body.get("errors").is_none(), "{body}");
    }
    let end = "mutation($t: UUID!) { endTrace(id: $t) { usage { inputTokens costUsd } } }";
    let ended = app.ok(end, json!({"t": trace})).await;
    assert_eq!(ended["endTrace"]["usage"]["inputTokens"], 6_000_000_000_i64, "{ended}");
    assert!(close(&ended["endTrace"]["usage"]["costUsd"], 6e9), "{ended}");
    let totals = app
        .ok(
            "{ agentUsage { totals { inputTokens costUsd } } usageSummary { inputTokens } }",
            json!({}),
        )
        .await;
    assert_eq!(
        totals["agentUsage"]["totals"]["inputTokens"], 6_000_000_000_i64,
        "{totals}"
    );
    assert_eq!(totals["usageSummary"][0]["inputTokens"], 6_000_000_000_i64, "{totals}");
}

fn price_file(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_price_file_overrides_and_extends_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let toml = price_file(
        &dir,
        "prices.toml",
        "[[models]]\nmodel = \"gpt-4o\"\ninput = 1.0\noutput = 2.0\n\n[[models]]\nmodel = \"acme-*\"\ninput = 10.0\noutput = 20.0\n",
    );
    let app = spawn_app_with(|c| c.prices = Some(toml)).await;
    let trace = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let over = usage_of(
        &app,
        &trace,
        json!({"model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 1_000_000}),
    )
    .await;
    assert!(close(&over["costUsd"], 3.0), "{over}");
    let new = usage_of(
        &app,
        &trace,
        json!({"model": "acme-large-2", "input_tokens": 1_000_000}),
    )
    .await;
    assert!(close(&new["costUsd"], 10.0), "{new}");
    let builtin = usage_of(&app, &trace, json!({"model": "gpt-4o-mini", "input_tokens": 1_000_000})).await;
    assert!(
        close(&builtin["costUsd"], 0.15),
        "the rest of the table stays: {builtin}"
    );

    let json_file = price_file(
        &dir,
        "prices.json",
        r#"{"models": [{"model": "zeta", "input": 4, "output": 8}]}"#,
    );
    let app = spawn_app_with(|c| c.prices = Some(json_file)).await;
    let trace = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let zeta = usage_of(&app, &trace, json!({"model": "zeta", "output_tokens": 500_000})).await;
    assert!(close(&zeta["costUsd"], 4.0), "{zeta}");
}

#[tokio::test]
async fn a_bad_price_file_stops_the_server_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _db) = test_database().await;
    for (name, text) in [
        ("bad.toml", "models = 3"),
        ("neg.toml", "[[models]]\nmodel = \"x\"\ninput = -1.0\noutput = 1.0\n"),
        ("huge.toml", "[[models]]\nmodel = \"x\"\ninput = 1.0\noutput = 1e300\n"),
        ("bad.json", "{"),
        ("missing.toml", ""),
    ] {
        let path = if name == "missing.toml" {
            dir.path().join("nope.toml")
        } else {
            price_file(&dir, name, text)
        };
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: database_url.clone(),
            prices: Some(path),
            ..Config::default()
        };
        let err = App::build(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{name} accepted"));
        assert!(err.to_string().contains("price file"), "{name}: {err}");
    }
}

#[tokio::test]
async fn the_review_workflow() {
    let app = spawn_app().await;
    let admin = app.create_key("reviewer-ann", &["admin"], &[]).await;
    let (_, t) = app
        .gql_as(
            &admin,
            "mutation { createTrace(input: {name: \"t\"}) { id } }",
            json!({}),
        )
        .await;
    let tid = t["data"]["createTrace"]["id"].clone();
    let add = "mutation($t: UUID!, $n: String!, $at: DateTime) { addSpan(input: {traceId: $t, name: $n, spanType: TEXT, startedAt: $at}) { id } }";
    let mut ids = vec![];
    for (n, at) in [("older", "2026-11-01T00:00:00Z"), ("newer", "2026-11-02T00:00:00Z")] {
        let (_, s) = app.gql_as(&admin, add, json!({"t": tid, "n": n, "at": at})).await;
        ids.push(s["data"]["addSpan"]["id"].clone());
    }
    let flag =
        "mutation($id: UUID!, $r: String!) { flagSpan(id: $id, reason: $r) { flags { id reason createdBy open } } }";
    let mut flags = vec![];
    for (span, reason) in [(&ids[0], "wrong amount"), (&ids[1], "rude"), (&ids[1], "also wrong")] {
        let (_, f) = app.gql_as(&admin, flag, json!({"id": span, "r": reason})).await;
        let last = f["data"]["flagSpan"]["flags"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["createdBy"], "reviewer-ann");
        assert_eq!(last["open"], true);
        flags.push(last["id"].clone());
    }
    let queue = "{ spans(filter: {flagged: true}, sort: STARTED_AT_DESC) { items { name } } traces { items { flaggedSpanCount } } }";
    let (_, q) = app.gql_as(&admin, queue, json!({})).await;
    assert_eq!(
        q["data"]["spans"]["items"],
        json!([{"name": "newer"}, {"name": "older"}]),
        "newest first"
    );
    assert_eq!(q["data"]["traces"]["items"][0]["flaggedSpanCount"], 2);

    let resolve = "mutation($f: UUID!, $n: String) { resolveFlag(flagId: $f, note: $n) { open resolvedBy resolutionNote resolvedAt span { name flagged } } }";
    let (_, r) = app
        .gql_as(&admin, resolve, json!({"f": flags[1], "n": "apologised"}))
        .await;
    let r = &r["data"]["resolveFlag"];
    assert_eq!(r["open"], false);
    assert_eq!(r["resolvedBy"], "reviewer-ann");
    assert_eq!(r["resolutionNote"], "apologised");
    assert_eq!(r["span"]["flagged"], true, "another flag of the span is still open");
    let (_, r) = app.gql_as(&admin, resolve, json!({"f": flags[2], "n": "fixed"})).await;
    assert_eq!(
        r["data"]["resolveFlag"]["span"]["flagged"], false,
        "its last open flag is resolved"
    );
    // A retry, with its note or none, changes nothing; another note is not dropped unseen.
    for retry in [json!({"f": flags[2], "n": "fixed"}), json!({"f": flags[2]})] {
        let (_, again) = app.gql_as(&admin, resolve, retry).await;
        assert_eq!(again["data"]["resolveFlag"]["resolutionNote"], "fixed", "{again}");
    }
    let (_, other) = app
        .gql_as(&admin, resolve, json!({"f": flags[2], "n": "other note"}))
        .await;
    assert_eq!(other["errors"][0]["extensions"]["code"], "CONFLICT", "{other}");
    let message = other["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("another note"), "{message}");
    let (_, kept) = app
        .gql_as(
            &admin,
            &format!("{{ span(id: {}) {{ flags {{ resolutionNote }} }} }}", ids[1]),
            json!({}),
        )
        .await;
    assert_eq!(kept["data"]["span"]["flags"][1]["resolutionNote"], "fixed", "{kept}");
    let (_, q) = app.gql_as(&admin, queue, json!({})).await;
    assert_eq!(q["data"]["spans"]["items"], json!([{"name": "older"}]));
    assert_eq!(q["data"]["traces"]["items"][0]["flaggedSpanCount"], 1);
    let (_, missing) = app.gql_as(&admin, resolve, json!({"f": id()})).await;
    assert_eq!(missing["errors"][0]["extensions"]["code"], "NOT_FOUND");
}
