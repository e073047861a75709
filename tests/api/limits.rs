//! Every query limit refuses with `LIMIT_EXCEEDED` naming itself, and lets the
//! ordinary dashboard query through.

use serde_json::json;
use tracegraph::app::{App, StartError};
use tracegraph::config::Config;

use crate::helpers::{run_to_its_end, spawn_app, spawn_app_with};

/// Deep but cheap: `parent` is one span, so only the depth limit applies.
fn nested(depth: usize) -> String {
    let mut q = String::from("name");
    for _ in 0..depth {
        q = format!("parent {{ {q} }}");
    }
    format!("{{ span(id: \"00000000-0000-0000-0000-000000000000\") {{ {q} }} }}")
}

#[tokio::test]
async fn each_query_limit_is_refused_by_name() {
    let app = spawn_app_with(|c| {
        c.max_query_depth = 8;
        c.max_query_complexity = 20_000;
        c.max_query_aliases = 3;
        c.max_query_root_fields = 3;
        c.max_query_directives = 2;
        c.max_query_tokens = 200;
    })
    .await;
    let cases = [
        (nested(10), "depth"),
        (
            "{ traces(limit: 500) { items { spans { name } } } }".to_owned(),
            "complexity",
        ),
        (
            "{ a: traces { totalCount } b: traces { totalCount } c: spans { totalCount } d: spans { totalCount } }"
                .to_owned(),
            "aliases",
        ),
        (
            "{ traces { totalCount } spans { totalCount } agentUsage { totalCount } __typename }".to_owned(),
            "root fields",
        ),
        (
            "{ traces @skip(if: false) { totalCount @include(if: true) hasNextPage @include(if: true) } }".to_owned(),
            "directives",
        ),
        (format!("{{ {} }}", "__typename ".repeat(300)), "tokens"),
    ];
    // Twice: parsed documents are reused, but a refused one is never kept.
    for (query, limit) in cases.iter().chain(&cases) {
        let body = app.gql(query, json!({})).await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{limit}: {body}");
        assert_eq!(error["extensions"]["limit"], *limit, "{body}");
    }
}

#[tokio::test]
async fn the_dashboard_query_fits_the_default_limits() {
    let app = spawn_app().await;
    let dashboard = "{ traces(limit: 50) { totalCount items { id name usage { costUsd }
        rootSpans { name spanType startedAt endedAt error usage { totalTokens }
          children { name spanType startedAt endedAt error usage { totalTokens }
            children { name spanType startedAt endedAt error usage { totalTokens } } } } } } }";
    app.ok(dashboard, json!({})).await;
}

#[tokio::test]
async fn fragment_cycles_and_deep_nesting_are_refused_cleanly() {
    let app = spawn_app().await;
    let cycle =
        "{ spans { items { ...A } } } fragment A on Span { children { ...B } } fragment B on Span { parent { ...A } }";
    let code = app.error_code(cycle, json!({})).await;
    assert!(code == "BAD_USER_INPUT" || code == "LIMIT_EXCEEDED", "{code}");
    // Far past every limit: refused, and the server stays up.
    let deep = format!("{}{}", "{ a ".repeat(5000), "}".repeat(5000));
    let code = app.error_code(&deep, json!({})).await;
    assert!(code == "BAD_USER_INPUT" || code == "LIMIT_EXCEEDED", "{code}");
    assert_eq!(app.counts().await, (0, 0));
}

/// A limit of 0 would make a server that refuses everything (or, for the keep-alive
/// period, pings without pause): the server does not start, and says which setting.
#[tokio::test]
async fn a_limit_of_zero_stops_the_server_naming_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("zero.db").display());
    // Each given as a flag, or as its environment variable.
    let cases = [
        ("--max-body-bytes", false),
        ("--max-query-depth", false),
        ("--ws-keepalive-secs", true),
        ("--db-acquire-timeout-ms", false),
        ("--max-tree-spans", false),
        ("--max-request-spans", true),
    ];
    for (named, by_env) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database-url", &database_url];
        let mut envs = Vec::new();
        if by_env {
            let variable = format!(
                "TRACEGRAPH_{}",
                named.trim_start_matches("--").replace('-', "_").to_uppercase()
            );
            envs.push((variable, "0"));
        } else {
            args.extend([named, "0"]);
        }
        let (started, said) = run_to_its_end(&args, &envs).await;
        assert!(!started, "{named}: {said}");
        assert!(said.contains(named) && said.contains("at least 1"), "{named}: {said}");
    }
}

