//! Every query limit refuses with `LIMIT_EXCEEDED` naming itself, and lets the
//! ordinary dashboard query through.

use serde_json::json;

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
