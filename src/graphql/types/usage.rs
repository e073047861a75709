use async_graphql::{Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::entities::{agent_usage, span, trace};
use crate::db::store::agent_usage::UsageTotals;
use crate::model::CostSource;

/// LLM calls, tokens and cost: of one LLM span, or summed over a trace.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct TokenUsage {
    /// Model name; for a trace, null (it may use several).
    pub model: Option<String>,
    /// Provider, e.g. `openai`; for a trace, null.
    pub provider: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// Cost in US dollars: reported by the spans or computed from the price table. For a
    /// span whose model has no price, null (see `costSource`), never a silent zero.
    pub cost_usd: Option<f64>,
    /// For a span: where its cost comes from. Null for sums.
    pub cost_source: Option<CostSource>,
    /// How many LLM calls this covers.
    pub llm_calls: i64,
}

impl TokenUsage {
    pub fn of_span(s: &span::Model) -> Self {
        Self {
            model: s.model.clone(),
            provider: s.provider.clone(),
            input_tokens: s.input_tokens.unwrap_or(0),
            output_tokens: s.output_tokens.unwrap_or(0),
            total_tokens: s.total_tokens.unwrap_or(0),
            cost_usd: s.cost_usd,
            cost_source: s.cost_source.as_deref().and_then(CostSource::parse),
            llm_calls: 1,
        }
    }

    pub fn of_trace(t: &trace::Model) -> Self {
        Self {
            model: None,
            provider: None,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            total_tokens: t.total_tokens,
            cost_usd: Some(t.cost_usd),
            cost_source: None,
            llm_calls: t.llm_calls,
        }
    }

    pub fn of_totals(t: &UsageTotals) -> Self {
        Self {
            model: None,
            provider: None,
            input_tokens: t.input_tokens.unwrap_or(0),
            output_tokens: t.output_tokens.unwrap_or(0),
            total_tokens: t.total_tokens.unwrap_or(0),
            cost_usd: Some(t.cost_usd.unwrap_or(0.0)),
            cost_source: None,
            llm_calls: t.llm_calls.unwrap_or(0),
        }
    }
}

/// The LLM usage of one ended trace, recorded when it ended.
pub struct AgentUsage(pub agent_usage::Model);

impl From<agent_usage::Model> for AgentUsage {
    fn from(row: agent_usage::Model) -> Self {
        Self(row)
    }
}

#[Object]
impl AgentUsage {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn agent_id(&self) -> Option<Uuid> {
        self.0.agent_id
    }
    async fn product_id(&self) -> Option<Uuid> {
        self.0.product_id
    }
    /// The trace this record sums.
    async fn trace_id(&self) -> Uuid {
        self.0.trace_id
    }
    async fn llm_calls(&self) -> i64 {
        self.0.llm_calls
    }
    async fn input_tokens(&self) -> i64 {
        self.0.input_tokens
    }
    async fn output_tokens(&self) -> i64 {
        self.0.output_tokens
    }
    async fn total_tokens(&self) -> i64 {
        self.0.total_tokens
    }
    /// Cost in US dollars.
    async fn cost_usd(&self) -> f64 {
        self.0.cost_usd
    }
    /// When the trace ended and this record was written (UTC).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}
