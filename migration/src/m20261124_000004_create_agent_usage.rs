use sea_orm_migration::prelude::*;

use crate::m20261124_000001_create_trace::Trace;
use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AgentUsage {
    Table,
    Id,
    TraceId,
    AgentId,
    ProductId,
    LlmCalls,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CostUsd,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AgentUsage::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AgentUsage::Id).uuid().not_null().primary_key())
                    // Unique: a trace's usage is recorded exactly once, however often it is ended.
                    .col(ColumnDef::new(AgentUsage::TraceId).uuid().not_null().unique_key())
                    .col(ColumnDef::new(AgentUsage::AgentId).uuid().null())
                    .col(ColumnDef::new(AgentUsage::ProductId).uuid().null())
                    .col(ColumnDef::new(AgentUsage::LlmCalls).big_integer().not_null())
                    .col(ColumnDef::new(AgentUsage::InputTokens).big_integer().not_null())
                    .col(ColumnDef::new(AgentUsage::OutputTokens).big_integer().not_null())
                    .col(ColumnDef::new(AgentUsage::TotalTokens).big_integer().not_null())
                    .col(ColumnDef::new(AgentUsage::CostUsd).double().not_null())
                    .col(
                        ColumnDef::new(AgentUsage::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_agent_usage_trace")
                            .from(AgentUsage::Table, AgentUsage::TraceId)
                            .to(Trace::Table, Trace::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        run_all(
            manager,
            &[
                "CREATE INDEX IF NOT EXISTS ix_agent_usage_created ON agent_usage (created_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_agent_usage_agent_created ON agent_usage (agent_id, created_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_agent_usage_product_created ON agent_usage (product_id, created_at, id)",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AgentUsage::Table).to_owned())
            .await
    }
}
