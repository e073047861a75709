//! An agent's usage totals read from the index alone: the sum walks index entries in
//! one range instead of fetching each record from the table.

use sea_orm_migration::prelude::*;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_all(
            manager,
            &["CREATE INDEX IF NOT EXISTS ix_agent_usage_agent_totals ON agent_usage \
               (agent_id, created_at, llm_calls, input_tokens, output_tokens, total_tokens, cost_usd)"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_all(manager, &["DROP INDEX IF EXISTS ix_agent_usage_agent_totals"]).await
    }
}
