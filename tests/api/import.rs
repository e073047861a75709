//! Imports a generated data set with the real CLI and checks totals computed
//! independently from the NDJSON.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{generate, id, import, spawn_app};

#[derive(Default, Debug)]
struct Expected {
    traces: u64,
    error_traces: u64,
    spans_by_type: HashMap<String, u64>,
    /// agent → (llm calls, total tokens, cost)
    usage_by_agent: HashMap<String, (i64, i64, f64)>,
}

fn expected(path: &Path) -> Expected {
    let mut e = Expected::default();
    let mut agent_of: HashMap<String, String> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["kind"] == "trace" {
            e.traces += 1;
            if !r["error"].is_null() {
                e.error_traces += 1;
            }
            agent_of.insert(r["id"].as_str().unwrap().into(), r["agent"].as_str().unwrap().into());
        } else {
            let kind = r["span_type"].as_str().unwrap().to_uppercase();
            *e.spans_by_type.entry(kind).or_default() += 1;
            if r["span_type"] == "llm" {
                let agent = agent_of[r["trace_id"].as_str().unwrap()].clone();
                let m = &r["metadata"];
                let u = e.usage_by_agent.entry(agent).or_default();
                u.0 += 1;
                u.1 += m["total_tokens"].as_i64().unwrap();
                u.2 += m["cost_usd"].as_f64().unwrap();
            }
        }
    }
    e
}

#[tokio::test]
async fn imported_data_set_matches_independent_totals() {
    let app = spawn_app().await;
    let (_dir, path) = generate(40);
    import(&app.database_url, &path);
    let want = expected(&path);

    let data = app
        .ok(
            "{ traces(limit: 1) { totalCount } failed: traces(filter: {hasError: true}, limit: 1) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data["traces"]["totalCount"], want.traces);
    assert_eq!(data["failed"]["totalCount"], want.error_traces);
    assert!(want.error_traces > 0, "the seed yields some failed runs");

    for (kind, count) in &want.spans_by_type {
        let data = app
            .ok(
                "query($t: SpanType) { spans(filter: {spanType: $t}, limit: 1) { totalCount } }",
                json!({"t": kind}),
            )
            .await;
        assert_eq!(data["spans"]["totalCount"], *count, "{kind}");
    }

    for (agent, (calls, tokens, cost)) in &want.usage_by_agent {
        let data = app
            .ok(
                "query($a: UUID) { agentUsage(filter: {agent: $a}, limit: 500) { totals { llmCalls totalTokens costUsd } } }",
                json!({"a": agent}),
            )
            .await;
        let totals = &data["agentUsage"]["totals"];
        assert_eq!(totals["llmCalls"], *calls, "{agent}");
        assert_eq!(totals["totalTokens"], *tokens, "{agent}");
        let got = totals["costUsd"].as_f64().unwrap();
        assert!((got - cost).abs() < 1e-9, "{agent}: {got} vs {cost}");
    }

    // Importing again is a no-op.
    import(&app.database_url, &path);
    let total_spans: u64 = want.spans_by_type.values().sum();
    assert_eq!(app.counts().await, (want.traces, total_spans));
}

#[tokio::test]
async fn import_reports_the_bad_line() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.ndjson");
    std::fs::write(&path, "{\"kind\":\"trace\",\"id\":\"nope\"}\n").unwrap();
    let (ok, stderr) = import_cli(&app.database_url, &path, &[]);
    assert!(!ok);
    assert!(stderr.contains("line 1"), "{stderr}");
    assert_eq!(app.counts().await, (0, 0));
}

/// Runs `tracegraph import FILE` (plus `args`) on `database_url`: (succeeded, stderr).
fn import_cli(database_url: &str, file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tracegraph"))
        .arg("import")
        .arg(file)
        .args(args)
        .env("TRACEGRAPH_DATABASE_URL", database_url)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn import_errors_name_the_line_and_say_their_reason_once() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();

    // A span of a trace that is nowhere, in the last batch: refused when that batch is
    // written, naming the file's last line.
    let path = dir.path().join("orphan.ndjson");
    let orphan = json!({"kind": "span", "trace_id": id(), "id": id(), "name": "s",
        "span_type": "tool", "started_at": "2026-11-03T12:02:03Z"});
    std::fs::write(&path, format!("\n{orphan}\n\n")).unwrap();
    let (ok, stderr) = import_cli(&app.database_url, &path, &[]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("batch ending at line 3:"), "{stderr}");
    assert_eq!(stderr.matches("not found").count(), 1, "{stderr}");

    let (ok, stderr) = import_cli(&app.database_url, &dir.path().join("missing.ndjson"), &[]);
    assert!(!ok);
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    let (ok, stderr) = import_cli(&app.database_url, &path, &["--batch-traces", "0"]);
    assert!(!ok);
    assert!(
        stderr.contains("--batch-traces") && stderr.contains("at least 1"),
        "{stderr}"
    );
    assert_eq!(app.counts().await, (0, 0));
}
