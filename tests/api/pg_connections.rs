//! PostgreSQL entity reads lease connections that are not pinged as they come back:
//! a connection is lent again only after its statement ran to the end.

use std::time::Duration;

use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnAcquireErr, DbErr};
use tracegraph::db::pg_connections::ReadConnections;

use crate::helpers::{TestDatabase, on_postgres, test_database};

/// Leases on a database of the test's own, on PostgreSQL only.
async fn leases(acquire_timeout: Duration) -> Option<(ReadConnections, String, TestDatabase)> {
    if !on_postgres() {
        return None;
    }
    let (url, database) = test_database().await;
    let reads = ReadConnections::new(&url, 1, acquire_timeout).unwrap();
    Some((reads, url, database))
}

async fn answer(reads: &ReadConnections, sql: &'static str) -> i32 {
    let mut lease = reads.lease().await.unwrap();
    let value: i32 = sqlx::query_scalar(sql).fetch_one(lease.connection()).await.unwrap();
    lease.finish();
    value
}

#[tokio::test]
async fn a_connection_is_reused_only_after_its_statement_finished() {
    let Some((reads, _url, _database)) = leases(Duration::from_secs(5)).await else {
        return;
    };
    for n in 0..20 {
        assert_eq!(answer(&reads, "SELECT 7").await, 7, "read {n}");
    }
    assert_eq!(reads.opened(), 1, "one connection served every finished read");

    // A read given up mid-statement (its request cancelled): the connection still has
    // the statement's answer coming, so it is closed, not lent again.
    let mut lease = reads.lease().await.unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_sleep(2)").fetch_one(lease.connection()),
    )
    .await;
    assert!(cancelled.is_err(), "the statement was cut off");
    drop(lease);
    assert_eq!(answer(&reads, "SELECT 8").await, 8, "the next read gets its own answer");
    assert_eq!(reads.opened(), 2);

    // A statement that failed is not trusted either.
    let mut lease = reads.lease().await.unwrap();
    let failed = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
        .fetch_one(lease.connection())
        .await;
    assert!(failed.is_err());
    drop(lease);
    assert_eq!(answer(&reads, "SELECT 9").await, 9);
    assert_eq!(reads.opened(), 3);
}

#[tokio::test]
async fn a_connection_the_database_dropped_while_idle_is_replaced_before_use() {
    let Some((reads, url, _database)) = leases(Duration::from_secs(5)).await else {
        return;
    };
    let pid = answer(&reads, "SELECT pg_backend_pid()").await;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);
    // Idle past `PING_AFTER_IDLE` (1 s): the next lease pings it, finds it dead and
    // connects again, so the read itself does not fail.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_ne!(answer(&reads, "SELECT pg_backend_pid()").await, pid);
    assert_eq!(reads.opened(), 2);
}

#[tokio::test]
async fn leases_wait_at_most_the_acquire_timeout_and_an_unreachable_database_is_an_acquire_error() {
    let Some((reads, _url, _database)) = leases(Duration::from_millis(200)).await else {
        return;
    };
    let held = reads.lease().await.unwrap();
    let started = std::time::Instant::now();
    let waited = reads.lease().await.err();
    assert!(
        matches!(waited, Some(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))),
        "{waited:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(held);

    let nowhere = ReadConnections::new("postgres://postgres@127.0.0.1:1/none", 1, Duration::from_secs(2)).unwrap();
    let refused = nowhere.lease().await.err();
    assert!(matches!(refused, Some(DbErr::ConnectionAcquire(_))), "{refused:?}");
}

#[tokio::test]
async fn connections_idle_past_their_time_are_closed_when_the_next_one_is_lent() {
    if !on_postgres() {
        return;
    }
    let (url, _database) = test_database().await;
    let reads = ReadConnections::new(&url, 3, Duration::from_secs(5))
        .unwrap()
        .closing_after_idle(Duration::from_millis(300));
    // A burst: three reads at once, three connections.
    let mut burst = Vec::new();
    for _ in 0..3 {
        burst.push(reads.lease().await.unwrap());
    }
    let mut pids = Vec::new();
    for lease in &mut burst {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(lease.connection())
            .await
            .unwrap();
        pids.push(pid);
    }
    burst.into_iter().for_each(|lease| lease.finish());
    assert_eq!(reads.idle(), 3);

    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = answer(&reads, "SELECT pg_backend_pid()").await;
    assert!(!pids.contains(&pid), "an idle connection past its time is not lent");
    assert_eq!(reads.idle(), 1, "the burst's connections are closed");
    assert_eq!(reads.opened(), 4);

    // And the database sees them go.
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut left = i64::MAX;
    for _ in 0..50 {
        left = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
            .bind(&pids)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 0, "the burst's database processes ended");
}
