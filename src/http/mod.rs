//! HTTP routes: GraphQL over POST and GET, GraphiQL, subscriptions over WebSocket,
//! and the health probes.

mod graphiql;
mod graphql;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use self::graphql::{GetParams, Media, Refusal};
use crate::auth::Auth;
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, code};
use crate::graphql::Api;
use crate::ws::{self, WsSettings, WsShutdown};

pub use self::graphql::GRAPHQL_RESPONSE_JSON;

pub const GRAPHQL_PATH: &str = "/graphql";
pub const WS_PATH: &str = "/graphql/ws";

struct HttpState {
    api: Api,
    db: Db,
    ws: WsSettings,
    ws_shutdown: WsShutdown,
    max_body_bytes: usize,
    graphiql: bool,
    auth: Auth,
}

pub fn router(api: Api, db: Db, config: &Config, ws_shutdown: WsShutdown) -> Router {
    let state = HttpState {
        auth: Auth::new(db.clone(), config.ws_max_per_key),
        api,
        db,
        ws: config.ws_settings(),
        ws_shutdown,
        max_body_bytes: config.max_body_bytes,
        graphiql: !config.disable_graphiql,
    };
    Router::new()
        .route(GRAPHQL_PATH, get(get_graphql).post(post_graphql))
        .route(WS_PATH, get(websocket))
        .route(&format!("{}/{{file}}", graphiql::ASSETS_PATH), get(graphiql_asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // One shared state: axum clones it for every request, and a clone of each of
        // its fields would be a score of reference counts bumped across cores.
        .with_state(Arc::new(state))
        .layer(TraceLayer::new_for_http())
}

async fn post_graphql(State(state): State<Arc<HttpState>>, headers: HeaderMap, body: Body) -> Response {
    let Some(media) = Media::negotiate(&headers) else {
        return not_acceptable();
    };
    match graphql::read_post(&headers, body, state.max_body_bytes).await {
        Ok(request) => execute(&state, request, media, &headers).await,
        Err(refusal) => refusal.into_response(media),
    }
}

/// `GET /graphql` runs a query given as parameters, upgrades to a WebSocket (GraphiQL
/// opens its subscriptions on its own page's URL), or shows GraphiQL.
async fn get_graphql(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        return open_socket(&state, upgrade, &parts.headers);
    }
    let params = Query::<GetParams>::from_request_parts(&mut parts, &state).await;
    let Some(media) = Media::negotiate(&parts.headers) else {
        return not_acceptable();
    };
    match params {
        Ok(Query(params)) if params.query.is_some() => match graphql::read_get(params) {
            Ok(request) => execute(&state, request, media, &parts.headers).await,
            Err(refusal) => refusal.into_response(media),
        },
        Ok(_) if state.graphiql => graphiql::page().into_response(),
        Ok(_) => Refusal::new(
            StatusCode::BAD_REQUEST,
            code::BAD_USER_INPUT,
            "missing `query` parameter",
        )
        .into_response(media),
        Err(e) => Refusal::new(StatusCode::BAD_REQUEST, code::BAD_USER_INPUT, e.body_text()).into_response(media),
    }
}

async fn execute(state: &HttpState, request: async_graphql::Request, media: Media, headers: &HeaderMap) -> Response {
    let access = match state.auth.resolve(authorization(headers)).await {
        Ok(access) => access,
        Err(e) => {
            let status = match e {
                AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AppError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return Refusal::new(status, e.code(), e.to_string()).into_response(media);
        }
    };
    let response = state.api.execute(request.data(access)).await;
    graphql::respond(graphql::status_of(media, &response), media, &response)
}

fn not_acceptable() -> Response {
    (
        StatusCode::NOT_ACCEPTABLE,
        "accepts application/graphql-response+json or application/json",
    )
        .into_response()
}

async fn websocket(State(state): State<Arc<HttpState>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    open_socket(&state, upgrade, &headers)
}

fn open_socket(state: &HttpState, upgrade: WebSocketUpgrade, headers: &HeaderMap) -> Response {
    let header_key = authorization(headers).map(str::to_owned);
    ws::upgrade(
        upgrade,
        state.api.clone(),
        state.ws,
        state.ws_shutdown.clone(),
        state.auth.clone(),
        header_key,
    )
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// GraphiQL's scripts and styles, switched off with the page.
async fn graphiql_asset(State(state): State<Arc<HttpState>>, Path(file): Path<String>) -> Response {
    if !state.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    graphiql::asset(&file)
}

/// Counters in the Prometheus text format.
async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    let body = format!(
        "# HELP tracegraph_sql_statements_total SQL statements sent to the database through its pools.\n\
         # TYPE tracegraph_sql_statements_total counter\n\
         tracegraph_sql_statements_total {}\n\
         # HELP tracegraph_key_change_checks_total Reads of the API-key change counter (SQLite, in process).\n\
         # TYPE tracegraph_key_change_checks_total counter\n\
         tracegraph_key_change_checks_total {}\n\
         # HELP tracegraph_key_epoch The API-key change counter as this server knows it (0: not known).\n\
         # TYPE tracegraph_key_epoch gauge\n\
         tracegraph_key_epoch {}\n\
         # HELP tracegraph_live_executions Subscription executions running, each shared by identical subscriptions.\n\
         # TYPE tracegraph_live_executions gauge\n\
         tracegraph_live_executions {}\n\
         # HELP tracegraph_unvalidated_queries_total Queries and mutations run without full validation, their document and variables vouched for.\n\
         # TYPE tracegraph_unvalidated_queries_total counter\n\
         tracegraph_unvalidated_queries_total {}\n\
         # HELP tracegraph_read_connections_idle PostgreSQL connections kept for entity reads, open and not in use (0 on SQLite).\n\
         # TYPE tracegraph_read_connections_idle gauge\n\
         tracegraph_read_connections_idle {}\n\
         # HELP tracegraph_read_connections_opened_total PostgreSQL connections opened for entity reads (0 on SQLite).\n\
         # TYPE tracegraph_read_connections_opened_total counter\n\
         tracegraph_read_connections_opened_total {}\n\
         # HELP tracegraph_read_pipelined_connections PostgreSQL connections entity reads are pipelined on (0: each read leases a connection of its own, or SQLite).\n\
         # TYPE tracegraph_read_pipelined_connections gauge\n\
         tracegraph_read_pipelined_connections {}\n",
        state.db.statements.get(),
        state.db.key_epoch.checks(),
        state.db.key_epoch.known(),
        state.api.live_executions(),
        state.api.unvalidated_executions(),
        state.db.read.pg_reader().map_or(0, |r| r.idle()),
        state.db.read.pg_reader().map_or(0, |r| r.opened()),
        state.db.read.pg_reader().map_or(0, |r| r.pipelined_connections()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Ready when the database answers.
async fn readyz(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    if state.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
