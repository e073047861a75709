//! Every rejected input gets its code and writes nothing.

use serde_json::{Value, json};

use crate::helpers::{error_code, id, spawn_app, spawn_app_with};

const CREATE: &str = "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id } }";
const ADD: &str = "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }";

#[tokio::test]
async fn malformed_scalars_are_bad_user_input() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let cases = [
        (
            "query($id: UUID!) { trace(id: $id) { id } }",
            json!({"id": "not-a-uuid"}),
        ),
        ("{ trace(id: \"12345\") { id } }", json!({})),
        (CREATE, json!({"i": {"name": "t", "startedAt": "yesterday"}})),
        (CREATE, json!({"i": {"name": "t", "startedAt": "2026-13-01T00:00:00Z"}})),
        (CREATE, json!({"i": {"name": "t", "agentId": "123"}})),
        (ADD, json!({"i": {"traceId": tid, "name": "s", "spanType": "BANANA"}})),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "TOOL", "endedAt": 5}}),
        ),
        ("{ traces(limit: \"ten\") { totalCount } }", json!({})),
        ("{ nope }", json!({})),
        ("{ traces { ", json!({})),
    ];
    for (query, vars) in cases {
        assert_eq!(
            app.error_code(query, vars.clone()).await,
            "BAD_USER_INPUT",
            "{query} {vars}"
        );
    }
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn a_malformed_time_is_refused_naming_its_field_its_value_and_the_form_expected() {
    let app = spawn_app().await;
    for bad in ["yesterday", "2026-13-45T99:99:99Z", "2026-11-24", "2026-11-24T09:30:00"] {
        let body = app.gql(CREATE, json!({"i": {"name": "t", "startedAt": bad}})).await;
        let error = &body["errors"][0];
        let message = error["message"].as_str().unwrap_or_default();
        assert_eq!(error["extensions"]["field"], "startedAt", "{bad}: {body}");
        assert!(message.contains(&format!("\"{bad}\"")), "{bad}: {message}");
        assert!(message.contains("RFC 3339"), "{bad}: {message}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{bad}");
    }
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();

    // In a batch the item is named too, and nothing of the batch is written.
    let span = |ended: &str| json!({"traceId": tid, "name": "s", "spanType": "TOOL", "endedAt": ended});
    let good = "2030-01-01T00:00:00Z";
    let batch = "mutation($s: [AddSpanInput!]!) { addSpans(inputs: $s) { id } }";
    let body = app
        .gql(
            batch,
            json!({"s": [span(good), span("2030-02-30T00:00:00Z"), span(good)]}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "inputs[1].endedAt", "{body}");
    let ends = "mutation($e: [EndTraceInput!]!) { endTraces(inputs: $e) { id } }";
    let body = app.gql(ends, json!({"e": [{"id": tid, "endedAt": "soon"}]})).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "inputs[0].endedAt", "{body}");
    let end = "mutation($t: UUID!, $e: DateTime) { endTrace(id: $t, endedAt: $e) { id } }";
    let body = app.gql(end, json!({"t": tid, "e": "2026-11-24T25:00:00Z"})).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "endedAt", "{body}");
    let end_span = "mutation($s: UUID!) { endSpan(id: $s, endedAt: \"noon\") { id } }";
    let body = app.gql(end_span, json!({"s": id()})).await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "endedAt", "{body}");
    assert_eq!(app.counts().await, (1, 0));

    // A long refused value is quoted only in part.
    let long = "9".repeat(10_000);
    let body = app.gql(CREATE, json!({"i": {"name": "t", "startedAt": long}})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.len() < 400, "{message}");

    // Where a time is read by the engine itself (a filter), its error gives the form too,
    // whether the text does not parse or the value is not text.
    for given in ["\"2026-02-30T00:00:00Z\"", "20261124"] {
        let query = format!("{{ spans(filter: {{startedAfter: {given}}}) {{ totalCount }} }}");
        let body = app.gql(&query, json!({})).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("RFC 3339"), "{given}: {message}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn a_malformed_id_in_a_write_is_refused_naming_its_field_and_item() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let span = |parent: Value| json!({"traceId": tid, "parentId": parent, "name": "s", "spanType": "TOOL"});
    let batch = "mutation($s: [AddSpanInput!]!) { addSpans(inputs: $s) { id } }";
    let traces = "mutation($t: [CreateTraceInput!]!) { createTraces(inputs: $t) { id } }";
    let ends = "mutation($e: [EndTraceInput!]!) { endTraces(inputs: $e) { id } }";
    let cases = [
        (
            CREATE,
            json!({"i": {"name": "t", "agentId": "123"}}),
            "agentId",
            "\"123\"",
        ),
        (
            batch,
            json!({"s": [span(Value::Null), span(Value::Null), span(json!("not-a-uuid"))]}),
            "inputs[2].parentId",
            "\"not-a-uuid\"",
        ),
        (
            batch,
            json!({"s": [{"traceId": 42, "name": "s", "spanType": "TOOL"}]}),
            "inputs[0].traceId",
            "42",
        ),
        (
            traces,
            json!({"t": [{"name": "a"}, {"name": "b", "productId": "p-1"}]}),
            "inputs[1].productId",
            "\"p-1\"",
        ),
        (ends, json!({"e": [{"id": tid}, {"id": "x"}]}), "inputs[1].id", "\"x\""),
    ];
    for (query, vars, field, quoted) in cases {
        let body = app.gql(query, vars).await;
        let error = &body["errors"][0];
        let message = error["message"].as_str().unwrap_or_default();
        assert_eq!(error["extensions"]["field"], field, "{body}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        assert!(message.contains(quoted) && message.contains("a UUID is"), "{message}");
    }
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn a_malformed_id_the_engine_reads_itself_is_refused_with_the_form_expected() {
    let app = spawn_app().await;
    let cases = [
        ("{ trace(id: \"nope\") { name } }", json!({})),
        ("query($i: UUID!) { span(id: $i) { name } }", json!({"i": "12345"})),
        ("mutation { endTrace(id: \"zz\") { id } }", json!({})),
        ("mutation($i: UUID!) { unflagSpan(id: $i) { id } }", json!({"i": 7})),
        ("{ traces(filter: {agent: \"a-1\"}) { totalCount } }", json!({})),
        (
            "query($p: UUID) { spans(filter: {productId: $p}) { totalCount } }",
            json!({"p": "{not}"}),
        ),
    ];
    for (query, vars) in cases {
        let body = app.gql(query, vars).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("a UUID is 32 hexadecimal digits"), "{query}: {body}");
        assert!(body["errors"][0]["locations"].is_array(), "{query}: {body}");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}");
    }
}

