//! The providers this gateway serves: those configured by environment
//! variables, then those managed in the database with `gateway providers`,
//! and whether each accepts our client ([`ProviderHealth`]).
//!
//! The database-managed ones are re-read every `RELOAD_EVERY`, at once when
//! another process announces a change (`Event::Providers`, over
//! LISTEN/NOTIFY on PostgreSQL), and on a lookup that misses (at most every
//! few seconds): a provider added or replaced by the CLI is served by every
//! replica within seconds, without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::health::ProviderHealth;
use super::provider::ProviderConfig;
use crate::crypto::Keyring;
use crate::events::{Event, Events};
use crate::store::Store;

const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// How often every replica re-reads the providers (and their health) anyway.
const RELOAD_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Providers {
    env: HashMap<String, Arc<ProviderConfig>>,
    database: RwLock<HashMap<String, Arc<ProviderConfig>>>,
    last_reload: std::sync::Mutex<Option<Instant>>,
    store: Store,
    keyring: Arc<Keyring>,
    events: Events,
    health: ProviderHealth,
    /// Production: providers from the database obey the same rule as
    /// configured ones — endpoints over TLS only.
    require_https: bool,
}

impl Providers {
    pub fn new(
        env: Vec<ProviderConfig>,
        store: Store,
        keyring: Arc<Keyring>,
        events: Events,
        require_https: bool,
    ) -> Self {
        let env = env.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect();
        Self {
            env,
            database: RwLock::new(HashMap::new()),
            last_reload: std::sync::Mutex::new(None),
            store,
            keyring,
            events,
            health: ProviderHealth::default(),
            require_https,
        }
    }

    /// Whether each provider accepts our client.
    pub fn health(&self) -> &ProviderHealth {
        &self.health
    }

    /// The provider refused our client (`invalid_client`,
    /// `unauthorized_client`): recorded once, for every replica to see.
    pub async fn refused(&self, id: &str, category: &'static str, now: DateTime<Utc>) {
        if !self.health.refused(id, category, now) {
            return;
        }
        tracing::error!(
            provider = id,
            category,
            "the provider refuses the gateway's client: fix its client id/secret; users' grants stay active"
        );
        match self.store.set_provider_failing(id, category, now).await {
            Ok(_) => self.events.publish(Event::Providers).await,
            Err(err) => tracing::warn!(error = %err, "could not record a failing provider"),
        }
    }

    /// A call to the provider succeeded: if it was failing, it has recovered.
    pub async fn accepted(&self, id: &str, now: DateTime<Utc>) {
        if !self.health.accepted(id) {
            return;
        }
        tracing::info!(provider = id, "the provider accepts the gateway's client again");
        match self.store.clear_provider_failing(id, now).await {
            Ok(_) => self.events.publish(Event::Providers).await,
            Err(err) => tracing::warn!(error = %err, "could not record a recovered provider"),
        }
    }

    /// Re-reads the providers whenever told, and every `RELOAD_EVERY`.
    pub fn spawn_reloader(self: &Arc<Self>, stop: crate::events::Stop) -> tokio::task::JoinHandle<()> {
        let wants = |e: &Event| matches!(e, Event::Providers);
        crate::events::spawn_reloader(
            self,
            self.events.subscribe(),
            RELOAD_EVERY,
            wants,
            "providers",
            stop,
            |p| async move { p.reload().await },
        )
    }

    /// Loads the database-managed providers and every provider's health.
    pub async fn reload(&self) -> Result<(), crate::store::StoreError> {
        self.health.sync(&self.store.provider_health().await?);
        let loaded = self.store.load_database_providers(&self.keyring).await?;
        let map = loaded
            .into_iter()
            .filter(|p| !self.env.contains_key(&p.id))
            .filter(|p| {
                let usable = !self.require_https || p.plain_http_endpoints().is_empty();
                if !usable {
                    tracing::warn!(provider = %p.id, endpoints = ?p.plain_http_endpoints(), "provider not served: production needs https endpoints");
                }
                usable
            })
            .map(|p| (p.id.clone(), Arc::new(p)))
            .collect();
        if let Ok(mut db) = self.database.write() {
            *db = map;
        }
        if let Ok(mut last) = self.last_reload.lock() {
            *last = Some(Instant::now());
        }
        Ok(())
    }

    fn cached(&self, id: &str) -> Option<Arc<ProviderConfig>> {
        if let Some(p) = self.env.get(id) {
            return Some(p.clone());
        }
        self.database.read().ok()?.get(id).cloned()
    }

    /// The provider `id`, if this gateway serves it.
    pub async fn get(&self, id: &str) -> Option<Arc<ProviderConfig>> {
        if let Some(p) = self.cached(id) {
            return Some(p);
        }
        let due =
            self.last_reload.lock().ok().is_some_and(|last| last.is_none_or(|t| t.elapsed() >= RELOAD_AT_MOST_EVERY));
        if due && let Err(err) = self.reload().await {
            tracing::warn!(error = %err, "could not reload providers");
        }
        self.cached(id)
    }

    /// Ids of the providers whose long-lived tokens are renewed by exchange (Meta).
    pub fn long_lived_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.env.values().filter(|p| p.renews_by_exchange()).map(|p| p.id.clone()).collect();
        if let Ok(db) = self.database.read() {
            ids.extend(db.values().filter(|p| p.renews_by_exchange()).map(|p| p.id.clone()));
        }
        ids
    }

    /// Ids of every provider served, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.env.keys().cloned().collect();
        if let Ok(db) = self.database.read() {
            ids.extend(db.keys().cloned());
        }
        ids.sort();
        ids
    }
}
