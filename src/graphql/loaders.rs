//! Every nested lookup goes through these keys: one batched `IN (...)` statement per
//! key type and level, whatever the page size. Span trees (`TreeOf`) are cached for
//! one request, so a whole nested tree costs one statement; nothing is cached across
//! requests, so a read after a mutation is never stale.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::{CacheFactory, CacheStorage, HashMapCache, Loader, NoCache};
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use super::budget::SpanBudget;
use crate::config::Limits;
use crate::db::Db;
use crate::db::entities::{agent_usage, span, span_flag, trace};
use crate::db::store;
use crate::db::store::spans::Texts;
use crate::error::AppError;
use crate::filters::SpanFilter;

pub struct Loaders {
    db: Db,
    /// A trace with more spans has no tree read (`Limits::max_tree_spans`).
    max_tree_spans: i64,
    /// Spans that reads of whole traces (trees, a trace's spans or roots) may return.
    spans: SpanBudget,
}

impl Loaders {
    /// Loaders of one request: its reads of whole traces share one budget.
    pub fn for_request(db: Db, limits: &Limits) -> Self {
        Self {
            db,
            max_tree_spans: limits.max_tree_spans,
            spans: SpanBudget::per_request(limits.max_request_spans),
        }
    }

    /// Loaders that outlive requests (subscriptions'): each read is bounded on its own.
    pub fn shared(db: Db, limits: &Limits) -> Self {
        Self {
            db,
            max_tree_spans: limits.max_tree_spans,
            spans: SpanBudget::per_read(limits.max_request_spans),
        }
    }

    /// Spans matching `cond` in start order, within the budget.
    async fn spans_within_budget(&self, cond: Condition, texts: Texts) -> Result<Vec<span::Model>, AppError> {
        let rows = store::spans::in_start_order(&self.db.read, cond, texts, self.spans.rows_to_read()).await?;
        self.spans.spend(rows.len())?;
        Ok(rows)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub Uuid);
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub Uuid);
/// All spans of a trace, as a tree. With `Texts::Skip`, the large fields (input, output,
/// metadata) are left out: a dashboard tree of 50 traces then reads a fraction of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TreeOf {
    pub trace_id: Uuid,
    pub texts: Texts,
}
/// A trace with its span tree, read together (`store::detail`: one statement on
/// PostgreSQL for every key of a batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceWithTree {
    pub trace_id: Uuid,
    pub texts: Texts,
}
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

/// Caches span trees and nothing else. A loader with this cache lives for one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeCache;

impl CacheFactory for TreeCache {
    fn create<K, V>(&self) -> Box<dyn CacheStorage<Key = K, Value = V>>
    where
        K: Send + Sync + Clone + Eq + Hash + 'static,
        V: Send + Sync + Clone + 'static,
    {
        if std::any::TypeId::of::<K>() == std::any::TypeId::of::<TreeOf>() {
            HashMapCache::default().create()
        } else {
            NoCache.create()
        }
    }
}

/// The spans of one trace in start order, indexed by parent.
#[derive(Debug, Default)]
pub struct SpanTree {
    spans: Vec<Arc<span::Model>>,
    roots: Vec<usize>,
    children: HashMap<Uuid, Vec<usize>>,
}

impl SpanTree {
    /// The tree of one trace's spans, given in start order.
    pub fn of(spans: Vec<span::Model>) -> Self {
        Self::new(spans.into_iter().map(Arc::new).collect())
    }

    fn new(spans: Vec<Arc<span::Model>>) -> Self {
        let mut tree = Self::default();
        for (i, s) in spans.iter().enumerate() {
            match s.parent_id {
                Some(parent) => tree.children.entry(parent).or_default().push(i),
                None => tree.roots.push(i),
            }
        }
        tree.spans = spans;
        tree
    }

    pub fn all(&self) -> &[Arc<span::Model>] {
        &self.spans
    }

    pub fn roots(&self) -> impl Iterator<Item = &Arc<span::Model>> {
        self.roots.iter().map(|&i| &self.spans[i])
    }

    pub fn children_of(&self, id: Uuid) -> impl Iterator<Item = &Arc<span::Model>> {
        self.children.get(&id).into_iter().flatten().map(|&i| &self.spans[i])
    }
}

impl Loader<TreeOf> for Loaders {
    type Value = Arc<SpanTree>;
    type Error = AppError;

    async fn load(&self, keys: &[TreeOf]) -> Result<HashMap<TreeOf, Self::Value>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        for (texts, ids) in ids_by_texts(keys, |k| (k.trace_id, k.texts)) {
            let rows = self
                .spans_within_budget(store::spans::of_trees(&ids, self.max_tree_spans), texts)
                .await?;
            // Shared from here on: grouping and the tree move pointers, not rows.
            let rows: Vec<Arc<span::Model>> = rows.into_iter().map(Arc::new).collect();
            for (trace_id, spans) in group(&ids, rows, |s| Some(s.trace_id)) {
                out.insert(TreeOf { trace_id, texts }, Arc::new(SpanTree::new(spans)));
            }
        }
        Ok(out)
    }
}

/// The trace ids of `keys` apart by whether their texts are read: one read for each.
fn ids_by_texts<K>(keys: &[K], key: impl Fn(&K) -> (Uuid, Texts)) -> Vec<(Texts, Vec<Uuid>)> {
    [Texts::Skip, Texts::Read]
        .into_iter()
        .filter_map(|texts| {
            let ids: Vec<Uuid> = keys.iter().map(&key).filter(|k| k.1 == texts).map(|k| k.0).collect();
            (!ids.is_empty()).then_some((texts, ids))
        })
        .collect()
}

/// A trace and the tree of its spans.
#[derive(Debug, Clone)]
pub struct TraceDetail {
    pub trace: trace::Model,
    pub tree: Arc<SpanTree>,
}

impl Loader<TraceWithTree> for Loaders {
    type Value = Arc<TraceDetail>;
    type Error = AppError;

    async fn load(&self, keys: &[TraceWithTree]) -> Result<HashMap<TraceWithTree, Self::Value>, Self::Error> {
        let mut out = HashMap::with_capacity(keys.len());
        for (texts, ids) in ids_by_texts(keys, |k| (k.trace_id, k.texts)) {
            let bounds = store::detail::Bounds {
                max_tree_spans: self.max_tree_spans,
                span_rows: self.spans.rows_to_read(),
            };
            let (traces, spans) = store::detail::traces_with_spans(&self.db.read, &ids, texts, bounds).await?;
            self.spans.spend(spans.len())?;
            let mut trees = group(&ids, spans, |s| Some(s.trace_id));
            for trace in traces {
                let tree = SpanTree::of(trees.remove(&trace.id).unwrap_or_default());
                let key = TraceWithTree {
                    trace_id: trace.id,
                    texts,
                };
                let tree = Arc::new(tree);
                out.insert(key, Arc::new(TraceDetail { trace, tree }));
            }
        }
        Ok(out)
    }
}

impl Loader<RootSpansOf> for Loaders {
    type Value = Vec<span::Model>;
    type Error = AppError;

    async fn load(&self, keys: &[RootSpansOf]) -> Result<HashMap<RootSpansOf, Self::Value>, Self::Error> {
        let cond = Condition::all()
            .add(span::Column::TraceId.is_in(keys.iter().map(|k| k.0)))
            .add(span::Column::ParentId.is_null());
        let rows = self.spans_within_budget(cond, Texts::Read).await?;
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
            let rows = self.spans_within_budget(cond, Texts::Read).await?;
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
