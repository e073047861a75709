//! Mutation root. Each call validates everything first, then writes in one
//! transaction, then publishes to the live feed after commit.

use std::sync::Arc;

use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::types::{Span, SpanFlag, Trace};
use super::{State, check_span_product, check_trace_products, gql, write_state};
use crate::auth::{Access, Scope};
use crate::db::entities::span;
use crate::db::store;
use crate::error::{AppError, AppResult};
use crate::given::Given;
use crate::ingest::{self, EndTraceDraft, NewSpan, SpanDraft, TraceDraft, TraceEnd};
use crate::write;

pub struct Mutation;

#[Object]
impl Mutation {
    /// Starts a trace. With a client `id`, repeating the call returns the same trace.
    async fn create_trace(&self, ctx: &Context<'_>, input: TraceDraft) -> Result<Trace> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let new = gql(ingest::validate_trace(input, &s.limits))?;
        gql(access.check_product(new.row.product_id))?;
        let mut rows = gql(write::create_traces(&s.db, vec![new]).await)?;
        Ok(Trace(rows.remove(0)))
    }

    /// Starts many traces in one transaction: all are stored, or none. Each may carry a
    /// client id, which makes the call safe to retry.
    async fn create_traces(&self, ctx: &Context<'_>, inputs: Vec<TraceDraft>) -> Result<Vec<Trace>> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let news = gql(validate_batch(inputs, s.limits.max_batch_spans, |input| {
            ingest::validate_trace(input, &s.limits)
        }))?;
        for new in &news {
            gql(access.check_product(new.row.product_id))?;
        }
        let rows = gql(write::create_traces(&s.db, news).await)?;
        Ok(rows.into_iter().map(Trace).collect())
    }

    /// Ends many traces in one transaction (all, or none), writing each usage record once.
    async fn end_traces(&self, ctx: &Context<'_>, inputs: Vec<EndTraceDraft>) -> Result<Vec<Trace>> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let ends = gql(validate_batch(inputs, s.limits.max_batch_spans, |input| {
            ingest::validate_end(input, &s.limits)
        }))?;
        check_trace_products(access, &s.db, ends.iter().map(|e| e.id)).await?;
        let rows = gql(write::end_traces(&s.db, &s.live, ends).await)?;
        Ok(rows.into_iter().map(Trace).collect())
    }

    /// Adds one span. Its parent must be in the same trace.
    async fn add_span(&self, ctx: &Context<'_>, input: SpanDraft) -> Result<Span> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let new = gql(ingest::validate_span(input, &s.limits, &s.prices))?;
        let mut rows = store_spans(s, access, vec![new]).await?;
        Ok(Span(rows.remove(0)))
    }

    /// Adds a batch of spans in one transaction: all are stored, or none.
    async fn add_spans(&self, ctx: &Context<'_>, inputs: Vec<SpanDraft>) -> Result<Vec<Span>> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let news = gql(validate_batch(inputs, s.limits.max_batch_spans, |input| {
            ingest::validate_span(input, &s.limits, &s.prices)
        }))?;
        let rows = store_spans(s, access, news).await?;
        Ok(rows.into_iter().map(Span).collect())
    }

    /// Ends a span, optionally with its output or error. Repeating the same end is a no-op.
    async fn end_span(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        #[graphql(desc = "Defaults to now.")] ended_at: Option<Given<DateTime<Utc>>>,
        output_text: Option<String>,
        error: Option<String>,
    ) -> Result<Span> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let ended_at = gql(ingest::given_time("endedAt", ended_at))?;
        check_span_product(access, &s.db, id).await?;
        for (field, text) in [("outputText", &output_text), ("error", &error)] {
            if let Some(text) = text {
                gql(ingest::check_text(field, text, s.limits.max_text_bytes))?;
            }
        }
        let row = gql(write::update_span(&s.db, &s.live, async |txn| {
            store::spans::end(txn, id, ended_at, output_text, error).await
        })
        .await)?;
        Ok(Span::from(row))
    }

    /// Ends a trace and writes its usage record, once. Repeating the same end is a no-op.
    async fn end_trace(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        #[graphql(desc = "Defaults to now.")] ended_at: Option<Given<DateTime<Utc>>>,
        error: Option<String>,
    ) -> Result<Trace> {
        let (s, access) = write_state(ctx, Scope::Ingest)?;
        let ended_at = gql(ingest::given_time("endedAt", ended_at))?;
        check_trace_products(access, &s.db, [id]).await?;
        if let Some(text) = &error {
            gql(ingest::check_text("error", text, s.limits.max_text_bytes))?;
        }
        let end = TraceEnd { id, ended_at, error };
        let mut rows = gql(write::end_traces(&s.db, &s.live, vec![end]).await)?;
        Ok(Trace(rows.remove(0)))
    }

    /// Flags a span for review with a reason; every flag is kept with its time.
    async fn flag_span(&self, ctx: &Context<'_>, id: Uuid, reason: String) -> Result<Span> {
        let (s, access) = write_state(ctx, Scope::Admin)?;
        check_span_product(access, &s.db, id).await?;
        if reason.trim().is_empty() {
            return gql(Err(AppError::bad_input("reason", "must not be empty")));
        }
        gql(ingest::check_text("reason", &reason, s.limits.max_text_bytes))?;
        let by = access.key_name().map(str::to_owned);
        let row = gql(write::update_span(&s.db, &s.live, async |txn| {
            store::flags::flag(txn, id, reason, by).await
        })
        .await)?;
        Ok(Span::from(row))
    }

    /// Resolves one flag with a reviewer's note. The span leaves the review queue when its
    /// last open flag is resolved. Resolving a resolved flag again without a note or with
    /// the same one (a retry) changes nothing; with another note it is refused with
    /// CONFLICT, the first note kept.
    async fn resolve_flag(&self, ctx: &Context<'_>, flag_id: Uuid, note: Option<String>) -> Result<SpanFlag> {
        let (s, access) = write_state(ctx, Scope::Admin)?;
        if let Some(note) = &note {
            gql(ingest::check_text("note", note, s.limits.max_text_bytes))?;
        }
        let flag = gql(store::flags::get(&s.db.read, flag_id).await)?;
        check_span_product(access, &s.db, flag.span_id).await?;
        let by = access.key_name().map(str::to_owned);
        gql(write::update_span(&s.db, &s.live, async |txn| {
            store::flags::resolve(txn, flag_id, note, by).await
        })
        .await)?;
        Ok(SpanFlag(gql(store::flags::get(&s.db.read, flag_id).await)?))
    }

    /// Clears a span's flag; its flags stay on record as resolved.
    async fn unflag_span(&self, ctx: &Context<'_>, id: Uuid) -> Result<Span> {
        let (s, access) = write_state(ctx, Scope::Admin)?;
        check_span_product(access, &s.db, id).await?;
        let row = gql(write::update_span(&s.db, &s.live, async |txn| store::flags::unflag(txn, id).await).await)?;
        Ok(Span::from(row))
    }
}

/// Stores validated spans once the caller may write to each span's trace.
async fn store_spans(s: &State, access: &Access, news: Vec<NewSpan>) -> Result<Vec<Arc<span::Model>>> {
    check_trace_products(access, &s.db, news.iter().map(|n| n.row.trace_id)).await?;
    gql(write::add_spans(&s.db, &s.live, news).await)
}

/// A batch of at most `max` items, each validated (no I/O), the first refused named by
/// its place: `inputs[3].parentId`.
fn validate_batch<I, T>(inputs: Vec<I>, max: usize, validate: impl Fn(I) -> AppResult<T>) -> AppResult<Vec<T>> {
    AppError::within("inputs", "items per batch", inputs.len(), max)?;
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| validate(input).map_err(|e| e.at(&format!("inputs[{i}]"))))
        .collect()
}
