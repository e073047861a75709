//! Upgrading a database that already holds data: what a migration derives from
//! existing rows is right.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel};
use tracegraph::db::entities::{agent_usage, agent_usage_total, trace};
use uuid::Uuid;

use crate::helpers::test_database;

/// The last migration before agents' kept totals.
const BEFORE_AGENT_TOTALS: u32 = 7;

#[tokio::test]
async fn agent_totals_are_derived_from_records_written_before_the_upgrade() {
    let (url, _database) = test_database().await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    Migrator::up(&db, Some(BEFORE_AGENT_TOTALS)).await.unwrap();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let now = chrono::Utc::now();
    for (agent, tokens, cost) in [
        (Some(a), 10, 0.5),
        (Some(a), 20, 0.25),
        (Some(b), 5, 1.0),
        (None, 7, 2.0),
    ] {
        let trace_id = Uuid::new_v4();
        trace::Model {
            id: trace_id,
            name: "old".into(),
            agent_id: agent,
            product_id: None,
            started_at: now,
            ended_at: Some(now),
            duration_us: Some(0),
            error: None,
            has_error: false,
            metadata: serde_json::json!({}),
            span_count: 1,
            flagged_span_count: 0,
            llm_calls: 1,
            input_tokens: tokens,
            output_tokens: 0,
            total_tokens: tokens,
            cost_usd: cost,
        }
        .into_active_model()
        .insert(&db)
        .await
        .unwrap();
        agent_usage::Model {
            id: Uuid::new_v4(),
            trace_id,
            agent_id: agent,
            product_id: None,
            llm_calls: 1,
            input_tokens: tokens,
            output_tokens: 0,
            total_tokens: tokens,
            cost_usd: cost,
            created_at: now,
        }
        .into_active_model()
        .insert(&db)
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    let mut totals = agent_usage_total::Entity::find().all(&db).await.unwrap();
    totals.sort_by_key(|t| t.records);
    let expected = |agent_id, records, tokens, cost_usd| agent_usage_total::Model {
        agent_id,
        records,
        llm_calls: records,
        input_tokens: tokens,
        output_tokens: 0,
        total_tokens: tokens,
        cost_usd,
    };
    // The agent-less record belongs to no agent's totals.
    assert_eq!(totals, vec![expected(b, 1, 5, 1.0), expected(a, 2, 30, 0.75)]);
}
