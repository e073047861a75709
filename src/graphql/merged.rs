//! Whether a document makes the engine merge answers: one response key asked for more
//! than once in a selection set (after its fragments are spread), with selections below
//! it, as in `items { name } items { ...more }`. The engine answers each and merges the
//! objects and lists it gets. Lists answered in one pass arrive as JSON text already
//! written (`json::prewritten`), which it cannot merge, so a document that merges sends
//! its lists to the engine (`ListsByEngine`).

use std::collections::HashSet;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};

/// In a request's data: its lists are answered by the engine, field by field.
pub struct ListsByEngine;

pub fn merges_fields(document: &ExecutableDocument) -> bool {
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
        DocumentOperations::Multiple(operations) => operations.values().map(|op| &op.node.selection_set.node).collect(),
    };
    let fragments = document.fragments.values().map(|f| &f.node.selection_set.node);
    operations
        .into_iter()
        .chain(fragments)
        .any(|set| any_set_repeats_a_key(set, document))
}

/// Whether `set`, or any selection set below it, repeats a key.
fn any_set_repeats_a_key(set: &SelectionSet, document: &ExecutableDocument) -> bool {
    repeats_a_key(set, document, &mut HashSet::new(), &mut HashSet::new())
        || set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => any_set_repeats_a_key(&field.node.selection_set.node, document),
            Selection::InlineFragment(inline) => any_set_repeats_a_key(&inline.node.selection_set.node, document),
            // A fragment's own selection sets are walked as the document's fragments.
            Selection::FragmentSpread(_) => false,
        })
}

/// Whether a key with selections below it comes twice among the fields of `set`, its
/// fragments spread. A fragment spread again at the same level (or in a cycle, which
/// validation refuses later) counts once: spreading it twice repeats every key.
fn repeats_a_key<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    keys: &mut HashSet<&'a str>,
    spread: &mut HashSet<&'a str>,
) -> bool {
    set.items.iter().any(|item| match &item.node {
        Selection::Field(field) => {
            let field = &field.node;
            !field.selection_set.node.items.is_empty() && !keys.insert(field.response_key().node.as_str())
        }
        Selection::InlineFragment(inline) => repeats_a_key(&inline.node.selection_set.node, document, keys, spread),
        Selection::FragmentSpread(fragment) => {
            let name = fragment.node.fragment_name.node.as_str();
            if !spread.insert(name) {
                return true;
            }
            document
                .fragments
                .get(name)
                .is_some_and(|fragment| repeats_a_key(&fragment.node.selection_set.node, document, keys, spread))
        }
    })
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn merges(query: &str) -> bool {
        merges_fields(&parse_query(query).unwrap())
    }

    #[test]
    fn a_key_repeated_with_selections_below_merges() {
        for query in [
            "{ traces { items { name } items { id } } }",
            "{ traces { items { name } ... { items { id } } } }",
            "{ traces { items { name } ...More } } fragment More on TracePage { items { id } }",
            "{ traces { ...A ...B } } fragment A on TracePage { items { id } } fragment B on TracePage { items { name } }",
            "{ traces { ...A ...A } } fragment A on TracePage { items { id } }",
            "{ a: traces { items { id } } a: traces { totalCount } }",
            "{ trace(id: 1) { spans { id } } } fragment F on Trace { rootSpans { id } rootSpans { name } }",
            "query A { x { y } } query B { x { y } x { z } }",
        ] {
            assert!(merges(query), "{query}");
        }
    }

    #[test]
    fn keys_once_per_level_or_leaves_repeated_do_not_merge() {
        for query in [
            "{ traces { items { name id name rootSpans { children { children { name } } } } } }",
            "{ a: traces { items { id } } b: traces { items { id } } }",
            "{ traces { items { usage { costUsd } rootSpans { usage { costUsd } } } } }",
            "{ traces { ...A } spans { ...B } } fragment A on TracePage { items { id } } fragment B on SpanPage { items { id } }",
            "query A { x { y } } query B { x { y } }",
        ] {
            assert!(!merges(query), "{query}");
        }
    }
}
