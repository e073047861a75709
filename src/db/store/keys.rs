//! The `api_key` table.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db::entities::api_key::{self, Column};
use crate::db::{Fetch, fetch_all};
use crate::error::{AppError, AppResult};

pub async fn insert(conn: &impl ConnectionTrait, key: api_key::Model) -> AppResult<()> {
    let name = key.name.clone();
    match api_key::Entity::insert(api_key::ActiveModel::from(key))
        .exec_without_returning(conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => match AppError::from(e) {
            AppError::Conflict(_) => Err(AppError::Conflict(format!("a key named {name:?} exists already"))),
            other => Err(other),
        },
    }
}

/// Active keys whose prefix matches: the candidates a presented key is compared with.
pub async fn active_by_prefix(conn: &impl Fetch, prefix: &str) -> AppResult<Vec<api_key::Model>> {
    Ok(fetch_all(
        conn,
        api_key::Entity::find()
            .filter(Column::Prefix.eq(prefix))
            .filter(Column::RevokedAt.is_null()),
    )
    .await?)
}

pub async fn any_active(conn: &impl ConnectionTrait) -> AppResult<bool> {
    let found = api_key::Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::RevokedAt.is_null())
        .limit(1)
        .into_tuple::<uuid::Uuid>()
        .one(conn)
        .await?;
    Ok(found.is_some())
}

pub async fn all(conn: &impl ConnectionTrait) -> AppResult<Vec<api_key::Model>> {
    Ok(api_key::Entity::find()
        .order_by_asc(Column::CreatedAt)
        .all(conn)
        .await?)
}

/// Revokes a key by name; revoking a revoked key is a no-op.
pub async fn revoke(conn: &impl ConnectionTrait, name: &str) -> AppResult<()> {
    let found = api_key::Entity::find().filter(Column::Name.eq(name)).one(conn).await?;
    if found.is_none() {
        return Err(AppError::bad_input("name", format!("no key named {name:?}")));
    }
    api_key::Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(Utc::now()))
        .filter(Column::Name.eq(name))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn is_active(conn: &impl ConnectionTrait, id: uuid::Uuid) -> AppResult<bool> {
    let found = api_key::Entity::find_by_id(id)
        .filter(Column::RevokedAt.is_null())
        .select_only()
        .column(Column::Id)
        .into_tuple::<uuid::Uuid>()
        .one(conn)
        .await?;
    Ok(found.is_some())
}
