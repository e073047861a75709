//! Write transactions: the one place that begins, commits and publishes, for the API
//! and the importer alike.

use std::sync::Arc;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::db::entities::{span, trace};
use crate::db::store::Changed;
use crate::db::store::spans::Written;
use crate::db::{Db, store};
use crate::error::AppResult;
use crate::ingest::{NewSpan, NewTrace, TraceEnd};
use crate::live::LiveSpans;
use crate::live::postgres::EventKind;

/// Runs `work` in one write transaction; an error (or a panic) rolls everything back.
pub async fn transact<T>(db: &Db, work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<T>) -> AppResult<T> {
    let txn = db.begin_write().await?;
    let out = work(&txn).await?;
    txn.commit().await?;
    Ok(out)
}

/// Creates traces in one transaction: all, or none.
pub async fn create_traces(db: &Db, news: Vec<NewTrace>) -> AppResult<Vec<trace::Model>> {
    transact(db, async |txn| store::traces::create_all(txn, news).await).await
}

/// Ends traces in one transaction (all, or none), writing each usage record once, and
/// publishes the ends that happened now.
pub async fn end_traces(db: &Db, live: &LiveSpans, ends: Vec<TraceEnd>) -> AppResult<Vec<trace::Model>> {
    let outs = transact(db, async |txn| end_in(txn, live, ends).await).await?;
    publish_ends(live, &outs);
    Ok(outs.into_iter().map(|o| o.row).collect())
}

/// Ends traces in the caller's transaction, in input order, and tells the other
/// instances; the caller publishes the changed ones locally after commit.
pub async fn end_in(
    txn: &DatabaseTransaction,
    live: &LiveSpans,
    ends: Vec<TraceEnd>,
) -> AppResult<Vec<Changed<trace::Model>>> {
    let outs = store::traces::end_all(txn, ends).await?;
    let changed: Vec<Uuid> = outs.iter().filter(|o| o.changed).map(|o| o.row.id).collect();
    relay(live, txn, EventKind::TraceEnded, &changed).await?;
    Ok(outs)
}

/// Publishes, after commit, the ends that happened now.
pub fn publish_ends(live: &LiveSpans, outs: &[Changed<trace::Model>]) {
    for out in outs.iter().filter(|o| o.changed) {
        live.publish_trace_ended(&out.row);
    }
}

/// Stores a batch of spans, all or nothing, and publishes the newly written ones after
/// commit (a retried batch publishes nothing twice).
pub async fn add_spans(db: &Db, live: &LiveSpans, news: Vec<NewSpan>) -> AppResult<Vec<Arc<span::Model>>> {
    let written = transact(db, async |txn| insert_spans(txn, live, news).await).await?;
    live.publish_added(written.fresh.iter().cloned());
    Ok(written.rows)
}

/// Stores spans in the caller's transaction and tells the other instances; the
/// caller publishes `fresh` locally after commit.
pub async fn insert_spans(txn: &DatabaseTransaction, live: &LiveSpans, news: Vec<NewSpan>) -> AppResult<Written> {
    let written = store::spans::insert_batch(txn, news).await?;
    let ids: Vec<_> = written.fresh.iter().map(|s| s.id).collect();
    relay(live, txn, EventKind::SpansAdded, &ids).await?;
    Ok(written)
}

/// Runs a write that changes one span (an end, a flag) and publishes it if it changed.
pub async fn update_span(
    db: &Db,
    live: &LiveSpans,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<Changed<span::Model>>,
) -> AppResult<span::Model> {
    let out = transact(db, async |txn| {
        let out = work(txn).await?;
        if out.changed {
            relay(live, txn, EventKind::SpanUpdated, &[out.row.id]).await?;
        }
        Ok(out)
    })
    .await?;
    if out.changed {
        live.publish_updated(&out.row);
    }
    Ok(out.row)
}

/// Tells the other instances, inside the transaction, so they hear of it on commit only.
async fn relay(live: &LiveSpans, txn: &DatabaseTransaction, kind: EventKind, ids: &[uuid::Uuid]) -> AppResult<()> {
    match &live.relay {
        Some(relay) if !ids.is_empty() => relay.notify(txn, kind, ids).await,
        _ => Ok(()),
    }
}
