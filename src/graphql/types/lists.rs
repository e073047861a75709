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
use std::sync::Arc;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::resolver_utils::enum_value;
use async_graphql::{ContextSelectionSet, Name, OutputType, Positioned, ScalarType, ServerResult, Value, registry};

use super::{Span, TokenUsage, Trace, micros_to_ms};
use crate::db::entities::{span, trace};
use crate::graphql::loaders::SpanTree;

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
        if is_plain(selection, Shape::Span, self.tree.is_some()) {
            let tree = self.tree.as_deref();
            return Ok(Value::List(
                self.spans.iter().map(|s| span_value(s, selection, tree)).collect(),
            ));
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
        if is_plain(selection, Shape::Trace, false) {
            return Ok(Value::List(
                self.0.iter().map(|t| trace_value(&t.0, selection)).collect(),
            ));
        }
        Box::pin(self.0.resolve(ctx, field)).await
    }
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
fn span_value(row: &Arc<span::Model>, set: &SelectionSet, tree: Option<&SpanTree>) -> Value {
    object(set, |name, field| match name {
        "__typename" => Value::String("Span".into()),
        "id" => row.id.to_value(),
        "traceId" => row.trace_id.to_value(),
        "parentId" => scalar(row.parent_id),
        "name" => Value::String(row.name.clone()),
        "spanType" => enum_value(Span::kind_of(row)),
        "startedAt" => row.started_at.to_value(),
        "endedAt" => scalar(row.ended_at),
        "durationMs" => scalar(micros_to_ms(row.duration_us)),
        "inputText" => scalar(row.input_text.clone()),
        "outputText" => scalar(row.output_text.clone()),
        "error" => scalar(row.error.clone()),
        "metadata" => json_value(&row.metadata),
        "flagged" => Value::Boolean(row.flagged),
        "usage" => match Span::usage_of(row) {
            Some(usage) => usage_value(&usage, &field.selection_set.node),
            None => Value::Null,
        },
        "children" => match tree {
            Some(tree) => Value::List(
                tree.children_of(row.id)
                    .map(|child| span_value(child, &field.selection_set.node, Some(tree)))
                    .collect(),
            ),
            None => Value::Null,
        },
        _ => Value::Null,
    })
}

/// One trace as the engine would answer `set` (checked by `is_plain`) for it.
fn trace_value(row: &trace::Model, set: &SelectionSet) -> Value {
    object(set, |name, field| match name {
        "__typename" => Value::String("Trace".into()),
        "id" => row.id.to_value(),
        "name" => Value::String(row.name.clone()),
        "agentId" => scalar(row.agent_id),
        "productId" => scalar(row.product_id),
        "startedAt" => row.started_at.to_value(),
        "endedAt" => scalar(row.ended_at),
        "durationMs" => scalar(micros_to_ms(row.duration_us)),
        "status" => enum_value(Trace::status_of(row)),
        "error" => scalar(row.error.clone()),
        "metadata" => json_value(&row.metadata),
        "spanCount" => row.span_count.to_value(),
        "flaggedSpanCount" => row.flagged_span_count.to_value(),
        "usage" => usage_value(&TokenUsage::of_trace(row), &field.selection_set.node),
        _ => Value::Null,
    })
}

fn usage_value(usage: &TokenUsage, set: &SelectionSet) -> Value {
    object(set, |name, _| match name {
        "__typename" => Value::String("TokenUsage".into()),
        "model" => scalar(usage.model.clone()),
        "provider" => scalar(usage.provider.clone()),
        "inputTokens" => usage.input_tokens.to_value(),
        "outputTokens" => usage.output_tokens.to_value(),
        "totalTokens" => usage.total_tokens.to_value(),
        "costUsd" => scalar(usage.cost_usd),
        "costSource" => usage.cost_source.map_or(Value::Null, enum_value),
        "llmCalls" => usage.llm_calls.to_value(),
        _ => Value::Null,
    })
}

/// An object of the fields of `set`, in selection order, under their response keys.
fn object(set: &SelectionSet, mut value_of: impl FnMut(&str, &Field) -> Value) -> Value {
    let mut object = IndexMap::with_capacity(set.items.len());
    for item in &set.items {
        if let Selection::Field(field) = &item.node {
            let field = &field.node;
            object.insert(
                field.response_key().node.clone(),
                value_of(field.name.node.as_str(), field),
            );
        }
    }
    Value::Object(object)
}

/// Stored JSON as the engine shows it (`async_graphql::to_value`), built directly: the
/// engine's way, through serde's serializer, cost twice as many instructions per span.
fn json_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => Value::Number(n.clone()),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(json_value).collect()),
        serde_json::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (Name::new(key), json_value(value)))
                .collect(),
        ),
    }
}

fn scalar<T: ScalarType>(value: Option<T>) -> Value {
    value.map_or(Value::Null, |v| v.to_value())
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
            assert_eq!(json_value(&json), async_graphql::to_value(&json).unwrap());
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
