use sea_orm::entity::prelude::*;

/// One operation inside a trace. `agent_id` and `product_id` are the trace's,
/// copied at write time; the usage columns are extracted from `metadata`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "span")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub trace_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub name: String,
    /// Lower-case span type (`llm`, `tool`, ...), as in the tracing spec.
    pub span_type: String,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    pub duration_us: Option<i64>,
    pub input_text: Option<String>,
    pub output_text: Option<String>,
    pub error: Option<String>,
    pub metadata: Json,
    pub flagged: bool,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    /// `reported`, `computed` (from the price table) or `unknown_model`; null without usage.
    pub cost_source: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::by_position!(Model {
    id,
    trace_id,
    parent_id,
    agent_id,
    product_id,
    name,
    span_type,
    started_at,
    ended_at,
    duration_us,
    input_text,
    output_text,
    error,
    metadata,
    flagged,
    model,
    provider,
    input_tokens,
    output_tokens,
    total_tokens,
    cost_usd,
    cost_source
});
