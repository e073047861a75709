//! Aggregates for dashboards, computed in SQL on both engines: usage sums grouped by
//! agent, product, model and time bucket; counts, error rates and latency percentiles
//! of traces and spans.
//!
//! Percentiles are nearest-rank: p of n ordered values is the value at rank ⌈p·n/100⌉.
//! They are computed with window functions, which SQLite and PostgreSQL share.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Query, SelectStatement};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, StatementBuilder};
use uuid::Uuid;

use super::{spans, traces};
use crate::db::entities::{span, trace};
use crate::db::narrow;
use crate::error::{AppError, AppResult};
use crate::filters::{SpanFilter, TraceFilter};

/// The most groups one answer holds. Past it the answer is refused, not cut: grouped by
/// name on a store whose span names carry ids, it would be a row per span. Each statement
/// asks for one row more than this, so a refused answer costs no more memory than a full
/// one.
pub const MAX_GROUPS: usize = 10_000;

/// `rows`, if they are no more than `MAX_GROUPS`; else `LIMIT_EXCEEDED` naming `field`,
/// the argument that makes the groups.
fn within_groups<T>(rows: Vec<T>, field: &str) -> AppResult<Vec<T>> {
    AppError::within(field, "groups per answer", rows.len(), MAX_GROUPS)?;
    Ok(rows)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

/// A time bucket of a column holding a UTC timestamp, as RFC 3339 text.
fn bucket_sql(backend: DbBackend, column: &str, interval: Interval) -> String {
    match (backend, interval) {
        (DbBackend::Postgres, Interval::Hour) => {
            format!(r#"to_char(date_trunc('hour', {column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"')"#)
        }
        (DbBackend::Postgres, Interval::Day) => {
            format!(r#"to_char(date_trunc('day', {column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T00:00:00Z"')"#)
        }
        (_, Interval::Hour) => format!("strftime('%Y-%m-%dT%H:00:00Z', {column})"),
        (_, Interval::Day) => format!("strftime('%Y-%m-%dT00:00:00Z', {column})"),
    }
}

fn parse_bucket(text: Option<String>) -> AppResult<Option<DateTime<Utc>>> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| AppError::Internal(std::sync::Arc::new(sea_orm::DbErr::Custom(e.to_string()))))
    })
    .transpose()
}

/// What usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    Agent,
    Product,
    Model,
    Bucket(Interval),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub model: Option<String>,
    pub bucket: Option<DateTime<Utc>>,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub unpriced_calls: i64,
}

