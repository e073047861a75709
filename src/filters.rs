//! Filter and sort inputs of the list queries. The store turns them into SQL; the
//! DataLoaders use them as keys, hence `Hash`.

use async_graphql::{CustomValidator, Enum, InputObject, InputValueError};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ingest::NUL_REFUSED;
use crate::model::{SpanType, TraceStatus};

/// A filter that a product-restricted API key narrows to its products.
pub trait ProductScoped {
    /// The product asked for, and where the products the key may see are set.
    fn product_scope(&mut self) -> (Option<Uuid>, &mut Option<Vec<Uuid>>);
}

macro_rules! product_scoped {
    ($($filter:ty),+) => {$(
        impl ProductScoped for $filter {
            fn product_scope(&mut self) -> (Option<Uuid>, &mut Option<Vec<Uuid>>) {
                (self.product_id, &mut self.products)
            }
        }
    )+};
}

product_scoped!(TraceFilter, SpanFilter, AgentUsageFilter);

/// Refuses filter text holding NUL, named by its field: nothing stored holds one (writes
/// refuse it), and PostgreSQL refuses the statement that binds one.
pub struct NoNul(pub &'static str);

impl CustomValidator<String> for NoNul {
    fn check(&self, value: &String) -> Result<(), InputValueError<String>> {
        if value.contains('\0') {
            return Err(InputValueError::custom(format!("{} {NUL_REFUSED}", self.0)));
        }
        Ok(())
    }
}

/// Narrows a trace list; all given fields must match.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TraceFilter {
    /// Only traces of this agent.
    pub agent: Option<Uuid>,
    /// Only traces of this product.
    pub product_id: Option<Uuid>,
    /// Only traces with exactly this name.
    #[graphql(validator(custom = "NoNul(\"name\")"))]
    pub name: Option<String>,
    /// Only traces that started at or after this time.
    pub started_after: Option<DateTime<Utc>>,
    /// Only traces that started before this time.
    pub started_before: Option<DateTime<Utc>>,
    /// Only traces in this state.
    pub status: Option<TraceStatus>,
    /// `true`: only traces where the trace or a span has an error; `false`: only clean ones.
    pub has_error: Option<bool>,
    /// `true`: only traces with at least one flagged span; `false`: only unflagged ones.
    pub has_flagged_spans: Option<bool>,
    /// Set by the server for a product-scoped key, never by the client.
    #[graphql(skip)]
    pub products: Option<Vec<Uuid>>,
}

/// Narrows a span list; all given fields must match.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpanFilter {
    /// Only spans of this trace.
    pub trace_id: Option<Uuid>,
    /// Only spans of traces of this agent.
    pub agent: Option<Uuid>,
    /// Only spans of traces of this product.
    pub product_id: Option<Uuid>,
    /// Only spans of this type.
    pub span_type: Option<SpanType>,
    /// Only spans with exactly this name.
    #[graphql(validator(custom = "NoNul(\"name\")"))]
    pub name: Option<String>,
    /// Only LLM spans of this model.
    #[graphql(validator(custom = "NoNul(\"model\")"))]
    pub model: Option<String>,
    /// `true`: only spans with an error; `false`: only spans without.
    pub has_error: Option<bool>,
    /// `true`: only spans currently flagged for review; `false`: only unflagged ones.
    pub flagged: Option<bool>,
    /// Only spans that started at or after this time.
    pub started_after: Option<DateTime<Utc>>,
    /// Only spans that started before this time.
    pub started_before: Option<DateTime<Utc>>,
    /// Set by the server for a product-scoped key, never by the client.
    #[graphql(skip)]
    pub products: Option<Vec<Uuid>>,
}

/// Narrows a list of usage records; all given fields must match.
#[derive(InputObject, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AgentUsageFilter {
    /// Only records of this agent.
    pub agent: Option<Uuid>,
    /// Only records of this product.
    pub product_id: Option<Uuid>,
    /// Only records written at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only records written before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Set by the server for a product-scoped key, never by the client.
    #[graphql(skip)]
    pub products: Option<Vec<Uuid>>,
}

/// Order of a trace list. Ties are broken by id, so pages never overlap.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum TraceSort {
    /// Oldest first.
    StartedAtAsc,
    /// Newest first (the default).
    #[default]
    StartedAtDesc,
    /// Earliest end first; running traces last.
    EndedAtAsc,
    /// Latest end first; running traces last.
    EndedAtDesc,
    /// Shortest first; running traces last.
    DurationAsc,
    /// Longest first; running traces last.
    DurationDesc,
    /// Cheapest first.
    CostAsc,
    /// Most expensive first.
    CostDesc,
}

/// Order of a span list. Ties are broken by id, so pages never overlap.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SpanSort {
    /// Oldest first (the default).
    #[default]
    StartedAtAsc,
    /// Newest first.
    StartedAtDesc,
    /// Shortest first; running spans last.
    DurationAsc,
    /// Longest first; running spans last.
    DurationDesc,
    /// Cheapest first; spans without cost last.
    CostAsc,
    /// Most expensive first; spans without cost last.
    CostDesc,
}

/// A checked page window: `limit` in 1..=500, `offset` not negative.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

pub const DEFAULT_PAGE_LIMIT: i64 = 50;

impl Page {
    /// From GraphQL arguments, where an explicit null means the default.
    pub fn from_args(limit: Option<i64>, offset: Option<i64>) -> crate::error::AppResult<Self> {
        Self::new(limit.unwrap_or(DEFAULT_PAGE_LIMIT), offset.unwrap_or(0))
    }

    pub fn new(limit: i64, offset: i64) -> crate::error::AppResult<Self> {
        use crate::config::MAX_PAGE_LIMIT;
        use crate::error::AppError;
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(AppError::bad_input(
                "limit",
                format!("must be between 1 and {MAX_PAGE_LIMIT}"),
            ));
        }
        if offset < 0 {
            return Err(AppError::bad_input("offset", "must not be negative"));
        }
        Ok(Self {
            limit: limit as u64,
            offset: offset as u64,
        })
    }
}
