//! `oauth_sessions`: one row per authorization flow a caller started.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub profile_id: String,
    pub provider_id: String,
    /// The OAuth `state`: random, single-use.
    #[sea_orm(unique)]
    pub state: String,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub redirect_after: Option<String>,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    /// Fernet token (encrypted PKCE code verifier).
    #[sea_orm(column_type = "Text", nullable)]
    pub pkce_verifier: Option<String>,
    pub pkce_verifier_key_id: Option<String>,
    /// The scopes this flow asked for.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub scopes: Option<Json>,
    pub failure_reason: Option<String>,
    pub completed_at: Option<DateTimeUtc>,
    /// The opaque id in the connect link handed to the user.
    pub connect_id: Option<String>,
    /// When the connect link was opened (it works once).
    pub link_used_at: Option<DateTimeUtc>,
    /// When the provider's redirect arrived (a state is used once).
    pub callback_at: Option<DateTimeUtc>,
    /// SHA-256 of the sorted requested scopes, for finding a retried flow.
    pub scopes_hash: Option<String>,
    /// The API client that started the flow (only it may read its status).
    pub client_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::oauth_providers::Entity",
        from = "Column::ProviderId",
        to = "super::oauth_providers::Column::Id"
    )]
    Provider,
}

impl Related<super::oauth_providers::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Provider.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
