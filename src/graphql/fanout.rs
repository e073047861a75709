//! Subscriptions that ask the same thing (query, variables, operation, API key) share
//! one execution: each event is resolved and serialized once, and the same bytes go to
//! every subscriber. A hundred dashboards on one trace cost one resolution per span,
//! not a hundred. Each subscriber still falls behind alone: it reads the shared
//! output through its own cursor, and past the buffer it is told how much it missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::Selection;
use async_graphql::{ErrorExtensions, PathSegment, Pos, Request, Response};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::api::selected_operation;
use crate::error::AppError;

/// What a shared execution produced, as subscribers send it on.
#[derive(Debug)]
pub enum Event {
    /// A response, serialized (the `payload` of a `next` message).
    Next(String),
    /// Refused before execution (parse, validation): the errors.
    Refused(Vec<Value>),
    /// The execution ended.
    Done,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    query: String,
    variables: String,
    operation: Option<String>,
    api_key: Option<Uuid>,
}

struct Group {
    events: broadcast::Sender<Arc<Event>>,
    /// The subscription field's response key, for the lag error's path.
    field: String,
    /// Set before `Done` is sent: a subscriber joining after that starts a new execution.
    finished: Arc<AtomicBool>,
    execution: tokio::task::JoinHandle<()>,
}

impl Drop for Group {
    fn drop(&mut self) {
        // The last subscriber has gone.
        self.execution.abort();
    }
}

#[derive(Clone)]
pub struct Fanout {
    groups: Arc<Mutex<HashMap<Key, Weak<Group>>>>,
    /// Events a subscriber may fall behind the shared output by.
    buffer: usize,
}

/// One subscriber's place in a shared execution; dropping the last one stops it.
pub struct Membership {
    group: Arc<Group>,
    events: broadcast::Receiver<Arc<Event>>,
    /// Told it fell behind: what follows is the end.
    lagged: bool,
}

impl Fanout {
    pub fn new(buffer: usize) -> Self {
        Self {
            groups: Arc::default(),
            buffer: buffer.max(1),
        }
    }

    /// Joins the execution of an identical subscription, or starts one with `execute`.
    pub fn join(
        &self,
        request: Request,
        api_key: Option<Uuid>,
        execute: impl FnOnce(Request) -> BoxStream<'static, Response>,
    ) -> Membership {
        let key = Key {
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            api_key,
        };
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            // Subscribed first: if the execution had not finished by then, `Done` is ahead.
            let events = group.events.subscribe();
            if !group.finished.load(Ordering::Acquire) {
                return Membership {
                    group,
                    events,
                    lagged: false,
                };
            }
        }
        // Parsed once per execution, not per subscriber; the engine has the document too,
        // but not where this code can reach it.
        let field = subscription_field(&request.query, request.operation_name.as_deref()).unwrap_or_default();
        let membership = Self::start(execute(request), field, self.buffer);
        groups.retain(|_, g| g.strong_count() > 0);
        groups.insert(key, Arc::downgrade(&membership.group));
        membership
    }

    /// An execution no one else may join: a query or mutation, answered once.
    pub fn alone(&self, responses: BoxStream<'static, Response>) -> Membership {
        // Its response and `Done`: room for both, so it cannot lag.
        Self::start(responses, String::new(), 2)
    }

    fn start(responses: BoxStream<'static, Response>, field: String, buffer: usize) -> Membership {
        let (sender, events) = broadcast::channel(buffer);
        let finished = Arc::new(AtomicBool::new(false));
        let execution = tokio::spawn(share(responses, sender.clone(), finished.clone()));
        let group = Arc::new(Group {
            events: sender,
            field,
            finished,
            execution,
        });
        Membership {
            group,
            events,
            lagged: false,
        }
    }

    /// Shared executions running now.
    pub fn executions(&self) -> usize {
        let groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        groups.values().filter(|g| g.strong_count() > 0).count()
    }
}

impl Membership {
    /// The next event for this subscriber. One that fell behind gets the lag error,
    /// then `Done`.
    pub async fn next(&mut self) -> Arc<Event> {
        if self.lagged {
            return Arc::new(Event::Done);
        }
        match self.events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(missed)) => {
                self.lagged = true;
                Arc::new(Event::Next(lag_payload(missed, &self.group.field)))
            }
            Err(RecvError::Closed) => Arc::new(Event::Done),
        }
    }
}

async fn share(
    mut responses: BoxStream<'static, Response>,
    events: broadcast::Sender<Arc<Event>>,
    finished: Arc<AtomicBool>,
) {
    let mut first = true;
    while let Some(response) = responses.next().await {
        // An error before execution (parse, validation) ends the operation.
        if first && is_request_error(&response) {
            let errors = serde_json::to_value(&response.errors).unwrap_or_default();
            let _ = events.send(Arc::new(Event::Refused(errors.as_array().cloned().unwrap_or_default())));
            break;
        }
        first = false;
        // No subscriber is not an error: the last one is leaving, and this task with it.
        let _ = events.send(Arc::new(Event::Next(super::json::response_json(&response))));
    }
    finished.store(true, Ordering::Release);
    let _ = events.send(Arc::new(Event::Done));
}

pub fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The payload a subscriber that fell behind gets: the same error an execution of its
/// own would have raised at its field.
fn lag_payload(missed: u64, field: &str) -> String {
    let mut error = AppError::SubscriberLagged(missed)
        .extend()
        .into_server_error(Pos::default());
    error.locations.clear();
    if !field.is_empty() {
        error.path = vec![PathSegment::Field(field.to_owned())];
    }
    super::json::response_json(&Response::from_errors(vec![error]))
}

/// The response key of a subscription's (single) root field.
fn subscription_field(query: &str, operation: Option<&str>) -> Option<String> {
    let document = async_graphql::parser::parse_query(query).ok()?;
    selected_operation(&document, operation)?
        .selection_set
        .node
        .items
        .iter()
        .find_map(|item| match &item.node {
            Selection::Field(field) => Some(field.node.response_key().node.to_string()),
            _ => None,
        })
}
