use std::sync::Arc;

use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::trace::CHILDREN_PER_SPAN;
use super::{SpanFlag, SpanList, TokenUsage, Trace, micros_to_ms};
use crate::db::entities::span;
use crate::graphql::loaders::{FlagsOf, SpanId, TraceId};
use crate::graphql::{Json, load_many, load_one, texts_for, tree};
use crate::model::SpanType;

/// One operation inside a trace: an LLM call, a tool call, a function, a message.
/// Shared, not copied: a span tree's rows are handed out by reference to each nested
/// field, and a live event's row to each subscriber.
pub struct Span(pub Arc<span::Model>);

impl From<span::Model> for Span {
    fn from(row: span::Model) -> Self {
        Self(Arc::new(row))
    }
}

/// What a span's fields answer, shared by its resolvers and `SpanList`.
impl Span {
    pub(crate) fn kind_of(row: &span::Model) -> SpanType {
        // Only valid types are ever written; fall back rather than fail a whole page.
        SpanType::parse(&row.span_type).unwrap_or(SpanType::Function)
    }

    /// Tokens and cost of an LLM span; none for other span types.
    pub(crate) fn usage_of(row: &span::Model) -> Option<TokenUsage> {
        (row.span_type == SpanType::Llm.as_str()).then(|| TokenUsage::of_span(row))
    }
}

#[Object]
impl Span {
    /// Unique id (client-chosen or generated).
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// The trace this span belongs to.
    async fn trace_id(&self) -> Uuid {
        self.0.trace_id
    }
    /// The trace this span belongs to.
    async fn trace(&self, ctx: &Context<'_>) -> Result<Option<Trace>> {
        load_one(ctx, TraceId(self.0.trace_id)).await
    }
    /// The enclosing span; null for a root span.
    async fn parent_id(&self) -> Option<Uuid> {
        self.0.parent_id
    }
    /// The enclosing span; null for a root span.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Span>> {
        match self.0.parent_id {
            Some(id) => load_one(ctx, SpanId(id)).await,
            None => Ok(None),
        }
    }
    /// The spans nested directly inside this one, in start order. Refused for a span of
    /// a trace of more spans than the server reads whole (`--max-tree-spans`): read such
    /// a trace with `spans(filter: {traceId})`. Its tree counts toward the spans of whole
    /// traces one request reads (`--max-request-spans`, 50,000 by default).
    #[graphql(complexity = "CHILDREN_PER_SPAN * child_complexity")]
    async fn children(&self, ctx: &Context<'_>) -> Result<SpanList> {
        // This span is in its trace's tree: an empty tree is one not read.
        let tree = tree(ctx, self.0.trace_id, texts_for([ctx.field()]), "children", true).await?;
        Ok(SpanList::in_tree(tree.children_of(self.0.id), &tree))
    }
    /// Operation name, e.g. `openai.chat` or `search_docs`.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// What kind of operation this is.
    async fn span_type(&self) -> SpanType {
        Self::kind_of(&self.0)
    }
    /// When the operation started (UTC).
    async fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }
    /// When it completed (UTC); null while it runs.
    async fn ended_at(&self) -> Option<DateTime<Utc>> {
        self.0.ended_at
    }
    /// Wall time in milliseconds; null while it runs.
    async fn duration_ms(&self) -> Option<f64> {
        micros_to_ms(self.0.duration_us)
    }
    /// Input to the operation (a prompt, tool arguments).
    async fn input_text(&self) -> Option<&str> {
        self.0.input_text.as_deref()
    }
    /// Output or result of the operation.
    async fn output_text(&self) -> Option<&str> {
        self.0.output_text.as_deref()
    }
    /// Error message if the operation failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// Free-form data; LLM spans carry model, tokens and cost here.
    async fn metadata(&self) -> Json {
        async_graphql::Json(self.0.metadata.clone())
    }
    /// Tokens and cost of an LLM span; null for other span types.
    async fn usage(&self) -> Option<TokenUsage> {
        Self::usage_of(&self.0)
    }
    /// Whether the span is flagged for review now.
    async fn flagged(&self) -> bool {
        self.0.flagged
    }
    /// Every flag ever put on the span, oldest first, resolved ones included.
    #[graphql(complexity = "CHILDREN_PER_SPAN * child_complexity")]
    async fn flags(&self, ctx: &Context<'_>) -> Result<Vec<SpanFlag>> {
        load_many(ctx, FlagsOf(self.0.id)).await
    }
}
