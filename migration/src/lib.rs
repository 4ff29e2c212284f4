//! Schema migrations. One set serves PostgreSQL and SQLite: tables are built with
//! sea-query, which renders each backend's dialect; the few PostgreSQL-only
//! constraints (the email CHECK) are added with raw SQL behind a backend test,
//! and the gateway validates the same rule in code for both backends.
//!
//! Every migration has a `down` that undoes exactly its `up`.
//!
//! **Owns** the schema's history. **Must not** depend on any crate of ours;
//! only the core's store runs it.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_tables;
mod m20261127_000002_oauth_flows;
mod m20261127_000003_access_control;
mod m20261201_000004_provider_health;
mod m20261201_000005_provider_identity;
mod m20261201_000006_token_exchange;
mod m20261201_000007_operations;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_tables::Migration),
            Box::new(m20261127_000002_oauth_flows::Migration),
            Box::new(m20261127_000003_access_control::Migration),
            Box::new(m20261201_000004_provider_health::Migration),
            Box::new(m20261201_000005_provider_identity::Migration),
            Box::new(m20261201_000006_token_exchange::Migration),
            Box::new(m20261201_000007_operations::Migration),
        ]
    }
}
