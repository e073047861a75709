use sea_orm::entity::prelude::*;

/// One agent's usage summed over all its records, kept in step with `agent_usage`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agent_usage_total")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub agent_id: Uuid,
    pub records: i64,
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
    agent_id,
    records,
    llm_calls,
    input_tokens,
    output_tokens,
    total_tokens,
    cost_usd
});
