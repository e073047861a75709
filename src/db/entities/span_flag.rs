use sea_orm::entity::prelude::*;

/// A review mark on a span. Rows are never deleted: unflagging resolves them.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "span_flag")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub span_id: Uuid,
    pub trace_id: Uuid,
    pub reason: String,
    pub created_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    /// The API key that flagged, where keys are in use.
    pub created_by: Option<String>,
    pub resolved_by: Option<String>,
    pub resolution_note: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::by_position!(Model {
    id,
    span_id,
    trace_id,
    reason,
    created_at,
    resolved_at,
    created_by,
    resolved_by,
    resolution_note
});
