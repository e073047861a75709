//! Every list filter and sort, and every loader statement, is served by an index on
//! both engines: the plan of each statement is read back and checked.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, QueryTrait, Statement, TransactionTrait};
use tracegraph::db::entities::span;
use tracegraph::db::store;
use tracegraph::db::store::spans::Texts;
use tracegraph::filters::{AgentUsageFilter, SpanFilter, SpanSort, TraceFilter, TraceSort};
use tracegraph::model::{SpanType, TraceStatus};
use uuid::Uuid;

use crate::helpers::spawn_app;

fn expected_index(what: &str) -> &'static [&'static str] {
    match what {
        "recent traces" => &["ix_trace_started"],
        "traces of an agent" => &["ix_trace_agent_started"],
        "failed traces of an agent" => &["ix_trace_failed"],
        "traces of a product" => &["ix_trace_product_started"],
        "traces by name" => &["ix_trace_name_started"],
        "traces by cost" => &["ix_trace_cost"],
        "flagged traces" => &["ix_trace_flagged"],
        "tool spans of an agent in a window" => &["ix_span_agent_type_started", "ix_span_agent_started"],
        "review queue" => &["ix_span_flagged_started"],
        "spans of a trace" => &["ix_span_trace_started", "ix_span_root"],
        "span trees (loader)" => &["ix_span_trace_started"],
        "root spans (loader)" => &["ix_span_root"],
        "spans by id" => &["pkey", "autoindex_span"],
        "token totals of an agent" => &["ix_agent_usage_agent_totals"],
        other => panic!("no expectation for {other}"),
    }
}

