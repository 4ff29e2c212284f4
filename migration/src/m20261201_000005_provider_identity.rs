//! What proves who consented at a provider added with the CLI: the issuer its
//! id_tokens must carry, and whether the operator vouches that it verifies
//! every email address (`gateway providers add --issuer --trust-unverified-email`).

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
            ColumnDef::new(Providers::Issuer).string_len(500).null().to_owned(),
            ColumnDef::new(Providers::TrustUnverifiedEmail).boolean().not_null().default(false).to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Providers::Table).add_column(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Providers::TrustUnverifiedEmail, Providers::Issuer] {
            manager.alter_table(Table::alter().table(Providers::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Providers {
    #[sea_orm(iden = "oauth_providers")]
    Table,
    Issuer,
    TrustUnverifiedEmail,
}
