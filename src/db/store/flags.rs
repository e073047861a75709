//! The `span_flag` table: the review marks on spans, kept with reason and time.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{Changed, spans, traces};
use crate::db::entities::{span, span_flag};
use crate::db::{Fetch, fetch_all, fetch_one, find};
use crate::error::{AppError, AppResult};
use crate::ingest;

/// Flags a span with a reason. Flagging a flagged span adds the new reason to its history.
pub async fn flag(
    conn: &impl Fetch,
    span_id: Uuid,
    reason: String,
    by: Option<String>,
) -> AppResult<Changed<span::Model>> {
    let stored = spans::get(conn, span_id).await?;
    span_flag::Entity::insert(span_flag::ActiveModel::from(span_flag::Model {
        id: Uuid::now_v7(),
        span_id,
        trace_id: stored.trace_id,
        reason,
        created_at: ingest::now(),
        resolved_at: None,
        created_by: by,
        resolved_by: None,
        resolution_note: None,
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
pub async fn unflag(conn: &impl Fetch, span_id: Uuid) -> AppResult<Changed<span::Model>> {
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

pub async fn of_spans(conn: &impl Fetch, span_ids: Vec<Uuid>) -> AppResult<Vec<span_flag::Model>> {
    let select = find::<span_flag::Entity>()
        .filter(span_flag::Column::SpanId.is_in(span_ids))
        .order_by_asc(span_flag::Column::CreatedAt)
        .order_by_asc(span_flag::Column::Id);
    Ok(fetch_all(conn, select).await?)
}

/// Resolves one flag with a note. When it was the span's last open flag, the span is no
/// longer flagged (and leaves the review queue). A resolved flag: see `resolved_before`.
pub async fn resolve(
    conn: &impl Fetch,
    flag_id: Uuid,
    note: Option<String>,
    by: Option<String>,
) -> AppResult<Changed<span::Model>> {
    let flag = span_flag::Entity::find_by_id(flag_id)
        .one(conn)
        .await?
        .ok_or(crate::error::AppError::NotFound {
            what: "flag",
            id: flag_id,
        })?;
    if flag.resolved_at.is_some() {
        return resolved_before(conn, flag, note.as_deref()).await;
    }
    let closed = span_flag::Entity::update_many()
        .col_expr(span_flag::Column::ResolvedAt, Expr::value(ingest::now()))
        .col_expr(span_flag::Column::ResolvedBy, Expr::value(by))
        .col_expr(span_flag::Column::ResolutionNote, Expr::value(note.clone()))
        .filter(span_flag::Column::Id.eq(flag_id))
        .filter(span_flag::Column::ResolvedAt.is_null())
        .exec(conn)
        .await?;
    if closed.rows_affected == 0 {
        // Resolved by another request since it was read: as it stands now.
        return resolved_before(conn, get(conn, flag_id).await?, note.as_deref()).await;
    }
    let still_open = span_flag::Entity::find()
        .filter(span_flag::Column::SpanId.eq(flag.span_id))
        .filter(span_flag::Column::ResolvedAt.is_null())
        .count(conn)
        .await?;
    if still_open == 0
        && let Some(row) = spans::set_flagged(conn, flag.span_id, false).await?
    {
        traces::add_flagged(conn, row.trace_id, -1).await?;
        return Ok(Changed::new(row));
    }
    Ok(Changed::new(spans::get(conn, flag.span_id).await?))
}

/// A flag resolved before: resolving it again without a note, or with its own, is a
/// retry and changes nothing; another note is refused rather than dropped unseen.
async fn resolved_before(
    conn: &impl Fetch,
    flag: span_flag::Model,
    note: Option<&str>,
) -> AppResult<Changed<span::Model>> {
    if note.is_some() && note != flag.resolution_note.as_deref() {
        let when = flag.resolved_at.map(|t| format!(" at {t}")).unwrap_or_default();
        return Err(AppError::Conflict(format!(
            "flag {} was resolved{when} with another note, which is kept; flag the span again to raise a new matter",
            flag.id
        )));
    }
    Ok(Changed::unchanged(spans::get(conn, flag.span_id).await?))
}

pub async fn get(conn: &impl Fetch, id: Uuid) -> AppResult<span_flag::Model> {
    fetch_one(conn, find::<span_flag::Entity>().filter(span_flag::Column::Id.eq(id)))
        .await?
        .ok_or(crate::error::AppError::NotFound { what: "flag", id })
}
