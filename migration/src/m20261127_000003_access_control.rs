//! API clients (one key per MCP server, with rights), the append-only audit
//! log, and which client started each session.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const PENDING_UNIQUE_OLD: &str = "CREATE UNIQUE INDEX uniq_pending_session ON oauth_sessions (profile_id, provider_id, scopes_hash) WHERE status = 'pending' AND link_used_at IS NULL";
/// A retried `/auth/init` gets back the pending session *its own client* started.
const PENDING_UNIQUE_NEW: &str = "CREATE UNIQUE INDEX uniq_pending_session ON oauth_sessions (client_id, profile_id, provider_id, scopes_hash) WHERE status = 'pending' AND link_used_at IS NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both backends: every statement then runs on one
    /// connection (on SQLite, another pooled connection could still see the
    /// index this migration drops), and a failure leaves nothing half done.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiClients::Table)
                    .col(ColumnDef::new(ApiClients::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ApiClients::Name).string_len(100).not_null().unique_key())
                    .col(ColumnDef::new(ApiClients::KeyDigest).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(ApiClients::PreviousKeyDigest).string_len(64).null())
                    .col(ColumnDef::new(ApiClients::PreviousKeyValidUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(ApiClients::AllowedProviders).json_binary().null())
                    .col(ColumnDef::new(ApiClients::AllowedDomains).json_binary().null())
                    .col(ColumnDef::new(ApiClients::AllowedActions).json_binary().not_null())
                    .col(ColumnDef::new(ApiClients::AllowedNetworks).json_binary().null())
                    .col(ColumnDef::new(ApiClients::Enabled).boolean().not_null().default(true))
                    .col(ColumnDef::new(ApiClients::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ApiClients::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AuditLog::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuditLog::Client).string_len(100).not_null())
                    .col(ColumnDef::new(AuditLog::Action).string_len(40).not_null())
                    .col(ColumnDef::new(AuditLog::UserEmail).string_len(255).null())
                    .col(ColumnDef::new(AuditLog::Provider).string_len(50).null())
                    .col(ColumnDef::new(AuditLog::Outcome).string_len(60).not_null())
                    .col(ColumnDef::new(AuditLog::RequestId).string_len(128).null())
                    .col(ColumnDef::new(AuditLog::Detail).text().null())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_time", AuditLog::OccurredAt),
            ("idx_audit_user", AuditLog::UserEmail),
            ("idx_audit_client", AuditLog::Client),
        ] {
            manager.create_index(Index::create().name(name).table(AuditLog::Table).col(col).to_owned()).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(ColumnDef::new(Sessions::ClientId).string_len(100).null())
                    .to_owned(),
            )
            .await?;
        // Raw SQL: the same statement on both backends (an index is not per table in SQLite's syntax).
        manager.get_connection().execute_unprepared("DROP INDEX uniq_pending_session").await?;
        manager.get_connection().execute_unprepared(PENDING_UNIQUE_NEW).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX uniq_pending_session").await?;
        manager.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::ClientId).to_owned()).await?;
        manager.get_connection().execute_unprepared(PENDING_UNIQUE_OLD).await?;
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ApiClients::Table).to_owned()).await?;
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ApiClients {
    Table,
    Id,
    Name,
    KeyDigest,
    PreviousKeyDigest,
    PreviousKeyValidUntil,
    AllowedProviders,
    AllowedDomains,
    AllowedActions,
    AllowedNetworks,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditLog {
    Table,
    Id,
    OccurredAt,
    Client,
    Action,
    UserEmail,
    Provider,
    Outcome,
    RequestId,
    Detail,
}

#[derive(DeriveIden, Clone, Copy)]
enum Sessions {
    #[sea_orm(iden = "oauth_sessions")]
    Table,
    ClientId,
}
