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

use async_graphql::parser::types::OperationDefinition;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{OutputType, Positioned, Request, ServerError, SubscriptionType, Value};

use super::{Mutation, Query, Subscription};

/// The input types of the schema, to check variable values against.
pub struct InputTypes {
    registry: Registry,
}

impl InputTypes {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        Query::create_type_info(&mut registry);
        Mutation::create_type_info(&mut registry);
        Subscription::create_type_info(&mut registry);
        Self { registry }
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
                    Some(value) => self.fits(&definition.var_type.node.to_string(), value),
                }
            })
    }

    /// `value` is valid input for the type named `type_name` (as `[Name!]!`).
    fn fits(&self, type_name: &str, value: &Value) -> bool {
        match MetaTypeName::create(type_name) {
            MetaTypeName::NonNull(inner) => !matches!(value, Value::Null) && self.fits(inner, value),
            MetaTypeName::List(item) => match value {
                Value::List(items) => items.iter().all(|value| self.fits(item, value)),
                Value::Null => true,
                // A single value is coerced into a list of one.
                value => self.fits(item, value),
            },
            MetaTypeName::Named(name) => value == &Value::Null || self.fits_named(name, value),
        }
    }

    fn fits_named(&self, name: &str, value: &Value) -> bool {
        match self.registry.types.get(name) {
            Some(MetaType::Scalar { is_valid, .. }) => is_valid.as_ref().is_none_or(|is_valid| is_valid(value)),
            Some(MetaType::Enum { enum_values, .. }) => match value {
                Value::Enum(item) => enum_values.contains_key(item.as_str()),
                Value::String(item) => enum_values.contains_key(item.as_str()),
                _ => false,
            },
            Some(MetaType::InputObject {
                input_fields, oneof, ..
            }) => {
                let Value::Object(fields) = value else {
                    return false;
                };
                if *oneof && (fields.len() != 1 || fields.values().any(|v| *v == Value::Null)) {
                    return false;
                }
                let required_present = input_fields
                    .values()
                    .all(|field| match fields.get(field.name.as_str()) {
                        Some(value) => self.fits(&field.ty, value),
                        None => !MetaTypeName::create(&field.ty).is_non_null() || field.default_value.is_some(),
                    });
                required_present && fields.keys().all(|name| input_fields.contains_key(name.as_str()))
            }
            // Not an input type, or not one of ours: let full validation say.
            _ => false,
        }
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
