//! Parsed documents by query text. Clients send the same few queries again and again,
//! and parsing one is a tenth of a small query's server time (measured with perf on
//! W4a); a clone of the parsed document costs far less. Only documents that parsed and
//! passed the query limits are kept, so a hit skips both. Variables are not part of the
//! document, so the text alone is the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerResult, Variables};

/// Documents kept; past this, all are forgotten at once (bounded memory whatever clients
/// send, and a working set this size is refilled in as many requests).
const MAX_DOCUMENTS: usize = 128;
/// Longer queries are parsed every time: they are rare, and they would weigh the most.
const MAX_QUERY_BYTES: usize = 4096;

#[derive(Clone, Default)]
pub struct ParsedQueries {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ExtensionFactory for ParsedQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for ParsedQueries {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_QUERY_BYTES {
            return next.run(ctx, query, variables).await;
        }
        if let Some(document) = self.lock().get(query) {
            return Ok(document.clone());
        }
        let document = next.run(ctx, query, variables).await?;
        let mut documents = self.lock();
        if documents.len() >= MAX_DOCUMENTS {
            documents.clear();
        }
        documents.insert(query.to_owned(), document.clone());
        Ok(document)
    }
}

impl ParsedQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }
}
