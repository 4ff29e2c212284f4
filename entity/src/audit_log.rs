//! `audit_log`: append-only record of who did what to whose credential.
//! Never holds a token.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// UUIDv7: ordered by time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    /// The API client's name (`bootstrap` for AUTH_GATEWAY_API_KEY, `browser`
    /// for callbacks, `cli` for the command line).
    pub client: String,
    pub action: String,
    pub user_email: Option<String>,
    pub provider: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub detail: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
