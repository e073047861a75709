//! API keys: scopes, products, revocation, WebSockets, and the safe default.

use std::time::Duration;

use serde_json::{Value, json};
use tracegraph::app::{App, StartError};
use tracegraph::config::Config;

use crate::helpers::{TestApp, error_code, id, spawn_app, test_database};

const WAIT: Duration = Duration::from_secs(5);
const LIST: &str = "{ traces { totalCount items { name } } }";
const CREATE: &str = "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id } }";

fn code(body: &Value) -> String {
    error_code(body)
}

#[tokio::test]
async fn once_a_key_exists_every_request_needs_one() {
    let app = spawn_app().await;
    assert!(
        app.gql(LIST, json!({})).await.get("errors").is_none(),
        "open before any key"
    );
    let key = app.create_key("reader", &["read"], &[]).await;
    let (status, body) = app.gql_status(LIST).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"));
    let (status, body) = app.gql_as("tg_not-a-real-key-at-all", LIST, json!({})).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"));
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["traces"]["totalCount"], 0);
}

#[tokio::test]
async fn scopes_decide_what_a_key_may_do() {
    let app = spawn_app().await;
    let reader = app.create_key("reader", &["read"], &[]).await;
    let writer = app.create_key("writer", &["ingest"], &[]).await;
    let admin = app.create_key("admin", &["admin"], &[]).await;
    let (_, created) = app.gql_as(&writer, CREATE, json!({"i": {"name": "t"}})).await;
    let tid = created["data"]["createTrace"]["id"].clone();
    assert!(tid.is_string(), "{created}");
    let (_, body) = app.gql_as(&reader, CREATE, json!({"i": {"name": "t"}})).await;
    assert_eq!(code(&body), "FORBIDDEN");
    let (_, body) = app.gql_as(&writer, LIST, json!({})).await;
    assert_eq!(code(&body), "FORBIDDEN");
    let add = "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"s\", spanType: TOOL}) { id } }";
    let (_, span) = app.gql_as(&writer, add, json!({"t": tid})).await;
    let sid = span["data"]["addSpan"]["id"].clone();
    let flag = "mutation($id: UUID!) { flagSpan(id: $id, reason: \"r\") { flagged } }";
    let (_, body) = app.gql_as(&writer, flag, json!({"id": sid})).await;
    assert_eq!(code(&body), "FORBIDDEN", "flags need admin");
    let (_, body) = app.gql_as(&admin, flag, json!({"id": sid})).await;
    assert_eq!(body["data"]["flagSpan"]["flagged"], true, "{body}");
    let (_, body) = app.gql_as(&admin, LIST, json!({})).await;
    assert_eq!(body["data"]["traces"]["totalCount"], 1);
}

/// Two products with one trace and span each; returns (product a, product b, trace a, trace b, span b).
async fn two_products(app: &TestApp, admin: &str) -> (String, String, Value, Value, Value) {
    let (a, b) = (id(), id());
    let mut traces = vec![];
    for product in [&a, &b] {
        let (_, body) = app
            .gql_as(
                admin,
                CREATE,
                json!({"i": {"name": format!("p-{product}"), "productId": product}}),
            )
            .await;
        traces.push(body["data"]["createTrace"]["id"].clone());
    }
    let add = "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"s\", spanType: LLM, metadata: {cost_usd: 1}}) { id } }";
    let (_, span_b) = app.gql_as(admin, add, json!({"t": traces[1]})).await;
    app.gql_as(admin, add, json!({"t": traces[0]})).await;
    for t in &traces {
        app.gql_as(
            admin,
            "mutation($id: UUID!) { endTrace(id: $id) { id } }",
            json!({"id": t}),
        )
        .await;
    }
    (
        a,
        b,
        traces[0].clone(),
        traces[1].clone(),
        span_b["data"]["addSpan"]["id"].clone(),
    )
}

