//! What the OAuth flows need beyond the design document's columns: provider
//! behaviour settings, the cross-replica refresh lease on credentials, and the
//! one-time connect link on sessions.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One pending session per (user, provider, scopes) whose link is unused:
/// a retried `/auth/init` gets that session back instead of a new one.
const PENDING_UNIQUE: &str = "CREATE UNIQUE INDEX uniq_pending_session ON oauth_sessions (profile_id, provider_id, scopes_hash) WHERE status = 'pending' AND link_used_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both backends: every statement then runs on one
    /// connection (on SQLite, another pooled connection could still see the
    /// index this migration drops), and a failure leaves nothing half done.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        let provider_columns = [
            ColumnDef::new(Providers::Kind).string_len(20).not_null().default("generic").to_owned(),
            ColumnDef::new(Providers::RevocationUrl).string_len(500).null().to_owned(),
            ColumnDef::new(Providers::UserinfoUrl).string_len(500).null().to_owned(),
            ColumnDef::new(Providers::AuthParams).json_binary().null().to_owned(),
            ColumnDef::new(Providers::Pkce).boolean().not_null().default(true).to_owned(),
            ColumnDef::new(Providers::ClientAuth).string_len(30).not_null().default("client_secret_basic").to_owned(),
            ColumnDef::new(Providers::IdentityCheck).string_len(20).not_null().default("optional").to_owned(),
            ColumnDef::new(Providers::LoginHint).boolean().not_null().default(true).to_owned(),
            ColumnDef::new(Providers::RedirectUri).string_len(500).null().to_owned(),
            ColumnDef::new(Providers::Source).string_len(10).not_null().default("cli").to_owned(),
        ];
        for col in provider_columns {
            manager.alter_table(Table::alter().table(Providers::Table).add_column(col).to_owned()).await?;
        }
        let credential_columns = [
            ColumnDef::new(Credentials::RefreshLeaseUntil).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Credentials::RefreshLeaseOwner).string_len(64).null().to_owned(),
            ColumnDef::new(Credentials::AuthorizedAt).timestamp_with_time_zone().null().to_owned(),
        ];
        for col in credential_columns {
            manager.alter_table(Table::alter().table(Credentials::Table).add_column(col).to_owned()).await?;
        }
        let session_columns = [
            ColumnDef::new(Sessions::ConnectId).string_len(64).null().to_owned(),
            ColumnDef::new(Sessions::LinkUsedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Sessions::CallbackAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Sessions::ScopesHash).string_len(64).null().to_owned(),
        ];
        for col in session_columns {
            manager.alter_table(Table::alter().table(Sessions::Table).add_column(col).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("uniq_sessions_connect_id")
                    .table(Sessions::Table)
                    .col(Sessions::ConnectId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager.get_connection().execute_unprepared(PENDING_UNIQUE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX uniq_pending_session").await?;
        manager.drop_index(Index::drop().name("uniq_sessions_connect_id").table(Sessions::Table).to_owned()).await?;
        for col in [Sessions::ConnectId, Sessions::LinkUsedAt, Sessions::CallbackAt, Sessions::ScopesHash] {
            manager.alter_table(Table::alter().table(Sessions::Table).drop_column(col).to_owned()).await?;
        }
        for col in [Credentials::RefreshLeaseUntil, Credentials::RefreshLeaseOwner, Credentials::AuthorizedAt] {
            manager.alter_table(Table::alter().table(Credentials::Table).drop_column(col).to_owned()).await?;
        }
        for col in [
            Providers::Kind,
            Providers::RevocationUrl,
            Providers::UserinfoUrl,
            Providers::AuthParams,
            Providers::Pkce,
            Providers::ClientAuth,
            Providers::IdentityCheck,
            Providers::LoginHint,
            Providers::RedirectUri,
            Providers::Source,
        ] {
            manager.alter_table(Table::alter().table(Providers::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Providers {
    #[sea_orm(iden = "oauth_providers")]
    Table,
    Kind,
    RevocationUrl,
    UserinfoUrl,
    AuthParams,
    Pkce,
    ClientAuth,
    IdentityCheck,
    LoginHint,
    RedirectUri,
    Source,
}

#[derive(DeriveIden, Clone, Copy)]
enum Credentials {
    #[sea_orm(iden = "oauth_credentials")]
    Table,
    RefreshLeaseUntil,
    RefreshLeaseOwner,
    AuthorizedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Sessions {
    #[sea_orm(iden = "oauth_sessions")]
    Table,
    ConnectId,
    LinkUsedAt,
    CallbackAt,
    ScopesHash,
}
