use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::store::stats::{Interval, SpanGroup, Stats, UsageGroup, UsageRow};
use crate::error::AppResult;
use crate::model::SpanType;

/// What `usageSummary` groups by; several may be combined.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum UsageGroupBy {
    Agent,
    Product,
    Model,
    /// Calendar days (UTC), by span start.
    Day,
    /// Hours (UTC), by span start.
    Hour,
}

impl From<UsageGroupBy> for UsageGroup {
    fn from(g: UsageGroupBy) -> Self {
        match g {
            UsageGroupBy::Agent => Self::Agent,
            UsageGroupBy::Product => Self::Product,
            UsageGroupBy::Model => Self::Model,
            UsageGroupBy::Day => Self::Bucket(Interval::Day),
            UsageGroupBy::Hour => Self::Bucket(Interval::Hour),
        }
    }
}

/// What `spanStats` groups by; both may be combined.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SpanStatsGroupBy {
    SpanType,
    Name,
}

impl From<SpanStatsGroupBy> for SpanGroup {
    fn from(g: SpanStatsGroupBy) -> Self {
        match g {
            SpanStatsGroupBy::SpanType => Self::SpanType,
            SpanStatsGroupBy::Name => Self::Name,
        }
    }
}

/// Width of a time bucket (UTC).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "StatsInterval")]
pub enum StatsInterval {
    Hour,
    Day,
}

impl From<StatsInterval> for Interval {
    fn from(i: StatsInterval) -> Self {
        match i {
            StatsInterval::Hour => Self::Hour,
            StatsInterval::Day => Self::Day,
        }
    }
}

/// LLM usage of one group. A field the grouping does not use is null.
#[derive(SimpleObject, Debug, Clone)]
pub struct UsageSummaryRow {
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub model: Option<String>,
    /// Start of the day or hour (UTC).
    pub bucket: Option<DateTime<Utc>>,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// Reported and computed costs; calls with an unpriced model add nothing here.
    pub cost_usd: f64,
    /// LLM calls whose model has no price, so their cost is unknown.
    pub unpriced_calls: i64,
}

impl From<UsageRow> for UsageSummaryRow {
    fn from(r: UsageRow) -> Self {
        Self {
            agent_id: r.agent_id,
            product_id: r.product_id,
            model: r.model,
            bucket: r.bucket,
            llm_calls: r.llm_calls,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            total_tokens: r.total_tokens,
            cost_usd: r.cost_usd,
            unpriced_calls: r.unpriced_calls,
        }
    }
}

fn rate(part: i64, whole: i64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

fn ms(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / 1000.0)
}

/// Counts, errors, latency and cost of traces. Latency percentiles are nearest-rank
/// over ended traces (p of n: the value at rank ⌈p·n/100⌉); null when none has ended.
#[derive(SimpleObject, Debug, Clone)]
pub struct TraceStats {
    /// Start of the bucket (UTC), in a series; null for overall figures.
    pub bucket: Option<DateTime<Utc>>,
    pub count: i64,
    /// Traces where the trace or a span has an error.
    pub error_count: i64,
    /// `errorCount / count`, 0 when there are none.
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub total_cost_usd: f64,
}

impl TraceStats {
    pub fn from_stats(s: Stats, bucketed: bool) -> AppResult<Self> {
        Ok(Self {
            bucket: if bucketed { s.bucket()? } else { None },
            count: s.count,
            error_count: s.errors,
            error_rate: rate(s.errors, s.count),
            latency_p50_ms: ms(s.p50_us),
            latency_p95_ms: ms(s.p95_us),
            latency_p99_ms: ms(s.p99_us),
            total_cost_usd: s.cost_usd,
        })
    }

    pub fn empty() -> Self {
        Self {
            bucket: None,
            count: 0,
            error_count: 0,
            error_rate: 0.0,
            latency_p50_ms: None,
            latency_p95_ms: None,
            latency_p99_ms: None,
            total_cost_usd: 0.0,
        }
    }
}

/// How often spans of one kind run, fail, and how long they take: which tools are
/// called, how often, how slow, how often they fail. Percentiles as in `TraceStats`.
#[derive(SimpleObject, Debug, Clone)]
pub struct SpanStats {
    /// Set when grouped by span type.
    pub span_type: Option<SpanType>,
    /// Set when grouped by name.
    pub name: Option<String>,
    pub calls: i64,
    pub error_count: i64,
    pub error_rate: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub total_cost_usd: f64,
}

impl SpanStats {
    pub fn from_stats(s: Stats, groups: &[SpanStatsGroupBy]) -> Self {
        let by_type = groups.contains(&SpanStatsGroupBy::SpanType);
        let by_name = groups.contains(&SpanStatsGroupBy::Name);
        let (span_type, name) = match (by_type, by_name) {
            (true, true) => match s.key.split_once('\t') {
                Some((t, n)) => (SpanType::parse(t), Some(n.to_owned())),
                None => (SpanType::parse(&s.key), None),
            },
            (true, false) => (SpanType::parse(&s.key), None),
            (false, true) => (None, Some(s.key.clone())),
            (false, false) => (None, None),
        };
        Self {
            span_type,
            name,
            calls: s.count,
            error_count: s.errors,
            error_rate: rate(s.errors, s.count),
            latency_p50_ms: ms(s.p50_us),
            latency_p95_ms: ms(s.p95_us),
            latency_p99_ms: ms(s.p99_us),
            total_cost_usd: s.cost_usd,
        }
    }
}
