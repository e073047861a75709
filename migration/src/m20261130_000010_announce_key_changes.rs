//! On PostgreSQL, every bump of `key_epoch` is also announced on the channel
//! `tracegraph_key_epoch`, with the new value, at commit: a server that listens learns
//! of a key change without asking per request. SQLite servers read the counter in
//! process and need no announcement.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        run_all(
            manager,
            &[
                "CREATE OR REPLACE FUNCTION tracegraph_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
               DECLARE bumped BIGINT; \
               BEGIN \
                 UPDATE key_epoch SET epoch = epoch + 1 RETURNING epoch INTO bumped; \
                 PERFORM pg_notify('tracegraph_key_epoch', bumped::text); \
                 RETURN NULL; \
               END $$",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        run_all(
            manager,
            &[
                "CREATE OR REPLACE FUNCTION tracegraph_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
               BEGIN \
                 UPDATE key_epoch SET epoch = epoch + 1; \
                 RETURN NULL; \
               END $$",
            ],
        )
        .await
    }
}
