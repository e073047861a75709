//! The schema and what runs around every execution: the query limits, parsing (through
//! a cache of parsed documents) and error codes. These run here, around the engine,
//! rather than as async-graphql extensions: with any extension registered, the engine
//! wraps the resolution of every single field in the extensions' chain, a cost paid
//! per field (perf: about a tenth of the dashboard query's server time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError};
use futures::StreamExt;

use super::AppSchema;
use super::errors::add_codes;
use super::fanout::{Fanout, Membership};
use super::limits::QueryLimits;

/// Parsed documents kept; past this, all are forgotten at once (bounded memory whatever
/// clients send, and a working set this size is refilled in as many requests).
const MAX_DOCUMENTS: usize = 128;
/// Longer queries are parsed every time: they are rare, and they would weigh the most.
const MAX_CACHED_QUERY_BYTES: usize = 4096;

#[derive(Clone)]
pub struct Api {
    schema: AppSchema,
    limits: QueryLimits,
    /// Documents that parsed and passed the limits, by query text. Clients send the
    /// same few queries again and again, and parsing one costs a tenth of a small
    /// query's server time; a clone costs far less. Variables are not part of the
    /// document, so the text alone is the key.
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
    subscriptions: Fanout,
}

impl Api {
    /// `live_buffer`: events a subscriber may fall behind by.
    pub fn new(schema: AppSchema, limits: QueryLimits, live_buffer: usize) -> Self {
        Self {
            schema,
            limits,
            documents: Arc::default(),
            subscriptions: Fanout::new(live_buffer),
        }
    }

    /// Subscription executions running now, each shared by its identical subscribers.
    pub fn live_executions(&self) -> usize {
        self.subscriptions.executions()
    }

    /// Subscribes, sharing the execution of an identical subscription (same query,
    /// variables, operation and API key) when one runs.
    pub fn subscribe(&self, request: Request, api_key: Option<uuid::Uuid>) -> Membership {
        self.subscriptions
            .join(request, api_key, |request| self.execute_stream(request))
    }

    pub async fn execute(&self, request: Request) -> Response {
        let mut response = match self.prepare(request) {
            Ok(request) => self.schema.execute(request).await,
            Err(refused) => Response::from_errors(vec![refused]),
        };
        add_codes(&mut response);
        response
    }

    /// A subscription's responses; an operation refused before execution is one error
    /// response, as the engine gives it.
    pub fn execute_stream(&self, request: Request) -> BoxStream<'static, Response> {
        let responses = match self.prepare(request) {
            Ok(request) => self.schema.execute_stream(request),
            Err(refused) => futures::stream::once(async move { Response::from_errors(vec![refused]) }).boxed(),
        };
        responses
            .map(|mut response| {
                add_codes(&mut response);
                response
            })
            .boxed()
    }

    /// Checks the limits and hands the engine the parsed document.
    fn prepare(&self, mut request: Request) -> Result<Request, ServerError> {
        if let Some(document) = self.cached(&request.query) {
            request.set_parsed_query(document);
            return Ok(request);
        }
        self.limits.check_text(&request.query)?;
        let document = async_graphql::parser::parse_query(&request.query)?;
        self.limits.check_shape(&document)?;
        if request.query.len() <= MAX_CACHED_QUERY_BYTES {
            let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
            if documents.len() >= MAX_DOCUMENTS {
                documents.clear();
            }
            documents.insert(request.query.clone(), document.clone());
        }
        request.set_parsed_query(document);
        Ok(request)
    }

    fn cached(&self, query: &str) -> Option<ExecutableDocument> {
        let documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        documents.get(query).cloned()
    }
}
