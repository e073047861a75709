//! A counter that every change to `api_key` bumps, by trigger, whoever makes the change
//! (the `keys` command, another process, an operator's SQL). A server may reuse what it
//! learned about a key for as long as the counter stays put.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::sql::run_all;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &str = "CREATE TABLE key_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL)";
const FIRST: &str = "INSERT INTO key_epoch (id, epoch) VALUES (1, 1)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                run_all(
                    manager,
                    &[
                        CREATE,
                        FIRST,
                        "CREATE FUNCTION tracegraph_api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
                         BEGIN \
                           UPDATE key_epoch SET epoch = epoch + 1; \
                           RETURN NULL; \
                         END $$",
                        "CREATE TRIGGER api_key_changed \
                         AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_key \
                         FOR EACH STATEMENT EXECUTE FUNCTION tracegraph_api_key_changed()",
                    ],
                )
                .await
            }
            _ => {
                // SQLite triggers fire per row and per event.
                run_all(
                    manager,
                    &[
                        CREATE,
                        FIRST,
                        "CREATE TRIGGER api_key_inserted AFTER INSERT ON api_key \
                         BEGIN UPDATE key_epoch SET epoch = epoch + 1; END",
                        "CREATE TRIGGER api_key_updated AFTER UPDATE ON api_key \
                         BEGIN UPDATE key_epoch SET epoch = epoch + 1; END",
                        "CREATE TRIGGER api_key_deleted AFTER DELETE ON api_key \
                         BEGIN UPDATE key_epoch SET epoch = epoch + 1; END",
                    ],
                )
                .await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                run_all(
                    manager,
                    &[
                        "DROP TRIGGER IF EXISTS api_key_changed ON api_key",
                        "DROP FUNCTION IF EXISTS tracegraph_api_key_changed()",
                        "DROP TABLE IF EXISTS key_epoch",
                    ],
                )
                .await
            }
            _ => {
                run_all(
                    manager,
                    &[
                        "DROP TRIGGER IF EXISTS api_key_inserted",
                        "DROP TRIGGER IF EXISTS api_key_updated",
                        "DROP TRIGGER IF EXISTS api_key_deleted",
                        "DROP TABLE IF EXISTS key_epoch",
                    ],
                )
                .await
            }
        }
    }
}
