//! HTTP routes: GraphQL over POST, GraphiQL on GET, subscriptions over WebSocket,
//! and the health probes.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::db::Db;
use crate::graphql::{self, AppSchema};
use crate::ws::{self, WsSettings, WsShutdown};

pub const GRAPHQL_PATH: &str = "/graphql";
pub const WS_PATH: &str = "/graphql/ws";

#[derive(Clone)]
struct HttpState {
    schema: AppSchema,
    db: Db,
    ws: WsSettings,
    ws_shutdown: WsShutdown,
}

pub fn router(schema: AppSchema, db: Db, config: &Config, ws_shutdown: WsShutdown) -> Router {
    let max_body_bytes = config.max_body_bytes;
    let state = HttpState {
        schema,
        db,
        ws: config.ws_settings(),
        ws_shutdown,
    };
    Router::new()
        .route(GRAPHQL_PATH, get(graphiql_or_websocket).post(graphql))
        .route(WS_PATH, get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        // async-graphql-axum reads the body without a limit of its own.
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TraceLayer::new_for_http())
}

async fn graphql(State(state): State<HttpState>, request: GraphQLRequest) -> GraphQLResponse {
    let request = request.into_inner().data(graphql::request_loaders(&state.db));
    state.schema.execute(request).await.into()
}

/// GraphiQL opens its subscriptions on its own page's URL, so `/graphql` upgrades to
/// a WebSocket as `/graphql/ws` does.
async fn graphiql_or_websocket(State(state): State<HttpState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => ws::upgrade(upgrade, state.schema, state.ws, state.ws_shutdown),
        Err(_) => graphiql().into_response(),
    }
}

async fn websocket(State(state): State<HttpState>, upgrade: WebSocketUpgrade) -> Response {
    ws::upgrade(upgrade, state.schema, state.ws, state.ws_shutdown)
}

fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint(GRAPHQL_PATH)
            .subscription_endpoint(WS_PATH)
            .title("tracegraph")
            .finish(),
    )
}

/// Ready when the database answers.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
