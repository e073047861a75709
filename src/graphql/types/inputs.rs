use async_graphql::InputObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graphql::Json;
use crate::ingest::{SpanDraft, TraceDraft};
use crate::model::SpanType;

/// A new trace. Give an `id` to make the call safe to retry.
#[derive(InputObject, Debug)]
pub struct CreateTraceInput {
    /// Client-chosen id; repeating a create with the same id and content returns the same trace.
    pub id: Option<Uuid>,
    /// What the run is, e.g. `support-chat`.
    pub name: String,
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    /// Defaults to now.
    pub started_at: Option<DateTime<Utc>>,
    /// Set to write a trace that has already ended; its usage record is written at once.
    pub ended_at: Option<DateTime<Utc>>,
    /// The run's error, if it failed.
    pub error: Option<String>,
    /// A JSON object.
    pub metadata: Option<Json>,
}

impl From<CreateTraceInput> for TraceDraft {
    fn from(i: CreateTraceInput) -> Self {
        Self {
            id: i.id,
            name: i.name,
            agent_id: i.agent_id,
            product_id: i.product_id,
            started_at: i.started_at,
            ended_at: i.ended_at,
            error: i.error,
            metadata: i.metadata.map(|m| m.0),
        }
    }
}

/// A new span. Give an `id` to make the call safe to retry.
#[derive(InputObject, Debug)]
pub struct AddSpanInput {
    /// Client-chosen id; repeating a write with the same id and content returns the same span.
    pub id: Option<Uuid>,
    /// The trace the span belongs to; it must exist.
    pub trace_id: Uuid,
    /// The enclosing span: stored already, or earlier or later in the same batch, and in the same trace.
    pub parent_id: Option<Uuid>,
    /// Operation name.
    pub name: String,
    pub span_type: SpanType,
    /// Defaults to now.
    pub started_at: Option<DateTime<Utc>>,
    /// Not before `startedAt`.
    pub ended_at: Option<DateTime<Utc>>,
    pub input_text: Option<String>,
    pub output_text: Option<String>,
    /// Error message if the operation failed.
    pub error: Option<String>,
    /// A JSON object. LLM spans report usage here: `model`, `provider`,
    /// `input_tokens`/`prompt_tokens`, `output_tokens`/`completion_tokens`,
    /// `total_tokens`, `cost_usd`/`cost`.
    pub metadata: Option<Json>,
}

impl From<AddSpanInput> for SpanDraft {
    fn from(i: AddSpanInput) -> Self {
        Self {
            id: i.id,
            trace_id: i.trace_id,
            parent_id: i.parent_id,
            name: i.name,
            span_type: i.span_type,
            started_at: i.started_at,
            ended_at: i.ended_at,
            input_text: i.input_text,
            output_text: i.output_text,
            error: i.error,
            metadata: i.metadata.map(|m| m.0),
        }
    }
}
