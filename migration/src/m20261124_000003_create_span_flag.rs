use sea_orm_migration::prelude::*;

use crate::m20261124_000002_create_span::Span;
use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SpanFlag {
    Table,
    Id,
    SpanId,
    TraceId,
    Reason,
    CreatedAt,
    ResolvedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SpanFlag::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SpanFlag::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(SpanFlag::SpanId).uuid().not_null())
                    .col(ColumnDef::new(SpanFlag::TraceId).uuid().not_null())
                    .col(ColumnDef::new(SpanFlag::Reason).text().not_null())
                    .col(
                        ColumnDef::new(SpanFlag::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SpanFlag::ResolvedAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_span_flag_span")
                            .from(SpanFlag::Table, SpanFlag::SpanId)
                            .to(Span::Table, Span::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        run_all(
            manager,
            &["CREATE INDEX IF NOT EXISTS ix_span_flag_span ON span_flag (span_id, created_at, id)"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SpanFlag::Table).to_owned())
            .await
    }
}
