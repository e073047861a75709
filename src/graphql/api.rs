//! The schema and what runs around every execution: the query limits, parsing (through
//! a cache of parsed documents), error codes, and for a query or mutation, whichever
//! transport brought it, its own loaders, its turn and its time limit. These run here,
//! around the engine, rather than as async-graphql extensions: with any extension
//! registered, the engine wraps the resolution of every single field in the extensions'
//! chain, a cost paid per field (perf: about a tenth of the dashboard query's server
//! time). A query whose document passed full validation before skips it (`validated`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Positioned;
use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
};
use async_graphql::{Request, Response, ServerError};
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;

use super::errors::{add_codes, timed_out};
use super::fanout::{Fanout, Membership};
use super::limits::QueryLimits;
use super::merged::{ListsByEngine, merges_fields};
use super::validated::{InputTypes, required_variables_provided};
use super::{AppSchema, request_loaders};
use crate::config::Limits;
use crate::db::Db;

/// Parsed documents kept; past this, all are forgotten at once (bounded memory whatever
/// clients send, and a working set this size is refilled in as many requests).
const MAX_DOCUMENTS: usize = 128;
/// Longer queries are parsed every time: they are rare, and they would weigh the most.
const MAX_CACHED_QUERY_BYTES: usize = 4096;

#[derive(Clone)]
pub struct Api {
    schema: AppSchema,
    /// The same schema, validating only the limits: for queries `validated` vouches for.
    trusted: AppSchema,
    input_types: Arc<InputTypes>,
    limits: QueryLimits,
    /// Documents that parsed and passed the limits, by query text. Clients send the
    /// same few queries again and again, and parsing one costs a tenth of a small
    /// query's server time; a clone costs far less. Variables are not part of the
    /// document, so the text alone is the key.
    documents: Arc<Mutex<HashMap<String, Document>>>,
    /// Executions that skipped full validation, for `/metrics`.
    unvalidated: Arc<AtomicU64>,
    subscriptions: Fanout,
    per_request: PerRequest,
}

/// What each query or mutation gets, over HTTP or a socket alike.
#[derive(Clone)]
pub struct PerRequest {
    /// For the request's own loaders: trees cached, and whole traces read, per request.
    pub db: Db,
    pub limits: Limits,
    /// Turns to execute (`--max-concurrent-requests`); never closed, so taking one only
    /// waits.
    pub turns: Arc<Semaphore>,
    /// Waiting for a turn included; past it the execution is dropped, and with it any
    /// open transaction (rolled back).
    pub timeout: Duration,
}

#[derive(Clone)]
struct Document {
    parsed: ExecutableDocument,
    /// Executed once without any error: it passed full validation then.
    validated: bool,
    /// Asks the engine to merge answers (`merged`).
    merges_fields: bool,
    /// Each operation asks for one root field (`AloneAtRoot`).
    alone_at_root: bool,
}

/// In a request's data: its operation asks for one root field, written out. That field's
/// reads have no sibling to be batched with, so it may read at once instead of through
/// a loader (whose batch runs as a task of its own).
pub struct AloneAtRoot;

fn alone_at_root(document: &ExecutableDocument) -> bool {
    let one_field = |operation: &Positioned<OperationDefinition>| matches!(operation.node.selection_set.node.items.as_slice(), [item] if matches!(item.node, Selection::Field(_)));
    match &document.operations {
        DocumentOperations::Single(operation) => one_field(operation),
        DocumentOperations::Multiple(operations) => operations.values().all(one_field),
    }
}

/// The operation a request names, as the engine picks it: by name, or the only one.
pub(super) fn selected_operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next()?,
        _ => return None,
    };
    Some(&operation.node)
}

impl Document {
    /// Puts the document in `request`, and what it asks of the lists in its data.
    fn into_request(self, mut request: Request) -> Request {
        if self.merges_fields {
            request = request.data(ListsByEngine);
        }
        if self.alone_at_root {
            request = request.data(AloneAtRoot);
        }
        request.set_parsed_query(self.parsed);
        request
    }
}

impl Api {
    /// `live_buffer`: events a subscriber may fall behind by.
    /// `trusted`: the same schema with `ValidationMode::Fast`.
    pub fn new(
        schema: AppSchema,
        trusted: AppSchema,
        limits: QueryLimits,
        live_buffer: usize,
        per_request: PerRequest,
    ) -> Self {
        Self {
            schema,
            trusted,
            input_types: Arc::new(InputTypes::new()),
            limits,
            documents: Arc::default(),
            unvalidated: Arc::default(),
            subscriptions: Fanout::new(live_buffer),
            per_request,
        }
    }

    /// Executions that skipped full validation, their document having passed it before.
    pub fn unvalidated_executions(&self) -> u64 {
        self.unvalidated.load(Ordering::Relaxed)
    }

    /// Subscription executions running now, each shared by its identical subscribers.
    pub fn live_executions(&self) -> usize {
        self.subscriptions.executions()
    }

