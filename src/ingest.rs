//! Validation of writes: turns what a client sent into rows ready to store, or says
//! exactly which field is wrong. Pure functions; nothing here touches the database.

use async_graphql::{InputObject, Json};
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{Limits, MAX_NAME_BYTES};
use crate::db::entities::{span, trace};
use crate::error::{AppError, AppResult};
use crate::given::{self, Given};
use crate::model::{CostSource, SpanType};
use crate::prices::Prices;
use crate::usage;

/// A new trace. Give an `id` to make the call safe to retry.
#[derive(InputObject, Debug, Clone, Default)]
#[graphql(name = "CreateTraceInput")]
pub struct TraceDraft {
    /// Client-chosen id; repeating a create with the same id and content returns the same trace.
    pub id: Option<Given<Uuid>>,
    /// What the run is, e.g. `support-chat`.
    pub name: String,
    pub agent_id: Option<Given<Uuid>>,
    pub product_id: Option<Given<Uuid>>,
    /// Defaults to now.
    pub started_at: Option<Given<DateTime<Utc>>>,
    /// Set to write a trace that has already ended; its usage record is written at once.
    pub ended_at: Option<Given<DateTime<Utc>>>,
    /// The run's error, if it failed.
    pub error: Option<String>,
    /// A JSON object.
    pub metadata: Option<Json<Value>>,
}

/// A new span. Give an `id` to make the call safe to retry.
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "AddSpanInput")]
pub struct SpanDraft {
    /// Client-chosen id; repeating a write with the same id and content returns the same span.
    pub id: Option<Given<Uuid>>,
    /// The trace the span belongs to; it must exist.
    pub trace_id: Given<Uuid>,
    /// The enclosing span: stored already, or earlier or later in the same batch, and in the same trace.
    pub parent_id: Option<Given<Uuid>>,
    /// Operation name.
    pub name: String,
    pub span_type: SpanType,
    /// Defaults to now.
    pub started_at: Option<Given<DateTime<Utc>>>,
    /// Not before `startedAt`.
    pub ended_at: Option<Given<DateTime<Utc>>>,
    pub input_text: Option<String>,
    pub output_text: Option<String>,
    /// Error message if the operation failed.
    pub error: Option<String>,
    /// A JSON object. LLM spans report usage here: `model`, `provider`,
    /// `input_tokens`/`prompt_tokens`, `output_tokens`/`completion_tokens`,
    /// `total_tokens`, `cost_usd`/`cost`.
    pub metadata: Option<Json<Value>>,
}

/// The end of one trace, as `endTraces` takes it.
#[derive(InputObject, Debug, Clone)]
#[graphql(name = "EndTraceInput")]
pub struct EndTraceDraft {
    pub id: Given<Uuid>,
    /// Defaults to now.
    pub ended_at: Option<Given<DateTime<Utc>>>,
    /// The run's error, if it failed.
    pub error: Option<String>,
}

/// A checked trace end.
#[derive(Debug, Clone)]
pub struct TraceEnd {
    pub id: Uuid,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

pub fn validate_end(draft: EndTraceDraft, limits: &Limits) -> AppResult<TraceEnd> {
    check_opt_text("error", &draft.error, limits.max_text_bytes)?;
    Ok(TraceEnd {
        id: draft.id.check("id")?,
        ended_at: given_time("endedAt", draft.ended_at)?,
        error: draft.error,
    })
}

/// A validated trace row plus which times the client chose, for the idempotency check.
#[derive(Debug, Clone)]
pub struct NewTrace {
    pub row: trace::Model,
    pub started_at_given: bool,
}

/// A validated span row; `agent_id`/`product_id` are filled from its trace by the store.
#[derive(Debug, Clone)]
pub struct NewSpan {
    pub row: span::Model,
    pub started_at_given: bool,
}

/// The earliest and latest times accepted: outside them a time is a client bug, and
/// PostgreSQL and SQLite would disagree about how to store it.
fn time_bounds() -> (DateTime<Utc>, DateTime<Utc>) {
    let lo = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).single().expect("valid date");
    // The whole last day, to its last nanosecond: the refusal says "9999-12-31".
    let hi = Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .expect("valid date")
        + chrono::Duration::nanoseconds(999_999_999);
    (lo, hi)
}

