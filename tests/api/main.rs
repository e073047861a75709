//! Integration tests: the real app on an ephemeral port, spoken to over HTTP and
//! WebSocket. SQLite (a temporary file) by default; set
//! `TRACEGRAPH_TEST_DATABASE_URL=postgres://…` to run every test on PostgreSQL, each
//! in a database of its own.

mod helpers;

mod analytics;
mod auth;
mod costs;
mod errors;
mod explain;
mod fuzz;
mod graphiql;
mod http;
mod import;
mod limits;
mod migrations;
mod n_plus_one;
mod pg_connections;
mod pg_pipeline;
mod reads;
mod resilience;
mod schema_sdl;
mod span_lists;
mod spans;
mod subscriptions;
mod traces;
mod validation;
mod websocket;
