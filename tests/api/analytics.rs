//! Every aggregate, grouping and bucket, on a generated data set, against figures
//! computed here from the NDJSON. Percentiles are nearest-rank: p of n sorted values is
//! the one at rank ⌈p·n/100⌉.

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, generate, import, spawn_app};

struct Span {
    kind: String,
    name: String,
    started: DateTime<Utc>,
    duration_us: i64,
    error: bool,
    agent: String,
    product: String,
    model: Option<String>,
    tokens: (i64, i64, i64),
    cost: f64,
}

struct Trace {
    started: DateTime<Utc>,
    duration_us: i64,
    error: bool,
    cost: f64,
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

fn load(path: &std::path::Path) -> (Vec<Trace>, Vec<Span>) {
    let mut traces: Vec<Trace> = vec![];
    let mut spans = vec![];
    let mut owner: BTreeMap<String, (usize, String, String)> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        if r["kind"] == "trace" {
            let started = time(&r["started_at"]);
            owner.insert(
                r["id"].as_str().unwrap().into(),
                (
                    traces.len(),
                    r["agent"].as_str().unwrap().into(),
                    r["product_id"].as_str().unwrap().into(),
                ),
            );
            traces.push(Trace {
                started,
                duration_us: (time(&r["ended_at"]) - started).num_microseconds().unwrap(),
                error: !r["error"].is_null(),
                cost: 0.0,
            });
        } else {
            let (index, agent, product) = owner[r["trace_id"].as_str().unwrap()].clone();
            let m = &r["metadata"];
            let llm = r["span_type"] == "llm";
            let cost = if llm { m["cost_usd"].as_f64().unwrap() } else { 0.0 };
            traces[index].cost += cost;
            let started = time(&r["started_at"]);
            spans.push(Span {
                kind: r["span_type"].as_str().unwrap().into(),
                name: r["name"].as_str().unwrap().into(),
                started,
                duration_us: (time(&r["ended_at"]) - started).num_microseconds().unwrap(),
                error: !r["error"].is_null(),
                agent,
                product,
                model: llm.then(|| m["model"].as_str().unwrap().to_owned()),
                tokens: if llm {
                    (
                        m["input_tokens"].as_i64().unwrap(),
                        m["output_tokens"].as_i64().unwrap(),
                        m["total_tokens"].as_i64().unwrap(),
                    )
                } else {
                    (0, 0, 0)
                },
                cost,
            });
        }
    }
    (traces, spans)
}

fn percentile(values: &[i64], p: usize) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank - 1] as f64 / 1000.0
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn day(t: DateTime<Utc>) -> String {
    format!("{}T00:00:00+00:00", t.format("%Y-%m-%d"))
}

fn hour(t: DateTime<Utc>) -> String {
    format!("{}T{:02}:00:00+00:00", t.format("%Y-%m-%d"), t.hour())
}

async fn seeded() -> (TestApp, Vec<Trace>, Vec<Span>) {
    let app = spawn_app().await;
    let (_dir, path) = generate(60);
    import(&app.database_url, &path);
    let (traces, spans) = load(&path);
    (app, traces, spans)
}

#[tokio::test]
async fn trace_stats_and_series_match_the_data_set() {
    let (app, traces, _) = seeded().await;
    let fields = "bucket count errorCount errorRate latencyP50Ms latencyP95Ms latencyP99Ms totalCostUsd";
    let data = app
        .ok(
            &format!("{{ traceStats {{ {fields} }} traceStatsSeries(interval: DAY) {{ {fields} }} }}"),
            json!({}),
        )
        .await;
    let check = |got: &Value, group: &[&Trace], what: &str| {
        let durations: Vec<i64> = group.iter().map(|t| t.duration_us).collect();
        let errors = group.iter().filter(|t| t.error).count();
        assert_eq!(got["count"], group.len(), "{what}");
        assert_eq!(got["errorCount"], errors, "{what}");
        assert!(
            close(got["errorRate"].as_f64().unwrap(), errors as f64 / group.len() as f64),
            "{what}"
        );
        for (field, p) in [("latencyP50Ms", 50), ("latencyP95Ms", 95), ("latencyP99Ms", 99)] {
            assert!(
                close(got[field].as_f64().unwrap(), percentile(&durations, p)),
                "{what} {field}: {got}"
            );
        }
        let cost: f64 = group.iter().map(|t| t.cost).sum();
        assert!(close(got["totalCostUsd"].as_f64().unwrap(), cost), "{what} cost");
    };
    check(&data["traceStats"], &traces.iter().collect::<Vec<_>>(), "overall");
    let mut by_day: BTreeMap<String, Vec<&Trace>> = BTreeMap::new();
    for t in &traces {
        by_day.entry(day(t.started)).or_default().push(t);
    }
    let series = data["traceStatsSeries"].as_array().unwrap();
    assert_eq!(series.len(), by_day.len());
    for (got, (bucket, group)) in series.iter().zip(&by_day) {
        assert_eq!(got["bucket"], *bucket);
        check(got, group, bucket);
    }
    // A filter narrows the statistics too.
    let failed = app
        .ok(
            "{ traceStats(filter: {hasError: true}) { count errorRate } }",
            json!({}),
        )
        .await;
    assert_eq!(failed["traceStats"]["count"], traces.iter().filter(|t| t.error).count());
    assert_eq!(failed["traceStats"]["errorRate"], 1.0);
}