#[tokio::test]
async fn a_filter_text_holding_nul_is_refused_on_every_engine() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let cases = [
        (
            "query($n: String) { traces(filter: {name: $n}) { totalCount } }",
            "name",
        ),
        (
            "query($n: String) { spans(filter: {model: $n}) { items { id } } }",
            "model",
        ),
        ("query($n: String) { traceStats(filter: {name: $n}) { count } }", "name"),
        (
            "query($n: String) { usageSummary(filter: {model: $n}) { llmCalls } }",
            "model",
        ),
        (
            "query($n: String, $t: UUID!) { trace(id: $t) { spans(filter: {name: $n}) { id } } }",
            "name",
        ),
    ];
    for (query, field) in cases {
        // Asked once well, the document is vouched for and skips validation after: the
        // refusal must not depend on it.
        let fine = app.gql(query, json!({"n": "a", "t": tid})).await;
        assert!(fine.get("errors").is_none(), "{query}: {fine}");
        let body = app.gql(query, json!({"n": "a\u{0}b", "t": tid})).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{field} must not contain NUL")),
            "{query}: {body}"
        );
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{query}: {body}");
    }
}

#[tokio::test]
async fn invalid_values_are_rejected_with_their_field() {
    let app = spawn_app().await;
    let tid = app
        .create_trace(json!({"name": "t", "startedAt": "2026-11-01T00:00:00Z"}))
        .await["id"]
        .clone();
    let cases = [
        (CREATE, json!({"i": {"name": ""}}), "name"),
        (CREATE, json!({"i": {"name": "t", "metadata": [1, 2]}}), "metadata"),
        (CREATE, json!({"i": {"name": "t", "metadata": "text"}}), "metadata"),
        (
            CREATE,
            json!({"i": {"name": "t", "startedAt": "2026-11-01T00:00:00Z", "endedAt": "2026-10-01T00:00:00Z"}}),
            "endedAt",
        ),
        (
            CREATE,
            json!({"i": {"name": "t", "startedAt": "1969-12-31T23:59:59Z"}}),
            "startedAt",
        ),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "TOOL",
                "startedAt": "2026-11-01T00:00:05Z", "endedAt": "2026-11-01T00:00:04Z"}}),
            "endedAt",
        ),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "LLM", "metadata": {"input_tokens": -5}}}),
            "metadata.input_tokens",
        ),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "LLM", "metadata": {"cost_usd": "free"}}}),
            "metadata.cost_usd",
        ),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "TOOL", "inputText": "a\u{0}b"}}),
            "inputText",
        ),
        (
            ADD,
            json!({"i": {"traceId": tid, "name": "s", "spanType": "TOOL", "metadata": {"k": "a\u{0}"}}}),
            "metadata",
        ),
    ];
    for (query, vars, field) in cases {
        let body = app.gql(query, vars.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{vars}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{vars}");
    }
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn times_at_both_bounds_are_taken_whole_and_read_back() {
    let app = spawn_app().await;
    let (first, last) = ("1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z");
    let created = app
        .ok(
            "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id startedAt endedAt } }",
            json!({"i": {"name": "t", "startedAt": first, "endedAt": "9999-12-31T23:59:59.9999999Z"}}),
        )
        .await;
    let trace = &created["createTrace"];
    assert_eq!(trace["startedAt"], "1970-01-01T00:00:00+00:00", "{created}");
    assert_eq!(
        trace["endedAt"], "9999-12-31T23:59:59.999999+00:00",
        "truncated to microseconds"
    );
    let span = json!({"traceId": trace["id"], "name": "s", "spanType": "TOOL", "startedAt": first, "endedAt": last});
    assert!(app.gql(ADD, json!({"i": span})).await.get("errors").is_none());
    let read = app
        .ok(
            "{ traces(sort: DURATION_DESC) { items { endedAt } } spans(filter: {startedBefore: \"1970-01-01T00:00:01Z\"}) { items { endedAt } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        read["traces"]["items"][0]["endedAt"], "9999-12-31T23:59:59.999999+00:00",
        "{read}"
    );
    assert_eq!(
        read["spans"]["items"][0]["endedAt"], "9999-12-31T23:59:59.999999+00:00",
        "{read}"
    );
    let body = app
        .gql(
            CREATE,
            json!({"i": {"name": "t", "startedAt": "1969-12-31T23:59:59.999999Z"}}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "startedAt", "{body}");
}

/// Metadata nested deeper than JSON readers go (written as a GraphQL literal, which no
/// JSON parser limits) is refused, not stored where every read of its span would fail.
#[tokio::test]
async fn metadata_nested_too_deep_is_refused_and_reads_stay_whole() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let nested = |levels: usize| format!("{}1{}", "{a: ".repeat(levels), "}".repeat(levels));
    let add = |metadata: String| {
        format!(
            r#"mutation {{ addSpan(input: {{traceId: {tid}, name: "s", spanType: TOOL, metadata: {metadata}}}) {{ id }} }}"#
        )
    };
    let body = app.gql(&add(nested(200)), json!({})).await;
    assert_eq!(error_code(&body), "LIMIT_EXCEEDED", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["field"], "metadata");
    assert_eq!(body["errors"][0]["extensions"]["max"], 64);
    let trace = "mutation { createTrace(input: {name: \"t\", metadata: METADATA}) { id } }";
    let body = app.gql(&trace.replace("METADATA", &nested(65)), json!({})).await;
    assert_eq!(error_code(&body), "LIMIT_EXCEEDED", "{body}");
    assert_eq!(app.counts().await, (1, 0));

    app.ok(&add(nested(64)), json!({})).await;
    let read = app
        .ok(
            "query($id: UUID!) { trace(id: $id) { spans { metadata } } }",
            json!({"id": tid}),
        )
        .await;
    let mut metadata = &read["trace"]["spans"][0]["metadata"];
    for _ in 0..63 {
        metadata = &metadata["a"];
    }
    assert_eq!(metadata["a"], 1);
}

#[tokio::test]
async fn unknown_references_are_not_found() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let cases = [
        (ADD, json!({"i": {"traceId": id(), "name": "s", "spanType": "TOOL"}})),
        (
            ADD,
            json!({"i": {"traceId": tid, "parentId": id(), "name": "s", "spanType": "TOOL"}}),
        ),
        ("mutation($id: UUID!) { endTrace(id: $id) { id } }", json!({"id": id()})),
        ("mutation($id: UUID!) { endSpan(id: $id) { id } }", json!({"id": id()})),
        (
            "mutation($id: UUID!) { flagSpan(id: $id, reason: \"x\") { id } }",
            json!({"id": id()}),
        ),
        (
            "mutation($id: UUID!) { unflagSpan(id: $id) { id } }",
            json!({"id": id()}),
        ),
    ];
    for (query, vars) in cases {
        assert_eq!(app.error_code(query, vars.clone()).await, "NOT_FOUND", "{query}");
    }
    assert_eq!(app.counts().await, (1, 0));
}

