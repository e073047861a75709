//! HTTP routes: GraphQL over POST, GraphiQL on GET, subscriptions over WebSocket,
//! and the health probes.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::db::Db;
use crate::graphql::{self, AppSchema};

pub const GRAPHQL_PATH: &str = "/graphql";
pub const WS_PATH: &str = "/graphql/ws";

#[derive(Clone)]
struct HttpState {
    schema: AppSchema,
    db: Db,
}

pub fn router(schema: AppSchema, db: Db, max_body_bytes: usize) -> Router {
    let state = HttpState {
        schema: schema.clone(),
        db,
    };
    Router::new()
        .route(GRAPHQL_PATH, get(graphiql_or_websocket).post(graphql))
        .route_service(WS_PATH, GraphQLSubscription::new(schema))
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
    let wants_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if wants_websocket {
        let Ok(response) = GraphQLSubscription::new(state.schema).oneshot(request).await;
        return response;
    }
    graphiql().into_response()
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