/// An optional time as a write input gave it: refused naming `field` if it did not parse
/// or is out of bounds, else truncated as `normalize_time` does.
pub fn given_time(field: &str, time: Option<Given<DateTime<Utc>>>) -> AppResult<Option<DateTime<Utc>>> {
    given::check_opt(field, time)?
        .map(|t| normalize_time(field, t))
        .transpose()
}

/// Times are kept with microsecond precision on both engines; truncating here makes a
/// retried write compare equal to what was stored.
pub fn normalize_time(field: &str, t: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    let (lo, hi) = time_bounds();
    if t < lo || t > hi {
        return Err(AppError::bad_input(field, "must be between 1970-01-01 and 9999-12-31"));
    }
    Ok(t.trunc_subsecs(6))
}

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Microseconds from start to end; an end before the start is rejected.
pub fn duration_us(started: DateTime<Utc>, ended: DateTime<Utc>) -> AppResult<i64> {
    let micros = (ended - started).num_microseconds().unwrap_or(i64::MAX);
    if micros < 0 {
        return Err(AppError::bad_input("endedAt", "must not be before startedAt"));
    }
    Ok(micros)
}

/// PostgreSQL cannot store or compare NUL in text; text holding one is refused on every
/// engine, so that they stay alike (filters refuse it too: `filters::NoNul`).
pub const NUL_REFUSED: &str = "must not contain NUL characters";

pub fn check_text(field: &str, value: &str, max: usize) -> AppResult<()> {
    AppError::within(field, "text size in bytes", value.len(), max)?;
    if value.contains('\0') {
        return Err(AppError::bad_input(field, NUL_REFUSED));
    }
    Ok(())
}

fn check_opt_text(field: &str, value: &Option<String>, max: usize) -> AppResult<()> {
    value.as_deref().map_or(Ok(()), |v| check_text(field, v, max))
}

pub fn check_name(value: &str) -> AppResult<()> {
    if value.trim().is_empty() {
        return Err(AppError::bad_input("name", "must not be empty"));
    }
    check_text("name", value, MAX_NAME_BYTES)
}

/// Levels of nesting metadata may have, the object itself included. JSON readers stop
/// somewhere (serde_json, which reads stored metadata back, at 128): metadata that could
/// be stored but not read would break every read of its span or trace.
pub const MAX_METADATA_DEPTH: usize = 64;

/// Metadata must be a JSON object (null means empty) within the text size limit, and
/// nested no deeper than `MAX_METADATA_DEPTH`.
pub fn check_metadata(value: Option<Json<Value>>, max: usize) -> AppResult<Map<String, Value>> {
    let map = match value.map(|j| j.0) {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(AppError::bad_input("metadata", "must be a JSON object")),
    };
    let size = serde_json::to_string(&map).map(|s| s.len()).unwrap_or(usize::MAX);
    AppError::within("metadata", "text size in bytes", size, max)?;
    let depth = 1 + map.values().map(depth).max().unwrap_or(0);
    AppError::within("metadata", "nesting depth", depth, MAX_METADATA_DEPTH)?;
    if map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)) {
        return Err(AppError::bad_input("metadata", NUL_REFUSED));
    }
    Ok(map)
}

/// Levels of arrays and objects in `value` (0 for a scalar).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A record's checked times: the start defaults to now, the end may not precede it.
struct Times {
    started_at: DateTime<Utc>,
    started_at_given: bool,
    ended_at: Option<DateTime<Utc>>,
    duration_us: Option<i64>,
}

impl Times {
    fn check(started_at: Option<Given<DateTime<Utc>>>, ended_at: Option<Given<DateTime<Utc>>>) -> AppResult<Self> {
        let started_at = given_time("startedAt", started_at)?;
        let started_at_given = started_at.is_some();
        let started_at = started_at.unwrap_or_else(now);
        let ended_at = given_time("endedAt", ended_at)?;
        let duration_us = ended_at.map(|end| duration_us(started_at, end)).transpose()?;
        Ok(Self {
            started_at,
            started_at_given,
            ended_at,
            duration_us,
        })
    }
}

