//! Index statements are plain SQL: partial indexes and sort directions read the
//! same on SQLite and PostgreSQL, and the SQL shows exactly what `EXPLAIN` should use.

use sea_orm_migration::prelude::*;

pub async fn run_all(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for sql in statements {
        conn.execute_unprepared(sql).await?;
    }
    Ok(())
}
