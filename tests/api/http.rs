//! GraphQL over HTTP: status codes, media types, CSRF, GET, limits.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, hold_writes_to, on_postgres, spawn_app, spawn_app_with};

const GQL_JSON: &str = "application/graphql-response+json";

async fn post_raw(
    app: &TestApp,
    content_type: &str,
    accept: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String, Value) {
    let mut request = app
        .http
        .post(format!("{}/graphql", app.base))
        .header("content-type", content_type)
        .body(body);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, media, body)
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.http.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn graphiql_is_served_on_get() {
    let app = spawn_app().await;
    let page = app.http.get(format!("{}/graphql", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("GraphiQL.createFetcher"), "GraphiQL page expected");
    assert!(html.contains("/graphql/ws"), "subscriptions endpoint wired");
    // Everything the page loads comes from this server: it works without internet.
    let loaded = page_references(&html);
    assert_eq!(
        loaded.len(),
        4,
        "React, ReactDOM, GraphiQL's script and styles: {loaded:?}"
    );
    for path in loaded {
        assert!(
            path.starts_with('/') && !path.starts_with("//"),
            "{path} is not on this server"
        );
        let asset = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        let media_type = asset.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let expected = if path.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(media_type.starts_with(expected), "{path}: {media_type}");
        assert!(asset.bytes().await.unwrap().len() > 10_000, "{path} has its whole text");
    }
    let unknown = app
        .http
        .get(format!("{}/graphiql/4.1.2/other.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// The `src` and `href` values of a page.
fn page_references(html: &str) -> Vec<&str> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attribute| html.split(attribute).skip(1))
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect()
}

#[tokio::test]
async fn graphiql_and_introspection_can_be_switched_off() {
    let app = spawn_app_with(|c| {
        c.disable_graphiql = true;
        c.disable_introspection = true;
    })
    .await;
    let page = app.http.get(format!("{}/graphql", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 400);
    let script = app
        .http
        .get(format!("{}/graphiql/4.1.2/graphiql.min.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 404, "its scripts go with the page");
    let body = app.gql("{ __schema { types { name } } }", json!({})).await;
    assert_eq!(
        body["data"]["__schema"],
        Value::Null,
        "introspection answers nothing: {body}"
    );
    assert!(app.gql("{ traces { totalCount } }", json!({})).await["errors"].is_null());
}

#[tokio::test]
async fn unknown_route_is_404() {
    let app = spawn_app().await;
    let response = app.http.get(format!("{}/nope", app.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn unparsable_bodies_are_400_with_a_graphql_error() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", b"{\"query\": ".to_vec()),
        ("invalid UTF-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("batch", br#"[{"query": "{ __typename }"}]"#.to_vec()),
        ("no query", br#"{"variables": {}}"#.to_vec()),
        (
            "variables not an object",
            br#"{"query": "{ __typename }", "variables": [1]}"#.to_vec(),
        ),
        (
            "huge number",
            br#"{"query": "{ __typename }", "variables": {"n": 1e999999}}"#.to_vec(),
        ),
    ];
    for (what, body) in cases {
        for accept in [None, Some(GQL_JSON)] {
            let (status, _, json) = post_raw(&app, "application/json", accept, body.clone()).await;
            assert_eq!(status, 400, "{what} {accept:?}");
            assert_eq!(
                json["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
                "{what}: {json}"
            );
        }
    }
}

#[tokio::test]
async fn graphql_response_json_uses_4xx_for_request_errors() {
    let app = spawn_app().await;
    let bad = json!({"query": "{ noSuchField }"}).to_string();
    let (status, media, _) = post_raw(&app, "application/json", Some(GQL_JSON), bad.clone()).await;
    assert_eq!(status, 400);
    assert!(media.starts_with(GQL_JSON), "{media}");
    // The legacy media type keeps 200 for a well-formed GraphQL response.
    let (status, media, body) = post_raw(&app, "application/json", Some("application/json"), bad).await;
    assert_eq!(status, 200);
    assert!(media.starts_with("application/json"), "{media}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let good = json!({"query": "{ traces { totalCount } }"}).to_string();
    let (status, media, body) = post_raw(&app, "application/json", Some(GQL_JSON), good.clone()).await;
    assert_eq!(status, 200);
    assert!(media.starts_with(GQL_JSON));
    assert_eq!(body["data"]["traces"]["totalCount"], 0);
    // A field error after execution started is still a 200 with data.
    let partial = json!({"query": "{ traces(limit: 0) { totalCount } }"}).to_string();
    let (status, _, body) = post_raw(&app, "application/json", Some(GQL_JSON), partial).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(status, 200);
    let (status, _, _) = post_raw(&app, "application/json", Some("text/html"), good).await;
    assert_eq!(status, 406);
}

#[tokio::test]
async fn csrf_refuses_preflight_free_content_types() {
    let app = spawn_app().await;
    let body = json!({"query": "mutation { createTrace(input: {name: \"csrf\"}) { id } }"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, json) = post_raw(&app, content_type, None, body.clone()).await;
        assert_eq!(status, 400, "{content_type}");
        assert_eq!(json["errors"][0]["extensions"]["code"], "FORBIDDEN");
    }
    assert_eq!(app.counts().await, (0, 0));
    // With a header a browser cannot add unasked, text/plain JSON is accepted.
    let response = app
        .http
        .post(format!("{}/graphql", app.base))
        .header("content-type", "text/plain")
        .header("x-tracegraph-csrf", "1")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.counts().await, (1, 0));
    let (status, _, _) = post_raw(&app, "application/xml", None, body).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn get_runs_queries_only() {
    let app = spawn_app().await;
    let url = format!("{}/graphql", app.base);
    let response = app
        .http
        .get(&url)
        .query(&[
            ("query", "query($l: Int) { traces(limit: $l) { totalCount } }"),
            ("variables", "{\"l\": 5}"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["traces"]["totalCount"], 0);
    let mutation = app
        .http
        .get(&url)
        .query(&[("query", "mutation { createTrace(input: {name: \"x\"}) { id } }")])
        .send()
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    let bad_vars = app
        .http
        .get(&url)
        .query(&[("query", "{ __typename }"), ("variables", "{nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_vars.status(), 400);
    assert_eq!(app.counts().await, (0, 0));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(|c| c.max_body_bytes = 4096).await;
    let body = json!({"query": "{ __typename }", "variables": {"pad": "x".repeat(8192)}}).to_string();
    let (status, _, json) = post_raw(&app, "application/json", None, body).await;
    assert_eq!(status, 413);
    assert_eq!(json["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED");
}

#[tokio::test]
async fn a_request_over_its_time_limit_is_refused_and_rolled_back() {
    let app = spawn_app().await;
    let hurried = app.second_instance_with(|c| c.request_timeout_ms = 300).await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    // Another client holds the trace row (PostgreSQL) or the write lock (SQLite), so the
    // write cannot finish in time, whatever the machine's speed.
    let blocker = hold_writes_to(&app.database_url, &tid).await;
    let spans: Vec<Value> = (0..10)
        .map(|i| json!({"traceId": tid, "name": format!("{i}"), "spanType": "TOOL"}))
        .collect();
    let body = hurried
        .gql(
            "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id } }",
            json!({"i": spans}),
        )
        .await;
    blocker.rollback().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED", "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["limit"],
        "request timeout in milliseconds"
    );
    assert_eq!(app.counts().await, (1, 0), "nothing of the batch was kept");
}

#[tokio::test]
async fn metrics_count_sql_statements() {
    let app = spawn_app().await;
    let statements = "tracegraph_sql_statements_total";
    let before = app.metric(statements).await;
    app.ok("{ traces { totalCount items { id } } }", json!({})).await;
    let after = app.metric(statements).await;
    assert_eq!(after - before, 3, "keys check, page, count");
    // Whether keys exist is remembered until a key changes.
    app.ok("{ traces { totalCount items { id } } }", json!({})).await;
    let again = app.metric(statements).await - after;
    assert_eq!(again, 2);
}

#[tokio::test]
async fn metrics_show_the_connections_kept_for_reads() {
    let app = spawn_app().await;
    app.ok("{ traces { totalCount items { id } } }", json!({})).await;
    let idle = app.metric("tracegraph_read_connections_idle").await;
    let opened = app.metric("tracegraph_read_connections_opened_total").await;
    if on_postgres() {
        // The page and its count ran on leased connections, now back and idle.
        assert!(idle >= 1, "{idle} idle");
        assert!(opened >= idle, "{opened} opened, {idle} idle");
    } else {
        assert_eq!((idle, opened), (0, 0), "SQLite reads lease no connections");
        assert_eq!(app.metric("tracegraph_read_pipelined_connections").await, 0);
    }
}

/// Parsed documents are reused by query text; the variables still decide the answer.
#[tokio::test]
async fn one_query_text_answers_for_each_requests_variables() {
    let app = spawn_app().await;
    let mut traces = Vec::new();
    for name in ["first", "second", "third"] {
        traces.push((app.create_trace(json!({"name": name})).await["id"].clone(), name));
    }
    for _ in 0..2 {
        for (id, name) in &traces {
            let data = app
                .ok("query($id: UUID!) { trace(id: $id) { name } }", json!({"id": id}))
                .await;
            assert_eq!(data["trace"]["name"], *name, "{data}");
        }
    }
}

/// A trace's answer goes out in pieces (its prewritten span list shared, not copied);
/// the client still gets one body of the length announced, not a chunked one.
#[tokio::test]
async fn an_answer_sent_in_pieces_has_its_exact_length() {
    let app = spawn_app().await;
    let trace = app
        .create_trace(json!({"name": "pieces", "agentId": crate::helpers::id()}))
        .await;
    let tid = trace["id"].as_str().unwrap();
    let spans: Vec<Value> = (0..30)
        .map(|i| json!({"traceId": tid, "name": format!("step {i}"), "spanType": "LLM", "inputText": "é\"\n".repeat(100)}))
        .collect();
    app.add_spans(json!(spans)).await;
    let query = "query($id: UUID!) { trace(id: $id) { id spans { name inputText } } }";
    let response = app
        .http
        .post(format!("{}/graphql", app.base))
        .json(&json!({"query": query, "variables": {"id": tid}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("transfer-encoding").is_none());
    let announced: usize = response.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(announced, body.len());
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let listed = answer["data"]["trace"]["spans"].as_array().unwrap();
    assert_eq!(listed.len(), 30);
    assert!(listed.iter().all(|span| span["inputText"] == "é\"\n".repeat(100)));
}