/// A request budget below the tree bound would let a trace between the two pass the one
/// and always be refused by the other: the server does not start, and names both flags
/// and both ways out. At the bound, it serves.
#[tokio::test]
async fn a_request_budget_below_the_tree_bound_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("bounds.db").display());
    let serve = ["serve", "--listen", "127.0.0.1:0", "--database-url", &database_url];
    let below = [&serve[..], &["--max-tree-spans", "200", "--max-request-spans", "199"]].concat();
    let (started, said) = run_to_its_end(&below, &[]).await;
    assert!(!started, "{said}");
    for named in [
        "--max-request-spans (199)",
        "--max-tree-spans (200)",
        "at least 200",
        "at most 199",
    ] {
        assert!(said.contains(named), "names {named}: {said}");
    }
    // Only the default tree bound (10000) against a budget given alone, by its variable.
    let (started, said) = run_to_its_end(&serve, &[("TRACEGRAPH_MAX_REQUEST_SPANS".into(), "9999")]).await;
    assert!(!started && said.contains("--max-tree-spans (10000)"), "{said}");
    let equal = spawn_app_with(|c| {
        c.max_tree_spans = 7;
        c.max_request_spans = 7;
    })
    .await;
    assert_eq!(equal.counts().await, (0, 0));
    let below = Config {
        max_request_spans: 6,
        max_tree_spans: 7,
        ..Config::default()
    };
    assert!(matches!(
        App::build(below).await,
        Err(StartError::SpanBounds { request: 6, tree: 7 })
    ));
}

