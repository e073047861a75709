//! Full validation once per document, not once per request.
//!
//! async-graphql checks every request's document against all of GraphQL's rules, even a
//! document parsed from the cache: a tenth of a small query's server time. A document
//! that passed once passes again, except for one part: the rule that checks the
//! variable values where they are used. So a query whose document passed runs on a
//! schema that checks only the limits (`ValidationMode::Fast`), once `vouch` has checked
//! its variable values against their declared types here.
//!
//! `vouch` only says yes when full validation would: the variable's declared type is
//! the one where it is used (validation guarantees the same named type, at least as
//! strict), and the check follows the engine's own (`is_valid_input_value`). Whatever
//! it cannot vouch for (an absent or null variable, an undeclared one, several
//! operations) goes through full validation, so its errors are the same. Mutations are
//! vouched for as queries are: the engine's check of a variable's value copies the
//! whole value first, and a batch of a thousand spans is a large value.
//!
//! The engine's validation does not notice a variable of a non-null type that is not
//! provided at all (it runs with null); `required_variables_provided` refuses it.

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::OperationDefinition;
use async_graphql::parser::types::{BaseType, DocumentOperations, ExecutableDocument, OperationType, Type};
use async_graphql::registry::{MetaType, Registry, ScalarValidatorFn};
use async_graphql::{OutputType, Positioned, Request, ServerError, SubscriptionType, Value};

use super::{Mutation, Query, Subscription};

/// The input types of the schema, to check variable values against, resolved once: a
/// batch of a thousand spans is checked field by field, and looking each type up by
/// name in the registry (a hashed lookup per field, and per field again to refuse
/// unknown ones) was a tenth of an `addSpans` request's instructions.
pub struct InputTypes {
    types: Vec<InputType>,
    index: HashMap<String, usize>,
}

enum InputType {
    Scalar(Option<ScalarValidatorFn>),
    Enum(HashSet<String>),
    Object {
        fields: Vec<InputField>,
        /// Fields of a non-null type without a default.
        required: usize,
        oneof: bool,
    },
    /// Not an input type: full validation says what is wrong.
    Other,
}

struct InputField {
    name: String,
    ty: TypeRef,
    required: bool,
}

/// A type as written (`[Name!]!`), its named type resolved.
enum TypeRef {
    NonNull(Box<TypeRef>),
    List(Box<TypeRef>),
    Named(Option<usize>),
}

