//! Makes every error in every response carry an `extensions.code`: errors raised by
//! our resolvers keep theirs; parse, validation and input-coercion errors from
//! async-graphql itself (a malformed UUID or time, a wrong variable type) become
//! `BAD_USER_INPUT`.

use std::time::Duration;

use async_graphql::{ErrorExtensions, Response, ServerError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, code};
use crate::given::FromText;

/// A request that ran past the time limit.
pub fn timed_out(limit: Duration) -> Response {
    let millis = limit.as_millis() as u64;
    let mut error = ServerError::new(format!("the request took longer than the {millis} ms limit"), None);
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", code::LIMIT_EXCEEDED);
    ext.set("limit", "request timeout in milliseconds");
    ext.set("max", millis);
    Response::from_errors(vec![error])
}

pub fn add_codes(response: &mut Response) {
    for error in &mut response.errors {
        add_code(error);
    }
}

fn add_code(error: &mut ServerError) {
    let has_code = error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
    if has_code {
        return;
    }
    // An AppError that reached `?` without `.extend()` still knows its code.
    if let Some(app) = error.source.as_ref().and_then(|s| s.downcast_ref::<AppError>()) {
        let extended = app.extend();
        error.message = extended.message;
        error.extensions = extended.extensions;
        return;
    }
    let limit = engine_limit(&error.message);
    let ext = error.extensions.get_or_insert_with(Default::default);
    match limit {
        Some(limit) => {
            ext.set("code", code::LIMIT_EXCEEDED);
            ext.set("limit", limit);
        }
        None => ext.set("code", code::BAD_USER_INPUT),
    }
    let refused = ENGINE_REFUSALS.iter().find(|(said, _)| error.message.contains(said));
    if let Some((_, form)) = refused {
        error.message = format!("{} ({form})", error.message);
    }
}

/// How async-graphql reports a scalar it read itself and could not take (text that does
/// not parse, or a value that is not text) in an argument or a filter (write inputs
/// read theirs through `given`), and the form to tell with it:
/// the reason it gives is chrono's or uuid's ("input is out of range", "invalid
/// character: found `n` at 0"), which says neither the form expected nor an example.
const ENGINE_REFUSALS: [(&str, &str); 4] = [
    (r#"Failed to parse "DateTime""#, <DateTime<Utc> as FromText>::FORM),
    (r#"Expected input type "DateTime""#, <DateTime<Utc> as FromText>::FORM),
    (r#"Failed to parse "UUID""#, <Uuid as FromText>::FORM),
    (r#"Expected input type "UUID""#, <Uuid as FromText>::FORM),
];

/// async-graphql's own limit errors, known by their messages (it gives them no code).
fn engine_limit(message: &str) -> Option<&'static str> {
    if message.starts_with("Query is nested too deep") {
        Some("depth")
    } else if message.starts_with("Query is too complex") {
        Some("complexity")
    } else if message.contains("recursion depth") || message.contains("recursion limit") {
        Some("recursion depth")
    } else {
        None
    }
}
