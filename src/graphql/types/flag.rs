use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Span;
use crate::db::entities::span_flag;
use crate::graphql::load_one;
use crate::graphql::loaders::SpanId;

/// A mark that a span needs review, with why and when.
pub struct SpanFlag(pub span_flag::Model);

impl From<span_flag::Model> for SpanFlag {
    fn from(row: span_flag::Model) -> Self {
        Self(row)
    }
}

#[Object]
impl SpanFlag {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    /// The flagged span.
    async fn span_id(&self) -> Uuid {
        self.0.span_id
    }
    /// Why it was flagged, e.g. "incorrect refund amount".
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    /// When it was flagged (UTC).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the flag was cleared (UTC); null while open.
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.0.resolved_at
    }
    /// Whether the flag is still open.
    async fn open(&self) -> bool {
        self.0.resolved_at.is_none()
    }
    /// The API key that flagged the span, where keys are in use.
    async fn created_by(&self) -> Option<&str> {
        self.0.created_by.as_deref()
    }
    /// The API key that resolved the flag, where keys are in use.
    async fn resolved_by(&self) -> Option<&str> {
        self.0.resolved_by.as_deref()
    }
    /// What the reviewer concluded.
    async fn resolution_note(&self) -> Option<&str> {
        self.0.resolution_note.as_deref()
    }
    /// The flagged span.
    async fn span(&self, ctx: &Context<'_>) -> Result<Option<Span>> {
        load_one(ctx, SpanId(self.0.span_id)).await
    }
}
