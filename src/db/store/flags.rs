//! The `span_flag` table: the review marks on spans, kept with reason and time.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{Changed, spans, traces};
use crate::db::entities::{span, span_flag};
use crate::error::AppResult;
use crate::ingest;

/// Flags a span with a reason. Flagging a flagged span adds the new reason to its history.
pub async fn flag(conn: &impl ConnectionTrait, span_id: Uuid, reason: String) -> AppResult<Changed<span::Model>> {
    let stored = spans::get(conn, span_id).await?;
    span_flag::Entity::insert(span_flag::ActiveModel::from(span_flag::Model {
        id: Uuid::now_v7(),
        span_id,
        trace_id: stored.trace_id,
        reason,
        created_at: ingest::now(),
        resolved_at: None,
    }))
    .exec_without_returning(conn)
    .await?;
    // A new reason on a flagged span is a change too: its flags grew.
    match spans::set_flagged(conn, span_id, true).await? {
        Some(row) => {
            traces::add_flagged(conn, row.trace_id, 1).await?;
            Ok(Changed::new(row))
        }
        None => Ok(Changed::new(spans::get(conn, span_id).await?)),
    }
}

/// Clears a span's flag; its flags stay on record, marked resolved.
pub async fn unflag(conn: &impl ConnectionTrait, span_id: Uuid) -> AppResult<Changed<span::Model>> {
    let Some(row) = spans::set_flagged(conn, span_id, false).await? else {
        // Not flagged (or unknown: `get` says which).
        return Ok(Changed::unchanged(spans::get(conn, span_id).await?));
    };
    span_flag::Entity::update_many()
        .col_expr(span_flag::Column::ResolvedAt, Expr::value(ingest::now()))
        .filter(span_flag::Column::SpanId.eq(span_id))
        .filter(span_flag::Column::ResolvedAt.is_null())
        .exec(conn)
        .await?;
    traces::add_flagged(conn, row.trace_id, -1).await?;
    Ok(Changed::new(row))
}

pub async fn of_spans(conn: &impl ConnectionTrait, span_ids: Vec<Uuid>) -> AppResult<Vec<span_flag::Model>> {
    Ok(span_flag::Entity::find()
        .filter(span_flag::Column::SpanId.is_in(span_ids))
        .order_by_asc(span_flag::Column::CreatedAt)
        .order_by_asc(span_flag::Column::Id)
        .all(conn)
        .await?)
}
