use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Span {
    Table,
    CostSource,
}

#[derive(DeriveIden)]
enum SpanFlag {
    Table,
    CreatedBy,
    ResolvedBy,
    ResolutionNote,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds columns one at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(Span::Table)
                    .add_column(ColumnDef::new(Span::CostSource).string_len(16).null())
                    .to_owned(),
            )
            .await?;
        for column in [SpanFlag::CreatedBy, SpanFlag::ResolvedBy, SpanFlag::ResolutionNote] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SpanFlag::Table)
                        .add_column(ColumnDef::new(column).text().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [SpanFlag::CreatedBy, SpanFlag::ResolvedBy, SpanFlag::ResolutionNote] {
            manager
                .alter_table(Table::alter().table(SpanFlag::Table).drop_column(column).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Span::Table)
                    .drop_column(Span::CostSource)
                    .to_owned(),
            )
            .await
    }
}
