use sea_orm::entity::prelude::*;

/// One agent run. The usage and count columns are running totals kept by the
/// span writes, so list pages, cost sorts and `usage` never aggregate spans.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "trace")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    pub duration_us: Option<i64>,
    pub error: Option<String>,
    pub has_error: bool,
    pub metadata: Json,
    pub span_count: i64,
    pub flagged_span_count: i64,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::by_position!(Model {
    id,
    name,
    agent_id,
    product_id,
    started_at,
    ended_at,
    duration_us,
    error,
    has_error,
    metadata,
    span_count,
    flagged_span_count,
    llm_calls,
    input_tokens,
    output_tokens,
    total_tokens,
    cost_usd
});
