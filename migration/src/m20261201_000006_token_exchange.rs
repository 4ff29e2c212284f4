//! Token exchange (RFC 8693): what binds an API client to its MCP server's
//! users — the audiences its subject tokens carry, whether it may still name a
//! user on `/auth/token`, and the public key its headless workers sign
//! assertions with — and the record of used assertion ids, which makes each
//! assertion single-use across every replica.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            ColumnDef::new(ApiClients::Audiences).json_binary().null().to_owned(),
            ColumnDef::new(ApiClients::RequireExchange).boolean().not_null().default(false).to_owned(),
            ColumnDef::new(ApiClients::AssertionKey).text().null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(ApiClients::Table).add_column(col).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(UsedAssertions::Table)
                    .col(ColumnDef::new(UsedAssertions::ClientId).uuid().not_null())
                    .col(ColumnDef::new(UsedAssertions::Jti).string_len(255).not_null())
                    .col(ColumnDef::new(UsedAssertions::ExpiresAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(UsedAssertions::ClientId).col(UsedAssertions::Jti))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_used_assertions_expires_at")
                    .table(UsedAssertions::Table)
                    .col(UsedAssertions::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UsedAssertions::Table).to_owned()).await?;
        for col in [ApiClients::AssertionKey, ApiClients::RequireExchange, ApiClients::Audiences] {
            manager.alter_table(Table::alter().table(ApiClients::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ApiClients {
    Table,
    Audiences,
    RequireExchange,
    AssertionKey,
}

#[derive(DeriveIden)]
enum UsedAssertions {
    Table,
    ClientId,
    Jti,
    ExpiresAt,
}
