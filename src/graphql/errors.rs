//! Makes every error in every response carry an `extensions.code`: errors raised by
//! our resolvers keep theirs; parse, validation and input-coercion errors from
//! async-graphql itself (a malformed UUID or time, a wrong variable type) become
//! `BAD_USER_INPUT`.

use async_graphql::{ErrorExtensions, Response, ServerError};

use crate::error::{AppError, code};
use crate::given::DATETIME_FORM;

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
    if error.message.contains(DATETIME_PARSE_FAILED) {
        error.message = format!("{} ({DATETIME_FORM})", error.message);
    }
}

/// How async-graphql reports a `DateTime` it could not parse; the reason after it is
/// chrono's ("input is out of range", "premature end of input"), which names neither
/// the value's part at fault nor the form expected.
const DATETIME_PARSE_FAILED: &str = r#"Failed to parse "DateTime""#;

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
