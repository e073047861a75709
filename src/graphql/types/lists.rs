//! Lists of spans (`rootSpans`, `children`, a trace's `spans`, a page's `items`) and of
//! traces (a page's `items`), resolved in one pass when their selection holds only plain
//! fields. The engine resolves every
//! field of every object as a future of its own, boxed, collected and awaited; on the
//! dashboard's thousand spans per page, perf put that machinery (with moving those
//! futures about) at a third of the server's CPU. None of a span's plain fields awaits anything, and
//! its children come from the same span tree, so such a selection is answered by walking
//! the rows directly. Any other selection (fragments, directives, arguments, fields that
//! load, repeated response keys) goes to the engine, field by field, as before. A trace's
//! plain fields are its columns and `usage`; anything that loads (`spans`, `rootSpans`,
//! `agentUsage`) goes to the engine.

use std::borrow::Cow;
use std::io;
use std::sync::Arc;

use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::resolver_utils::enum_value;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerError, ServerResult, Value, registry};

use super::{Span, TokenUsage, Trace, micros_to_ms};
use crate::db::entities::{span, trace};
use crate::graphql::json::{
    prewritten, write_datetime, write_json, write_list, write_null, write_object, write_optional, write_scalar,
    write_str, write_uuid, write_value,
};
use crate::graphql::loaders::SpanTree;
use crate::graphql::merged::ListsByEngine;

/// Spans, with the tree they belong to when their children can be asked for.
pub struct SpanList {
    spans: Vec<Arc<span::Model>>,
    tree: Option<Arc<SpanTree>>,
}

impl SpanList {
    /// Spans of `tree`; their children are read from it.
    pub fn in_tree<'t>(spans: impl Iterator<Item = &'t Arc<span::Model>>, tree: &Arc<SpanTree>) -> Self {
        Self {
            spans: spans.cloned().collect(),
            tree: Some(tree.clone()),
        }
    }

    /// Spans loaded on their own: asking for their children goes through the engine.
    pub fn loaded(spans: Vec<Span>) -> Self {
        Self {
            spans: spans.into_iter().map(|s| s.0).collect(),
            tree: None,
        }
    }
}

impl OutputType for SpanList {
    fn type_name() -> Cow<'static, str> {
        <Vec<Span> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Span> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <Vec<Span> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let selection = &ctx.item.node;
        if is_plain(selection, Shape::Span, self.tree.is_some()) && ctx.data_opt::<ListsByEngine>().is_none() {
            let tree = self.tree.as_deref();
            return prewritten(|out| write_list(out, &self.spans, |out, s| write_span(out, s, selection, tree)))
                .map_err(unwritable);
        }
        let spans: Vec<Span> = self.spans.iter().cloned().map(Span).collect();
        Box::pin(spans.resolve(ctx, field)).await
    }
}

/// A page's traces.
pub struct TraceList(pub Vec<Trace>);

impl OutputType for TraceList {
    fn type_name() -> Cow<'static, str> {
        <Vec<Trace> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Trace> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <Vec<Trace> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<Value> {
        let selection = &ctx.item.node;
        if is_plain(selection, Shape::Trace, false) && ctx.data_opt::<ListsByEngine>().is_none() {
            return prewritten(|out| write_list(out, &self.0, |out, t| write_trace(out, &t.0, selection)))
                .map_err(unwritable);
        }
        Box::pin(self.0.resolve(ctx, field)).await
    }
}

/// Writing into memory does not fail; should it, the list is an error, not half an answer.
fn unwritable(error: io::Error) -> ServerError {
    ServerError::new(format!("the answer could not be written: {error}"), None)
}

#[derive(Clone, Copy)]
enum Shape {
    Span,
    Trace,
    Usage,
}

/// Whether `set` selects only fields answered here: no fragments, directives or
/// arguments, each response key once, and `children` only where there is a tree.
fn is_plain(set: &SelectionSet, shape: Shape, has_tree: bool) -> bool {
    let mut keys = Vec::with_capacity(set.items.len());
    set.items.iter().all(|item| {
        let Selection::Field(field) = &item.node else {
            return false;
        };
        let field = &field.node;
        let key = field.response_key().node.as_str();
        if !field.arguments.is_empty() || !field.directives.is_empty() || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        let leaf = field.selection_set.node.items.is_empty();
        match (shape, field.name.node.as_str()) {
            (Shape::Span | Shape::Trace, "usage") => is_plain(&field.selection_set.node, Shape::Usage, has_tree),
            (Shape::Span, "children") => has_tree && is_plain(&field.selection_set.node, Shape::Span, has_tree),
            (Shape::Span, name) => leaf && SPAN_LEAVES.contains(&name),
            (Shape::Trace, name) => leaf && TRACE_LEAVES.contains(&name),
            (Shape::Usage, name) => leaf && USAGE_LEAVES.contains(&name),
        }
    })
}

