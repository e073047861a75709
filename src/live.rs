//! The in-process feed of span events: writers publish after commit, each
//! subscriber filters. A subscriber that falls behind by more than the buffer is told
//! how many events it missed; writers never wait for subscribers.

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::entities::span;
use crate::model::SpanType;

/// Events a subscriber may fall behind by before it is told it lagged.
pub const SUBSCRIBER_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct SpanEvent {
    pub span: Arc<span::Model>,
}

#[derive(Clone, Debug)]
pub struct LiveSpans {
    added: broadcast::Sender<SpanEvent>,
}

impl Default for LiveSpans {
    fn default() -> Self {
        Self {
            added: broadcast::channel(SUBSCRIBER_BUFFER).0,
        }
    }
}

impl LiveSpans {
    /// Publishes newly written spans in write order.
    pub fn publish_added(&self, spans: &[span::Model]) {
        for span in spans {
            // No receiver is not an error: nobody is watching.
            let _ = self.added.send(SpanEvent {
                span: Arc::new(span.clone()),
            });
        }
    }

    pub fn subscribe_added(&self) -> broadcast::Receiver<SpanEvent> {
        self.added.subscribe()
    }
}

/// The filters a `spanAdded` subscriber gave; unset ones match everything.
#[derive(Debug, Clone, Default)]
pub struct SpanEventFilter {
    pub trace_id: Option<Uuid>,
    pub agent: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub span_type: Option<SpanType>,
}

impl SpanEventFilter {
    pub fn matches(&self, s: &span::Model) -> bool {
        self.trace_id.is_none_or(|id| s.trace_id == id)
            && self.agent.is_none_or(|id| s.agent_id == Some(id))
            && self.product_id.is_none_or(|id| s.product_id == Some(id))
            && self.span_type.is_none_or(|t| s.span_type == t.as_str())
    }
}