    /// Runs an operation sent over a socket. A subscription shares the execution of an
    /// identical one (same query, variables, operation and API key) when one runs; a
    /// query or mutation runs on its own, as over HTTP: two agents sending the same
    /// `addSpan` at once must add two spans, and a query's reads are its own.
    pub fn subscribe(&self, request: Request, api_key: Option<uuid::Uuid>) -> Membership {
        // Parsed once, whatever its length: to tell a subscription, then to run it. One
        // refused before execution is not a subscription: it is answered once, with why.
        let document = self.document(&request);
        let is_subscription = document.as_ref().is_ok_and(|document| {
            selected_operation(&document.parsed, request.operation_name.as_deref())
                .is_some_and(|operation| operation.ty == OperationType::Subscription)
        });
        if is_subscription {
            return self
                .subscriptions
                .join(request, api_key, |request| self.stream_of(request, document));
        }
        let api = self.clone();
        self.subscriptions.alone(
            async move { api.execute_parsed(request, Some(document)).await }
                .into_stream()
                .boxed(),
        )
    }

    /// Executes a query or mutation within its turn and time, on loaders of its own.
    pub async fn execute(&self, request: Request) -> Response {
        self.execute_parsed(request, None).await
    }

    /// `execute`, with the request's document when it is already at hand (parsed, or
    /// refused); without, it is read within the turn.
    async fn execute_parsed(&self, request: Request, document: Option<Result<Document, ServerError>>) -> Response {
        let PerRequest {
            db,
            limits,
            turns,
            timeout,
        } = &self.per_request;
        let request = request.data(request_loaders(db, limits));
        let run = async {
            let _turn = turns.acquire().await;
            let document = document.unwrap_or_else(|| self.document(&request));
            self.execute_now(request, document).await
        };
        tokio::time::timeout(*timeout, run)
            .await
            .unwrap_or_else(|_| timed_out(*timeout))
    }

    async fn execute_now(&self, request: Request, document: Result<Document, ServerError>) -> Response {
        let mut response = match document {
            Err(refused) => Response::from_errors(vec![refused]),
            Ok(document) if document.validated && self.input_types.vouch(&document.parsed, &request) => {
                self.unvalidated.fetch_add(1, Ordering::Relaxed);
                self.trusted.execute(document.into_request(request)).await
            }
            Ok(document) => {
                let query = request.query.clone();
                let response = self.schema.execute(document.into_request(request)).await;
                if response.errors.is_empty() {
                    self.mark_validated(&query);
                }
                response
            }
        };
        add_codes(&mut response);
        response
    }

    /// A subscription's responses; an operation refused before execution is one error
    /// response, as the engine gives it.
    pub fn execute_stream(&self, request: Request) -> BoxStream<'static, Response> {
        let document = self.document(&request);
        self.stream_of(request, document)
    }

    fn stream_of(&self, request: Request, document: Result<Document, ServerError>) -> BoxStream<'static, Response> {
        let responses = match document {
            Ok(document) => self.schema.execute_stream(document.into_request(request)),
            Err(refused) => futures::stream::once(async move { Response::from_errors(vec![refused]) }).boxed(),
        };
        responses
            .map(|mut response| {
                add_codes(&mut response);
                response
            })
            .boxed()
    }

    /// The request's document, parsed (or from the cache) and within the limits, with
    /// every variable it requires provided.
    fn document(&self, request: &Request) -> Result<Document, ServerError> {
        let document = match self.cached(&request.query) {
            Some(document) => document,
            None => self.parse(&request.query)?,
        };
        required_variables_provided(&document.parsed, request)?;
        Ok(document)
    }

    /// Parses, checks the limits and caches the document when it is small enough.
    fn parse(&self, query: &str) -> Result<Document, ServerError> {
        self.limits.check_text(query)?;
        let parsed = async_graphql::parser::parse_query(query)?;
        self.limits.check_shape(&parsed)?;
        let document = Document {
            merges_fields: merges_fields(&parsed),
            alone_at_root: alone_at_root(&parsed),
            parsed,
            validated: false,
        };
        if query.len() <= MAX_CACHED_QUERY_BYTES {
            let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
            if documents.len() >= MAX_DOCUMENTS {
                documents.clear();
            }
            documents.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }

    fn cached(&self, query: &str) -> Option<Document> {
        let documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        documents.get(query).cloned()
    }

    fn mark_validated(&self, query: &str) {
        let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(document) = documents.get_mut(query) {
            document.validated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alone_at_root;

    fn alone(query: &str) -> bool {
        alone_at_root(&async_graphql::parser::parse_query(query).unwrap())
    }

    #[test]
    fn a_lone_root_field_is_told_from_siblings_and_fragments() {
        assert!(alone("query($id: UUID!) { trace(id: $id) { spans { name } } }"));
        assert!(alone(
            "query A { traces { totalCount } } query B { spans { totalCount } }"
        ));
        assert!(!alone("{ a: trace(id: \"x\") { name } b: trace(id: \"y\") { name } }"));
        assert!(!alone(
            "query A { traces { totalCount } } query B { a: spans { totalCount } b: spans { totalCount } }"
        ));
        // A fragment may hold any number of fields.
        assert!(!alone("{ ...F } fragment F on Query { trace(id: \"x\") { name } }"));
        assert!(!alone("{ ... on Query { trace(id: \"x\") { name } } }"));
    }
}
