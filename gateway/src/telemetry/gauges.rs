//! The gauges that describe the database rather than events: refreshed
//! periodically (the `metrics_refresh` job) and once at start-up.

use chrono::{DateTime, TimeDelta, Utc};

use super::metrics as m;
use crate::crypto::Keyring;
use crate::store::{Store, StoreError};

/// How far ahead `credentials_expiring_soon` looks.
pub const EXPIRING_WINDOW: TimeDelta = TimeDelta::minutes(15);

/// Recomputes every database gauge. `providers` are the configured ones, so
/// a provider whose last credential went away drops to zero.
pub async fn refresh(
    store: &Store,
    keyring: &Keyring,
    providers: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let up = store.ping().await.is_ok();
    metrics::gauge!(m::DB_UP).set(if up { 1.0 } else { 0.0 });
    let (in_use, idle) = store.pool_connections();
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(in_use));
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(idle));
    if !up {
        return Ok(());
    }

    let by_state = store.credentials_by_state().await?;
    for provider in providers {
        for state in ["active", "needs_reauth"] {
            let n = by_state.iter().find(|(p, s, _)| p == provider && s == state).map_or(0, |(_, _, n)| *n);
            metrics::gauge!(m::CREDENTIALS, "provider" => provider.clone(), "state" => state).set(n as f64);
        }
    }
    let expiring = store.credentials_expiring_before(now + EXPIRING_WINDOW).await?;
    for provider in providers {
        let n = expiring.iter().find(|(p, _)| p == provider).map_or(0, |(_, n)| *n);
        metrics::gauge!(m::CREDENTIALS_EXPIRING, "provider" => provider.clone()).set(n as f64);
    }

    let primary = keyring.primary_id().to_string();
    let first_seen = store.key_first_seen(&primary, now).await?;
    metrics::gauge!(m::PRIMARY_KEY_AGE, "key_id" => primary.clone())
        .set((now - first_seen).num_seconds().max(0) as f64);

    let usage = store.key_usage().await?;
    for key_id in keyring.key_ids() {
        // Values under the primary need no work; every other key's count is pending.
        let pending = if *key_id.as_str() == *primary { 0 } else { usage.total(key_id.as_str()) };
        metrics::gauge!(m::REENCRYPTION_PENDING, "key_id" => key_id.to_string()).set(pending as f64);
    }
    Ok(())
}
