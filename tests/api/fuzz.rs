//! Generated documents and variables thrown at the schema: every one gets a
//! well-formed response whose errors all carry a code, and nothing panics.

use proptest::prelude::*;
use serde_json::{Value, json};
use tracegraph::config::{Config, Limits};
use tracegraph::graphql::{self, State};
use tracegraph::live::LiveSpans;

const FIELDS: &[&str] = &[
    "traces",
    "trace",
    "span",
    "spans",
    "agentUsage",
    "items",
    "totalCount",
    "hasNextPage",
    "id",
    "name",
    "rootSpans",
    "children",
    "parent",
    "usage",
    "metadata",
    "flags",
    "createTrace",
    "addSpan",
    "addSpans",
    "endSpan",
    "endTrace",
    "flagSpan",
    "unflagSpan",
    "__typename",
    "__schema",
    "types",
    "nope",
];
const ARGS: &[&str] = &[
    "limit: 5",
    "limit: -1",
    "limit: 99999999999",
    "offset: 3",
    "id: \"x\"",
    "id: \"00000000-0000-0000-0000-000000000000\"",
    "filter: {agent: \"bad\"}",
    "filter: {hasError: true}",
    "sort: COST_DESC",
    "sort: NOPE",
    "input: {name: \"\"}",
    "input: {name: \"t\", metadata: [1]}",
    "inputs: []",
    "reason: \"\"",
    "limit: $v",
    "id: $v",
    "input: $v",
];

fn selection(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop::sample::select(FIELDS).prop_map(str::to_owned);
    leaf.prop_recursive(depth, 64, 6, |inner| {
        (
            prop::sample::select(FIELDS),
            prop::option::of(prop::sample::select(ARGS)),
            prop::collection::vec(inner, 1..4),
            prop::option::of("[a-z]{1,3}"),
        )
            .prop_map(|(field, arg, children, alias)| {
                let alias = alias.map(|a| format!("{a}: ")).unwrap_or_default();
                let arg = arg.map(|a| format!("({a})")).unwrap_or_default();
                format!("{alias}{field}{arg} {{ {} }}", children.join(" "))
            })
    })
    .boxed()
}

fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(&["query", "mutation", "subscription", "", "fragment F on Query"][..]),
            selection(4)
        )
            .prop_map(|(kind, body)| format!("{kind}($v: String) {{ {body} }}")),
        selection(3).prop_map(|body| format!("{{ {body} }} fragment F on Span {{ ...F }}")),
        ".{0,200}",
    ]
}

fn variables() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map("[a-z]{1,6}", inner, 0..4).prop_map(|m| json!(m)),
        ]
    })
}

#[test]
fn any_document_gets_a_well_formed_answer() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fuzz.db").display());
    let api = runtime.block_on(async {
        let config = Config::default();
        let db = tracegraph::db::connect(&url, 2).await.unwrap();
        let state = State {
            db,
            live: LiveSpans::default(),
            limits: Limits::from(&config),
            prices: Default::default(),
        };
        graphql::build_api(state, &config)
    });
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&(document(), variables()), |(query, vars)| {
            let request = async_graphql::Request::new(query.clone())
                .variables(async_graphql::Variables::from_json(json!({"v": vars})));
            let response = runtime.block_on(async {
                use futures::StreamExt;
                // Subscriptions run as streams; take what the first item says.
                let mut stream = api.execute_stream(request);
                tokio::time::timeout(std::time::Duration::from_millis(200), stream.next())
                    .await
                    .ok()
                    .flatten()
            });
            let Some(response) = response else { return Ok(()) };
            let body = serde_json::to_value(&response).expect("a response serializes");
            for error in body["errors"].as_array().into_iter().flatten() {
                prop_assert!(
                    error["extensions"]["code"].is_string(),
                    "error without code for {query}: {error}"
                );
                prop_assert!(
                    !error["message"].as_str().unwrap_or("").contains("SELECT"),
                    "SQL leaked: {error}"
                );
            }
            Ok(())
        })
        .unwrap();
}
