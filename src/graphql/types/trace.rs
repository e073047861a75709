use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{AgentUsage, Span, SpanList, TokenUsage, micros_to_ms};
use crate::db::entities::trace;
use crate::filters::SpanFilter;
use crate::graphql::loaders::{RootSpansOf, SpansOfTrace, UsageOfTrace};
use crate::graphql::{Json, load_many, load_one, state, texts_for, too_large, tree};
use crate::model::TraceStatus;

/// Expected list sizes, for query complexity: a cost estimate, not a cap.
pub const SPANS_PER_TRACE: usize = 100;
pub const CHILDREN_PER_SPAN: usize = 5;

/// A complete record of one agent run.
pub struct Trace(pub trace::Model);

#[Object]
impl Trace {
    /// Unique id (client-chosen or generated).
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// What the run was, e.g. `support-chat`.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The agent that ran.
    async fn agent_id(&self) -> Option<Uuid> {
        self.0.agent_id
    }
    /// The product the agent belongs to.
    async fn product_id(&self) -> Option<Uuid> {
        self.0.product_id
    }
    /// When the run started (UTC).
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// When the run ended (UTC); null while it runs.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at
    }
    /// Wall time from start to end, in milliseconds; null while it runs.
    async fn duration_ms(&self) -> Option<f64> {
        micros_to_ms(self.0.duration_us)
    }
    /// `ERROR` if the trace or any span has an error, else `RUNNING` until ended, then `OK`.
    async fn status(&self) -> TraceStatus {
        Self::status_of(&self.0)
    }
    /// The run's own error message, if it failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// Free-form data the client attached.
    async fn metadata(&self) -> Json {
        async_graphql::Json(self.0.metadata.clone())
    }
    /// How many spans the trace has.
    async fn span_count(&self) -> i64 {
        self.0.span_count
    }
    /// How many of its spans are flagged for review now.
    async fn flagged_span_count(&self) -> i64 {
        self.0.flagged_span_count
    }
    /// All spans of the trace in start order, optionally narrowed. A trace of more spans
    /// than the server reads whole (`--max-tree-spans`, 10,000 by default) is refused
    /// with LIMIT_EXCEEDED: read it a page at a time with `spans(filter: {traceId})`. The
    /// spans read count toward those of whole traces one request reads
    /// (`--max-request-spans`, 50,000 by default), as `rootSpans` and `children` do.
    #[graphql(complexity = "SPANS_PER_TRACE * child_complexity")]
    async fn spans(&self, ctx: &Context<'_>, filter: Option<SpanFilter>) -> Result<SpanList> {
        self.read_whole(ctx, "spans")?;
        match filter {
            Some(filter) if filter != SpanFilter::default() => {
                let key = SpansOfTrace {
                    trace_id: self.0.id,
                    filter,
                };
                Ok(SpanList::loaded(load_many::<_, _, Span>(ctx, key).await?))
            }
            _ => {
                let tree = tree(ctx, self.0.id, texts_for([ctx.field()]), "spans", self.has_spans()).await?;
                Ok(SpanList::in_tree(tree.all().iter(), &tree))
            }
        }
    }
    /// The spans without a parent, in start order. Refused, as `spans` is, for a trace
    /// of more spans than the server reads whole.
    #[graphql(complexity = "CHILDREN_PER_SPAN * child_complexity")]
    async fn root_spans(&self, ctx: &Context<'_>) -> Result<SpanList> {
        self.read_whole(ctx, "rootSpans")?;
        // Going deeper needs the whole tree anyway; the roots alone use their own index.
        if ctx.look_ahead().field("children").exists() {
            let tree = tree(ctx, self.0.id, texts_for([ctx.field()]), "rootSpans", self.has_spans()).await?;
            return Ok(SpanList::in_tree(tree.roots(), &tree));
        }
        Ok(SpanList::loaded(
            load_many::<_, _, Span>(ctx, RootSpansOf(self.0.id)).await?,
        ))
    }
    /// LLM usage summed over the trace's spans.
    async fn usage(&self) -> TokenUsage {
        TokenUsage::of_trace(&self.0)
    }
    /// The usage record written when the trace ended; null while it runs.
    async fn agent_usage(&self, ctx: &Context<'_>) -> Result<Option<AgentUsage>> {
        load_one(ctx, UsageOfTrace(self.0.id)).await
    }
}

impl Trace {
    /// Refuses `field` of a trace with more spans than one answer reads whole, before
    /// anything is read. (A tree read leaves out such a trace's spans even if the trace
    /// grew past the bound since its row was read: `graphql::tree`.)
    fn read_whole(&self, ctx: &Context<'_>, field: &'static str) -> Result<()> {
        match self.0.span_count > state(ctx)?.limits.max_tree_spans {
            true => Err(too_large(ctx, field, self.0.id)),
            false => Ok(()),
        }
    }

    fn has_spans(&self) -> bool {
        self.0.span_count > 0
    }

    pub(crate) fn status_of(row: &trace::Model) -> TraceStatus {
        if row.has_error {
            TraceStatus::Error
        } else if row.ended_at.is_none() {
            TraceStatus::Running
        } else {
            TraceStatus::Ok
        }
    }
}

impl From<trace::Model> for Trace {
    fn from(row: trace::Model) -> Self {
        Self(row)
    }
}
