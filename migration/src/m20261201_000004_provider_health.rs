//! A provider whose client configuration is broken (the provider answers
//! `invalid_client` or `unauthorized_client`): since when, and which error.
//! Every replica and `gateway providers list` read it from here.

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
            ColumnDef::new(Providers::FailingSince).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Providers::FailureCategory).string_len(40).null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Providers::Table).add_column(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [Providers::FailureCategory, Providers::FailingSince] {
            manager.alter_table(Table::alter().table(Providers::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Providers {
    #[sea_orm(iden = "oauth_providers")]
    Table,
    FailingSince,
    FailureCategory,
}
