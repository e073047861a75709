//! On a plain connection (`sslmode=disable`) PostgreSQL entity reads share a few
//! connections and pipeline on them; a connection the database ended is opened again.

use std::time::Duration;

use sea_orm::sea_query::{Value, Values};
use sea_orm::{ConnectionTrait, DbErr};
use serde_json::json;
use tracegraph::db::pg_pipeline::Pipelines;

use crate::helpers::{TestDatabase, on_postgres, start_on, test_database};

fn plain(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode=disable")
}

/// A database of the test's own and its plain URL, on PostgreSQL only.
async fn plain_database() -> Option<(String, TestDatabase)> {
    if !on_postgres() {
        return None;
    }
    let (url, database) = test_database().await;
    Some((plain(url.split("?sslmode=disable").next().unwrap_or(&url)), database))
}

async fn plus_one(pipelines: &Pipelines, n: i32) -> Result<i32, DbErr> {
    let mut answer = None;
    pipelines
        .each_row("SELECT $1::int4 + 1", Values(vec![Value::Int(Some(n))]), |row| {
            answer = row.try_get(0).ok();
            Ok(true)
        })
        .await?;
    answer.ok_or_else(|| DbErr::Custom("no row".into()))
}

#[tokio::test]
async fn only_a_plain_url_is_pipelined() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let wait = Duration::from_secs(5);
    assert!(Pipelines::for_plain(&url, 2, wait).is_some());
    let with_tls = url.replace("sslmode=disable", "sslmode=require");
    assert!(
        Pipelines::for_plain(&with_tls, 2, wait).is_none(),
        "TLS stays with sqlx"
    );
    let default = url.replace("?sslmode=disable", "").replace("&sslmode=disable", "");
    assert!(Pipelines::for_plain(&default, 2, wait).is_none(), "prefer may get TLS");
    // An option only sqlx reads: the URL stays with sqlx, whole.
    let sqlx_only = format!("{url}&statement-cache-capacity=10");
    assert!(Pipelines::for_plain(&sqlx_only, 2, wait).is_none());
}

#[tokio::test]
async fn concurrent_reads_share_the_connections_and_a_read_stopped_early_leaves_them_usable() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let pipelines = Pipelines::for_plain(&url, 2, Duration::from_secs(5)).unwrap();
    let answers = futures::future::join_all((0..64).map(|n| plus_one(&pipelines, n))).await;
    for (n, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap(), n as i32 + 1);
    }
    assert!(
        pipelines.opened() <= 2,
        "{} connections for 64 reads",
        pipelines.opened()
    );

    // Stopped after 3 of 10,000 rows: the rest is drained, and the connection serves on.
    let mut read = 0;
    pipelines
        .each_row("SELECT generate_series(1, 10000)", Values(Vec::new()), |_| {
            read += 1;
            Ok(read < 3)
        })
        .await
        .unwrap();
    assert_eq!(read, 3);
    for n in 0..8 {
        assert_eq!(plus_one(&pipelines, n).await.unwrap(), n + 1);
    }
    assert!(pipelines.opened() <= 2, "{} connections", pipelines.opened());
    assert_eq!(pipelines.idle(), pipelines.opened() as usize, "all open, none busy");
}

#[tokio::test]
async fn connections_the_database_ended_are_opened_again_and_their_failures_are_retryable() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let pipelines = Pipelines::for_plain(&url, 1, Duration::from_secs(5)).unwrap();
    assert_eq!(plus_one(&pipelines, 1).await.unwrap(), 2);
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let admin = sea_orm::Database::connect(&url).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ))
        .await
        .unwrap();
    // The next read finds the connection closed and opens another, or fails once as a
    // lost connection (retryable), never as the statement's fault.
    match plus_one(&pipelines, 2).await {
        Ok(3) => {}
        Ok(other) => panic!("wrong answer {other}"),
        Err(DbErr::ConnectionAcquire(_)) => {
            assert_eq!(plus_one(&pipelines, 2).await.unwrap(), 3, "served after reconnecting");
        }
        Err(other) => panic!("a lost connection must be retryable, got {other:?}"),
    }
    assert_eq!(pipelines.opened(), 2, "opened again once");
}

#[tokio::test]
async fn a_server_on_a_plain_url_answers_from_its_shared_connections() {
    let Some((url, _database)) = plain_database().await else {
        return;
    };
    let app = start_on(url, |c| c.db_max_connections = 16).await;
    let trace = app.create_trace(json!({"name": "plain"})).await["id"].clone();
    app.add_spans(json!([{"traceId": trace, "name": "step", "spanType": "TOOL"}]))
        .await;
    let query = "query($t: UUID!) { trace(id: $t) { name spans { name } } traces { totalCount } }";
    let answers = futures::future::join_all((0..32).map(|_| app.ok(query, json!({"t": trace})))).await;
    for data in answers {
        assert_eq!(data["trace"]["spans"][0]["name"], "step", "{data}");
        assert_eq!(data["traces"]["totalCount"], 1, "{data}");
    }
    let opened = app.metric("tracegraph_read_connections_opened_total").await;
    assert!((1..=2).contains(&opened), "{opened} read connections for 32 requests");
}
