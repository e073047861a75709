//! Query root: lists with filters, sorts and pages, and lookups by id.

use async_graphql::{Context, Object, Result};
use uuid::Uuid;

use super::loaders::{SpanId, TraceId};
use super::types::{AgentUsagePage, Span, SpanPage, Trace, TracePage};
use super::{db, gql, load_one};
use crate::db::store;
use crate::filters::{AgentUsageFilter, Page, SpanFilter, SpanSort, TraceFilter, TraceSort};

pub struct Query;

#[Object]
impl Query {
    /// A page of traces, newest first unless sorted otherwise.
    async fn traces(
        &self,
        ctx: &Context<'_>,
        filter: Option<TraceFilter>,
        #[graphql(default)] sort: TraceSort,
        #[graphql(default = 50, desc = "Page size, 1 to 500.")] limit: i64,
        #[graphql(default = 0)] offset: i64,
    ) -> Result<TracePage> {
        let window = gql(Page::new(limit, offset))?;
        let filter = filter.unwrap_or_default();
        let rows = gql(store::traces::list(&db(ctx)?.read, &filter, sort, window).await)?;
        Ok(TracePage {
            items: rows.items.into_iter().map(Trace).collect(),
            has_next_page: rows.has_next_page,
            filter,
        })
    }

    /// One trace by id; null if there is none.
    async fn trace(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Trace>> {
        load_one(ctx, TraceId(id)).await
    }

    /// One span by id; null if there is none.
    async fn span(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Span>> {
        load_one(ctx, SpanId(id)).await
    }

    /// A page of spans across traces, oldest first unless sorted otherwise.
    /// `filter: {flagged: true}, sort: STARTED_AT_DESC` is the review queue.
    async fn spans(
        &self,
        ctx: &Context<'_>,
        filter: Option<SpanFilter>,
        #[graphql(default)] sort: SpanSort,
        #[graphql(default = 50, desc = "Page size, 1 to 500.")] limit: i64,
        #[graphql(default = 0)] offset: i64,
    ) -> Result<SpanPage> {
        let window = gql(Page::new(limit, offset))?;
        let filter = filter.unwrap_or_default();
        let rows = gql(store::spans::list(&db(ctx)?.read, &filter, sort, window).await)?;
        Ok(SpanPage {
            items: rows.items.into_iter().map(Span).collect(),
            has_next_page: rows.has_next_page,
            filter,
        })
    }

    /// Usage records of ended traces, newest first, with totals over all matching records.
    async fn agent_usage(
        &self,
        ctx: &Context<'_>,
        filter: Option<AgentUsageFilter>,
        #[graphql(default = 50, desc = "Page size, 1 to 500.")] limit: i64,
        #[graphql(default = 0)] offset: i64,
    ) -> Result<AgentUsagePage> {
        let window = gql(Page::new(limit, offset))?;
        let filter = filter.unwrap_or_default();
        let rows = gql(store::agent_usage::list(&db(ctx)?.read, &filter, window).await)?;
        Ok(AgentUsagePage {
            items: rows.items.into_iter().map(Into::into).collect(),
            has_next_page: rows.has_next_page,
            filter,
        })
    }
}
