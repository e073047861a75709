//! Limits on the shape of a query that async-graphql leaves open: tokens (counted
//! before parsing, so a huge document is refused cheaply), aliases, root fields and
//! directives. Each refusal is `LIMIT_EXCEEDED` naming the limit and its value.

use std::collections::HashSet;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult};

use crate::error::code;

#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_tokens: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_directives: usize,
}

impl QueryLimits {
    /// Checked before parsing, so that a huge document is refused cheaply.
    pub fn check_text(&self, query: &str) -> ServerResult<()> {
        check("tokens", count_tokens(query), self.max_tokens)
    }

    pub fn check_shape(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let shape = Shape::of(document);
        check("aliases", shape.aliases, self.max_aliases)?;
        check("root fields", shape.root_fields, self.max_root_fields)?;
        check("directives", shape.directives, self.max_directives)
    }
}

fn check(limit: &'static str, actual: usize, max: usize) -> ServerResult<()> {
    if actual <= max {
        return Ok(());
    }
    let mut error = ServerError::new(format!("query has {actual} {limit}; the limit is {max}"), None);
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", code::LIMIT_EXCEEDED);
    ext.set("limit", limit);
    ext.set("max", max as u64);
    Err(error)
}

/// Counts GraphQL lexical tokens, skipping what the grammar ignores (white space,
/// commas, comments). Malformed input still counts; the parser reports it afterwards.
pub fn count_tokens(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut i, mut tokens) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                tokens += 1;
                if bytes[i..].starts_with(b"\"\"\"") {
                    i += 3;
                    while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                        i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                    }
                    i += 3;
                } else {
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                tokens += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => {
                tokens += 1;
                i += 1;
            }
        }
    }
    tokens
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    aliases: usize,
    root_fields: usize,
    directives: usize,
}

impl Shape {
    fn of(document: &ExecutableDocument) -> Self {
        let mut shape = Self::default();
        let operations: Vec<_> = match &document.operations {
            DocumentOperations::Single(op) => vec![op],
            DocumentOperations::Multiple(ops) => ops.values().collect(),
        };
        for op in &operations {
            shape.directives += op.node.directives.len();
            shape.directives += op
                .node
                .variable_definitions
                .iter()
                .map(|v| v.node.directives.len())
                .sum::<usize>();
            shape.walk(&op.node.selection_set.node);
            let mut seen = HashSet::new();
            shape.root_fields = shape
                .root_fields
                .max(root_fields(&op.node.selection_set.node, document, &mut seen));
        }
        for fragment in document.fragments.values() {
            shape.directives += fragment.node.directives.len();
            shape.walk(&fragment.node.selection_set.node);
        }
        shape
    }

    fn walk(&mut self, set: &SelectionSet) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.aliases += usize::from(field.node.alias.is_some());
                    self.directives += field.node.directives.len();
                    self.walk(&field.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => self.directives += spread.node.directives.len(),
                Selection::InlineFragment(inline) => {
                    self.directives += inline.node.directives.len();
                    self.walk(&inline.node.selection_set.node);
                }
            }
        }
    }
}

/// Fields at the top of an operation, through fragments; a fragment cycle (which
/// validation refuses later) is followed once.
fn root_fields<'a>(set: &'a SelectionSet, document: &'a ExecutableDocument, seen: &mut HashSet<&'a str>) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(_) => 1,
            Selection::InlineFragment(inline) => root_fields(&inline.node.selection_set.node, document, seen),
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(name) {
                    Some(fragment) if seen.insert(name) => {
                        root_fields(&fragment.node.selection_set.node, document, seen)
                    }
                    _ => 0,
                }
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_and_skips_what_is_ignored() {
        assert_eq!(count_tokens("{ a }"), 3);
        assert_eq!(count_tokens("# comment\n{ a, b }"), 4);
        assert_eq!(count_tokens(r#"{ f(s: "x y \" z", n: -1.5e3) }"#), 11);
        assert_eq!(count_tokens("{ ...F } fragment F on T { a }"), 11);
        assert_eq!(count_tokens("\"\"\"block \"\"\" ok"), 2);
        // Unterminated input neither panics nor loops.
        assert_eq!(count_tokens("\"abc"), 1);
        assert_eq!(count_tokens("\"\"\"abc"), 1);
    }

    #[test]
    fn measures_aliases_roots_and_directives() {
        let doc = async_graphql::parser::parse_query(
            "query Q @a { x: f @b { y: g } ...F ... on Query @c { h } } fragment F on Query { i j }",
        )
        .unwrap();
        assert_eq!(
            Shape::of(&doc),
            Shape {
                aliases: 2,
                root_fields: 4,
                directives: 3
            }
        );
    }
}
