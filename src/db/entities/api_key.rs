use sea_orm::entity::prelude::*;

/// An API key: only its hash is stored; the key itself is shown once, at creation.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// Comma-separated scopes: `ingest`, `read`, `admin`.
    pub scopes: String,
    /// Product ids the key is limited to; null for every product.
    pub products: Option<Json>,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::by_position!(Model {
    id,
    name,
    prefix,
    key_hash,
    scopes,
    products,
    created_at,
    revoked_at
});
