//! Each agent's usage totals over all its records, kept as records are written: the
//! dashboard's "tokens of this agent" is one row, however long the agent's history.

use sea_orm_migration::prelude::*;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AgentUsageTotal {
    Table,
    AgentId,
    Records,
    LlmCalls,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CostUsd,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let count = |c: AgentUsageTotal| ColumnDef::new(c).big_integer().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(AgentUsageTotal::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AgentUsageTotal::AgentId).uuid().not_null().primary_key())
                    .col(count(AgentUsageTotal::Records))
                    .col(count(AgentUsageTotal::LlmCalls))
                    .col(count(AgentUsageTotal::InputTokens))
                    .col(count(AgentUsageTotal::OutputTokens))
                    .col(count(AgentUsageTotal::TotalTokens))
                    .col(ColumnDef::new(AgentUsageTotal::CostUsd).double().not_null())
                    .to_owned(),
            )
            .await?;
        // Records written before this table existed.
        run_all(
            manager,
            &["INSERT INTO agent_usage_total \
               (agent_id, records, llm_calls, input_tokens, output_tokens, total_tokens, cost_usd) \
               SELECT agent_id, COUNT(*), SUM(llm_calls), SUM(input_tokens), SUM(output_tokens), \
               SUM(total_tokens), SUM(cost_usd) FROM agent_usage WHERE agent_id IS NOT NULL GROUP BY agent_id"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AgentUsageTotal::Table).to_owned())
            .await
    }
}
