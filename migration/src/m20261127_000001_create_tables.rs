//! The design document's three tables (`oauth_providers`, `oauth_credentials`,
//! `oauth_sessions`), extended with key ids beside every encrypted value, the
//! credential refresh bookkeeping, session PKCE data, and `gateway_metadata`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The design document's email rule, enforced by PostgreSQL. The gateway checks
/// the same grammar in code (`gateway::email`) so SQLite gets it too.
const EMAIL_CHECK_SQL: &str = r"ALTER TABLE oauth_credentials ADD CONSTRAINT valid_email CHECK (profile_id ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$')";

/// Key ids are short hex fingerprints; 32 leaves room for another scheme.
const KEY_ID_LEN: u32 = 32;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthProviders::Table)
                    .col(ColumnDef::new(OauthProviders::Id).string_len(50).not_null().primary_key())
                    .col(ColumnDef::new(OauthProviders::ClientId).string_len(255).not_null())
                    .col(ColumnDef::new(OauthProviders::ClientSecret).text().not_null())
                    .col(key_id(OauthProviders::ClientSecretKeyId).not_null())
                    .col(ColumnDef::new(OauthProviders::AuthUrl).string_len(500).null())
                    .col(ColumnDef::new(OauthProviders::TokenUrl).string_len(500).null())
                    .col(ColumnDef::new(OauthProviders::Scopes).json_binary().null())
                    .col(timestamp(OauthProviders::CreatedAt))
                    .col(timestamp(OauthProviders::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_providers_secret_key", OauthProviders::Table, &[OauthProviders::ClientSecretKeyId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthCredentials::Table)
                    .col(ColumnDef::new(OauthCredentials::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(OauthCredentials::ProfileId).string_len(255).not_null())
                    .col(ColumnDef::new(OauthCredentials::ProviderId).string_len(50).not_null())
                    .col(ColumnDef::new(OauthCredentials::AccessToken).text().not_null())
                    .col(key_id(OauthCredentials::AccessTokenKeyId).not_null())
                    .col(ColumnDef::new(OauthCredentials::RefreshToken).text().null())
                    .col(key_id(OauthCredentials::RefreshTokenKeyId).null())
                    .col(ColumnDef::new(OauthCredentials::TokenExpiry).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthCredentials::Scopes).json_binary().null())
                    .col(ColumnDef::new(OauthCredentials::State).string_len(20).not_null().default("active"))
                    .col(ColumnDef::new(OauthCredentials::LastErrorCategory).string_len(40).null())
                    .col(ColumnDef::new(OauthCredentials::LastErrorAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthCredentials::ConsecutiveFailures).integer().not_null().default(0))
                    .col(ColumnDef::new(OauthCredentials::LastUsedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthCredentials::LastRefreshedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(OauthCredentials::Version).big_integer().not_null().default(0))
                    .col(timestamp(OauthCredentials::CreatedAt))
                    .col(timestamp(OauthCredentials::UpdatedAt))
                    .index(
                        Index::create()
                            .name("unique_user_provider")
                            .col(OauthCredentials::ProfileId)
                            .col(OauthCredentials::ProviderId)
                            .unique(),
                    )
                    .check((
                        "valid_credential_state",
                        Expr::col(OauthCredentials::State).is_in(["active", "needs_reauth"]),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_credentials_provider")
                            .from(OauthCredentials::Table, OauthCredentials::ProviderId)
                            .to(OauthProviders::Table, OauthProviders::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(EMAIL_CHECK_SQL).await?;
        }
        index(manager, "idx_credentials_profile", OauthCredentials::Table, &[OauthCredentials::ProfileId]).await?;
        index(manager, "idx_credentials_expiry", OauthCredentials::Table, &[OauthCredentials::TokenExpiry]).await?;
        index(manager, "idx_credentials_access_key", OauthCredentials::Table, &[OauthCredentials::AccessTokenKeyId])
            .await?;
        index(manager, "idx_credentials_refresh_key", OauthCredentials::Table, &[OauthCredentials::RefreshTokenKeyId])
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthSessions::Table)
                    .col(ColumnDef::new(OauthSessions::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(OauthSessions::ProfileId).string_len(255).not_null())
                    .col(ColumnDef::new(OauthSessions::ProviderId).string_len(50).not_null())
                    .col(ColumnDef::new(OauthSessions::State).string_len(255).not_null().unique_key())
                    .col(ColumnDef::new(OauthSessions::Status).string_len(20).not_null().default("pending"))
                    .col(ColumnDef::new(OauthSessions::RedirectAfter).text().null())
                    .col(ColumnDef::new(OauthSessions::ExpiresAt).timestamp_with_time_zone().not_null())
                    .col(timestamp(OauthSessions::CreatedAt))
                    .col(ColumnDef::new(OauthSessions::PkceVerifier).text().null())
                    .col(key_id(OauthSessions::PkceVerifierKeyId).null())
                    .col(ColumnDef::new(OauthSessions::Scopes).json_binary().null())
                    .col(ColumnDef::new(OauthSessions::FailureReason).string_len(255).null())
                    .col(ColumnDef::new(OauthSessions::CompletedAt).timestamp_with_time_zone().null())
                    .check(("valid_status", Expr::col(OauthSessions::Status).is_in(["pending", "completed", "failed"])))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sessions_provider")
                            .from(OauthSessions::Table, OauthSessions::ProviderId)
                            .to(OauthProviders::Table, OauthProviders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_sessions_state", OauthSessions::Table, &[OauthSessions::State]).await?;
        index(manager, "idx_sessions_status", OauthSessions::Table, &[OauthSessions::Status, OauthSessions::ExpiresAt])
            .await?;
        index(manager, "idx_sessions_pkce_key", OauthSessions::Table, &[OauthSessions::PkceVerifierKeyId]).await?;

        manager
            .create_table(
                Table::create()
                    .table(GatewayMetadata::Table)
                    .col(ColumnDef::new(GatewayMetadata::Key).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(GatewayMetadata::Value).text().not_null())
                    .col(key_id(GatewayMetadata::KeyId).null())
                    .col(timestamp(GatewayMetadata::CreatedAt))
                    .col(timestamp(GatewayMetadata::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        index(manager, "idx_metadata_key_id", GatewayMetadata::Table, &[GatewayMetadata::KeyId]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            GatewayMetadata::Table.into_iden(),
            OauthSessions::Table.into_iden(),
            OauthCredentials::Table.into_iden(),
            OauthProviders::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

fn key_id<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col).string_len(KEY_ID_LEN).to_owned()
}

/// Timestamps are always written by the gateway (one clock, one format on
/// both backends), so there is no database default.
fn timestamp<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col).timestamp_with_time_zone().not_null().to_owned()
}

async fn index<T, C>(manager: &SchemaManager<'_>, name: &str, table: T, cols: &[C]) -> Result<(), DbErr>
where
    T: IntoIden + Clone + 'static,
    C: IntoIden + Clone + 'static,
{
    let mut stmt = Index::create();
    stmt.name(name).table(table);
    for col in cols {
        stmt.col(col.clone());
    }
    manager.create_index(stmt.to_owned()).await
}

#[derive(DeriveIden, Clone, Copy)]
enum OauthProviders {
    Table,
    Id,
    ClientId,
    ClientSecret,
    ClientSecretKeyId,
    AuthUrl,
    TokenUrl,
    Scopes,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OauthCredentials {
    Table,
    Id,
    ProfileId,
    ProviderId,
    AccessToken,
    AccessTokenKeyId,
    RefreshToken,
    RefreshTokenKeyId,
    TokenExpiry,
    Scopes,
    State,
    LastErrorCategory,
    LastErrorAt,
    ConsecutiveFailures,
    LastUsedAt,
    LastRefreshedAt,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum OauthSessions {
    Table,
    Id,
    ProfileId,
    ProviderId,
    State,
    Status,
    RedirectAfter,
    ExpiresAt,
    CreatedAt,
    PkceVerifier,
    PkceVerifierKeyId,
    Scopes,
    FailureReason,
    CompletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum GatewayMetadata {
    Table,
    Key,
    Value,
    KeyId,
    CreatedAt,
    UpdatedAt,
}
