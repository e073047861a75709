//! Query root: lists with filters, sorts and pages, and lookups by id.

use std::sync::Arc;

use async_graphql::dataloader::Loader;
use async_graphql::{Context, Object, Result};
use futures::FutureExt;
use uuid::Uuid;

use super::api::AloneAtRoot;
use super::loaders::{SpanId, TraceDetail, TraceId, TraceWithTree, TreeOf};
use super::types::stats::{SpanStats, SpanStatsGroupBy, StatsInterval, TraceStats, UsageGroupBy, UsageSummaryRow};
use super::types::{AgentUsagePage, Span, SpanList, SpanPage, Trace, TraceList, TracePage};
use super::{AppLoader, allow, db, gql, load_one, prefetch_trees, texts_for, tree_field, tree_texts};
use crate::auth::Scope;
use crate::db::store::spans::Texts;
use crate::db::store::stats::{SpanGroup, UsageGroup};
use crate::db::store::{self, Rows};
use crate::error::AppResult;
use crate::filters::{AgentUsageFilter, Page, ProductScoped, SpanFilter, SpanSort, TraceFilter, TraceSort};

pub struct Query;

/// A page's rows (see `rows_if_shown`) and its `totalCount`, counted only when asked
/// for. The two are read side by side, so a page that shows both waits for the slower
/// read, not for both in turn.
async fn page_reads<T>(
    ctx: &Context<'_>,
    rows: impl Future<Output = Result<Rows<T>>>,
    count: impl Future<Output = AppResult<u64>>,
) -> Result<(Rows<T>, Option<u64>)> {
    let count = async {
        match ctx.look_ahead().field("totalCount").exists() {
            true => gql(count.await).map(Some),
            false => Ok(None),
        }
    };
    futures::try_join!(rows_if_shown(ctx, rows), count)
}

/// `filter` (or none) as the caller may read with it: the key's read scope checked, and
/// its products forced in.
fn readable<F: ProductScoped + Default>(ctx: &Context<'_>, filter: Option<F>) -> Result<F> {
    let access = allow(ctx, Scope::Read)?;
    let mut filter = filter.unwrap_or_default();
    let (requested, products) = filter.product_scope();
    *products = gql(access.restrict(requested))?;
    Ok(filter)
}

/// A page's rows, read only when the selection shows them (`items`, `hasNextPage`): a
/// page asked only for its counts or totals costs no list statement.
async fn rows_if_shown<T>(ctx: &Context<'_>, rows: impl Future<Output = Result<Rows<T>>>) -> Result<Rows<T>> {
    let page = ctx.look_ahead();
    if page.field("items").exists() || page.field("hasNextPage").exists() {
        rows.await
    } else {
        Ok(Rows::unread())
    }
}

