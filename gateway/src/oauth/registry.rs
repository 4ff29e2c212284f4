//! The providers this gateway serves: those configured by environment
//! variables, then those managed in the database with `gateway providers`.
//! A lookup that misses re-reads the database (at most every few seconds),
//! so a provider added by the CLI is served without a restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::provider::ProviderConfig;
use crate::crypto::Keyring;
use crate::store::Store;

const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Providers {
    env: HashMap<String, Arc<ProviderConfig>>,
    database: RwLock<HashMap<String, Arc<ProviderConfig>>>,
    last_reload: std::sync::Mutex<Option<Instant>>,
    store: Store,
    keyring: Arc<Keyring>,
}

impl Providers {
    pub fn new(env: Vec<ProviderConfig>, store: Store, keyring: Arc<Keyring>) -> Self {
        let env = env.into_iter().map(|p| (p.id.clone(), Arc::new(p))).collect();
        Self { env, database: RwLock::new(HashMap::new()), last_reload: std::sync::Mutex::new(None), store, keyring }
    }

    /// Loads the database-managed providers.
    pub async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let loaded = self.store.load_database_providers(&self.keyring).await?;
        let map =
            loaded.into_iter().filter(|p| !self.env.contains_key(&p.id)).map(|p| (p.id.clone(), Arc::new(p))).collect();
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
