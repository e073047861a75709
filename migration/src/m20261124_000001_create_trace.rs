use sea_orm_migration::prelude::*;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub enum Trace {
    Table,
    Id,
    Name,
    AgentId,
    ProductId,
    StartedAt,
    EndedAt,
    DurationUs,
    Error,
    HasError,
    Metadata,
    SpanCount,
    FlaggedSpanCount,
    LlmCalls,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CostUsd,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Trace::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Trace::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Trace::Name).text().not_null())
                    .col(ColumnDef::new(Trace::AgentId).uuid().null())
                    .col(ColumnDef::new(Trace::ProductId).uuid().null())
                    .col(ColumnDef::new(Trace::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Trace::EndedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Trace::DurationUs).big_integer().null())
                    .col(ColumnDef::new(Trace::Error).text().null())
                    .col(ColumnDef::new(Trace::HasError).boolean().not_null().default(false))
                    .col(ColumnDef::new(Trace::Metadata).json_binary().not_null())
                    .col(ColumnDef::new(Trace::SpanCount).big_integer().not_null().default(0))
                    .col(
                        ColumnDef::new(Trace::FlaggedSpanCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Trace::LlmCalls).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Trace::InputTokens).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Trace::OutputTokens).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Trace::TotalTokens).big_integer().not_null().default(0))
                    .col(ColumnDef::new(Trace::CostUsd).double().not_null().default(0.0))
                    .to_owned(),
            )
            .await?;
        // Every TraceFilter and TraceSort is served by one of these; `id` breaks ties
        // so that offset pages are stable.
        run_all(
            manager,
            &[
                "CREATE INDEX IF NOT EXISTS ix_trace_started ON trace (started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_agent_started ON trace (agent_id, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_product_started ON trace (product_id, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_name_started ON trace (name, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_ended ON trace (ended_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_duration ON trace (duration_us, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_cost ON trace (cost_usd, id)",
                "CREATE INDEX IF NOT EXISTS ix_trace_failed ON trace (agent_id, started_at, id) WHERE has_error",
                "CREATE INDEX IF NOT EXISTS ix_trace_flagged ON trace (started_at, id) WHERE flagged_span_count > 0",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Trace::Table).to_owned()).await
    }
}