#[tokio::test]
async fn a_product_scoped_key_sees_and_writes_only_its_product() {
    let app = spawn_app().await;
    let admin = app.create_key("admin", &["admin"], &[]).await;
    let (a, b, trace_a, trace_b, span_b) = two_products(&app, &admin).await;
    let key = app.create_key("team-a", &["read", "ingest"], &[&a]).await;

    let (_, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!(body["data"]["traces"]["totalCount"], 1, "forced to its product: {body}");
    let (_, body) = app
        .gql_as(
            &key,
            "{ spans { totalCount } agentUsage { totalCount totals { costUsd } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["spans"]["totalCount"], 1);
    assert_eq!(body["data"]["agentUsage"]["totalCount"], 1);
    assert_eq!(body["data"]["agentUsage"]["totals"]["costUsd"], 1.0);
    let forbidden_reads = [
        (
            "query($p: UUID) { traces(filter: {productId: $p}) { totalCount } }",
            json!({"p": b}),
        ),
        (
            "query($p: UUID) { spans(filter: {productId: $p}) { totalCount } }",
            json!({"p": b}),
        ),
        (
            "query($p: UUID) { agentUsage(filter: {productId: $p}) { totalCount } }",
            json!({"p": b}),
        ),
        ("query($id: UUID!) { trace(id: $id) { name } }", json!({"id": trace_b})),
        // Its span tree is read beside the trace row, before the product is known.
        (
            "query($id: UUID!) { trace(id: $id) { name spans { name metadata } rootSpans { children { name } } } }",
            json!({"id": trace_b}),
        ),
        ("query($id: UUID!) { span(id: $id) { name } }", json!({"id": span_b})),
    ];
    for (query, vars) in forbidden_reads {
        let (_, body) = app.gql_as(&key, query, vars).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
        let shown = body["data"].as_object().into_iter().flat_map(|d| d.values());
        assert!(shown.clone().all(Value::is_null), "{query} showed data: {body}");
    }
    let (_, body) = app
        .gql_as(
            &key,
            "query($id: UUID!) { trace(id: $id) { name } }",
            json!({"id": trace_a}),
        )
        .await;
    assert!(body["data"]["trace"]["name"].is_string(), "{body}");

    let forbidden_writes = [
        (CREATE, json!({"i": {"name": "x", "productId": b}})),
        (CREATE, json!({"i": {"name": "no product"}})),
        (
            "mutation($t: UUID!) { addSpan(input: {traceId: $t, name: \"s\", spanType: TOOL}) { id } }",
            json!({"t": trace_b}),
        ),
        (
            "mutation($t: UUID!) { addSpans(inputs: [{traceId: $t, name: \"s\", spanType: TOOL}]) { id } }",
            json!({"t": trace_b}),
        ),
        (
            "mutation($id: UUID!) { endSpan(id: $id) { id } }",
            json!({"id": span_b}),
        ),
    ];
    for (query, vars) in forbidden_writes {
        let (_, body) = app.gql_as(&key, query, vars).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
    }
    let (_, body) = app
        .gql_as(&admin, "{ traces { totalCount } spans { totalCount } }", json!({}))
        .await;
    assert_eq!(body["data"]["traces"]["totalCount"], 2, "nothing written: {body}");
    assert_eq!(body["data"]["spans"]["totalCount"], 2);
    let (_, body) = app
        .gql_as(&key, CREATE, json!({"i": {"name": "mine", "productId": a}}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
}

#[tokio::test]
async fn a_batch_both_malformed_and_forbidden_is_refused_for_its_form_first() {
    let app = spawn_app().await;
    let admin = app.create_key("admin", &["admin"], &[]).await;
    let (a, b, _, trace_b, _) = two_products(&app, &admin).await;
    let key = app.create_key("team-a", &["read", "ingest"], &[&a]).await;
    let traces = "mutation($t: [CreateTraceInput!]!) { createTraces(inputs: $t) { id } }";
    let ends = "mutation($e: [EndTraceInput!]!) { endTraces(inputs: $e) { id } }";
    let foreign = json!({"name": "x", "productId": b});
    let cases = [
        (
            traces,
            json!({"t": [foreign, {"name": "y", "productId": a, "startedAt": "soon"}]}),
            json!({"t": [foreign, {"name": "y", "productId": a}]}),
            "inputs[1].startedAt",
        ),
        (
            ends,
            json!({"e": [{"id": trace_b}, {"id": "x"}]}),
            json!({"e": [{"id": trace_b}]}),
            "inputs[1].id",
        ),
    ];
    // Validation reads nothing, so the form is told before any product is looked up;
    // mended, the same batch is refused for its product.
    for (query, malformed, mended, field) in cases {
        let (_, body) = app.gql_as(&key, query, malformed).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{query}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        let (_, body) = app.gql_as(&key, query, mended).await;
        assert_eq!(code(&body), "FORBIDDEN", "{query}: {body}");
    }
    let (_, body) = app.gql_as(&admin, "{ traces { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["traces"]["totalCount"], 2, "nothing written: {body}");
}

#[tokio::test]
async fn product_scoped_subscriptions_get_only_their_product() {
    let app = spawn_app().await;
    let admin = app.create_key("admin", &["admin"], &[]).await;
    let (a, b, trace_a, trace_b, _) = two_products(&app, &admin).await;
    let key = app.create_key("team-a", &["read"], &[&a]).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {key}")}}))
        .await;
    assert_eq!(ws.next_json(WAIT).await["type"], "connection_ack");
    ws.subscribe("all", "subscription { spanAdded { name traceId } }", json!({}))
        .await;
    ws.subscribe(
        "b",
        "subscription($p: UUID) { spanAdded(productId: $p) { name } }",
        json!({"p": b}),
    )
    .await;
    let refused = ws.next_json(WAIT).await;
    assert_eq!(refused["id"], "b", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert_eq!(ws.next_json(WAIT).await, json!({"type": "complete", "id": "b"}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let add = "mutation($t: UUID!, $n: String!) { addSpan(input: {traceId: $t, name: $n, spanType: TOOL}) { id } }";
    app.gql_as(&admin, add, json!({"t": trace_b, "n": "theirs"})).await;
    app.gql_as(&admin, add, json!({"t": trace_a, "n": "ours"})).await;
    let msg = ws.next_json(WAIT).await;
    assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], "ours", "{msg}");
}

#[tokio::test]
async fn revocation_takes_effect_over_http_and_websocket_once_known() {
    let app = spawn_app().await;
    let key = app.create_key("soon-gone", &["read"], &[]).await;
    let _admin = app.create_key("admin", &["admin"], &[]).await;
    let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    ws.send(json!({"type": "connection_init", "payload": {"authorization": key}}))
        .await;
    assert_eq!(ws.next_json(WAIT).await["type"], "connection_ack");
    ws.subscribe("1", "subscription { spanAdded { name } }", json!({}))
        .await;
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    app.change_keys(&["keys", "revoke", "soon-gone"]).await;
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"));
    assert_eq!(ws.close_code(WAIT).await, 4403, "the open subscription is cut");
}

/// Keys changed outside the `keys` command, as an operator might in SQL, count as soon
/// as the server knows of the change: the change counter is bumped by trigger, not by
/// the command (and, on PostgreSQL, announced by the trigger too).
#[tokio::test]
async fn keys_changed_in_plain_sql_take_effect_once_known() {
    use sea_orm::ConnectionTrait;
    let app = spawn_app().await;
    let key = app.create_key("reader", &["read"], &[]).await;
    let mut epoch = app.metric("tracegraph_key_epoch").await;
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200, "remembered");
    let sql = sea_orm::Database::connect(&app.database_url).await.unwrap();
    sql.execute_unprepared("UPDATE api_key SET revoked_at = CURRENT_TIMESTAMP WHERE name = 'reader'")
        .await
        .unwrap();
    epoch = app.key_change_known(epoch).await;
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"));
    assert_eq!(app.gql_status(LIST).await.0, 200, "no active key left: open again");
    sql.execute_unprepared("UPDATE api_key SET revoked_at = NULL")
        .await
        .unwrap();
    epoch = app.key_change_known(epoch).await;
    assert_eq!(app.gql_status(LIST).await.0, 401, "a key is back");
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200, "and works");
    sql.execute_unprepared("DELETE FROM api_key").await.unwrap();
    app.key_change_known(epoch).await;
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 401, "deleted");
}

/// On SQLite the change counter is a read transaction of its own, so requests share
/// one read per `SQLITE_FRESH_FOR`; a change committed meanwhile counts after that.
#[tokio::test]
async fn sqlite_reads_the_key_counter_at_most_once_per_window_and_sees_changes_after_it() {
    use tracegraph::db::key_epoch::SQLITE_FRESH_FOR;
    if crate::helpers::on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let key = app.create_key("reader", &["read"], &[]).await;
    let started = std::time::Instant::now();
    let checks_before = app.metric("tracegraph_key_change_checks_total").await;
    let requests = 200;
    for _ in 0..requests {
        assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    }
    let checks = app.metric("tracegraph_key_change_checks_total").await - checks_before;
    // Each read opens a window no other read starts in; the two metric calls read too.
    let windows = (started.elapsed().as_nanos() / SQLITE_FRESH_FOR.as_nanos()) as u64 + 2;
    assert!(checks >= 1, "the counter is read at all");
    assert!(
        checks <= windows,
        "{checks} reads for {requests} requests in {windows} windows"
    );

    let epoch = app.metric("tracegraph_key_epoch").await;
    let out = app.cli(&["keys", "revoke", "reader"]);
    assert!(out.status.success());
    tokio::time::sleep(SQLITE_FRESH_FOR * 2).await;
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "UNAUTHENTICATED"),
        "revoked once the window passed"
    );
    assert!(app.metric("tracegraph_key_epoch").await > epoch);
}

/// A key, once checked, is not looked up again until a key changes: on SQLite the
/// server reads the change counter in process, on PostgreSQL it hears it announced.
#[tokio::test]
async fn a_checked_key_is_looked_up_again_only_after_a_key_change() {
    let app = spawn_app().await;
    let key = app.create_key("reader", &["read"], &[]).await;
    let statements_for = |key: String| {
        let app = &app;
        async move {
            let before = app.statements.get();
            let (status, body) = app.gql_as(&key, "{ __typename }", json!({})).await;
            assert_eq!(status, 200, "{body}");
            app.statements.get() - before
        }
    };
    assert_eq!(statements_for(key.clone()).await, 1, "first use: looked up");
    assert_eq!(statements_for(key.clone()).await, 0, "second use: remembered");
    app.create_key("another", &["read"], &[]).await;
    assert_eq!(statements_for(key.clone()).await, 1, "after a key change: looked up");
    assert_eq!(statements_for(key).await, 0, "then remembered again");
}

#[tokio::test]
async fn websocket_init_needs_a_valid_key_and_respects_the_per_key_cap() {
    let app = crate::helpers::spawn_app_with(|c| c.ws_max_per_key = 2).await;
    let key = app.create_key("reader", &["read"], &[]).await;
    let mut no_key = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    no_key.send(json!({"type": "connection_init"})).await;
    assert_eq!(no_key.close_code(WAIT).await, 4403);
    let mut bad_key = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    bad_key
        .send(json!({"type": "connection_init", "payload": {"token": "tg_wrong"}}))
        .await;
    assert_eq!(bad_key.close_code(WAIT).await, 4403);
    let mut sockets = vec![];
    for _ in 0..2 {
        let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
        ws.send(json!({"type": "connection_init", "payload": {"apiKey": key}}))
            .await;
        assert_eq!(ws.next_json(WAIT).await["type"], "connection_ack");
        sockets.push(ws);
    }
    let mut third = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    third
        .send(json!({"type": "connection_init", "payload": {"apiKey": key}}))
        .await;
    assert_eq!(third.close_code(WAIT).await, 4403, "over the per-key cap");
    // A closed socket frees its slot.
    drop(sockets.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
    again
        .send(json!({"type": "connection_init", "payload": {"apiKey": key}}))
        .await;
    assert_eq!(again.next_json(WAIT).await["type"], "connection_ack");
}

#[tokio::test]
async fn a_key_needs_a_name_a_listing_can_show() {
    let app = spawn_app().await;
    let too_long = "k".repeat(65);
    for name in ["", "   ", too_long.as_str(), "two\nlines", "tab\there"] {
        let out = app.cli(&["keys", "create", name, "--scope", "read"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name:?} was taken: {said}");
        assert!(said.contains("<NAME>"), "{name:?}: {said}");
    }
    let out = app.cli(&["keys", "create", &"k".repeat(64), "--scope", "read"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = String::from_utf8_lossy(&app.cli(&["keys", "list"]).stdout).into_owned();
    assert_eq!(listed.lines().count(), 2, "a header and the one key: {listed}");
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes_and_listed_without_secrets() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = spawn_app().await;
    let key = app.create_key("secret", &["read", "ingest"], &[]).await;
    let conn = sea_orm::Database::connect(&app.database_url).await.unwrap();
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT name, prefix, key_hash, scopes FROM api_key",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for column in ["name", "prefix", "key_hash", "scopes"] {
        let value: String = rows[0].try_get("", column).unwrap();
        assert!(!value.contains(&key[12..]), "{column} holds the key");
    }
    let listing = app.cli(&["keys", "list"]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(text.contains("secret") && text.contains("active"), "{text}");
    assert!(!text.contains(&key), "the listing shows the key");
    let dup = app.cli(&["keys", "create", "secret", "--scope", "read"]);
    assert!(!dup.status.success(), "names are unique");
    let unknown = app.cli(&["keys", "revoke", "nobody"]);
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn without_keys_only_loopback_is_served() {
    let (database_url, _db) = test_database().await;
    let exposed = |insecure| Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        database_url: database_url.clone(),
        insecure,
        ..Config::default()
    };
    let refused = App::build(exposed(false)).await;
    assert!(
        matches!(refused, Err(StartError::Insecure { .. })),
        "refused without keys"
    );
    assert!(App::build(exposed(true)).await.is_ok(), "--insecure overrides");
    let loopback = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.clone(),
        ..Config::default()
    };
    let app = App::build(loopback).await.expect("loopback is fine");
    drop(app);
    let (row, _) = tracegraph::auth::generate("k", &[tracegraph::auth::Scope::Read], None);
    let db = tracegraph::db::connect(&database_url, 1).await.unwrap();
    tracegraph::db::store::keys::insert(&db.write, row).await.unwrap();
    assert!(App::build(exposed(false)).await.is_ok(), "with a key, any address");
}

/// Subscriptions with the same text under keys of different products are not shared:
/// each key hears only its product.
#[tokio::test]
async fn identical_subscriptions_under_different_keys_hear_their_own_products() {
    let app = spawn_app().await;
    let (p1, p2) = (id(), id());
    let admin = app.create_key("admin", &["admin"], &[]).await;
    let one = app.create_key("one", &["read"], &[p1.as_str()]).await;
    let two = app.create_key("two", &["read"], &[p2.as_str()]).await;
    let query = "subscription { spanAdded { name } }";
    let mut sockets = Vec::new();
    for key in [&one, &two] {
        let mut ws = app.ws_at("/graphql/ws", "graphql-transport-ws").await;
        ws.send(json!({"type": "connection_init", "payload": {"authorization": key}}))
            .await;
        assert_eq!(ws.next_json(WAIT).await["type"], "connection_ack");
        ws.subscribe("1", query, json!({})).await;
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let create = |p: &String| json!({"i": {"name": "t", "productId": p}});
    let (_, t1) = app.gql_as(&admin, CREATE, create(&p1)).await;
    let (_, t2) = app.gql_as(&admin, CREATE, create(&p2)).await;
    let add = "mutation($t: UUID!, $n: String!) { addSpan(input: {traceId: $t, name: $n, spanType: TOOL}) { id } }";
    app.gql_as(
        &admin,
        add,
        json!({"t": t2["data"]["createTrace"]["id"], "n": "for two"}),
    )
    .await;
    app.gql_as(
        &admin,
        add,
        json!({"t": t1["data"]["createTrace"]["id"], "n": "for one"}),
    )
    .await;
    for (ws, want) in sockets.iter_mut().zip(["for one", "for two"]) {
        let msg = ws.next_json(WAIT).await;
        assert_eq!(msg["payload"]["data"]["spanAdded"]["name"], want, "{msg}");
    }
}

/// On PostgreSQL, key changes are heard on the live relay's connection. While it is
/// lost, nothing learned about keys is reused: a change made meanwhile counts at once,
/// and once the server listens again it knows the counter anew.
#[tokio::test]
async fn key_changes_are_not_missed_while_postgres_is_not_heard() {
    use sea_orm::ConnectionTrait;
    if !crate::helpers::on_postgres() {
        eprintln!("skipped: SQLite reads the key counter in process, with nothing to lose");
        return;
    }
    let app = spawn_app().await;
    let key = app.create_key("reader", &["read"], &[]).await;
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    let before = app.statements.get();
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    let remembered = app.statements.get() - before;
    let sql = sea_orm::Database::connect(&app.database_url).await.unwrap();
    sql.execute_unprepared(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}'",
        tracegraph::live::postgres::LISTENER_NAME
    ))
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while app.metric("tracegraph_key_epoch").await != 0 {
        assert!(std::time::Instant::now() < deadline, "the lost listener went unnoticed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = app.statements.get();
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    assert_eq!(
        app.statements.get() - before,
        remembered + 1,
        "not heard: the key is looked up again"
    );
    sql.execute_unprepared("UPDATE api_key SET revoked_at = now()")
        .await
        .unwrap();
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!(
        (status, code(&body).as_str()),
        (401, "UNAUTHENTICATED"),
        "revoked unheard"
    );
    app.key_change_known(0).await;
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "and after");
}

/// Anyone connected to PostgreSQL may NOTIFY the key channel. A forged announcement of
/// a far higher counter must not freeze what the server remembers: later revocations
/// still count.
#[tokio::test]
async fn a_forged_key_announcement_is_not_believed() {
    use sea_orm::ConnectionTrait;
    if !crate::helpers::on_postgres() {
        eprintln!("skipped: SQLite has no announcements");
        return;
    }
    const FORGED: u64 = 999_999_999;
    let app = spawn_app().await;
    let key = app.create_key("reader", &["read"], &[]).await;
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200);
    let epoch = app.metric("tracegraph_key_epoch").await;
    let sql = sea_orm::Database::connect(&app.database_url).await.unwrap();
    sql.execute_unprepared(&format!("NOTIFY tracegraph_key_epoch, '{FORGED}'"))
        .await
        .unwrap();
    assert_eq!(app.gql_as(&key, LIST, json!({})).await.0, 200, "still active");
    sql.execute_unprepared("UPDATE api_key SET revoked_at = now()")
        .await
        .unwrap();
    let known = app.key_change_known(epoch).await;
    assert!(known < FORGED, "the forged value was believed: {known}");
    let (status, body) = app.gql_as(&key, LIST, json!({})).await;
    assert_eq!((status, code(&body).as_str()), (401, "UNAUTHENTICATED"), "revoked");
}