/// LLM usage of the spans matching `filter`, one row per group, groups in order.
pub async fn usage_summary(
    conn: &impl ConnectionTrait,
    filter: &SpanFilter,
    groups: &[UsageGroup],
) -> AppResult<Vec<UsageRow>> {
    let backend = conn.get_database_backend();
    let mut select = Query::select();
    select.from(span::Entity);
    let mut keys: Vec<String> = Vec::new();
    for group in groups {
        let (expr, alias) = match group {
            UsageGroup::Agent => (r#""span"."agent_id""#.to_owned(), "agent_id"),
            UsageGroup::Product => (r#""span"."product_id""#.to_owned(), "product_id"),
            UsageGroup::Model => (r#""span"."model""#.to_owned(), "model"),
            UsageGroup::Bucket(i) => (bucket_sql(backend, r#""span"."started_at""#, *i), "bucket"),
        };
        if keys.iter().any(|k| k == alias) {
            continue;
        }
        select.expr_as(Expr::cust(expr.clone()), Alias::new(alias));
        select.add_group_by([Expr::cust(expr)]);
        keys.push(alias.to_owned());
    }
    for (sql, alias) in [
        ("COUNT(*)", "llm_calls"),
        (
            r#"CAST(COALESCE(SUM("span"."input_tokens"), 0) AS BIGINT)"#,
            "input_tokens",
        ),
        (
            r#"CAST(COALESCE(SUM("span"."output_tokens"), 0) AS BIGINT)"#,
            "output_tokens",
        ),
        (
            r#"CAST(COALESCE(SUM("span"."total_tokens"), 0) AS BIGINT)"#,
            "total_tokens",
        ),
        (r#"COALESCE(SUM("span"."cost_usd"), 0.0)"#, "cost_usd"),
        (
            r#"CAST(COALESCE(SUM(CASE WHEN "span"."cost_source" = 'unknown_model' THEN 1 ELSE 0 END), 0) AS BIGINT)"#,
            "unpriced_calls",
        ),
    ] {
        select.expr_as(Expr::cust(sql), Alias::new(alias));
    }
    select.cond_where(spans::condition(filter).add(Expr::cust(r#""span"."span_type" = 'llm'"#)));
    for key in &keys {
        select.order_by_expr(Expr::cust(format!("\"{key}\"")), sea_orm::Order::Asc);
    }
    select.limit(MAX_GROUPS as u64 + 1);
    let rows = within_groups(conn.query_all(&select).await?, "groupBy")?;
    rows.iter().map(|r| usage_row(r, &keys)).collect()
}

fn usage_row(r: &QueryResult, keys: &[String]) -> AppResult<UsageRow> {
    let has = |k: &str| keys.iter().any(|x| x == k);
    Ok(UsageRow {
        agent_id: if has("agent_id") {
            r.try_get("", "agent_id")?
        } else {
            None
        },
        product_id: if has("product_id") {
            r.try_get("", "product_id")?
        } else {
            None
        },
        model: if has("model") { r.try_get("", "model")? } else { None },
        bucket: if has("bucket") {
            parse_bucket(r.try_get("", "bucket")?)?
        } else {
            None
        },
        llm_calls: r.try_get("", "llm_calls")?,
        input_tokens: r.try_get("", "input_tokens")?,
        output_tokens: r.try_get("", "output_tokens")?,
        total_tokens: r.try_get("", "total_tokens")?,
        cost_usd: r.try_get("", "cost_usd")?,
        unpriced_calls: r.try_get("", "unpriced_calls")?,
    })
}

/// Counts, errors, cost and latency percentiles of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// The group's key: a span type, a name, or an RFC 3339 bucket; empty when ungrouped.
    pub key: String,
    pub count: i64,
    pub errors: i64,
    pub cost_usd: f64,
    /// Latency percentiles in microseconds, over the finished ones; null when none finished.
    pub p50_us: Option<i64>,
    pub p95_us: Option<i64>,
    pub p99_us: Option<i64>,
}

impl Stats {
    pub fn bucket(&self) -> AppResult<Option<DateTime<Utc>>> {
        parse_bucket(Some(self.key.clone()))
    }
}

/// Statistics of the traces matching `filter`, optionally per time bucket of their start.
pub async fn trace_stats(
    conn: &impl ConnectionTrait,
    filter: &TraceFilter,
    by: Option<Interval>,
) -> AppResult<Vec<Stats>> {
    stats(conn, trace_rows(conn.get_database_backend(), filter, by), "interval").await
}

/// The rows [`trace_stats`] aggregates, apart so that their statement can be checked.
pub fn trace_rows(backend: DbBackend, filter: &TraceFilter, by: Option<Interval>) -> SelectStatement {
    let key = match by {
        Some(i) => bucket_sql(backend, r#""trace"."started_at""#, i),
        None => "CAST('' AS TEXT)".to_owned(),
    };
    let mut inner = Query::select();
    inner
        .from(trace::Entity)
        .expr_as(Expr::cust(key), Alias::new("g"))
        .expr_as(Expr::cust(r#""trace"."has_error""#), Alias::new("e"))
        .expr_as(Expr::cust(r#""trace"."cost_usd""#), Alias::new("c"))
        .expr_as(Expr::cust(r#""trace"."duration_us""#), Alias::new("x"));
    narrow(&mut inner, traces::condition(filter));
    inner
}

/// What span statistics can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanGroup {
    SpanType,
    Name,
}

/// Statistics of the spans matching `filter`, grouped by type or name (or both, joined
/// by a tab in the key).
pub async fn span_stats(
    conn: &impl ConnectionTrait,
    filter: &SpanFilter,
    groups: &[SpanGroup],
) -> AppResult<Vec<Stats>> {
    stats(conn, span_rows(conn.get_database_backend(), filter, groups), "groupBy").await
}

/// The rows [`span_stats`] aggregates, apart so that their statement can be checked.
pub fn span_rows(backend: DbBackend, filter: &SpanFilter, groups: &[SpanGroup]) -> SelectStatement {
    let parts: Vec<&str> = [
        (SpanGroup::SpanType, r#""span"."span_type""#),
        (SpanGroup::Name, r#""span"."name""#),
    ]
    .into_iter()
    .filter(|(g, _)| groups.contains(g))
    .map(|(_, col)| col)
    .collect();
    let key = match parts.as_slice() {
        [] => "CAST('' AS TEXT)".to_owned(),
        [one] => (*one).to_owned(),
        many => many.join(" || CHR(9) || "),
    };
    let key = if backend == DbBackend::Sqlite {
        key.replace("CHR(9)", "char(9)")
    } else {
        key
    };
    let mut inner = Query::select();
    inner
        .from(span::Entity)
        .expr_as(Expr::cust(key), Alias::new("g"))
        .expr_as(Expr::cust(r#""span"."error" IS NOT NULL"#), Alias::new("e"))
        .expr_as(Expr::cust(r#"COALESCE("span"."cost_usd", 0.0)"#), Alias::new("c"))
        .expr_as(Expr::cust(r#""span"."duration_us""#), Alias::new("x"));
    narrow(&mut inner, spans::condition(filter));
    inner
}

/// Runs the shared statistics query over `inner`, which yields g (group), e (error),
/// c (cost) and x (duration, null while running); `grouped_by` names the argument that
/// makes the groups.
async fn stats(conn: &impl ConnectionTrait, inner: SelectStatement, grouped_by: &str) -> AppResult<Vec<Stats>> {
    let backend = conn.get_database_backend();
    let built = StatementBuilder::build(&inner, &backend);
    let sql = format!(
        "WITH t AS ({inner}), \
         d AS (SELECT g, x, ROW_NUMBER() OVER (PARTITION BY g ORDER BY x) AS rn, COUNT(*) OVER (PARTITION BY g) AS n \
               FROM t WHERE x IS NOT NULL), \
         s AS (SELECT g, COUNT(*) AS calls, SUM(CASE WHEN e THEN 1 ELSE 0 END) AS errors, SUM(c) AS cost FROM t GROUP BY g), \
         p AS (SELECT g, \
                 MIN(CASE WHEN rn * 100 >= 50 * n THEN x END) AS p50, \
                 MIN(CASE WHEN rn * 100 >= 95 * n THEN x END) AS p95, \
                 MIN(CASE WHEN rn * 100 >= 99 * n THEN x END) AS p99 \
               FROM d GROUP BY g) \
         SELECT s.g AS g, CAST(s.calls AS BIGINT) AS calls, CAST(s.errors AS BIGINT) AS errors, \
                CAST(COALESCE(s.cost, 0) AS DOUBLE PRECISION) AS cost, \
                CAST(p.p50 AS BIGINT) AS p50, CAST(p.p95 AS BIGINT) AS p95, CAST(p.p99 AS BIGINT) AS p99 \
         FROM s LEFT JOIN p ON p.g = s.g ORDER BY s.g LIMIT {most}",
        inner = built.sql,
        most = MAX_GROUPS + 1
    );
    let sql = if backend == DbBackend::Sqlite {
        sql.replace("DOUBLE PRECISION", "REAL")
    } else {
        sql
    };
    let stmt = Statement::from_sql_and_values(backend, sql, built.values.map(|v| v.0).unwrap_or_default());
    let rows = within_groups(conn.query_all_raw(stmt).await?, grouped_by)?;
    rows.iter()
        .map(|r| {
            Ok(Stats {
                key: r.try_get::<Option<String>>("", "g")?.unwrap_or_default(),
                count: r.try_get("", "calls")?,
                errors: r.try_get("", "errors")?,
                cost_usd: r.try_get("", "cost")?,
                p50_us: r.try_get("", "p50")?,
                p95_us: r.try_get("", "p95")?,
                p99_us: r.try_get("", "p99")?,
            })
        })
        .collect()
}