#[tokio::test]
async fn span_stats_by_type_and_name_match_the_data_set() {
    let (app, _, spans) = seeded().await;
    let data = app
        .ok(
            "{ byType: spanStats(groupBy: [SPAN_TYPE]) { spanType name calls errorCount latencyP50Ms latencyP95Ms latencyP99Ms }
               tools: spanStats(groupBy: [NAME], filter: {spanType: TOOL}) { spanType name calls errorCount latencyP50Ms latencyP95Ms latencyP99Ms }
               both: spanStats(groupBy: [SPAN_TYPE, NAME]) { spanType name calls } }",
            json!({}),
        )
        .await;
    let check = |rows: &Value, key: &dyn Fn(&Span) -> Option<String>, field: &str| {
        let mut groups: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
        for s in &spans {
            if let Some(k) = key(s) {
                groups.entry(k).or_default().push(s);
            }
        }
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), groups.len(), "{field}");
        for row in rows {
            let k = row[field].as_str().unwrap().to_lowercase();
            let group = groups.get(&k).unwrap_or_else(|| panic!("unexpected group {k}"));
            let durations: Vec<i64> = group.iter().map(|s| s.duration_us).collect();
            assert_eq!(row["calls"], group.len(), "{k}");
            assert_eq!(row["errorCount"], group.iter().filter(|s| s.error).count(), "{k}");
            for (f, p) in [("latencyP50Ms", 50), ("latencyP95Ms", 95), ("latencyP99Ms", 99)] {
                assert!(
                    close(row[f].as_f64().unwrap(), percentile(&durations, p)),
                    "{k} {f}: {row}"
                );
            }
        }
    };
    check(&data["byType"], &|s: &Span| Some(s.kind.clone()), "spanType");
    check(
        &data["tools"],
        &|s: &Span| (s.kind == "tool").then(|| s.name.to_lowercase()),
        "name",
    );
    let pairs: std::collections::BTreeSet<(String, String)> =
        spans.iter().map(|s| (s.kind.to_uppercase(), s.name.clone())).collect();
    let both = data["both"].as_array().unwrap();
    assert_eq!(both.len(), pairs.len());
    for row in both {
        let pair = (
            row["spanType"].as_str().unwrap().to_owned(),
            row["name"].as_str().unwrap().to_owned(),
        );
        assert!(pairs.contains(&pair), "{row}");
    }
}

