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
    /// The `aud` values of the subject tokens its MCP server exchanges, or NULL for none.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub audiences: Option<Json>,
    /// Whether `/auth/token` (a user named by the caller) is refused: token exchange only.
    pub require_exchange: bool,
    /// The public JWK its headless workers sign assertions with, or NULL.
    #[sea_orm(column_type = "Text", nullable)]
    pub assertion_key: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