pub fn validate_trace(draft: TraceDraft, limits: &Limits) -> AppResult<NewTrace> {
    check_name(&draft.name)?;
    check_opt_text("error", &draft.error, limits.max_text_bytes)?;
    let metadata = check_metadata(draft.metadata, limits.max_text_bytes)?;
    let Times {
        started_at,
        started_at_given,
        ended_at,
        duration_us,
    } = Times::check(draft.started_at, draft.ended_at)?;
    Ok(NewTrace {
        row: trace::Model {
            id: given::check_opt("id", draft.id)?.unwrap_or_else(Uuid::now_v7),
            name: draft.name,
            agent_id: given::check_opt("agentId", draft.agent_id)?,
            product_id: given::check_opt("productId", draft.product_id)?,
            started_at,
            ended_at,
            duration_us,
            has_error: draft.error.is_some(),
            error: draft.error,
            metadata: Value::Object(metadata),
            span_count: 0,
            flagged_span_count: 0,
            llm_calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            total_tokens: 0,
            cost_usd: 0.0,
        },
        started_at_given,
    })
}

pub fn validate_span(draft: SpanDraft, limits: &Limits, prices: &Prices) -> AppResult<NewSpan> {
    check_name(&draft.name)?;
    check_opt_text("inputText", &draft.input_text, limits.max_text_bytes)?;
    check_opt_text("outputText", &draft.output_text, limits.max_text_bytes)?;
    check_opt_text("error", &draft.error, limits.max_text_bytes)?;
    let metadata = check_metadata(draft.metadata, limits.max_text_bytes)?;
    let id = given::check_opt("id", draft.id)?.unwrap_or_else(Uuid::now_v7);
    let trace_id = draft.trace_id.check("traceId")?;
    let parent_id = given::check_opt("parentId", draft.parent_id)?;
    if parent_id == Some(id) {
        return Err(AppError::bad_input("parentId", "a span cannot be its own parent"));
    }
    // Only LLM spans count as LLM usage: a tool span echoing token counts must not double them.
    let usage = if draft.span_type == SpanType::Llm {
        usage::extract(&metadata)?
    } else {
        usage::ExtractedUsage::default()
    };
    let Times {
        started_at,
        started_at_given,
        ended_at,
        duration_us,
    } = Times::check(draft.started_at, draft.ended_at)?;
    let (cost_usd, cost_source) = price(&usage, prices);
    Ok(NewSpan {
        row: span::Model {
            id,
            trace_id,
            parent_id,
            agent_id: None,
            product_id: None,
            name: draft.name,
            span_type: draft.span_type.as_str().to_owned(),
            started_at,
            ended_at,
            duration_us,
            input_text: draft.input_text,
            output_text: draft.output_text,
            error: draft.error,
            metadata: Value::Object(metadata),
            flagged: false,
            model: usage.model,
            provider: usage.provider,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens,
            cost_usd,
            cost_source: cost_source.map(|c| c.as_str().to_owned()),
        },
        started_at_given,
    })
}

/// A reported cost stands; otherwise tokens are priced by model, or marked unknown.
fn price(usage: &usage::ExtractedUsage, prices: &Prices) -> (Option<f64>, Option<CostSource>) {
    if let Some(cost) = usage.cost_usd {
        return (Some(cost), Some(CostSource::Reported));
    }
    if usage.input_tokens.is_none() && usage.output_tokens.is_none() {
        return (None, None);
    }
    let (input, output) = (usage.input_tokens.unwrap_or(0), usage.output_tokens.unwrap_or(0));
    match usage.model.as_deref().and_then(|m| prices.cost(m, input, output)) {
        Some(cost) => (Some(cost), Some(CostSource::Computed)),
        None => (None, Some(CostSource::UnknownModel)),
    }
}

/// Whether a repeated create describes the stored trace. Fields the client left to
/// their defaults (the start time) and state that changed since (its end) don't count.
pub fn same_trace(stored: &trace::Model, new: &NewTrace) -> bool {
    let n = &new.row;
    stored.name == n.name
        && stored.agent_id == n.agent_id
        && stored.product_id == n.product_id
        && stored.metadata == n.metadata
        && (!new.started_at_given || stored.started_at == n.started_at)
        && (n.ended_at.is_none() || stored.ended_at == n.ended_at)
        && (n.error.is_none() || stored.error == n.error)
}

