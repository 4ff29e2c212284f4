//! `oauth_credentials`: one row per `(profile_id, provider_id)`, holding the
//! encrypted tokens and the refresh bookkeeping.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_credentials")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user's email address, normalised to lower case.
    pub profile_id: String,
    pub provider_id: String,
    /// Fernet token (encrypted access token).
    #[sea_orm(column_type = "Text")]
    pub access_token: String,
    pub access_token_key_id: String,
    /// Fernet token (encrypted refresh token), when the provider issued one.
    #[sea_orm(column_type = "Text", nullable)]
    pub refresh_token: Option<String>,
    pub refresh_token_key_id: Option<String>,
    pub token_expiry: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub scopes: Option<Json>,
    /// `active` or `needs_reauth`.
    pub state: String,
    /// A category such as `invalid_grant` or `timeout`: never provider text.
    pub last_error_category: Option<String>,
    pub last_error_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub last_used_at: Option<DateTimeUtc>,
    pub last_refreshed_at: Option<DateTimeUtc>,
    /// Bumped by every write; writers compare-and-swap on it.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// A replica holds the right to refresh this credential until then.
    pub refresh_lease_until: Option<DateTimeUtc>,
    pub refresh_lease_owner: Option<String>,
    /// When the user last completed an authorization for this credential.
    pub authorized_at: Option<DateTimeUtc>,
    /// When the grant was last proven to work (a refresh, or a probe of the
    /// provider's userinfo endpoint that the token passed).
    pub last_verified_at: Option<DateTimeUtc>,
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