// The page and statistics resolvers box their work. An object's `resolve_field` future
// is as large as its largest resolver's, and the engine moves one into a box for every
// field it resolves: inline, the pages' joined reads (9–11 KB) made every root field of
// every query, `trace(id)` included, cost a copy of that size. The box is itself one
// such copy, which is why the reads below return small futures (`db::reads`).
#[Object]
impl Query {
    /// A page of traces, newest first unless sorted otherwise.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    async fn traces(
        &self,
        ctx: &Context<'_>,
        filter: Option<TraceFilter>,
        #[graphql(default_with = "Some(TraceSort::StartedAtDesc)")] sort: Option<TraceSort>,
        #[graphql(default_with = "Some(50)", desc = "Page size, 1 to 500.")] limit: Option<i64>,
        #[graphql(default_with = "Some(0)")] offset: Option<i64>,
    ) -> Result<TracePage> {
        async move {
            let filter = readable(ctx, filter)?;
            let window = gql(Page::from_args(limit, offset))?;
            let read = &db(ctx)?.read;
            let items = ctx.look_ahead().field("items");
            let rows = async {
                let metadata = if items.field("metadata").exists() {
                    Texts::Read
                } else {
                    Texts::Skip
                };
                let sort = sort.unwrap_or_default();
                let rows = gql(store::traces::list(read, &filter, sort, window, metadata).await)?;
                if let Some(below) = tree_field(items) {
                    let ids: Vec<Uuid> = rows.items.iter().map(|t| t.id).collect();
                    prefetch_trees(ctx, ids, below).await?;
                }
                Ok(rows)
            };
            let (rows, counted) = page_reads(ctx, rows, store::traces::count(read, &filter)).await?;
            Ok(TracePage {
                items: TraceList(rows.items.into_iter().map(Trace).collect()),
                has_next_page: rows.has_next_page,
                counted,
                filter,
            })
        }
        .boxed()
        .await
    }

    /// One trace by id; null if there is none.
    async fn trace(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Trace>> {
        let access = allow(ctx, Scope::Read)?;
        // The span tree needs only the id: it is read with the trace row. A trace the key
        // may not see shows no field, so its tree is never shown.
        let trace = match tree_field(ctx.look_ahead()).and_then(tree_texts) {
            Some(texts) => with_tree(ctx, id, texts).await?,
            None => load_one::<_, _, Trace>(ctx, TraceId(id)).await?,
        };
        if let Some(t) = &trace {
            gql(access.check_product(t.0.product_id))?;
        }
        Ok(trace)
    }

    /// One span by id; null if there is none.
    async fn span(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Span>> {
        let access = allow(ctx, Scope::Read)?;
        let span: Option<Span> = load_one(ctx, SpanId(id)).await?;
        if let Some(s) = &span {
            gql(access.check_product(s.0.product_id))?;
        }
        Ok(span)
    }

    /// A page of spans across traces, oldest first unless sorted otherwise.
    /// `filter: {flagged: true}, sort: STARTED_AT_DESC` is the review queue.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    async fn spans(
        &self,
        ctx: &Context<'_>,
        filter: Option<SpanFilter>,
        #[graphql(default_with = "Some(SpanSort::StartedAtAsc)")] sort: Option<SpanSort>,
        #[graphql(default_with = "Some(50)", desc = "Page size, 1 to 500.")] limit: Option<i64>,
        #[graphql(default_with = "Some(0)")] offset: Option<i64>,
    ) -> Result<SpanPage> {
        async move {
            let filter = readable(ctx, filter)?;
            let window = gql(Page::from_args(limit, offset))?;
            let items = ctx.look_ahead().field("items");
            let read = &db(ctx)?.read;
            let rows = async {
                let texts = texts_for(items.selection_fields());
                let rows = gql(store::spans::list(read, &filter, sort.unwrap_or_default(), window, texts).await)?;
                let children = items.field("children");
                if children.exists() {
                    let ids: Vec<Uuid> = rows.items.iter().map(|s| s.trace_id).collect();
                    prefetch_trees(ctx, ids, children).await?;
                }
                Ok(rows)
            };
            let (rows, counted) = page_reads(ctx, rows, store::spans::count(read, &filter)).await?;
            Ok(SpanPage {
                items: SpanList::loaded(rows.items.into_iter().map(Span::from).collect()),
                has_next_page: rows.has_next_page,
                counted,
                filter,
            })
        }
        .boxed()
        .await
    }

    /// Usage records of ended traces, newest first, with totals over all matching records.
    #[graphql(complexity = "page_cost(limit, child_complexity)")]
    async fn agent_usage(
        &self,
        ctx: &Context<'_>,
        filter: Option<AgentUsageFilter>,
        #[graphql(default_with = "Some(50)", desc = "Page size, 1 to 500.")] limit: Option<i64>,
        #[graphql(default_with = "Some(0)")] offset: Option<i64>,
    ) -> Result<AgentUsagePage> {
        async move {
            let filter = readable(ctx, filter)?;
            let window = gql(Page::from_args(limit, offset))?;
            let read = &db(ctx)?.read;
            let rows = async { gql(store::agent_usage::list(read, &filter, window).await) };
            let (rows, counted, summed) = if ctx.look_ahead().field("totals").exists() {
                // The totals count their records too: one statement answers `totals` and
                // `totalCount` both.
                let totals = async { gql(store::agent_usage::totals(read, &filter).await) };
                let (rows, totals) = futures::try_join!(rows_if_shown(ctx, rows), totals)?;
                (rows, Some(totals.record_count()), Some(totals))
            } else {
                let (rows, counted) = page_reads(ctx, rows, store::agent_usage::count(read, &filter)).await?;
                (rows, counted, None)
            };
            Ok(AgentUsagePage {
                items: rows.items.into_iter().map(Into::into).collect(),
                has_next_page: rows.has_next_page,
                counted,
                summed,
                filter,
            })
        }
        .boxed()
        .await
    }

    /// LLM calls, tokens and cost of the LLM spans matching `filter`, grouped; without
    /// `groupBy`, one row of totals. `DAY`/`HOUR` make a time series for charts.
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        filter: Option<SpanFilter>,
        #[graphql(default)] group_by: Vec<UsageGroupBy>,
    ) -> Result<Vec<UsageSummaryRow>> {
        async move {
            let filter = readable(ctx, filter)?;
            let groups: Vec<UsageGroup> = group_by.into_iter().map(Into::into).collect();
            let rows = gql(store::stats::usage_summary(&db(ctx)?.read, &filter, &groups).await)?;
            Ok(rows.into_iter().map(Into::into).collect())
        }
        .boxed()
        .await
    }

    /// Count, errors, latency percentiles and cost of the traces matching `filter`.
    async fn trace_stats(&self, ctx: &Context<'_>, filter: Option<TraceFilter>) -> Result<TraceStats> {
        async move {
            let filter = readable(ctx, filter)?;
            let rows = gql(store::stats::trace_stats(&db(ctx)?.read, &filter, None).await)?;
            match rows.into_iter().next() {
                Some(stats) => gql(TraceStats::from_stats(stats, false)),
                None => Ok(TraceStats::empty()),
            }
        }
        .boxed()
        .await
    }

    /// `traceStats` per hour or day of trace start, for charts; empty buckets are left out.
    async fn trace_stats_series(
        &self,
        ctx: &Context<'_>,
        filter: Option<TraceFilter>,
        interval: StatsInterval,
    ) -> Result<Vec<TraceStats>> {
        async move {
            let filter = readable(ctx, filter)?;
            let rows = gql(store::stats::trace_stats(&db(ctx)?.read, &filter, Some(interval.into())).await)?;
            rows.into_iter().map(|s| gql(TraceStats::from_stats(s, true))).collect()
        }
        .boxed()
        .await
    }

    /// Calls, errors and latency percentiles of the spans matching `filter`, grouped by
    /// type and/or name: which tools are called, how often, how slow, how often they fail.
    async fn span_stats(
        &self,
        ctx: &Context<'_>,
        filter: Option<SpanFilter>,
        #[graphql(default)] group_by: Vec<SpanStatsGroupBy>,
    ) -> Result<Vec<SpanStats>> {
        async move {
            let filter = readable(ctx, filter)?;
            let groups: Vec<SpanGroup> = group_by.iter().copied().map(Into::into).collect();
            let rows = gql(store::stats::span_stats(&db(ctx)?.read, &filter, &groups).await)?;
            Ok(rows.into_iter().map(|s| SpanStats::from_stats(s, &group_by)).collect())
        }
        .boxed()
        .await
    }
}

