//! Subscription root: live spans and trace ends, filtered per subscriber.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, Result, Subscription};
use futures::{Stream, StreamExt, future};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use super::types::{Span, Trace};
use super::{allow, gql, state};
use crate::auth::Scope;
use crate::db::entities::span;
use crate::error::AppError;
use crate::live::{EventFilter, Feed, LiveSpans};
use crate::model::SpanType;

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Every span written from now on that matches all given filters, in write order.
    /// A subscriber that falls too far behind gets an error saying how many events it
    /// missed, and its subscription ends.
    async fn span_added(
        &self,
        ctx: &Context<'_>,
        trace_id: Option<Uuid>,
        agent: Option<Uuid>,
        product_id: Option<Uuid>,
        span_type: Option<SpanType>,
    ) -> Result<impl Stream<Item = Result<Span>> + use<>> {
        let filter = EventFilter {
            trace_id,
            agent,
            product_id,
            span_type,
            products: None,
        };
        span_feed(ctx, |live| &live.added, filter)
    }

    /// Every span that from now on ends, or is flagged or unflagged, matching all given
    /// filters. Lag is handled as for `spanAdded`.
    async fn span_updated(
        &self,
        ctx: &Context<'_>,
        trace_id: Option<Uuid>,
        agent: Option<Uuid>,
        product_id: Option<Uuid>,
        span_type: Option<SpanType>,
    ) -> Result<impl Stream<Item = Result<Span>> + use<>> {
        let filter = EventFilter {
            trace_id,
            agent,
            product_id,
            span_type,
            products: None,
        };
        span_feed(ctx, |live| &live.updated, filter)
    }

    /// Every trace that from now on ends, matching all given filters.
    async fn trace_ended(
        &self,
        ctx: &Context<'_>,
        agent: Option<Uuid>,
        product_id: Option<Uuid>,
    ) -> Result<impl Stream<Item = Result<Trace>> + use<>> {
        let filter = for_reader(
            ctx,
            EventFilter {
                agent,
                product_id,
                ..Default::default()
            },
        )?;
        let rx = state(ctx)?.live.trace_ended.subscribe();
        Ok(follow(rx, move |t| {
            filter.matches_trace(t).then(|| Trace(t.as_ref().clone()))
        }))
    }
}

/// A reader's filter: the key's products are forced in.
fn for_reader(ctx: &Context<'_>, mut filter: EventFilter) -> Result<EventFilter> {
    filter.products = gql(allow(ctx, Scope::Read)?.restrict(filter.product_id))?;
    Ok(filter)
}

fn span_feed(
    ctx: &Context<'_>,
    feed: fn(&LiveSpans) -> &Feed<span::Model>,
    filter: EventFilter,
) -> Result<impl Stream<Item = Result<Span>> + use<>> {
    let filter = for_reader(ctx, filter)?;
    let rx = feed(&state(ctx)?.live).subscribe();
    Ok(follow(rx, move |s| filter.matches_span(s).then(|| Span(Arc::clone(s)))))
}

/// Turns a feed into a subscriber's stream: `pick` filters and converts each event; a
/// lag becomes one error item, after which the stream ends (the subscriber must
/// resubscribe, knowing what it missed).
fn follow<T, U>(
    rx: broadcast::Receiver<Arc<T>>,
    pick: impl Fn(&Arc<T>) -> Option<U> + Send + 'static,
) -> impl Stream<Item = Result<U>>
where
    T: Send + Sync + 'static,
    U: Send + 'static,
{
    let events = BroadcastStream::new(rx).filter_map(move |msg| {
        future::ready(match msg {
            Ok(event) => pick(&event).map(Ok),
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Err(AppError::SubscriberLagged(n).extend())),
        })
    });
    events.scan(false, |ended, item| {
        if *ended {
            return future::ready(None);
        }
        *ended = item.is_err();
        future::ready(Some(item))
    })
}