async fn plan(conn: &impl ConnectionTrait, stmt: Statement) -> String {
    let backend = conn.get_database_backend();
    let prefix = if backend == DbBackend::Sqlite {
        "EXPLAIN QUERY PLAN "
    } else {
        "EXPLAIN "
    };
    let explain = Statement::from_sql_and_values(
        backend,
        format!("{prefix}{}", stmt.sql),
        stmt.values.map(|v| v.0).unwrap_or_default(),
    );
    let rows = conn.query_all_raw(explain).await.expect("explain runs");
    rows.iter()
        .map(|r| {
            let column = if backend == DbBackend::Sqlite {
                "detail"
            } else {
                "QUERY PLAN"
            };
            r.try_get::<String>("", column).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn uses_index(plan: &str, backend: DbBackend) -> bool {
    if backend == DbBackend::Sqlite {
        // "SCAN span" alone is a full table scan; a SEARCH or SCAN USING INDEX is not.
        !plan.lines().any(|l| l.starts_with("SCAN ") && !l.contains("USING"))
    } else {
        !plan.contains("Seq Scan")
    }
}

#[tokio::test]
async fn list_and_loader_statements_use_indexes() {
    let app = spawn_app().await;
    // The server's own connection setup: on SQLite, plans that ignore bound values.
    let conn = tracegraph::db::connect(&app.database_url, 2)
        .await
        .unwrap()
        .read
        .pool()
        .clone();
    let backend = conn.get_database_backend();
    let (agent, trace_ids) = (Uuid::new_v4(), [Uuid::new_v4(), Uuid::new_v4()]);
    let t0 = chrono::Utc::now();
    let mut statements: Vec<(&str, Statement)> = vec![
        (
            "recent traces",
            store::traces::select(&TraceFilter::default(), TraceSort::StartedAtDesc).build(backend),
        ),
        (
            "traces of an agent",
            store::traces::select(
                &TraceFilter {
                    agent: Some(agent),
                    ..Default::default()
                },
                TraceSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "failed traces of an agent",
            store::traces::select(
                &TraceFilter {
                    agent: Some(agent),
                    status: Some(TraceStatus::Error),
                    ..Default::default()
                },
                TraceSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "traces of a product",
            store::traces::select(
                &TraceFilter {
                    product_id: Some(agent),
                    ..Default::default()
                },
                TraceSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "traces by name",
            store::traces::select(
                &TraceFilter {
                    name: Some("x".into()),
                    ..Default::default()
                },
                TraceSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "traces by cost",
            store::traces::select(&TraceFilter::default(), TraceSort::CostDesc).build(backend),
        ),
        (
            "flagged traces",
            store::traces::select(
                &TraceFilter {
                    has_flagged_spans: Some(true),
                    ..Default::default()
                },
                TraceSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "tool spans of an agent in a window",
            store::spans::select(
                &SpanFilter {
                    agent: Some(agent),
                    span_type: Some(SpanType::Tool),
                    started_after: Some(t0),
                    started_before: Some(t0),
                    ..Default::default()
                },
                SpanSort::StartedAtAsc,
            )
            .build(backend),
        ),
        (
            "review queue",
            store::spans::select(
                &SpanFilter {
                    flagged: Some(true),
                    ..Default::default()
                },
                SpanSort::StartedAtDesc,
            )
            .build(backend),
        ),
        (
            "spans of a trace",
            store::spans::select(
                &SpanFilter {
                    trace_id: Some(agent),
                    ..Default::default()
                },
                SpanSort::StartedAtAsc,
            )
            .build(backend),
        ),
        (
            "span trees (loader)",
            store::spans::select_in_start_order(Condition::all().add(span::Column::TraceId.is_in(trace_ids)))
                .build(backend),
        ),
        (
            "root spans (loader)",
            store::spans::select_in_start_order(
                Condition::all()
                    .add(span::Column::TraceId.is_in(trace_ids))
                    .add(span::Column::ParentId.is_null()),
            )
            .build(backend),
        ),
    ];
    statements.push((
        "token totals of an agent",
        store::agent_usage::totals_select(&AgentUsageFilter {
            agent: Some(agent),
            ..Default::default()
        })
        .build(backend),
    ));
    // The loader for `span.parent` and by-id lookups hits the primary key.
    statements.push((
        "spans by id",
        store::spans::select_in_start_order(Condition::all().add(Expr::col(span::Column::Id).is_in(trace_ids)))
            .build(backend),
    ));

    let txn = conn.begin().await.unwrap();
    if backend == DbBackend::Postgres {
        // Empty tables make a sequential scan cheapest; forbid it to see which index serves.
        txn.execute_unprepared("SET LOCAL enable_seqscan = off").await.unwrap();
        // And a bitmap scan, which always visits the table: an index-only plan shows as one.
        txn.execute_unprepared("SET LOCAL enable_bitmapscan = off")
            .await
            .unwrap();
    }
    for (what, stmt) in statements {
        let plan = plan(&txn, stmt).await;
        if what == "token totals of an agent" {
            // Summing from the index alone, without a fetch per record.
            let index_only = ["COVERING INDEX", "Index Only Scan"];
            assert!(
                index_only.iter().any(|s| plan.contains(s)),
                "{what} reads the table:\n{plan}"
            );
        }
        let wanted = expected_index(what);
        assert!(
            uses_index(&plan, backend) && wanted.iter().any(|ix| plan.contains(ix)),
            "{what} is not served by {wanted:?}:\n{plan}"
        );
    }
    if backend == DbBackend::Postgres {
        // Traces with their spans, one UNION: each side on its own index.
        let union = plan(
            &txn,
            store::detail::union_statement(&trace_ids, Texts::Read, tracegraph::config::DEFAULT_MAX_TREE_SPANS),
        )
        .await;
        assert!(
            uses_index(&union, backend) && union.contains("trace_pkey") && union.contains("ix_span_trace_started"),
            "a trace with its spans:\n{union}"
        );
    }
    // The check can fail: a filter on an unindexed column is served by no index of its own.
    let unindexed = store::spans::select_in_start_order(Condition::all().add(span::Column::InputText.eq("x")));
    let scan = plan(&txn, unindexed.build(backend)).await;
    assert!(
        !scan.contains("SEARCH") && !scan.contains("Index Cond"),
        "expected a scan:\n{scan}"
    );
    txn.rollback().await.unwrap();
}
