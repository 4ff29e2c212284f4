//! The core opened on a database without serving anything: what the command
//! line administers, and what the server starts its [`Services`] from.
//!
//! [`Database`] needs no encryption key (migrations, API clients, the audit
//! log); [`Admin`] also holds the keyring, checked against what is stored
//! (providers' secrets, key reports, re-encryption).
//!
//! [`Services`]: crate::Services

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::access::audit::{AuditFilter, AuditRecord};
use crate::access::{ClientRecord, NewClient};
use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::Keyring;
use crate::events::{Event, Events};
use crate::keys::{BatchOutcome, KeyReport, Position};
use crate::oauth::ProviderConfig;
use crate::setup::{self, SetupError};
pub use crate::store::providers::{ProviderRemoval, ProviderRow};
use crate::store::{Store, StoreError};

/// A connection to the gateway's database.
#[derive(Clone, Debug)]
pub struct Database {
    pub(crate) store: Store,
}

impl Database {
    /// Connects (patiently: a database container may start after us).
    pub async fn connect(settings: &Settings) -> Result<Self, SetupError> {
        Ok(Self { store: setup::connect(settings).await? })
    }

    /// Connects and applies every pending migration.
    pub async fn open(settings: &Settings) -> Result<Self, SetupError> {
        let db = Self::connect(settings).await?;
        db.store.migrate_up().await?;
        Ok(db)
    }

    pub async fn migrate_up(&self) -> Result<(), StoreError> {
        self.store.migrate_up().await
    }

    /// Rolls back the last `steps` migrations (all of them when `None`).
    pub async fn migrate_down(&self, steps: Option<u32>) -> Result<(), StoreError> {
        self.store.migrate_down(steps).await
    }

    /// (name, applied) for every migration this build knows.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.store.migration_status().await
    }

    /// Tells every running replica (PostgreSQL; SQLite's gateway finds out
    /// on its next periodic reload).
    pub async fn announce(&self, event: Event) {
        Events::new(self.store.clone(), "cli").publish(event).await;
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.store.list_clients().await
    }

    pub async fn find_client(&self, name: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.store.find_client(name).await
    }

    /// Adds an API client; false if its name or key is taken.
    pub async fn add_client(&self, new: NewClient, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store.add_client(new, now).await
    }

    /// Changes how `name` takes part in token exchange; false if there is no such client.
    pub async fn update_client_exchange(
        &self,
        name: &str,
        update: crate::access::ExchangeUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.update_client_exchange(name, update, now).await
    }

    /// False if there is no such client.
    pub async fn set_client_enabled(&self, name: &str, enabled: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.store.set_client_enabled(name, enabled, now).await
    }

    /// Gives `name` a new key digest, keeping the old one valid until `until`.
    pub async fn rotate_client_key(
        &self,
        name: &str,
        digest: String,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.store.rotate_client_key(name, digest, until, now).await
    }

    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        self.store.append_audit(records).await
    }

    pub async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.store.read_audit(filter).await
    }

    /// Every provider the database knows, with its credential count and health.
    pub async fn list_providers(&self) -> Result<Vec<ProviderRow>, StoreError> {
        self.store.list_providers().await
    }

    /// Puts dead deliveries back in the queue (`gateway webhooks redeliver`).
    pub async fn redeliver_dead(&self, webhook: Option<uuid::Uuid>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.store.redeliver_dead(webhook, now).await
    }

    /// How many credentials are stored.
    pub async fn count_credentials(&self) -> Result<u64, StoreError> {
        self.store.count_credentials().await
    }

    /// Credentials across users (`gateway credentials list`).
    pub async fn list_connections(
        &self,
        filter: &crate::credentials::listing::ConnectionFilter,
        after: Option<uuid::Uuid>,
        limit: u64,
    ) -> Result<Vec<crate::credentials::listing::Connection>, StoreError> {
        self.store.list_connections(filter, after, limit).await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<crate::store::webhooks::WebhookRow>, StoreError> {
        self.store.list_webhooks().await
    }

    pub async fn remove_webhook(&self, id: uuid::Uuid) -> Result<bool, StoreError> {
        self.store.remove_webhook(id).await
    }

    pub async fn list_deliveries(
        &self,
        status: Option<&str>,
        limit: u64,
    ) -> Result<Vec<crate::store::outbox::DeliveryRow>, StoreError> {
        self.store.list_deliveries(status, limit).await
    }

    pub async fn close(self) {
        self.store.close().await;
    }
}

