//! What `/health` checks: one database round trip and one real
//! encrypt/decrypt with the configured keyring.

use chrono::{DateTime, Utc};

use crate::crypto::Keyring;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct Report {
    pub database_ok: bool,
    pub encryption_ok: bool,
    pub checked_at: DateTime<Utc>,
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.database_ok && self.encryption_ok
    }
}

pub async fn probe(store: &Store, keyring: &Keyring, now: DateTime<Utc>) -> Report {
    let database = store.ping().await;
    if let Err(err) = &database {
        tracing::warn!(error = %err, "health: database unreachable");
    }
    Report { database_ok: database.is_ok(), encryption_ok: keyring.self_test(), checked_at: now }
}
