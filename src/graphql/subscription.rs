//! Subscription root: live spans, filtered per subscriber.

use async_graphql::{Context, ErrorExtensions, Result, Subscription};
use futures::{Stream, StreamExt, future};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use super::state;
use super::types::Span;
use crate::error::AppError;
use crate::live::SpanEventFilter;
use crate::model::SpanType;

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every span written from now on that matches all given filters, in write order.
    /// A subscriber that falls too far behind gets an error saying how many spans it
    /// missed, and its subscription ends.
    async fn span_added(
        &self,
        ctx: &Context<'_>,
        trace_id: Option<Uuid>,
        agent: Option<Uuid>,
        product_id: Option<Uuid>,
        span_type: Option<SpanType>,
    ) -> Result<impl Stream<Item = Result<Span>> + use<>> {
        let filter = SpanEventFilter {
            trace_id,
            agent,
            product_id,
            span_type,
        };
        let rx = state(ctx)?.live.subscribe_added();
        let events = BroadcastStream::new(rx).filter_map(move |msg| {
            future::ready(match msg {
                Ok(ev) if filter.matches(&ev.span) => Some(Ok(Span((*ev.span).clone()))),
                Ok(_) => None,
                Err(BroadcastStreamRecvError::Lagged(n)) => Some(Err(AppError::SubscriberLagged(n).extend())),
            })
        });
        // End the stream right after a lag error: the subscriber must resubscribe.
        Ok(events.scan(false, |ended, item| {
            if *ended {
                return future::ready(None);
            }
            *ended = item.is_err();
            future::ready(Some(item))
        }))
    }
}
