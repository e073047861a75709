use sea_orm::entity::prelude::*;

/// The LLM usage of one ended trace, written once by `endTrace`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub trace_id: Uuid,
    pub agent_id: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub llm_calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::by_position!(Model {
    id,
    trace_id,
    agent_id,
    product_id,
    llm_calls,
    input_tokens,
    output_tokens,
    total_tokens,
    cost_usd,
    created_at
});
