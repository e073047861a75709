//! The in-process feeds of live events: writers publish after commit, each subscriber
//! filters. A subscriber that falls behind by more than the buffer is told how many
//! events it missed; writers never wait for subscribers. On PostgreSQL, `postgres`
//! relays events between server instances.

pub mod postgres;

use std::sync::Arc;

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::db::entities::{span, trace};
use crate::model::SpanType;

/// Events a subscriber may fall behind by before it is told it lagged.
pub const SUBSCRIBER_BUFFER: usize = 4096;

/// One kind of event, shared by reference among subscribers.
#[derive(Debug, Clone)]
pub struct Feed<T>(broadcast::Sender<Arc<T>>);

impl<T> Feed<T> {
    fn new(buffer: usize) -> Self {
        Self(broadcast::channel(buffer.max(1)).0)
    }

    fn publish(&self, event: T) {
        self.publish_shared(Arc::new(event));
    }

    fn publish_shared(&self, event: Arc<T>) {
        // No receiver is not an error: nobody is watching.
        let _ = self.0.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<T>> {
        self.0.subscribe()
    }
}

#[derive(Clone, Debug)]
pub struct LiveSpans {
    /// Spans newly written, in write order.
    pub added: Feed<span::Model>,
    /// Spans that ended or were flagged or unflagged.
    pub updated: Feed<span::Model>,
    /// Traces that ended.
    pub trace_ended: Feed<trace::Model>,
    /// Set on PostgreSQL: writes also tell the other instances.
    pub relay: Option<postgres::Relay>,
}

impl Default for LiveSpans {
    fn default() -> Self {
        Self::with_buffer(SUBSCRIBER_BUFFER)
    }
}

impl LiveSpans {
    pub fn with_buffer(buffer: usize) -> Self {
        Self {
            added: Feed::new(buffer),
            updated: Feed::new(buffer),
            trace_ended: Feed::new(buffer),
            relay: None,
        }
    }

    /// Feeds that also reach other instances sharing a PostgreSQL database.
    pub fn relayed(mut self) -> Self {
        self.relay = Some(postgres::Relay::new());
        self
    }

    pub fn publish_added(&self, spans: impl IntoIterator<Item = Arc<span::Model>>) {
        for span in spans {
            self.added.publish_shared(span);
        }
    }

    pub fn publish_updated(&self, span: &span::Model) {
        self.updated.publish(span.clone());
    }

    pub fn publish_trace_ended(&self, trace: &trace::Model) {
        self.trace_ended.publish(trace.clone());
    }
}

/// The filters a subscriber gave; unset ones match everything.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub trace_id: Option<Uuid>,
    pub agent: Option<Uuid>,
    pub product_id: Option<Uuid>,
    pub span_type: Option<SpanType>,
    /// Forced for a product-scoped key.
    pub products: Option<Vec<Uuid>>,
}

impl EventFilter {
    fn product_allowed(&self, product: Option<Uuid>) -> bool {
        self.products
            .as_ref()
            .is_none_or(|allowed| product.is_some_and(|p| allowed.contains(&p)))
    }

    pub fn matches_span(&self, s: &span::Model) -> bool {
        self.trace_id.is_none_or(|id| s.trace_id == id)
            && self.agent.is_none_or(|id| s.agent_id == Some(id))
            && self.product_id.is_none_or(|id| s.product_id == Some(id))
            && self.span_type.is_none_or(|t| s.span_type == t.as_str())
            && self.product_allowed(s.product_id)
    }

    pub fn matches_trace(&self, t: &trace::Model) -> bool {
        self.trace_id.is_none_or(|id| t.id == id)
            && self.agent.is_none_or(|id| t.agent_id == Some(id))
            && self.product_id.is_none_or(|id| t.product_id == Some(id))
            && self.product_allowed(t.product_id)
    }
}