#[tokio::test]
async fn usage_summaries_match_the_data_set_for_every_grouping() {
    let (app, _, spans) = seeded().await;
    let llm: Vec<&Span> = spans.iter().filter(|s| s.kind == "llm").collect();
    type Key = fn(&Span) -> String;
    let groupings: [(&str, &str, Key); 6] = [
        ("[]", "", |_| String::new()),
        ("[AGENT]", "agentId", |s| s.agent.clone()),
        ("[PRODUCT]", "productId", |s| s.product.clone()),
        ("[MODEL]", "model", |s| s.model.clone().unwrap()),
        ("[DAY]", "bucket", |s| day(s.started)),
        ("[HOUR]", "bucket", |s| hour(s.started)),
    ];
    for (group_by, field, key) in groupings {
        let query = format!(
            "{{ usageSummary(groupBy: {group_by}) {{ agentId productId model bucket llmCalls inputTokens outputTokens totalTokens costUsd unpricedCalls }} }}"
        );
        let rows = app.ok(&query, json!({})).await["usageSummary"]
            .as_array()
            .unwrap()
            .clone();
        let mut want: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
        for s in &llm {
            want.entry(key(s)).or_default().push(s);
        }
        assert_eq!(rows.len(), want.len(), "{group_by}");
        for row in rows {
            let k = if field.is_empty() {
                String::new()
            } else {
                row[field].as_str().unwrap().to_owned()
            };
            let group = &want[&k];
            assert_eq!(row["llmCalls"], group.len(), "{group_by} {k}");
            assert_eq!(
                row["inputTokens"],
                group.iter().map(|s| s.tokens.0).sum::<i64>(),
                "{group_by} {k}"
            );
            assert_eq!(
                row["outputTokens"],
                group.iter().map(|s| s.tokens.1).sum::<i64>(),
                "{group_by} {k}"
            );
            assert_eq!(
                row["totalTokens"],
                group.iter().map(|s| s.tokens.2).sum::<i64>(),
                "{group_by} {k}"
            );
            let cost: f64 = group.iter().map(|s| s.cost).sum();
            assert!(close(row["costUsd"].as_f64().unwrap(), cost), "{group_by} {k}");
            assert_eq!(row["unpricedCalls"], 0);
        }
    }
    // A time window with a model filter.
    let from: DateTime<Utc> = "2026-11-05T00:00:00Z".parse().unwrap();
    let to: DateTime<Utc> = "2026-11-12T00:00:00Z".parse().unwrap();
    let rows = app
        .ok(
            "{ usageSummary(filter: {model: \"gpt-4o\", startedAfter: \"2026-11-05T00:00:00Z\", startedBefore: \"2026-11-12T00:00:00Z\"}) { llmCalls } }",
            json!({}),
        )
        .await;
    let want = llm
        .iter()
        .filter(|s| s.model.as_deref() == Some("gpt-4o") && s.started >= from && s.started < to)
        .count();
    assert_eq!(rows["usageSummary"][0]["llmCalls"], want);
}

/// An answer of more groups than `MAX_GROUPS` is refused whole (never cut short), naming
/// the argument that makes the groups; a narrower filter gets its answer.
#[tokio::test]
async fn an_answer_of_too_many_groups_is_refused_not_cut() {
    let app = spawn_app().await;
    let most = tracegraph::db::store::stats::MAX_GROUPS;
    let trace = app.create_trace(json!({"name": "many"})).await["id"].clone();
    let mut traces = Vec::new();
    for i in 0..=most {
        // One span per name and model, and one trace per hour: most + 1 of each.
        traces.push(json!({"name": "t", "startedAt": hour_from_2026(i)}));
        if traces.len() == 1000 || i == most {
            let body = app
                .gql(
                    "mutation($t: [CreateTraceInput!]!) { createTraces(inputs: $t) { id } }",
                    json!({"t": traces}),
                )
                .await;
            assert!(body.get("errors").is_none(), "{body}");
            let spans: Vec<Value> = (i + 1 - traces.len()..=i)
                .map(|n| {
                    json!({"traceId": trace, "name": format!("tool-{n}"), "spanType": "LLM",
                        "metadata": {"model": format!("model-{n}"), "input_tokens": 1}})
                })
                .collect();
            app.add_spans(json!(spans)).await;
            traces.clear();
        }
    }
    let refused = [
        ("{ spanStats(groupBy: [NAME]) { calls } }", "groupBy"),
        ("{ usageSummary(groupBy: [MODEL]) { llmCalls } }", "groupBy"),
        ("{ traceStatsSeries(interval: HOUR) { count } }", "interval"),
    ];
    for (query, field) in refused {
        let body = app.gql(query, json!({})).await;
        assert_eq!(error_code(&body), "LIMIT_EXCEEDED", "{query}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{query}");
        assert_eq!(body["errors"][0]["extensions"]["max"], most, "{query}");
    }
    let narrower = "{ spanStats(groupBy: [NAME], filter: {name: \"tool-7\"}) { name calls } \
                    usageSummary(groupBy: [MODEL], filter: {model: \"model-7\"}) { model llmCalls } \
                    traceStatsSeries(interval: DAY) { count } }";
    let body = app.ok(narrower, json!({})).await;
    assert_eq!(body["spanStats"], json!([{"name": "tool-7", "calls": 1}]), "{body}");
    assert_eq!(
        body["usageSummary"],
        json!([{"model": "model-7", "llmCalls": 1}]),
        "{body}"
    );
    let days = body["traceStatsSeries"].as_array().unwrap();
    assert_eq!(
        days.iter().map(|d| d["count"].as_u64().unwrap()).sum::<u64>(),
        most as u64 + 2
    );
}

fn hour_from_2026(hours: usize) -> String {
    let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    (start + chrono::Duration::hours(hours as i64)).to_rfc3339()
}
