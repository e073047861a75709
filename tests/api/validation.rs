//! A query or mutation whose document passed full validation skips it when it comes again with
//! variables that are vouched for; every other request is validated in full, so bad
//! variables get the same errors whether or not their document was seen before.

use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app};

const SKIPPED: &str = "tracegraph_unvalidated_queries_total";
/// `$n` is used under `@skip`: only validation, not execution, can refuse a bad value.
const PAGE: &str = "query($n: Int, $s: TraceSort, $hide: Boolean!) {
    traces(limit: $n, sort: $s) @skip(if: $hide) { totalCount items { name } } }";

async fn skipped_after(app: &TestApp, query: &str, variables: Value) -> (Value, u64) {
    let before = app.metric(SKIPPED).await;
    let body = app.gql(query, variables).await;
    (body, app.metric(SKIPPED).await - before)
}

#[tokio::test]
async fn bad_variables_get_the_same_errors_before_and_after_their_document_passed() {
    let app = spawn_app().await;
    app.create_trace(json!({"name": "one"})).await;
    let bad = [
        json!({"n": "x", "s": "STARTED_AT_DESC", "hide": true}),
        json!({"n": 5, "s": "SIDEWAYS", "hide": false}),
        json!({"n": 5, "s": "STARTED_AT_DESC", "hide": null}),
        json!({"n": 5, "s": "STARTED_AT_DESC"}),
    ];
    let mut first_answers = vec![];
    for variables in &bad {
        let (body, skipped) = skipped_after(&app, PAGE, variables.clone()).await;
        assert_eq!(
            body["data"],
            Value::Null,
            "refused before execution: {variables}: {body}"
        );
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}: {body}");
        assert_eq!(skipped, 0);
        first_answers.push(body);
    }
    assert_eq!(
        first_answers[3]["errors"][0]["message"],
        "Variable \"$hide\" of required type \"Boolean!\" was not provided."
    );

    let good = json!({"n": 5, "s": "STARTED_AT_DESC", "hide": false});
    let (strict, skipped) = skipped_after(&app, PAGE, good.clone()).await;
    assert_eq!(strict["data"]["traces"]["totalCount"], 1, "{strict}");
    assert_eq!(skipped, 0, "validated in full until it has passed once");
    app.gql(PAGE, good.clone()).await;
    let (trusted, skipped) = skipped_after(&app, PAGE, good).await;
    assert_eq!(skipped, 1, "a passed document with good variables skips validation");
    assert_eq!(trusted, strict, "and answers the same");

    for (variables, first) in bad.iter().zip(&first_answers) {
        let (body, skipped) = skipped_after(&app, PAGE, variables.clone()).await;
        assert_eq!(&body, first, "{variables}");
        assert_eq!(skipped, 0, "{variables} is validated in full");
    }
}

#[tokio::test]
async fn mutations_skip_validation_as_queries_do_and_bad_variables_write_nothing() {
    let app = spawn_app().await;
    let create = "mutation($i: CreateTraceInput!) { createTrace(input: $i) { name } }";
    let bad = [
        json!({}),
        json!({"i": {"name": 5}}),
        json!({"i": {"name": "x", "nope": 1}}),
    ];
    let mut first_answers = vec![];
    for variables in &bad {
        let body = app.gql(create, variables.clone()).await;
        assert_eq!(
            (error_code(&body).as_str(), &body["data"]),
            ("BAD_USER_INPUT", &Value::Null),
            "{variables}: {body}"
        );
        first_answers.push(body);
    }
    let mut skips = vec![];
    for n in 0..3 {
        let (body, skipped) = skipped_after(&app, create, json!({"i": {"name": format!("t{n}")}})).await;
        assert_eq!(body["data"]["createTrace"]["name"], format!("t{n}"));
        skips.push(skipped);
    }
    assert_eq!(skips, [0, 1, 1], "validated in full until it has passed once");
    for (variables, first) in bad.iter().zip(&first_answers) {
        let (body, skipped) = skipped_after(&app, create, variables.clone()).await;
        assert_eq!(
            &body, first,
            "{variables}: the same errors as before the document passed"
        );
        assert_eq!(skipped, 0, "{variables} is validated in full");
    }
    assert_eq!(app.counts().await.0, 3, "nothing written for a bad variable");
}

#[tokio::test]
async fn a_subscription_missing_a_required_variable_is_refused() {
    let app = spawn_app().await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.init().await;
    ws.subscribe(
        "1",
        "subscription($t: UUID!) { spanAdded(traceId: $t) { name } }",
        json!({}),
    )
    .await;
    let refused = ws.next_json(std::time::Duration::from_secs(5)).await;
    let errors = match refused["type"].as_str() {
        Some("error") => refused["payload"].clone(),
        _ => refused["payload"]["errors"].clone(),
    };
    assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT", "{refused}");
    assert_eq!(
        errors[0]["message"], "Variable \"$t\" of required type \"UUID!\" was not provided.",
        "{refused}"
    );
}
