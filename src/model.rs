//! Domain enums shared by the API, the store and the importer.

use async_graphql::Enum;

/// What kind of operation a span records.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SpanType {
    /// Text operations: agent messages, thinking.
    Text,
    /// Tool invocations.
    Tool,
    /// LLM API calls; these carry token counts and cost.
    Llm,
    /// Audio processing, for voice agents.
    Audio,
    /// Function executions.
    Function,
}

impl SpanType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Tool => "tool",
            Self::Llm => "llm",
            Self::Audio => "audio",
            Self::Function => "function",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Text, Self::Tool, Self::Llm, Self::Audio, Self::Function]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }
}

/// Where a trace stands. An error anywhere in the trace makes it `ERROR`, even while running,
/// so that "failed runs" finds a run that failed and never ended.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum TraceStatus {
    /// Not ended and no error so far.
    Running,
    /// Ended without any error.
    Ok,
    /// The trace or one of its spans carries an error.
    Error,
}

/// Where an LLM span's cost comes from.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CostSource {
    /// The span reported its cost (`cost_usd` or `cost` in metadata).
    Reported,
    /// Computed from the span's tokens and the model price table.
    Computed,
    /// Tokens were reported, but the model is missing or not in the price table: the
    /// cost is unknown, not zero.
    UnknownModel,
}

impl CostSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reported => "reported",
            Self::Computed => "computed",
            Self::UnknownModel => "unknown_model",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Reported, Self::Computed, Self::UnknownModel]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}
