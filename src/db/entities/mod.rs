//! SeaORM row models, one file per table. No GraphQL here: API types wrap these.

pub mod agent_usage;
pub mod agent_usage_total;
pub mod api_key;
pub mod span;
pub mod span_flag;
pub mod trace;
