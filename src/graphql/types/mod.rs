//! The API's object and input types. Each wraps a row model and resolves relations
//! through the loaders.

pub mod flag;
pub mod lists;
pub mod page;
pub mod span;
pub mod stats;
pub mod trace;
pub mod usage;

pub use flag::SpanFlag;
pub use lists::{SpanList, TraceList};
pub use page::{AgentUsagePage, SpanPage, TracePage};
pub use span::Span;
pub use trace::Trace;
pub use usage::{AgentUsage, TokenUsage};

/// Microseconds as fractional milliseconds, the unit dashboards chart.
pub(crate) fn micros_to_ms(us: Option<i64>) -> Option<f64> {
    us.map(|us| us as f64 / 1000.0)
}
