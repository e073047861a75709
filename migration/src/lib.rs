//! Schema history of tracegraph. One change per file; a released file is never edited.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_trace;
mod m20261124_000002_create_span;
mod m20261124_000003_create_span_flag;
mod m20261124_000004_create_agent_usage;
mod m20261124_000005_create_api_key;
mod m20261124_000006_add_cost_source_and_review;
mod m20261130_000007_agent_usage_totals_index;
mod m20261130_000008_create_agent_usage_total;
mod m20261130_000009_create_key_epoch;
mod m20261130_000010_announce_key_changes;
mod sql;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_trace::Migration),
            Box::new(m20261124_000002_create_span::Migration),
            Box::new(m20261124_000003_create_span_flag::Migration),
            Box::new(m20261124_000004_create_agent_usage::Migration),
            Box::new(m20261124_000005_create_api_key::Migration),
            Box::new(m20261124_000006_add_cost_source_and_review::Migration),
            Box::new(m20261130_000007_agent_usage_totals_index::Migration),
            Box::new(m20261130_000008_create_agent_usage_total::Migration),
            Box::new(m20261130_000009_create_key_epoch::Migration),
            Box::new(m20261130_000010_announce_key_changes::Migration),
        ]
    }
}