impl Admin {
    /// Adds a webhook subscription with its secret sealed.
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[crate::webhooks::EventType],
        secret: &secrecy::SecretString,
        now: DateTime<Utc>,
    ) -> Result<uuid::Uuid, StoreError> {
        let names: Vec<String> = events.iter().map(|e| e.as_str().to_owned()).collect();
        self.store.add_webhook(url, &names, secret, &self.keyring, now).await
    }

    /// A subscription's secret, opened (`gateway webhooks test` signs with it).
    pub async fn webhook_secret(&self, id: uuid::Uuid) -> Result<Option<secrecy::SecretString>, StoreError> {
        self.store.webhook_secret(id, &self.keyring).await
    }
}

/// The database with the keyring that reads it.
#[derive(Debug)]
pub struct Admin {
    pub(crate) store: Store,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) clock: Clock,
}

impl Admin {
    /// Derives the keys, connects, migrates (when `migrate`), and refuses a
    /// key set that cannot read what is stored.
    pub async fn open(settings: &Settings, migrate: bool, clock: Clock) -> Result<Self, SetupError> {
        let keyring = Arc::new(setup::keyring(settings).await?);
        let store = setup::connect(settings).await?;
        if migrate {
            store.migrate_up().await?;
        }
        setup::check_keys(&store, &keyring, &clock).await?;
        Ok(Self { store, keyring, clock })
    }

    /// Like [`Admin::open`] (migrating), but a key check that fails is
    /// handed back instead of refusing (`gateway reencrypt --dry-run` reports
    /// what it cannot read).
    pub async fn open_unchecked(
        settings: &Settings,
        clock: Clock,
    ) -> Result<(Self, Result<(), SetupError>), SetupError> {
        let keyring = Arc::new(setup::keyring(settings).await?);
        let store = setup::connect(settings).await?;
        store.migrate_up().await?;
        let checked = setup::check_keys(&store, &keyring, &clock).await;
        Ok((Self { store, keyring, clock }, checked))
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn database(&self) -> Database {
        Database { store: self.store.clone() }
    }

    /// Inserts or replaces a provider, sealing its client secret.
    pub async fn save_provider(&self, provider: &ProviderConfig) -> Result<(), StoreError> {
        self.store.upsert_provider(provider, &self.keyring, self.clock.now()).await
    }

    /// Removes a provider added with the CLI (refused while credentials use it).
    pub async fn remove_provider(&self, id: &str) -> Result<ProviderRemoval, StoreError> {
        self.store.delete_provider(id).await
    }

    /// Every key id configured or sealing a value, with its counts.
    pub async fn key_report(&self) -> Result<KeyReport, StoreError> {
        crate::keys::report(&self.store, &self.keyring).await
    }

    /// Re-encrypts one batch (`gateway reencrypt`).
    pub async fn reencrypt_batch(
        &self,
        position: &Position,
        limit: usize,
        dry_run: bool,
    ) -> Result<BatchOutcome, StoreError> {
        self.store.reencrypt_batch(&self.keyring, position, limit, dry_run).await
    }

    /// Providers configured by environment variables get a row, so that
    /// credentials and sessions can reference them.
    pub async fn sync_configured_providers(&self, settings: &Settings) -> Result<(), StoreError> {
        for provider in &settings.providers {
            self.store.upsert_provider(provider, &self.keyring, self.clock.now()).await?;
        }
        Ok(())
    }

    pub async fn close(self) {
        self.store.close().await;
    }
}
