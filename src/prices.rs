//! Model prices (USD per million input and output tokens): a built-in table for the
//! common models of OpenAI, Anthropic, Google and Mistral, overridden and extended by a
//! user file. Used when an LLM span reports tokens but no cost.

use std::path::Path;

use serde::Deserialize;

/// (name or `*` pattern, input, output) in USD per million tokens.
const BUILT_IN: &[(&str, f64, f64)] = &[
    ("gpt-5", 1.25, 10.00),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-2024-*", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o-mini-*", 0.15, 0.60),
    ("o3", 2.00, 8.00),
    ("o4-mini", 1.10, 4.40),
    ("claude-opus-4*", 15.00, 75.00),
    ("claude-sonnet-4*", 3.00, 15.00),
    ("claude-haiku-4*", 1.00, 5.00),
    ("claude-3-7-sonnet*", 3.00, 15.00),
    ("claude-3-5-sonnet*", 3.00, 15.00),
    ("claude-3-5-haiku*", 0.80, 4.00),
    ("gemini-2.5-pro*", 1.25, 10.00),
    ("gemini-2.5-flash-lite*", 0.10, 0.40),
    ("gemini-2.5-flash*", 0.30, 2.50),
    ("gemini-2.0-flash*", 0.10, 0.40),
    ("gemini-1.5-pro*", 1.25, 5.00),
    ("gemini-1.5-flash*", 0.075, 0.30),
    ("mistral-large*", 2.00, 6.00),
    ("mistral-medium*", 0.40, 2.00),
    ("mistral-small*", 0.10, 0.30),
    ("codestral*", 0.30, 0.90),
    ("ministral-8b*", 0.10, 0.10),
];

#[derive(Debug, Clone, PartialEq)]
struct Price {
    pattern: String,
    input: f64,
    output: f64,
}

/// The price table. Exact names win over patterns; among patterns the longest (most
/// specific) wins.
#[derive(Debug, Clone)]
pub struct Prices {
    entries: Vec<Price>,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            entries: BUILT_IN
                .iter()
                .map(|&(pattern, input, output)| Price {
                    pattern: pattern.to_owned(),
                    input,
                    output,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PriceFileError {
    #[error("cannot read price file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("price file {path} is not valid {format}: {reason}")]
    Parse {
        path: String,
        format: &'static str,
        reason: String,
    },
    #[error("price file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    models: Vec<PriceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    /// An exact model name, or a pattern with `*` for any run of characters.
    model: String,
    /// USD per million input tokens.
    input: f64,
    /// USD per million output tokens.
    output: f64,
}

/// The highest price a file may set, in USD per million tokens: a call of the most tokens a
/// span may report (`usage::MAX_TOKENS` each way) then costs at most 2 × 10^8 USD, within
/// `usage::MAX_COST_USD`.
const MAX_PRICE_PER_MILLION: f64 = 100_000.0;

impl Prices {
    /// The built-in table with a user file's entries over it (TOML, or JSON by extension).
    pub fn with_file(path: &Path) -> Result<Self, PriceFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PriceFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let file: PriceFile = if is_json {
            serde_json::from_str(&text).map_err(|e| PriceFileError::Parse {
                path: shown.clone(),
                format: "JSON",
                reason: e.to_string(),
            })?
        } else {
            toml::from_str(&text).map_err(|e| PriceFileError::Parse {
                path: shown.clone(),
                format: "TOML",
                reason: e.to_string(),
            })?
        };
        let mut prices = Self::default();
        for entry in file.models {
            let valid = |p: f64| (0.0..=MAX_PRICE_PER_MILLION).contains(&p);
            if entry.model.trim().is_empty() || !valid(entry.input) || !valid(entry.output) {
                return Err(PriceFileError::Invalid {
                    path: shown,
                    reason: format!(
                        "entry {:?} needs a name and prices from 0 to {MAX_PRICE_PER_MILLION} USD per million tokens",
                        entry.model
                    ),
                });
            }
            prices.entries.retain(|p| p.pattern != entry.model);
            prices.entries.push(Price {
                pattern: entry.model,
                input: entry.input,
                output: entry.output,
            });
        }
        Ok(prices)
    }

    /// (input, output) USD per million tokens for a model, if known.
    pub fn lookup(&self, model: &str) -> Option<(f64, f64)> {
        if let Some(p) = self
            .entries
            .iter()
            .find(|p| !p.pattern.contains('*') && p.pattern == model)
        {
            return Some((p.input, p.output));
        }
        self.entries
            .iter()
            .filter(|p| p.pattern.contains('*') && glob(&p.pattern, model))
            .max_by_key(|p| p.pattern.len())
            .map(|p| (p.input, p.output))
    }

    /// The cost of a call, if the model is priced.
    pub fn cost(&self, model: &str, input_tokens: i64, output_tokens: i64) -> Option<f64> {
        let (input, output) = self.lookup(model)?;
        Some((input_tokens as f64 * input + output_tokens as f64 * output) / 1_000_000.0)
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_most_specific_pattern() {
        let prices = Prices::default();
        assert_eq!(prices.lookup("gpt-4o"), Some((2.50, 10.00)));
        assert_eq!(prices.lookup("gpt-4o-mini"), Some((0.15, 0.60)));
        assert_eq!(prices.lookup("claude-sonnet-4-20250514"), Some((3.00, 15.00)));
        assert_eq!(prices.lookup("gemini-2.5-flash-lite-001"), Some((0.10, 0.40)));
        assert_eq!(prices.lookup("gemini-2.5-flash-001"), Some((0.30, 2.50)));
        assert_eq!(prices.lookup("my-own-model"), None);
    }

    #[test]
    fn glob_matching() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxcyyb"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn computes_cost_per_million() {
        let cost = Prices::default().cost("gpt-4o-mini", 1_000_000, 500_000).unwrap();
        assert!((cost - (0.15 + 0.30)).abs() < 1e-12);
    }
}
