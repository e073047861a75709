//! tracegraph: a GraphQL server that records and serves the traces of AI-agent runs.

/// The application: database, schema and HTTP server wired together.
pub mod app;
/// API keys, scopes and product restrictions.
pub mod auth;
/// Command line: `serve`, `migrate`, `export-schema`, `import`, `keys`.
pub mod cli;
/// Settings from flags and `TRACEGRAPH_*` variables.
pub mod config;
/// Connection, migration, row models and query functions.
pub mod db;
/// The API's error type and its codes.
pub mod error;
/// Filter and sort inputs shared by the API, the store and the loaders.
pub mod filters;
/// Write inputs' scalars kept as given when they do not parse, for validation to name.
pub mod given;
/// The GraphQL schema.
pub mod graphql;
/// HTTP routes.
pub mod http;
/// Loading NDJSON data sets.
pub mod import;
/// Validation of writes.
pub mod ingest;
/// The in-process live feed of span events.
pub mod live;
/// Domain enums.
pub mod model;
/// Model prices for costs spans do not report.
pub mod prices;
/// Logging set-up.
pub mod telemetry;
/// Usage extraction from span metadata.
pub mod usage;
/// Write transactions and publishing.
pub mod write;
/// GraphQL over WebSocket, both protocols.
pub mod ws;
