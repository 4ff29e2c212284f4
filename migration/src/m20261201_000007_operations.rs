//! Operating the gateway: when each credential was last proven to work;
//! revocations that a provider could not take yet (retried by a job; the
//! credential itself is already gone); webhook subscriptions with their
//! (encrypted) signing secrets; the outbox of events, written in the same
//! transaction as the change each reports; and one delivery row per event
//! and subscription.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(ColumnDef::new(Credentials::LastVerifiedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PendingRevocations::Table)
                    .col(ColumnDef::new(PendingRevocations::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(PendingRevocations::ProviderId).string_len(50).not_null())
                    .col(ColumnDef::new(PendingRevocations::ProfileId).string_len(255).not_null())
                    .col(ColumnDef::new(PendingRevocations::Token).text().not_null())
                    .col(ColumnDef::new(PendingRevocations::TokenKeyId).string_len(64).not_null())
                    .col(ColumnDef::new(PendingRevocations::TokenKind).string_len(20).not_null())
                    .col(ColumnDef::new(PendingRevocations::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(PendingRevocations::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(PendingRevocations::LastError).string_len(100).null())
                    .col(ColumnDef::new(PendingRevocations::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Webhooks::Table)
                    .col(ColumnDef::new(Webhooks::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Webhooks::Url).text().not_null())
                    .col(ColumnDef::new(Webhooks::Events).json_binary().not_null())
                    .col(ColumnDef::new(Webhooks::Secret).text().not_null())
                    .col(ColumnDef::new(Webhooks::SecretKeyId).string_len(64).not_null())
                    .col(ColumnDef::new(Webhooks::Enabled).boolean().not_null().default(true))
                    .col(ColumnDef::new(Webhooks::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(ColumnDef::new(WebhookEvents::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WebhookEvents::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(WebhookEvents::Payload).text().not_null())
                    .col(ColumnDef::new(WebhookEvents::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookEvents::FannedOut).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(ColumnDef::new(WebhookDeliveries::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(WebhookDeliveries::EventId).uuid().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::WebhookId).uuid().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::EventType).string_len(64).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Status).string_len(16).not_null())
                    .col(ColumnDef::new(WebhookDeliveries::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(WebhookDeliveries::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(WebhookDeliveries::LeaseOwner).string_len(64).null())
                    .col(ColumnDef::new(WebhookDeliveries::LastStatus).integer().null())
                    .col(ColumnDef::new(WebhookDeliveries::LastError).string_len(200).null())
                    .col(ColumnDef::new(WebhookDeliveries::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(WebhookDeliveries::DeliveredAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        for (name, table, cols) in [
            (
                "idx_pending_revocations_next",
                PendingRevocations::Table.into_iden(),
                vec![PendingRevocations::NextAttemptAt.into_iden()],
            ),
            (
                "idx_webhook_events_fanned_out",
                WebhookEvents::Table.into_iden(),
                vec![WebhookEvents::FannedOut.into_iden()],
            ),
            (
                "idx_webhook_deliveries_due",
                WebhookDeliveries::Table.into_iden(),
                vec![WebhookDeliveries::Status.into_iden(), WebhookDeliveries::NextAttemptAt.into_iden()],
            ),
            (
                "uniq_webhook_delivery",
                WebhookDeliveries::Table.into_iden(),
                vec![WebhookDeliveries::EventId.into_iden(), WebhookDeliveries::WebhookId.into_iden()],
            ),
        ] {
            let mut index = Index::create().name(name).table(table).to_owned();
            for col in cols {
                index.col(col);
            }
            if name.starts_with("uniq_") {
                index.unique();
            }
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookDeliveries::Table.into_iden(),
            WebhookEvents::Table.into_iden(),
            Webhooks::Table.into_iden(),
            PendingRevocations::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager
            .alter_table(Table::alter().table(Credentials::Table).drop_column(Credentials::LastVerifiedAt).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Credentials {
    #[sea_orm(iden = "oauth_credentials")]
    Table,
    LastVerifiedAt,
}

#[derive(DeriveIden)]
enum PendingRevocations {
    Table,
    Id,
    ProviderId,
    ProfileId,
    Token,
    TokenKeyId,
    TokenKind,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Webhooks {
    Table,
    Id,
    Url,
    Events,
    Secret,
    SecretKeyId,
    Enabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Id,
    EventType,
    Payload,
    CreatedAt,
    FannedOut,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    EventId,
    WebhookId,
    EventType,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LeaseOwner,
    LastStatus,
    LastError,
    CreatedAt,
    DeliveredAt,
}
