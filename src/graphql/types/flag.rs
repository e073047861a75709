use async_graphql::Object;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::entities::span_flag;

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
}
