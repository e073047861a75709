//! A scalar of a write input (a time, an id) kept as given when it does not parse, so that
//! validation can refuse it naming its field and, in a batch, its item
//! (`inputs[537].startedAt`).
//! The engine's own refusal names only the input type, and chrono's reason alone ("input
//! is out of range") neither the value nor the form expected: in a batch of a thousand
//! spans nobody could tell which one to mend. The schema is unchanged: the field's type is
//! registered as the wrapped scalar's own.

use std::borrow::Cow;

use async_graphql::registry::Registry;
use async_graphql::{InputType, InputValueResult, Pos, Value};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// The longest part of a refused value quoted back in its error.
const QUOTED_CHARS: usize = 64;

#[derive(Debug, Clone)]
pub enum Given<T> {
    Parsed(T),
    Refused { given: Value, reason: String },
}

impl<T> From<T> for Given<T> {
    fn from(value: T) -> Self {
        Self::Parsed(value)
    }
}

impl<T: FromText> Given<T> {
    /// The value, or a `BAD_USER_INPUT` naming `field`, the value and the form expected.
    pub fn check(self, field: &str) -> AppResult<T> {
        match self {
            Self::Parsed(value) => Ok(value),
            Self::Refused { given, reason } => {
                let mut quoted = given.to_string();
                if let Some((cut, _)) = quoted.char_indices().nth(QUOTED_CHARS) {
                    quoted.truncate(cut);
                    quoted.push('…');
                }
                Err(AppError::bad_input(
                    field,
                    format!("{quoted} is not a {} ({reason}); {}", T::type_name(), T::FORM),
                ))
            }
        }
    }
}

/// `check` of an optional field.
pub fn check_opt<T: FromText>(field: &str, value: Option<Given<T>>) -> AppResult<Option<T>> {
    value.map(|value| value.check(field)).transpose()
}

/// A scalar read from text as the engine's own scalar reads it.
pub trait FromText: InputType {
    /// How the scalar is written, told with every refused one (also where the engine
    /// refuses it itself: `graphql::errors`).
    const FORM: &'static str;

    fn from_text(text: &str) -> Result<Self, String>;
}

impl FromText for Uuid {
    const FORM: &'static str = "a UUID is 32 hexadecimal digits, in groups of 8-4-4-4-12 or not, \
         e.g. 0192f7a4-5b6c-7d8e-9f01-23456789abcd";

    fn from_text(text: &str) -> Result<Self, String> {
        Uuid::parse_str(text).map_err(|e| e.to_string())
    }
}

impl FromText for DateTime<Utc> {
    const FORM: &'static str = "a DateTime is RFC 3339: a valid date, a time of day and an offset, \
         e.g. 2026-11-24T09:30:00Z or 2026-11-24T10:30:00.123456+01:00";

    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e: chrono::ParseError| e.to_string())
    }
}

impl<T: FromText> InputType for Given<T> {
    type RawValueType = T::RawValueType;

    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        Ok(match value {
            // Text, nearly always: parsed in place, copied only when refused.
            Some(Value::String(text)) => match T::from_text(&text) {
                Ok(parsed) => Self::Parsed(parsed),
                Err(reason) => Self::Refused {
                    given: Value::String(text),
                    reason,
                },
            },
            other => {
                let given = other.clone().unwrap_or_default();
                match T::parse(other) {
                    Ok(parsed) => Self::Parsed(parsed),
                    Err(e) => Self::Refused {
                        given,
                        reason: e.into_server_error(Pos::default()).message,
                    },
                }
            }
        })
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Parsed(value) => value.to_value(),
            Self::Refused { given, .. } => given.clone(),
        }
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        match self {
            Self::Parsed(value) => value.as_raw_value(),
            Self::Refused { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `Given<T>` takes `value` exactly when the engine's own scalar does, to the
    /// same value.
    fn agrees<T: FromText + PartialEq + std::fmt::Debug>(value: Value) {
        let engine = T::parse(Some(value.clone())).ok();
        match Given::<T>::parse(Some(value.clone())).unwrap() {
            Given::Parsed(parsed) => assert_eq!(Some(parsed), engine, "{value}"),
            Given::Refused { given, .. } => {
                assert_eq!(engine, None, "{value}");
                assert_eq!(given, value);
            }
        }
    }

    #[test]
    fn reads_what_the_engine_reads() {
        let times = [
            "2026-11-24T09:30:00Z",
            "2026-11-24T10:30:00.123456+01:00",
            "2026-11-24t09:30:00z",
            "2026-11-24 09:30:00Z",
            "2026-11-24",
            "2026-13-45T99:99:99Z",
            "yesterday",
            "",
        ];
        for time in times {
            agrees::<DateTime<Utc>>(Value::String(time.into()));
        }
        let ids = [
            "0192f7a4-5b6c-7d8e-9f01-23456789abcd",
            "0192f7a45b6c7d8e9f0123456789abcd",
            "urn:uuid:0192f7a4-5b6c-7d8e-9f01-23456789abcd",
            "{0192f7a4-5b6c-7d8e-9f01-23456789abcd}",
            "0192f7a4-5b6c-7d8e-9f01-23456789abcz",
            "123",
        ];
        for id in ids {
            agrees::<Uuid>(Value::String(id.into()));
        }
        agrees::<Uuid>(Value::from(42));
        agrees::<DateTime<Utc>>(Value::Boolean(true));
    }

    #[test]
    fn a_refusal_names_the_field_and_quotes_a_long_value_in_part() {
        let long = "9".repeat(10_000);
        let refused = Given::<Uuid>::parse(Some(Value::String(long))).unwrap();
        let message = refused.check("traceId").unwrap_err().to_string();
        assert!(message.starts_with("traceId: \"999"), "{message}");
        assert!(message.contains("…") && message.len() < 400, "{message}");
    }
}
