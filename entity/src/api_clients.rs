//! `api_clients`: one row per MCP server (or other caller), with its key's
//! SHA-256 digest (never the key) and its rights.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    /// Hex SHA-256 of the current key.
    #[sea_orm(unique)]
    pub key_digest: String,
    /// Hex SHA-256 of the key before the last rotation, valid until `previous_key_valid_until`.
    pub previous_key_digest: Option<String>,
    pub previous_key_valid_until: Option<DateTimeUtc>,
    /// Provider ids, or NULL for all.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub allowed_providers: Option<Json>,
    /// Email domains, or NULL for all.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub allowed_domains: Option<Json>,
    /// Among `init`, `status`, `token`, `revoke`, `admin`.
    #[sea_orm(column_type = "JsonBinary")]
    pub allowed_actions: Json,
    /// CIDR blocks, or NULL for any source.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub allowed_networks: Option<Json>,
    pub enabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
