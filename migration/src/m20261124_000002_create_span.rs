use sea_orm_migration::prelude::*;

use crate::m20261124_000001_create_trace::Trace;
use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

// `SpanType` is the column `span_type`, as the API names it.
#[allow(clippy::enum_variant_names)]
#[derive(DeriveIden)]
pub enum Span {
    Table,
    Id,
    TraceId,
    ParentId,
    AgentId,
    ProductId,
    Name,
    SpanType,
    StartedAt,
    EndedAt,
    DurationUs,
    InputText,
    OutputText,
    Error,
    Metadata,
    Flagged,
    Model,
    Provider,
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
                    .table(Span::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Span::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Span::TraceId).uuid().not_null())
                    .col(ColumnDef::new(Span::ParentId).uuid().null())
                    // Copied from the trace so that span filters by agent or product never join.
                    .col(ColumnDef::new(Span::AgentId).uuid().null())
                    .col(ColumnDef::new(Span::ProductId).uuid().null())
                    .col(ColumnDef::new(Span::Name).text().not_null())
                    .col(ColumnDef::new(Span::SpanType).string_len(16).not_null())
                    .col(ColumnDef::new(Span::StartedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Span::EndedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Span::DurationUs).big_integer().null())
                    .col(ColumnDef::new(Span::InputText).text().null())
                    .col(ColumnDef::new(Span::OutputText).text().null())
                    .col(ColumnDef::new(Span::Error).text().null())
                    .col(ColumnDef::new(Span::Metadata).json_binary().not_null())
                    .col(ColumnDef::new(Span::Flagged).boolean().not_null().default(false))
                    .col(ColumnDef::new(Span::Model).text().null())
                    .col(ColumnDef::new(Span::Provider).text().null())
                    .col(ColumnDef::new(Span::InputTokens).big_integer().null())
                    .col(ColumnDef::new(Span::OutputTokens).big_integer().null())
                    .col(ColumnDef::new(Span::TotalTokens).big_integer().null())
                    .col(ColumnDef::new(Span::CostUsd).double().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_span_trace")
                            .from(Span::Table, Span::TraceId)
                            .to(Trace::Table, Trace::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_span_parent")
                            .from(Span::Table, Span::ParentId)
                            .to(Span::Table, Span::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        run_all(
            manager,
            &[
                "CREATE INDEX IF NOT EXISTS ix_span_trace_started ON span (trace_id, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_root ON span (trace_id, started_at, id) WHERE parent_id IS NULL",
                "CREATE INDEX IF NOT EXISTS ix_span_parent_started ON span (parent_id, started_at, id) WHERE parent_id IS NOT NULL",
                "CREATE INDEX IF NOT EXISTS ix_span_started ON span (started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_type_started ON span (span_type, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_agent_type_started ON span (agent_id, span_type, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_agent_started ON span (agent_id, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_product_type_started ON span (product_id, span_type, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_name_started ON span (name, started_at, id)",
                "CREATE INDEX IF NOT EXISTS ix_span_error_started ON span (started_at, id) WHERE error IS NOT NULL",
                "CREATE INDEX IF NOT EXISTS ix_span_flagged_started ON span (started_at, id) WHERE flagged",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Span::Table).to_owned()).await
    }
}
