use sea_orm_migration::prelude::*;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    Name,
    Prefix,
    KeyHash,
    Scopes,
    Products,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKey::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ApiKey::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ApiKey::Name).text().not_null().unique_key())
                    // The key's first characters, to find it without comparing secrets in SQL.
                    .col(ColumnDef::new(ApiKey::Prefix).text().not_null())
                    .col(ColumnDef::new(ApiKey::KeyHash).text().not_null())
                    .col(ColumnDef::new(ApiKey::Scopes).text().not_null())
                    // JSON array of product ids; null means every product.
                    .col(ColumnDef::new(ApiKey::Products).json_binary().null())
                    .col(ColumnDef::new(ApiKey::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ApiKey::RevokedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        run_all(
            manager,
            &[
                "CREATE INDEX IF NOT EXISTS ix_api_key_prefix ON api_key (prefix)",
                "CREATE INDEX IF NOT EXISTS ix_api_key_active ON api_key (created_at) WHERE revoked_at IS NULL",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiKey::Table).to_owned()).await
    }
}