#[tokio::test]
async fn limit_outside_range_is_bad_user_input() {
    let app = spawn_app().await;
    for (query, limit) in [
        ("query($l: Int) { traces(limit: $l) { totalCount } }", 0),
        ("query($l: Int) { traces(limit: $l) { totalCount } }", 501),
        ("query($l: Int) { spans(limit: $l) { totalCount } }", -1),
        ("query($l: Int) { agentUsage(limit: $l) { totalCount } }", 1000),
    ] {
        let body = app.gql(query, json!({"l": limit})).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{limit}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "limit");
    }
    let body = app.gql("{ traces(offset: -1) { totalCount } }", json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn oversized_text_is_limit_exceeded_never_truncated() {
    let app = spawn_app_with(|c| {
        c.max_text_bytes = 1024;
        c.max_batch_spans = 3;
    })
    .await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let big = "x".repeat(1025);
    let cases = [
        json!({"traceId": tid, "name": "s", "spanType": "TOOL", "inputText": big}),
        json!({"traceId": tid, "name": "s", "spanType": "TOOL", "outputText": big}),
        json!({"traceId": tid, "name": "s", "spanType": "TOOL", "error": big}),
        json!({"traceId": tid, "name": "s", "spanType": "TOOL", "metadata": {"blob": big}}),
        json!({"traceId": tid, "name": "n".repeat(2000), "spanType": "TOOL"}),
    ];
    for input in cases {
        let body = app.gql(ADD, json!({"i": input})).await;
        assert_eq!(error_code(&body), "LIMIT_EXCEEDED", "{body}");
    }
    // Exactly at the limit is accepted and stored whole.
    let fits = "y".repeat(1024);
    let stored = app
        .ok(
            "mutation($i: AddSpanInput!) { addSpan(input: $i) { inputText } }",
            json!({"i": {"traceId": tid, "name": "s", "spanType": "TOOL", "inputText": fits}}),
        )
        .await;
    assert_eq!(stored["addSpan"]["inputText"].as_str().unwrap().len(), 1024);

    let span = json!({"traceId": tid, "name": "s", "spanType": "TOOL"});
    let body = app
        .gql(
            "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id } }",
            json!({"i": [span, span, span, span]}),
        )
        .await;
    assert_eq!(error_code(&body), "LIMIT_EXCEEDED");
    assert_eq!(app.counts().await, (1, 1));
}

#[tokio::test]
async fn default_text_limit_accepts_large_prompts() {
    let app = spawn_app().await;
    let tid = app.create_trace(json!({"name": "t"})).await["id"].clone();
    let prompt = "context ".repeat(256 * 1024); // 2 MiB
    let stored = app
        .ok(
            "mutation($i: AddSpanInput!) { addSpan(input: $i) { id } }",
            json!({"i": {"traceId": tid, "name": "rag", "spanType": "LLM", "inputText": prompt}}),
        )
        .await;
    let read = app
        .ok(
            "query($id: UUID!) { span(id: $id) { inputText } }",
            json!({"id": stored["addSpan"]["id"]}),
        )
        .await;
    assert_eq!(read["span"]["inputText"].as_str().unwrap().len(), prompt.len());
}

#[tokio::test]
async fn unknown_or_ambiguous_operations_are_bad_user_input() {
    let app = spawn_app().await;
    let doc = "query A { traces { totalCount } } query B { spans { totalCount } }";
    for name in [Some("C"), None] {
        let response = app
            .http
            .post(format!("{}/graphql", app.base))
            .json(&json!({"query": doc, "operationName": name}))
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{name:?}: {body}");
    }
}