/// A page costs its selection once per row it may return.
fn page_cost(limit: Option<i64>, child_complexity: usize) -> usize {
    let rows = limit
        .unwrap_or(crate::filters::DEFAULT_PAGE_LIMIT)
        .clamp(1, crate::config::MAX_PAGE_LIMIT) as usize;
    rows.saturating_mul(child_complexity)
}

/// The trace `id` read with its span tree (on PostgreSQL one statement, for every
/// `trace(id)` of the request), the tree handed to the tree loader, where the nested
/// fields find it.
async fn with_tree(ctx: &Context<'_>, id: Uuid, texts: Texts) -> Result<Option<Trace>> {
    let loader = ctx.data::<AppLoader>()?;
    let key = TraceWithTree { trace_id: id, texts };
    let detail = if ctx.data_opt::<AloneAtRoot>().is_some() {
        // Nothing to batch with: read at once, without the loader's task.
        gql(Loader::load(loader.loader(), &[key]).boxed().await)?.remove(&key)
    } else {
        gql(loader.load_one(key).await)?
    };
    let Some(detail) = detail else {
        return Ok(None);
    };
    let TraceDetail { trace, tree } = Arc::unwrap_or_clone(detail);
    loader.feed_one(TreeOf { trace_id: id, texts }, tree).await;
    Ok(Some(Trace::from(trace)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `resolver` returns, without calling it.
    fn future_size<Fut>(_resolver: impl Fn(&'static Query, &'static Context<'static>) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn root_resolvers_keep_their_futures_small() {
        let sizes = [
            ("traces", future_size(|q, c| q.traces(c, None, None, None, None))),
            ("trace", future_size(|q, c| q.trace(c, Uuid::nil()))),
            ("span", future_size(|q, c| q.span(c, Uuid::nil()))),
            ("spans", future_size(|q, c| q.spans(c, None, None, None, None))),
            ("agentUsage", future_size(|q, c| q.agent_usage(c, None, None, None))),
            ("usageSummary", future_size(|q, c| q.usage_summary(c, None, Vec::new()))),
            ("traceStats", future_size(|q, c| q.trace_stats(c, None))),
            (
                "traceStatsSeries",
                future_size(|q, c| q.trace_stats_series(c, None, StatsInterval::Hour)),
            ),
            ("spanStats", future_size(|q, c| q.span_stats(c, None, Vec::new()))),
        ];
        for (field, size) in sizes {
            assert!(size < 1024, "{field}: {size} bytes");
        }
    }
}
