//! Write transactions: the one place that begins, commits and publishes, for the API
//! and the importer alike.

use std::collections::HashMap;

use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::db::entities::{span, trace};
use crate::db::store::spans::Written;
use crate::db::store::{Changed, in_agent_order};
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

/// Results back in input order, from the positions `in_agent_order` kept.
fn in_input_order<R>(mut results: Vec<(usize, R)>) -> Vec<R> {
    results.sort_by_key(|(position, _)| *position);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Creates traces in one transaction: all, or none.
pub async fn create_traces(db: &Db, news: Vec<NewTrace>) -> AppResult<Vec<trace::Model>> {
    transact(db, async |txn| {
        let mut rows = Vec::with_capacity(news.len());
        for (position, new) in in_agent_order(news, |n| n.row.agent_id) {
            rows.push((position, store::traces::create(txn, new).await?));
        }
        Ok(in_input_order(rows))
    })
    .await
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
    // One read for the whole batch: each end needs its trace, and the order its agent.
    let mut stored: HashMap<Uuid, trace::Model> = store::traces::by_ids(txn, ends.iter().map(|e| e.id))
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let mut outs = Vec::with_capacity(ends.len());
    let agent_of = |e: &TraceEnd| stored.get(&e.id).and_then(|t| t.agent_id);
    for (position, end) in in_agent_order(ends, agent_of) {
        // An id ended twice in the batch finds its first end's result in the database.
        let out = match stored.remove(&end.id) {
            Some(trace) => store::traces::end_stored(txn, trace, end.ended_at, end.error).await?,
            None => store::traces::end(txn, end.id, end.ended_at, end.error).await?,
        };
        if out.changed {
            relay(live, txn, EventKind::TraceEnded, &[out.row.id]).await?;
        }
        outs.push((position, out));
    }
    Ok(in_input_order(outs))
}

/// Publishes, after commit, the ends that happened now.
pub fn publish_ends(live: &LiveSpans, outs: &[Changed<trace::Model>]) {
    for out in outs.iter().filter(|o| o.changed) {
        live.publish_trace_ended(&out.row);
    }
}

/// Stores a batch of spans, all or nothing, and publishes the newly written ones after
/// commit (a retried batch publishes nothing twice).
pub async fn add_spans(db: &Db, live: &LiveSpans, news: Vec<NewSpan>) -> AppResult<Vec<span::Model>> {
    let written = transact(db, async |txn| insert_spans(txn, live, news).await).await?;
    live.publish_added(&written.fresh);
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
    let out = change(db, live, EventKind::SpanUpdated, |s: &span::Model| s.id, work).await?;
    if out.changed {
        live.publish_updated(&out.row);
    }
    Ok(out.row)
}

/// Ends a trace (writing its usage record) and publishes the end if it happened now.
pub async fn end_trace(
    db: &Db,
    live: &LiveSpans,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<Changed<trace::Model>>,
) -> AppResult<trace::Model> {
    let out = change(db, live, EventKind::TraceEnded, |t: &trace::Model| t.id, work).await?;
    if out.changed {
        live.publish_trace_ended(&out.row);
    }
    Ok(out.row)
}

/// Runs a write of one row and, when it changed something, tells the other instances.
async fn change<T>(
    db: &Db,
    live: &LiveSpans,
    kind: EventKind,
    id_of: impl Fn(&T) -> uuid::Uuid,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<Changed<T>>,
) -> AppResult<Changed<T>> {
    transact(db, async |txn| {
        let out = work(txn).await?;
        if out.changed {
            relay(live, txn, kind, &[id_of(&out.row)]).await?;
        }
        Ok(out)
    })
    .await
}

/// Tells the other instances, inside the transaction, so they hear of it on commit only.
async fn relay(live: &LiveSpans, txn: &DatabaseTransaction, kind: EventKind, ids: &[uuid::Uuid]) -> AppResult<()> {
    match &live.relay {
        Some(relay) if !ids.is_empty() => relay.notify(txn, kind, ids).await,
        _ => Ok(()),
    }
}
