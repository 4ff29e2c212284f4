//! `pending_revocations`: grants deleted at the gateway whose revocation the
//! provider could not take yet; a job retries them. The token is sealed like
//! every other, under the place `pending_revocations/token/<id>`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: String,
    pub profile_id: String,
    #[sea_orm(column_type = "Text")]
    pub token: String,
    pub token_key_id: String,
    /// `refresh_token` or `access_token` (the RFC 7009 hint).
    pub token_kind: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    /// A category, never provider text.
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
