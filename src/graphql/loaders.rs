//! Every nested lookup goes through these keys: one batched `IN (...)` statement per
//! key type and level, whatever the page size. No cache (async-graphql 7's
//! `DataLoader::new`), so a read after a mutation is never stale.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::Loader;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::db::Db;
use crate::db::entities::{agent_usage, span, span_flag, trace};
use crate::db::store;
use crate::error::AppError;
use crate::filters::SpanFilter;

pub struct Loaders {
    db: Db,
}

impl Loaders {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildrenOf(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootSpansOf(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlagsOf(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UsageOfTrace(pub Uuid);
/// A trace's spans narrowed by a filter; keys with equal filters share one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpansOfTrace {
    pub trace_id: Uuid,
    pub filter: SpanFilter,
}

/// Files each row under the key it belongs to; every asked key gets an entry.
fn group<K: Hash + Eq + Copy, V>(keys: &[K], rows: Vec<V>, key_of: impl Fn(&V) -> Option<K>) -> HashMap<K, Vec<V>> {
    let mut out: HashMap<K, Vec<V>> = keys.iter().map(|k| (*k, Vec::new())).collect();
    for row in rows {
        if let Some(list) = key_of(&row).and_then(|k| out.get_mut(&k)) {
            list.push(row);
        }
    }
    out
}

impl Loader<TraceId> for Loaders {
    type Value = trace::Model;
    type Error = AppError;

    async fn load(&self, keys: &[TraceId]) -> Result<HashMap<TraceId, Self::Value>, Self::Error> {
        let rows = store::traces::by_ids(&self.db.read, keys.iter().map(|k| k.0)).await?;
        Ok(rows.into_iter().map(|t| (TraceId(t.id), t)).collect())
    }
}

impl Loader<SpanId> for Loaders {
    type Value = span::Model;
    type Error = AppError;

    async fn load(&self, keys: &[SpanId]) -> Result<HashMap<SpanId, Self::Value>, Self::Error> {
        let rows = store::spans::by_ids(&self.db.read, keys.iter().map(|k| k.0)).await?;
        Ok(rows.into_iter().map(|s| (SpanId(s.id), s)).collect())
    }
}

impl Loader<ChildrenOf> for Loaders {
    type Value = Vec<span::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[ChildrenOf]) -> Result<HashMap<ChildrenOf, Self::Value>, Self::Error> {
        let cond = Condition::all().add(span::Column::ParentId.is_in(keys.iter().map(|k| k.0)));
        let rows = store::spans::in_start_order(&self.db.read, cond).await?;
        Ok(group(keys, rows, |s| s.parent_id.map(ChildrenOf)))
    }
}

impl Loader<RootSpansOf> for Loaders {
    type Value = Vec<span::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[RootSpansOf]) -> Result<HashMap<RootSpansOf, Self::Value>, Self::Error> {
        let cond = Condition::all()
            .add(span::Column::TraceId.is_in(keys.iter().map(|k| k.0)))
            .add(span::Column::ParentId.is_null());
        let rows = store::spans::in_start_order(&self.db.read, cond).await?;
        Ok(group(keys, rows, |s| Some(RootSpansOf(s.trace_id))))
    }
}

impl Loader<SpansOfTrace> for Loaders {
    type Value = Vec<span::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[SpansOfTrace]) -> Result<HashMap<SpansOfTrace, Self::Value>, Self::Error> {
        let mut by_filter: HashMap<&SpanFilter, Vec<Uuid>> = HashMap::new();
        for key in keys {
            by_filter.entry(&key.filter).or_default().push(key.trace_id);
        }
        let mut out = HashMap::with_capacity(keys.len());
        for (filter, trace_ids) in by_filter {
            let cond = store::spans::condition(filter).add(span::Column::TraceId.is_in(trace_ids.iter().copied()));
            let rows = store::spans::in_start_order(&self.db.read, cond).await?;
            let ids: Vec<TraceId> = trace_ids.into_iter().map(TraceId).collect();
            for (TraceId(trace_id), spans) in group(&ids, rows, |s| Some(TraceId(s.trace_id))) {
                out.insert(
                    SpansOfTrace {
                        trace_id,
                        filter: filter.clone(),
                    },
                    spans,
                );
            }
        }
        Ok(out)
    }
}

impl Loader<FlagsOf> for Loaders {
    type Value = Vec<span_flag::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[FlagsOf]) -> Result<HashMap<FlagsOf, Self::Value>, Self::Error> {
        let rows = store::flags::of_spans(&self.db.read, keys.iter().map(|k| k.0).collect()).await?;
        Ok(group(keys, rows, |f| Some(FlagsOf(f.span_id))))
    }
}

impl Loader<UsageOfTrace> for Loaders {
    type Value = agent_usage::Model;
    type Error = AppError;

    async fn load(&self, keys: &[UsageOfTrace]) -> Result<HashMap<UsageOfTrace, Self::Value>, Self::Error> {
        let rows = store::agent_usage::of_traces(&self.db.read, keys.iter().map(|k| k.0).collect()).await?;
        Ok(rows.into_iter().map(|u| (UsageOfTrace(u.trace_id), u)).collect())
    }
}
