//! A scalar of a write input kept as given when it does not parse, so that validation
//! can refuse it naming its field and, in a batch, its item (`inputs[537].startedAt`).
//! The engine's own refusal names only the input type, and chrono's reason alone ("input
//! is out of range") neither the value nor the form expected: in a batch of a thousand
//! spans nobody could tell which one to mend. The schema is unchanged: the field's type is
//! registered as the wrapped scalar's own.

use std::borrow::Cow;

use async_graphql::registry::Registry;
use async_graphql::{InputType, InputValueResult, Pos, Value};

use crate::error::{AppError, AppResult};

/// How a time is written, told with every refused one.
pub const DATETIME_FORM: &str = "a DateTime is RFC 3339: a valid date, a time of day and an offset, \
     e.g. 2026-11-24T09:30:00Z or 2026-11-24T10:30:00.123456+01:00";

/// The longest part of a refused value quoted back in its error.
const QUOTED_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Given<T> {
    Parsed(T),
    Refused { given: Value, reason: String },
}

impl<T> From<T> for Given<T> {
    fn from(value: T) -> Self {
        Self::Parsed(value)
    }
}

impl<T: InputType> Given<T> {
    /// The value, or a `BAD_USER_INPUT` naming `field`, the value and the form expected.
    pub fn check(self, field: &str, form: &str) -> AppResult<T> {
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
                    format!("{quoted} is not a {} ({reason}); {form}", T::type_name()),
                ))
            }
        }
    }
}

/// `check` of an optional field.
pub fn check_opt<T: InputType>(value: Option<Given<T>>, field: &str, form: &str) -> AppResult<Option<T>> {
    value.map(|value| value.check(field, form)).transpose()
}

impl<T: InputType> InputType for Given<T> {
    type RawValueType = T::RawValueType;

    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        let given = value.clone().unwrap_or_default();
        Ok(match T::parse(value) {
            Ok(parsed) => Self::Parsed(parsed),
            Err(e) => {
                let message = e.into_server_error(Pos::default()).message;
                // The engine's wording, "Failed to parse \"DateTime\": <reason>".
                let reason = message.split_once(": ").map_or(message.as_str(), |(_, r)| r);
                Self::Refused {
                    given,
                    reason: reason.to_owned(),
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
