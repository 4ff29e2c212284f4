//! The numbers behind the database gauges (the `metrics_refresh` job sets
//! them): credentials by provider and state, upcoming expiries, the primary
//! key's age, values still under old keys, and the pool's connections.

use chrono::{DateTime, TimeDelta, Utc};

use crate::crypto::Keyring;
use crate::store::{Store, StoreError};

/// How far ahead "expiring soon" looks.
pub const EXPIRING_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// One reading. When the database is down only `database_up` and the pool
/// are meaningful.
#[derive(Clone, Debug, Default)]
pub struct Statistics {
    pub database_up: bool,
    pub pool_in_use: u32,
    pub pool_idle: u32,
    /// (provider, state, count).
    pub credentials: Vec<(String, String, u64)>,
    /// (provider, count) of active credentials expiring within [`EXPIRING_WINDOW`].
    pub expiring_soon: Vec<(String, u64)>,
    pub primary_key_id: String,
    pub primary_key_age_seconds: i64,
    /// (key id, values still to re-encrypt) for every configured key (0 for the primary).
    pub pending_by_key: Vec<(String, u64)>,
}

pub(crate) async fn collect(store: &Store, keyring: &Keyring, now: DateTime<Utc>) -> Result<Statistics, StoreError> {
    let (pool_in_use, pool_idle) = store.pool_connections();
    let mut stats = Statistics {
        database_up: store.ping().await.is_ok(),
        pool_in_use,
        pool_idle,
        primary_key_id: keyring.primary_id().to_string(),
        ..Statistics::default()
    };
    if !stats.database_up {
        return Ok(stats);
    }
    stats.credentials = store.credentials_by_state().await?;
    stats.expiring_soon = store.credentials_expiring_before(now + EXPIRING_WINDOW).await?;
    let first_seen = store.key_first_seen(&stats.primary_key_id, now).await?;
    stats.primary_key_age_seconds = (now - first_seen).num_seconds().max(0);
    let usage = store.key_usage().await?;
    stats.pending_by_key = keyring
        .key_ids()
        .map(|id| {
            // Values under the primary need no work; every other key's count is pending.
            let pending = if *id.as_str() == *stats.primary_key_id { 0 } else { usage.total(id.as_str()) };
            (id.to_string(), pending)
        })
        .collect();
    Ok(stats)
}