/// A trace with more spans than `--max-tree-spans` is not read whole by any field that
/// would (its spans, root spans, children, `trace(id)` with its tree, a dashboard page):
/// each is refused naming the field and how to page instead, and nothing of it is read.
/// Its spans stay readable a page at a time; a trace at the bound is read whole.
#[tokio::test]
async fn a_trace_too_large_to_read_whole_is_refused_and_paged() {
    let app = spawn_app_with(|c| c.max_tree_spans = 5).await;
    // Six spans: a root with five children. Beside it, one of five (at the bound).
    let large = app.create_trace(json!({"name": "large"})).await["id"].clone();
    let small = app.create_trace(json!({"name": "small"})).await["id"].clone();
    let mut roots = Vec::new();
    for (trace, children) in [(&large, 5), (&small, 4)] {
        let root = app
            .add_spans(json!([{"traceId": trace, "name": "root", "spanType": "FUNCTION"}]))
            .await[0]["id"]
            .clone();
        let spans: Vec<_> = (0..children)
            .map(|i| json!({"traceId": trace, "parentId": root, "name": format!("step {i}"), "spanType": "TOOL"}))
            .collect();
        app.add_spans(json!(spans)).await;
        roots.push(root);
    }
    let refused = [
        (format!("{{ trace(id: {large}) {{ spans {{ id }} }} }}"), "spans"),
        (
            format!("{{ trace(id: {large}) {{ spans(filter: {{spanType: TOOL}}) {{ id }} }} }}"),
            "spans",
        ),
        (
            format!("{{ trace(id: {large}) {{ rootSpans {{ id }} }} }}"),
            "rootSpans",
        ),
        (
            format!("{{ trace(id: {large}) {{ name rootSpans {{ children {{ id inputText }} }} }} }}"),
            "rootSpans",
        ),
        (
            format!("{{ span(id: {}) {{ children {{ id }} }} }}", roots[0]),
            "children",
        ),
        (
            format!("{{ spans(filter: {{traceId: {large}}}) {{ items {{ children {{ id }} }} }} }}"),
            "children",
        ),
        (
            "{ traces { items { name rootSpans { children { name } } } } }".to_owned(),
            "rootSpans",
        ),
        ("{ traces { items { name spans { name } } } }".to_owned(), "spans"),
    ];
    for (query, field) in refused {
        let body = app.gql(&query, json!({})).await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{query}: {body}");
        assert_eq!(error["extensions"]["field"], field, "{query}: {body}");
        assert_eq!(
            error["extensions"]["limit"], "spans of one trace read whole",
            "{query}: {body}"
        );
        assert_eq!(error["extensions"]["max"], 5, "{query}: {body}");
        let message = error["message"].as_str().unwrap();
        let pages = format!("spans(filter: {{traceId: {large}}}");
        assert!(message.contains(&pages), "{query}: says how to page: {message}");
        assert!(
            body["errors"].as_array().unwrap().len() == 1 || field == "children",
            "{query}: {body}"
        );
    }
    // What needs no tree, the trace at the bound, and the large trace page by page.
    let row = app
        .ok(&format!("{{ trace(id: {large}) {{ name spanCount }} }}"), json!({}))
        .await;
    assert_eq!(row["trace"], json!({"name": "large", "spanCount": 6}));
    let whole = app
        .ok(
            &format!("{{ trace(id: {small}) {{ spans {{ id }} rootSpans {{ children {{ id }} }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(whole["trace"]["spans"].as_array().unwrap().len(), 5);
    assert_eq!(whole["trace"]["rootSpans"][0]["children"].as_array().unwrap().len(), 4);
    let children = app
        .ok(
            &format!("{{ span(id: {}) {{ children {{ id }} }} }}", roots[1]),
            json!({}),
        )
        .await;
    assert_eq!(children["span"]["children"].as_array().unwrap().len(), 4);
    let mut paged = Vec::new();
    for offset in [0, 4] {
        let page = app
            .ok(
                &format!("{{ spans(filter: {{traceId: {large}}}, limit: 4, offset: {offset}) {{ totalCount items {{ id }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(page["spans"]["totalCount"], 6);
        paged.extend(
            page["spans"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone()),
        );
    }
    assert_eq!(paged.len(), 6, "every span of the large trace, in two pages");
    let dashboard = app
        .ok(
            "{ traces(filter: {name: \"small\"}) { items { rootSpans { children { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        dashboard["traces"]["items"][0]["rootSpans"][0]["children"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// Whole traces read by one request share `--max-request-spans`: a page of traces each
/// within `--max-tree-spans` is refused when their trees together pass it, however it
/// asks for them, and answered up to it. Each request has its own budget; subscription
/// events are bounded one by one, not by what earlier events read.
#[tokio::test]
async fn whole_traces_read_by_one_request_are_bounded_together() {
    let app = spawn_app_with(|c| {
        c.max_tree_spans = 5;
        c.max_request_spans = 8;
    })
    .await;
    // Three traces of four spans: a root and three tool calls, started one after another.
    let mut traces = Vec::new();
    for n in 0..3 {
        let trace = app
            .create_trace(json!({"name": format!("t{n}"), "startedAt": format!("2026-11-0{}T00:00:00Z", n + 1)}))
            .await["id"]
            .clone();
        let root = app
            .add_spans(json!([{"traceId": trace, "name": "root", "spanType": "FUNCTION"}]))
            .await[0]["id"]
            .clone();
        let tools: Vec<_> = (0..3)
            .map(|i| json!({"traceId": trace, "parentId": root, "name": format!("tool {i}"), "spanType": "TOOL"}))
            .collect();
        app.add_spans(json!(tools)).await;
        traces.push(trace);
    }
    let [a, b, c] = &traces[..] else { unreachable!() };
    let refused = [
        "{ traces { items { spans { id } } } }".to_owned(),
        "{ traces { items { spans { id inputText } } } }".to_owned(),
        "{ traces { items { rootSpans { children { id } } } } }".to_owned(),
        "{ traces { items { spans(filter: {spanType: TOOL}) { id } } } }".to_owned(),
        "{ spans(filter: {spanType: TOOL}) { items { children { id } } } }".to_owned(),
        format!(
            "{{ a: trace(id: {a}) {{ spans {{ id }} }} b: trace(id: {b}) {{ spans {{ id }} }} c: trace(id: {c}) {{ spans {{ id }} }} }}"
        ),
        // Two trees of one request read apart, the second past what the first left.
        format!("{{ trace(id: {a}) {{ spans {{ id }} }} traces(limit: 2) {{ items {{ name spans {{ id }} }} }} }}"),
    ];
    for query in &refused {
        let body = app.gql(query, json!({})).await;
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{query}: {body}");
        assert_eq!(
            error["extensions"]["limit"], "spans of whole traces read by one request",
            "{query}: {body}"
        );
        assert_eq!(error["extensions"]["max"], 8, "{query}: {body}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("spans(filter: {traceId:"),
            "{query}: says how to page: {message}"
        );
    }
    // Up to the budget, answered, and again: each request has its own.
    for _ in 0..2 {
        let two = app
            .ok("{ traces(limit: 2) { items { spans { id } } } }", json!({}))
            .await;
        let read: usize = two["traces"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["spans"].as_array().unwrap().len())
            .sum();
        assert_eq!(read, 8);
    }
    let aliased = app
        .ok(
            &format!("{{ a: trace(id: {a}) {{ spans {{ id }} }} b: trace(id: {b}) {{ spans {{ id }} }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(aliased["a"]["spans"].as_array().unwrap().len(), 4);
    assert_eq!(aliased["b"]["spans"].as_array().unwrap().len(), 4);
    // Root spans alone are three reads of one span each.
    let roots = app.ok("{ traces { items { rootSpans { name } } } }", json!({})).await;
    assert_eq!(roots["traces"]["items"].as_array().unwrap().len(), 3);

    // Each event shows its trace's whole tree: 1, 2, … 5 spans, past 8 together.
    let d = app.create_trace(json!({"name": "live"})).await["id"].clone();
    let mut ws = crate::subscriptions::subscribe(
        &app,
        "/graphql/ws",
        "subscription($t: UUID) { spanAdded(traceId: $t) { name trace { spans { name } } } }",
        json!({"t": d}),
    )
    .await;
    for n in 1..=5 {
        app.add_spans(json!([{"traceId": d, "name": format!("step {n}"), "spanType": "TOOL"}]))
            .await;
        let event = crate::subscriptions::next_data(&mut ws, "spanAdded").await;
        assert_eq!(event["name"], format!("step {n}"), "{event}");
        assert_eq!(event["trace"]["spans"].as_array().map(Vec::len), Some(n), "{event}");
    }
}
