//! `oauth_providers`: one row per OAuth provider the gateway can talk to.
//! Built-in providers configured from the environment are upserted at start so
//! that credentials and sessions can reference them.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_providers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub client_id: String,
    /// Fernet token (encrypted client secret).
    #[sea_orm(column_type = "Text")]
    pub client_secret: String,
    pub client_secret_key_id: String,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub scopes: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// `google`, `microsoft`, `meta` or `generic`.
    pub kind: String,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    /// Extra authorization parameters, as `[[name, value], ...]`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub auth_params: Option<Json>,
    pub pkce: bool,
    /// `client_secret_basic` or `client_secret_post`.
    pub client_auth: String,
    /// `required`, `optional` or `off`.
    pub identity_check: String,
    pub login_hint: bool,
    pub redirect_uri: Option<String>,
    /// `env` (configured by environment variables, synced at start) or `cli`.
    pub source: String,
    /// Since when the provider refuses our client (`invalid_client`,
    /// `unauthorized_client`); `None` while it works.
    pub failing_since: Option<DateTimeUtc>,
    pub failure_category: Option<String>,
    /// The `iss` its id_tokens must carry (comma-separated alternatives).
    pub issuer: Option<String>,
    /// The operator vouches that the provider verifies every address it reports.
    pub trust_unverified_email: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::oauth_credentials::Entity")]
    Credentials,
    #[sea_orm(has_many = "super::oauth_sessions::Entity")]
    Sessions,
}

impl Related<super::oauth_credentials::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Credentials.def()
    }
}

impl Related<super::oauth_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Sessions.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