impl InputTypes {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        Query::create_type_info(&mut registry);
        Mutation::create_type_info(&mut registry);
        Subscription::create_type_info(&mut registry);
        let index: HashMap<String, usize> = registry
            .types
            .keys()
            .cloned()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        let types = registry
            .types
            .values()
            .map(|meta| match meta {
                MetaType::Scalar { is_valid, .. } => InputType::Scalar(is_valid.clone()),
                MetaType::Enum { enum_values, .. } => InputType::Enum(enum_values.keys().cloned().collect()),
                MetaType::InputObject {
                    input_fields, oneof, ..
                } => {
                    let fields: Vec<InputField> = input_fields
                        .values()
                        .map(|field| {
                            // The registry writes types as text (`[Name!]!`), always well formed.
                            let ty = Type::new(&field.ty);
                            InputField {
                                name: field.name.clone(),
                                ty: ty.as_ref().map_or(TypeRef::Named(None), |ty| type_ref(&index, ty)),
                                required: ty.is_some_and(|ty| !ty.nullable) && field.default_value.is_none(),
                            }
                        })
                        .collect();
                    InputType::Object {
                        required: fields.iter().filter(|field| field.required).count(),
                        fields,
                        oneof: *oneof,
                    }
                }
                _ => InputType::Other,
            })
            .collect();
        Self { types, index }
    }

    /// Whether `request`, whose `document` passed full validation before, would pass it
    /// again. Subscriptions do not come here.
    pub fn vouch(&self, document: &ExecutableDocument, request: &Request) -> bool {
        let several = matches!(&document.operations, DocumentOperations::Multiple(operations) if operations.len() > 1);
        let Some(operation) = selected(document, request).filter(|_| !several) else {
            return false;
        };
        let operation = &operation.node;
        operation.ty != OperationType::Subscription
            && request.variables.len() == operation.variable_definitions.len()
            && operation.variable_definitions.iter().all(|definition| {
                let definition = &definition.node;
                match request.variables.get(&definition.name.node) {
                    None | Some(Value::Null) => false,
                    Some(value) => self.fits(&type_ref(&self.index, &definition.var_type.node), value),
                }
            })
    }

    /// `value` is valid input for `ty`, as the engine's `is_valid_input_value` has it.
    fn fits(&self, ty: &TypeRef, value: &Value) -> bool {
        match ty {
            TypeRef::NonNull(inner) => !matches!(value, Value::Null) && self.fits(inner, value),
            TypeRef::List(item) => match value {
                Value::List(items) => items.iter().all(|value| self.fits(item, value)),
                Value::Null => true,
                // A single value is coerced into a list of one.
                value => self.fits(item, value),
            },
            TypeRef::Named(named) => value == &Value::Null || named.is_some_and(|named| self.fits_named(named, value)),
        }
    }

    fn fits_named(&self, named: usize, value: &Value) -> bool {
        match &self.types[named] {
            InputType::Scalar(is_valid) => is_valid.as_ref().is_none_or(|is_valid| is_valid(value)),
            InputType::Enum(items) => match value {
                Value::Enum(item) => items.contains(item.as_str()),
                Value::String(item) => items.contains(item.as_str()),
                _ => false,
            },
            InputType::Object {
                fields,
                required,
                oneof,
            } => {
                let Value::Object(given) = value else {
                    return false;
                };
                if *oneof && (given.len() != 1 || given.values().any(|v| *v == Value::Null)) {
                    return false;
                }
                // Every field given is declared and fits; those left out may be.
                let mut required_given = 0;
                let all_fit =
                    given.iter().all(
                        |(name, value)| match fields.iter().find(|field| field.name == name.as_str()) {
                            Some(field) => {
                                required_given += usize::from(field.required);
                                self.fits(&field.ty, value)
                            }
                            None => false,
                        },
                    );
                all_fit && required_given == *required
            }
            InputType::Other => false,
        }
    }
}

/// `ty` with its named type looked up in `index`.
fn type_ref(index: &HashMap<String, usize>, ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(index.get(name.as_str()).copied()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(index, item))),
    };
    if ty.nullable {
        base
    } else {
        TypeRef::NonNull(Box::new(base))
    }
}

/// The operation the request runs, if the document names it (the engine reports the rest).
fn selected<'a>(document: &'a ExecutableDocument, request: &Request) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), None) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next(),
        _ => None,
    }
}