/// Whether a repeated span write describes the stored span (see [`same_trace`]).
pub fn same_span(stored: &span::Model, new: &NewSpan) -> bool {
    let n = &new.row;
    stored.trace_id == n.trace_id
        && stored.parent_id == n.parent_id
        && stored.name == n.name
        && stored.span_type == n.span_type
        && stored.input_text == n.input_text
        && stored.metadata == n.metadata
        && (!new.started_at_given || stored.started_at == n.started_at)
        && (n.ended_at.is_none() || stored.ended_at == n.ended_at)
        && (n.output_text.is_none() || stored.output_text == n.output_text)
        && (n.error.is_none() || stored.error == n.error)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_text_bytes: 64,
            max_batch_spans: 10,
            max_tree_spans: 10,
            max_request_spans: 10,
        }
    }

    fn span_draft() -> SpanDraft {
        SpanDraft {
            id: None,
            trace_id: Uuid::nil().into(),
            parent_id: None,
            name: "call".into(),
            span_type: SpanType::Llm,
            started_at: None,
            ended_at: None,
            input_text: None,
            output_text: None,
            error: None,
            metadata: Some(Json(json!({"input_tokens": 3, "output_tokens": 4}))),
        }
    }

    #[test]
    fn llm_usage_is_extracted_and_tool_usage_ignored() {
        let llm = validate_span(span_draft(), &limits(), &Prices::default()).unwrap();
        assert_eq!(llm.row.total_tokens, Some(7));
        let tool = validate_span(
            SpanDraft {
                span_type: SpanType::Tool,
                ..span_draft()
            },
            &limits(),
            &Prices::default(),
        )
        .unwrap();
        assert_eq!(tool.row.total_tokens, None);
    }

    #[test]
    fn metadata_nested_past_the_limit_is_refused() {
        let nested = |levels: usize| {
            let mut value = json!(1);
            // Objects and lists in turn, an object outermost.
            for i in (0..levels).rev() {
                value = if i % 2 == 0 {
                    json!({"k": value})
                } else {
                    json!([value])
                };
            }
            Some(Json(value))
        };
        assert_eq!(
            check_metadata(nested(MAX_METADATA_DEPTH), 1 << 20)
                .map(|m| m.len())
                .ok(),
            Some(1)
        );
        match check_metadata(nested(MAX_METADATA_DEPTH + 1), 1 << 20) {
            Err(AppError::LimitExceeded { field, actual, .. }) => {
                assert_eq!((field.as_str(), actual), ("metadata", MAX_METADATA_DEPTH as u64 + 1))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_fields() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let cases = [
            SpanDraft {
                name: " ".into(),
                ..span_draft()
            },
            SpanDraft {
                metadata: Some(Json(json!([1]))),
                ..span_draft()
            },
            SpanDraft {
                input_text: Some("x".repeat(65)),
                ..span_draft()
            },
            SpanDraft {
                output_text: Some("a\0b".into()),
                ..span_draft()
            },
            SpanDraft {
                started_at: Some(t0.into()),
                ended_at: Some((t0 - chrono::Duration::seconds(1)).into()),
                ..span_draft()
            },
            SpanDraft {
                started_at: Some(Utc.with_ymd_and_hms(1969, 1, 1, 0, 0, 0).unwrap().into()),
                ..span_draft()
            },
        ];
        for draft in cases {
            assert!(
                validate_span(draft.clone(), &limits(), &Prices::default()).is_err(),
                "{draft:?}"
            );
        }
    }

    #[test]
    fn self_parent_is_rejected() {
        let id = Uuid::now_v7();
        let draft = SpanDraft {
            id: Some(id.into()),
            parent_id: Some(id.into()),
            ..span_draft()
        };
        assert_eq!(
            validate_span(draft, &limits(), &Prices::default()).unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }

    #[test]
    fn times_are_truncated_to_microseconds() {
        let t = Utc.timestamp_opt(1_800_000_000, 123_456_789).unwrap();
        assert_eq!(normalize_time("t", t).unwrap().timestamp_subsec_nanos(), 123_456_000);
    }
}
