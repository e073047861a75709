//! GraphQL over HTTP (graphql.github.io/graphql-over-http): POST with JSON, GET for
//! queries only, `application/graphql-response+json` with 4xx for requests that fail
//! before execution, CSRF refusal of preflight-free POSTs, and a body size limit.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Request, Response as GqlResponse, ServerError};
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use serde::Deserialize;

use crate::error::code;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";
/// Headers that a browser cannot set without a CORS preflight (as Apollo Router checks).
const CSRF_HEADERS: [&str; 2] = ["x-tracegraph-csrf", "apollo-require-preflight"];

/// The response media type the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    GraphqlResponseJson,
    Json,
}

impl Media {
    /// Picks from the `Accept` header; `None` when the client accepts neither.
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
            return Some(Self::Json);
        };
        let types: Vec<&str> = accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or_default().trim())
            .collect();
        if types.contains(&GRAPHQL_RESPONSE_JSON) {
            Some(Self::GraphqlResponseJson)
        } else if types.iter().any(|t| *t == JSON || *t == "*/*" || *t == "application/*") {
            Some(Self::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// A refusal before the request reaches GraphQL, as an HTTP status and a GraphQL error.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn into_response(self, media: Media) -> Response {
        let mut error = ServerError::new(self.message, None);
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", self.code);
        let body = GqlResponse::from_errors(vec![error]);
        respond(self.status, media, &body)
    }
}

pub fn respond(status: StatusCode, media: Media, body: &GqlResponse) -> Response {
    let pieces = crate::graphql::json::response_pieces(body);
    let mut response = (status, Body::new(Pieces(pieces.into()))).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

/// A body sent as the pieces it was written in (`json::response_pieces`), its length
/// given, so that a trace's prewritten spans go out without another copy.
struct Pieces(VecDeque<Bytes>);

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|piece| piece.len() as u64).sum())
    }
}

/// What an overloaded server asks a client to wait before retrying.
const RETRY_AFTER_SECS: &str = "1";

/// The status for an executed request: with `application/graphql-response+json`, a
/// request that failed before execution (no data, errors without a path) is a 400.
pub fn status_of(media: Media, response: &GqlResponse) -> StatusCode {
    // Nothing ran for want of a database connection: tell the client when to retry.
    let overloaded = response.data == async_graphql::Value::Null
        && response.errors.iter().any(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .is_some_and(|c| *c == async_graphql::Value::from(code::OVERLOADED))
        });
    if overloaded {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    if media == Media::GraphqlResponseJson && request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// Reads a POST body into a GraphQL request, refusing what the spec and CSRF rules refuse.
pub async fn read_post(headers: &HeaderMap, body: Body, max_bytes: usize) -> Result<Request, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let preflighted = CSRF_HEADERS
        .iter()
        .any(|h| headers.get(*h).is_some_and(|v| !v.is_empty()));
    match content_type.as_deref() {
        Some(JSON) => {}
        // A browser sends these cross-site without asking first: refuse unless the
        // client proved it could set a custom header.
        Some("text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data") if !preflighted => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                code::FORBIDDEN,
                "this content type is refused without an `x-tracegraph-csrf` or `apollo-require-preflight` header (CSRF protection); send `content-type: application/json`",
            ));
        }
        Some("text/plain") => {}
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::BAD_USER_INPUT,
                format!(
                    "unsupported content type {}; send `content-type: application/json`",
                    other.unwrap_or("(none)")
                ),
            ));
        }
    }
    let bytes = to_bytes(body, max_bytes).await.map_err(|_| {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::LIMIT_EXCEEDED,
            format!("request body is larger than the limit of {max_bytes} bytes"),
        )
    })?;
    parse_body(&bytes)
}

fn parse_body(bytes: &[u8]) -> Result<Request, Refusal> {
    // A well-formed body (nearly all, and batches of spans are large) is read in one pass;
    // only a failed one goes through a JSON tree to say what is wrong with it.
    let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_object
        && let Ok(request) = serde_json::from_slice::<Request>(bytes)
        && !request.query.is_empty()
    {
        return Ok(request);
    }
    let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, code::BAD_USER_INPUT, message);
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    if value.is_array() {
        return Err(bad(
            "batched requests are not supported; send one operation per request".into(),
        ));
    }
    if !value.get("query").is_some_and(serde_json::Value::is_string) {
        return Err(bad("the body must be a JSON object with a `query` string".into()));
    }
    if value.get("variables").is_some_and(|v| !v.is_object() && !v.is_null()) {
        return Err(bad("`variables` must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|e| bad(format!("not a GraphQL request: {e}")))
}

#[derive(Debug, Deserialize)]
pub struct GetParams {
    pub query: Option<String>,
    #[serde(rename = "operationName")]
    pub operation_name: Option<String>,
    pub variables: Option<String>,
    pub extensions: Option<String>,
}

/// Builds a request from GET parameters; only queries may run over GET (a mutation
/// there could be triggered by a link).
pub fn read_get(params: GetParams) -> Result<Request, Refusal> {
    let bad = |message: String| Refusal::new(StatusCode::BAD_REQUEST, code::BAD_USER_INPUT, message);
    let query = params.query.unwrap_or_default();
    if let Ok(document) = async_graphql::parser::parse_query(&query) {
        let kind = match (&document.operations, params.operation_name.as_deref()) {
            (DocumentOperations::Single(op), _) => Some(op.node.ty),
            (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next().map(|op| op.node.ty),
            _ => None,
        };
        if matches!(kind, Some(OperationType::Mutation | OperationType::Subscription)) {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                code::BAD_USER_INPUT,
                "only queries may be sent with GET; use POST for mutations",
            ));
        }
    }
    let mut request = Request::new(query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables.filter(|v| !v.is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(&variables).map_err(|e| bad(format!("`variables` is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(bad("`variables` must be a JSON object".into()));
        }
        request = request.variables(async_graphql::Variables::from_json(value));
    }
    if let Some(extensions) = params.extensions.filter(|e| !e.is_empty()) {
        let _: serde_json::Value =
            serde_json::from_str(&extensions).map_err(|e| bad(format!("`extensions` is not valid JSON: {e}")))?;
    }
    Ok(request)
}