/// Refuses a request that leaves out a variable of a non-null type with no default.
pub fn required_variables_provided(document: &ExecutableDocument, request: &Request) -> Result<(), ServerError> {
    let Some(operation) = selected(document, request) else {
        return Ok(());
    };
    let missing = operation.node.variable_definitions.iter().find(|definition| {
        let definition = &definition.node;
        !definition.var_type.node.nullable
            && definition.default_value.is_none()
            && !request.variables.contains_key(&definition.name.node)
    });
    match missing {
        Some(definition) => Err(ServerError::new(
            format!(
                "Variable \"${}\" of required type \"{}\" was not provided.",
                definition.node.name.node, definition.node.var_type.node
            ),
            Some(definition.pos),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::Variables;
    use serde_json::json;

    use super::*;

    fn vouched(query: &str, variables: serde_json::Value) -> bool {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let request = Request::new(query).variables(Variables::from_json(variables));
        InputTypes::new().vouch(&document, &request)
    }

    const TRACES: &str = "query($a: UUID, $s: TraceSort) { traces(filter: {agent: $a}, sort: $s) { totalCount } }";
    const AGENT: &str = "a170b338-3926-4059-b28c-105d1fb17c23";

    #[test]
    fn values_of_their_declared_types_are_vouched_for() {
        assert!(vouched(TRACES, json!({"a": AGENT, "s": "STARTED_AT_DESC"})));
        assert!(vouched("{ traces { totalCount } }", json!({})));
        let batch = "mutation($s: [AddSpanInput!]!) { addSpans(inputs: $s) { id } }";
        let span = json!({"traceId": AGENT, "name": "s", "spanType": "LLM", "metadata": {"model": "m"}});
        assert!(vouched(batch, json!({"s": [span.clone(), span]})));
        let filter = "query($f: SpanFilter) { spans(filter: $f) { totalCount } }";
        assert!(vouched(
            filter,
            json!({"f": {"agent": AGENT, "spanType": "TOOL", "startedAfter": null}})
        ));
    }

    #[test]
    fn anything_full_validation_might_refuse_is_not() {
        let cases = [
            (TRACES, json!({"a": AGENT, "s": "SIDEWAYS"}), "no such enum value"),
            (TRACES, json!({"a": AGENT, "s": 1}), "a number for an enum"),
            (TRACES, json!({"a": null, "s": "STARTED_AT_DESC"}), "null at the top"),
            (TRACES, json!({"a": AGENT}), "absent"),
            (
                TRACES,
                json!({"a": AGENT, "s": "STARTED_AT_DESC", "x": 1}),
                "undeclared",
            ),
        ];
        for (query, variables, why) in cases {
            assert!(!vouched(query, variables), "{why}");
        }
        let limit = "query($n: Int) { traces(limit: $n) { totalCount } }";
        assert!(vouched(limit, json!({"n": 5})));
        assert!(!vouched(limit, json!({"n": "5"})), "a string for an Int");
        assert!(!vouched(limit, json!({"n": [5, 6]})), "a list for an Int");
        let filter = "query($f: SpanFilter) { spans(filter: $f) { totalCount } }";
        assert!(!vouched(filter, json!({"f": {"nope": 1}})), "an unknown field");
        assert!(!vouched(filter, json!({"f": "agent"})), "a string for an input object");
        assert!(
            !vouched(filter, json!({"f": {"spanType": "NOPE"}})),
            "a bad value inside"
        );
        let mutation = "mutation($i: CreateTraceInput!) { createTrace(input: $i) { id } }";
        assert!(
            !vouched(mutation, json!({"i": {"name": 5}})),
            "a number for a mutation's String"
        );
        assert!(
            !vouched(mutation, json!({"i": {}})),
            "a mutation's required field left out"
        );
        assert!(
            !vouched(mutation, json!({"i": {"name": null}})),
            "null for a mutation's required field"
        );
        let batch = "mutation($i: [AddSpanInput!]!) { addSpans(inputs: $i) { id } }";
        let span = json!({"traceId": AGENT, "name": "step", "spanType": "TOOL", "metadata": {"k": [1]}});
        assert!(vouched(batch, json!({"i": [span, span]})), "a batch of good spans");
        // (A malformed id or time fits its scalar's check as well as full validation's: both
        // leave it to the engine's parsing, which refuses it with the same error.)
        for (bad, why) in [
            (json!({"traceId": AGENT, "spanType": "TOOL"}), "a name left out"),
            (
                json!({"traceId": AGENT, "name": "step", "spanType": "NOPE"}),
                "a bad span type",
            ),
            (
                json!({"traceId": AGENT, "name": ["step"], "spanType": "TOOL"}),
                "a list for a name",
            ),
            (
                json!({"traceId": AGENT, "name": "step", "spanType": "TOOL", "extra": 1}),
                "an unknown field",
            ),
            (json!(null), "a null span"),
        ] {
            assert!(!vouched(batch, json!({"i": [span, bad, span]})), "a batch with {why}");
        }
        let subscription = "subscription($t: UUID!) { spanAdded(traceId: $t) { id } }";
        assert!(!vouched(subscription, json!({"t": AGENT})), "a subscription");
        let two = "query A { traces { totalCount } } query B { traces { totalCount } }";
        assert!(!vouched(two, json!({})), "several operations");
    }

    #[test]
    fn a_named_operation_is_vouched_for_only_when_asked_for_by_name() {
        let query = "query Page { traces { totalCount } }";
        let document = async_graphql::parser::parse_query(query).unwrap();
        let types = InputTypes::new();
        assert!(types.vouch(&document, &Request::new(query).operation_name("Page")));
        assert!(!types.vouch(&document, &Request::new(query).operation_name("Other")));
    }
}