const SPAN_LEAVES: [&str; 14] = [
    "__typename",
    "id",
    "traceId",
    "parentId",
    "name",
    "spanType",
    "startedAt",
    "endedAt",
    "durationMs",
    "inputText",
    "outputText",
    "error",
    "metadata",
    "flagged",
];

const TRACE_LEAVES: [&str; 13] = [
    "__typename",
    "id",
    "name",
    "agentId",
    "productId",
    "startedAt",
    "endedAt",
    "durationMs",
    "status",
    "error",
    "metadata",
    "spanCount",
    "flaggedSpanCount",
];

const USAGE_LEAVES: [&str; 9] = [
    "__typename",
    "model",
    "provider",
    "inputTokens",
    "outputTokens",
    "totalTokens",
    "costUsd",
    "costSource",
    "llmCalls",
];

/// One span as the engine would answer `set` (checked by `is_plain`) for it.
fn write_span(out: &mut Vec<u8>, row: &span::Model, set: &SelectionSet, tree: Option<&SpanTree>) -> io::Result<()> {
    write_fields(out, set, |out, name, field| match name {
        "__typename" => write_str(out, "Span"),
        "id" => write_uuid(out, &row.id),
        "traceId" => write_uuid(out, &row.trace_id),
        "parentId" => write_optional(out, row.parent_id.as_ref(), write_uuid),
        "name" => write_str(out, &row.name),
        "spanType" => write_value(out, &enum_value(Span::kind_of(row))),
        "startedAt" => write_datetime(out, &row.started_at),
        "endedAt" => write_optional(out, row.ended_at.as_ref(), write_datetime),
        "durationMs" => write_optional(out, micros_to_ms(row.duration_us).as_ref(), write_scalar),
        "inputText" => write_optional(out, row.input_text.as_deref(), write_str),
        "outputText" => write_optional(out, row.output_text.as_deref(), write_str),
        "error" => write_optional(out, row.error.as_deref(), write_str),
        "metadata" => write_json(out, &row.metadata),
        "flagged" => write_scalar(out, &row.flagged),
        "usage" => match Span::usage_of(row) {
            Some(usage) => write_usage(out, &usage, &field.selection_set.node),
            None => write_null(out),
        },
        "children" => match tree {
            Some(tree) => write_list(out, tree.children_of(row.id), |out, child| {
                write_span(out, child, &field.selection_set.node, Some(tree))
            }),
            None => write_null(out),
        },
        _ => write_null(out),
    })
}

/// One trace as the engine would answer `set` (checked by `is_plain`) for it.
fn write_trace(out: &mut Vec<u8>, row: &trace::Model, set: &SelectionSet) -> io::Result<()> {
    write_fields(out, set, |out, name, field| match name {
        "__typename" => write_str(out, "Trace"),
        "id" => write_uuid(out, &row.id),
        "name" => write_str(out, &row.name),
        "agentId" => write_optional(out, row.agent_id.as_ref(), write_uuid),
        "productId" => write_optional(out, row.product_id.as_ref(), write_uuid),
        "startedAt" => write_datetime(out, &row.started_at),
        "endedAt" => write_optional(out, row.ended_at.as_ref(), write_datetime),
        "durationMs" => write_optional(out, micros_to_ms(row.duration_us).as_ref(), write_scalar),
        "status" => write_value(out, &enum_value(Trace::status_of(row))),
        "error" => write_optional(out, row.error.as_deref(), write_str),
        "metadata" => write_json(out, &row.metadata),
        "spanCount" => write_scalar(out, &row.span_count),
        "flaggedSpanCount" => write_scalar(out, &row.flagged_span_count),
        "usage" => write_usage(out, &TokenUsage::of_trace(row), &field.selection_set.node),
        _ => write_null(out),
    })
}

