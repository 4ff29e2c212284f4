//! What `/health` checks: one database round trip and one real
//! encrypt/decrypt with the configured keyring; and what it reports beside:
//! providers refusing our client (which do not make the gateway unhealthy:
//! every other provider still works, and a load balancer must not pull it).

use chrono::{DateTime, Utc};

use crate::crypto::Keyring;
use crate::oauth::Providers;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct Report {
    pub database_ok: bool,
    pub encryption_ok: bool,
    pub checked_at: DateTime<Utc>,
    /// Providers refusing the gateway's client, by id.
    pub failing_providers: Vec<(String, crate::oauth::health::Failing)>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.database_ok && self.encryption_ok
    }
}

pub async fn probe(store: &Store, keyring: &Keyring, providers: &Providers, now: DateTime<Utc>) -> Report {
    let database = store.ping().await;
    if let Err(err) = &database {
        tracing::warn!(error = %err, "health: database unreachable");
    }
    Report {
        database_ok: database.is_ok(),
        encryption_ok: keyring.self_test(),
        checked_at: now,
        failing_providers: providers.health().failing(),
    }
}
