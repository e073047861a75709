//! Reads LLM usage out of a span's `metadata` into typed values at write time, so
//! totals and cost sorts never parse JSON at read time.

use serde_json::{Map, Value};

use crate::error::AppError;

/// Usage of one LLM span. Every field is optional: SDKs report what they know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtractedUsage {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
}

/// The most tokens one span may report in a count: a thousand times the largest context
/// any model takes. Traces and agents keep running sums of these in 64-bit integers;
/// bounded so, a sum could overflow only after some nine billion spans, and no one
/// span's number can break a trace's or an agent's totals.
pub const MAX_TOKENS: i64 = 1_000_000_000;

/// The most USD one span may report (or be priced at), for the same reason.
pub const MAX_COST_USD: f64 = 1_000_000_000.0;

const INPUT_KEYS: [&str; 2] = ["input_tokens", "prompt_tokens"];
const OUTPUT_KEYS: [&str; 2] = ["output_tokens", "completion_tokens"];
const COST_KEYS: [&str; 2] = ["cost_usd", "cost"];

/// Extracts usage from an LLM span's metadata. A present but malformed value
/// (a negative count, a word where a number belongs) is an error, not a zero.
pub fn extract(metadata: &Map<String, Value>) -> Result<ExtractedUsage, AppError> {
    let input_tokens = first_count(metadata, &INPUT_KEYS)?;
    let output_tokens = first_count(metadata, &OUTPUT_KEYS)?;
    let total_tokens = match first_count(metadata, &["total_tokens"])? {
        Some(total) => Some(total),
        None if input_tokens.is_some() || output_tokens.is_some() => {
            Some(input_tokens.unwrap_or(0).saturating_add(output_tokens.unwrap_or(0)))
        }
        None => None,
    };
    Ok(ExtractedUsage {
        model: text(metadata, "model")?,
        provider: text(metadata, "provider")?,
        input_tokens,
        output_tokens,
        total_tokens,
        cost_usd: first_cost(metadata)?,
    })
}

fn text(metadata: &Map<String, Value>, key: &str) -> Result<Option<String>, AppError> {
    match metadata.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::bad_input(format!("metadata.{key}"), "must be a string")),
    }
}

fn first_count(metadata: &Map<String, Value>, keys: &[&str]) -> Result<Option<i64>, AppError> {
    for key in keys {
        if let Some(value) = metadata.get(*key).filter(|v| !v.is_null()) {
            return count(value).map(Some).ok_or_else(|| {
                AppError::bad_input(
                    format!("metadata.{key}"),
                    format!("must be a whole number from 0 to {MAX_TOKENS}"),
                )
            });
        }
    }
    Ok(None)
}

fn first_cost(metadata: &Map<String, Value>) -> Result<Option<f64>, AppError> {
    for key in COST_KEYS {
        if let Some(value) = metadata.get(key).filter(|v| !v.is_null()) {
            return cost(value).map(Some).ok_or_else(|| {
                AppError::bad_input(
                    format!("metadata.{key}"),
                    format!("must be a number from 0 to {MAX_COST_USD}"),
                )
            });
        }
    }
    Ok(None)
}

/// Some SDKs send numbers as strings; accept those, but nothing that is not a count.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn count(value: &Value) -> Option<i64> {
    if let Some(n) = value.as_i64() {
        return (0..=MAX_TOKENS).contains(&n).then_some(n);
    }
    let n = number(value)?;
    (n >= 0.0 && n.fract() == 0.0 && n <= MAX_TOKENS as f64).then_some(n as i64)
}

fn cost(value: &Value) -> Option<f64> {
    number(value).filter(|n| (0.0..=MAX_COST_USD).contains(n))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extract_json(value: Value) -> Result<ExtractedUsage, AppError> {
        extract(value.as_object().expect("test metadata is an object"))
    }

    #[test]
    fn reads_openai_spelling() {
        let usage = extract_json(json!({"model": "gpt-4o", "provider": "openai",
            "prompt_tokens": 10, "completion_tokens": 5, "cost": 0.25}))
        .unwrap();
        assert_eq!(usage.input_tokens, Some(10));
        assert_eq!(usage.output_tokens, Some(5));
        assert_eq!(usage.total_tokens, Some(15));
        assert_eq!(usage.cost_usd, Some(0.25));
        assert_eq!(usage.model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn prefers_primary_keys_and_explicit_total() {
        let usage = extract_json(json!({"input_tokens": 7, "prompt_tokens": 99,
            "output_tokens": "3", "total_tokens": 12, "cost_usd": "0.5"}))
        .unwrap();
        assert_eq!(usage.input_tokens, Some(7));
        assert_eq!(usage.output_tokens, Some(3));
        assert_eq!(usage.total_tokens, Some(12));
        assert_eq!(usage.cost_usd, Some(0.5));
    }

    #[test]
    fn absent_usage_is_none_not_zero() {
        assert_eq!(extract_json(json!({"tool": "x"})).unwrap(), ExtractedUsage::default());
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            json!({"input_tokens": -1}),
            json!({"input_tokens": 1.5}),
            json!({"output_tokens": "many"}),
            json!({"cost_usd": -0.1}),
            json!({"cost": [1]}),
            json!({"model": 3}),
            json!({"total_tokens": 1e300}),
            json!({"input_tokens": MAX_TOKENS + 1}),
            json!({"output_tokens": i64::MAX}),
            json!({"prompt_tokens": u64::MAX}),
            json!({"total_tokens": "1000000001"}),
            json!({"cost_usd": 1e308}),
            json!({"cost": "1000000000.01"}),
        ] {
            let err = extract_json(bad.clone()).unwrap_err();
            assert_eq!(err.code(), crate::error::code::BAD_USER_INPUT, "{bad}");
        }
    }

    #[test]
    fn takes_counts_and_costs_up_to_their_bounds() {
        let usage = extract_json(json!({"input_tokens": MAX_TOKENS, "output_tokens": "1000000000",
            "cost_usd": MAX_COST_USD}))
        .unwrap();
        assert_eq!(usage.input_tokens, Some(MAX_TOKENS));
        assert_eq!(usage.output_tokens, Some(MAX_TOKENS));
        assert_eq!(usage.total_tokens, Some(2 * MAX_TOKENS));
        assert_eq!(usage.cost_usd, Some(MAX_COST_USD));
    }
}