fn write_usage(out: &mut Vec<u8>, usage: &TokenUsage, set: &SelectionSet) -> io::Result<()> {
    write_fields(out, set, |out, name, _| match name {
        "__typename" => write_str(out, "TokenUsage"),
        "model" => write_optional(out, usage.model.as_deref(), write_str),
        "provider" => write_optional(out, usage.provider.as_deref(), write_str),
        "inputTokens" => write_scalar(out, &usage.input_tokens),
        "outputTokens" => write_scalar(out, &usage.output_tokens),
        "totalTokens" => write_scalar(out, &usage.total_tokens),
        "costUsd" => write_optional(out, usage.cost_usd.as_ref(), write_scalar),
        "costSource" => write_value(out, &usage.cost_source.map_or(Value::Null, enum_value)),
        "llmCalls" => write_scalar(out, &usage.llm_calls),
        _ => write_null(out),
    })
}

/// An object of the fields of `set`, in selection order, under their response keys.
fn write_fields(
    out: &mut Vec<u8>,
    set: &SelectionSet,
    mut write_field: impl FnMut(&mut Vec<u8>, &str, &Field) -> io::Result<()>,
) -> io::Result<()> {
    let fields = set.items.iter().filter_map(|item| match &item.node {
        Selection::Field(field) => Some((field.node.response_key().node.as_str(), &field.node)),
        _ => None,
    });
    write_object(out, fields, |out, field| {
        write_field(out, field.name.node.as_str(), field)
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use async_graphql::parser::types::{DocumentOperations, Selection};

    use super::*;

    /// Whether the selection under the query's first field (`rootSpans { … }`) is plain
    /// for a span list.
    fn plain(query: &str, has_tree: bool) -> bool {
        plain_as(query, Shape::Span, has_tree)
    }

    fn plain_as(query: &str, shape: Shape, has_tree: bool) -> bool {
        let document = parse_query(query).unwrap();
        let DocumentOperations::Single(operation) = document.operations else {
            panic!("one operation")
        };
        let Selection::Field(field) = &operation.node.selection_set.node.items[0].node else {
            panic!("a field")
        };
        is_plain(&field.node.selection_set.node, shape, has_tree)
    }

    #[test]
    fn stored_json_is_shown_as_the_engine_shows_it() {
        let stored = serde_json::json!({
            "env": "prod",
            "n": [1, -2, 3.5, 1e300, u64::MAX, null, true],
            "nested": {"a": {"b": [{"c": "d \" \n"}]}, "empty": {}, "none": []},
            "unicode": "漢字 😀"
        });
        for json in [
            stored,
            serde_json::json!(null),
            serde_json::json!("text"),
            serde_json::json!(0.1),
        ] {
            let (mut ours, mut engines) = (vec![], vec![]);
            write_json(&mut ours, &json).unwrap();
            write_value(&mut engines, &async_graphql::to_value(&json).unwrap()).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(engines).unwrap());
        }
    }

    #[test]
    fn plain_span_selections_are_answered_in_one_pass() {
        let dashboard = "{ rootSpans { name spanType startedAt endedAt error usage { totalTokens costUsd }
            children { name kind: spanType children { __typename id metadata } } } }";
        assert!(plain(dashboard, true));
        // Children need the tree; without one the engine loads them.
        assert!(!plain(dashboard, false));
        assert!(plain("{ rootSpans { id usage { model costSource } } }", false));
    }

    #[test]
    fn other_selections_go_to_the_engine() {
        for query in [
            "{ rootSpans { ... { id } } }",
            "{ rootSpans { ... on Span { id } } }",
            "{ rootSpans { id @include(if: true) } }",
            "{ rootSpans { id id } }",
            "{ rootSpans { a: name a: error } }",
            "{ rootSpans { flags { id } } }",
            "{ rootSpans { trace { id } } }",
            "{ rootSpans { parent { id } } }",
            "{ rootSpans { usage { ... { model } } } }",
            "{ rootSpans { children(first: 1) { id } } }",
        ] {
            assert!(!plain(query, true), "{query}");
        }
    }

    #[test]
    fn trace_selections_of_columns_and_usage_are_answered_in_one_pass() {
        let trace = |query| plain_as(query, Shape::Trace, false);
        assert!(trace(
            "{ items { __typename id name status durationMs metadata usage { totalTokens } } }"
        ));
        for query in [
            "{ items { rootSpans { id } } }",
            "{ items { spans { id } } }",
            "{ items { agentUsage { costUsd } } }",
            "{ items { ... { id } } }",
            "{ items { id @skip(if: false) } }",
            "{ items { a: id a: name } }",
        ] {
            assert!(!trace(query), "{query}");
        }
    }
}
