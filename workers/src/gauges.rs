//! The gauges that describe the database rather than events, recomputed
//! periodically (the `metrics_refresh` job) and once at start-up.

use chrono::{DateTime, Utc};
use gateway_core::Services;
use gateway_core::telemetry::metrics as m;

use crate::JobError;

/// Recomputes every database gauge. Every served provider gets a value, so
/// one whose last credential went away drops to zero.
pub async fn run_once(services: &Services, now: DateTime<Utc>) -> Result<(), JobError> {
    let stats = services.statistics(now).await?;
    metrics::gauge!(m::DB_UP).set(if stats.database_up { 1.0 } else { 0.0 });
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "in_use").set(f64::from(stats.pool_in_use));
    metrics::gauge!(m::DB_POOL_CONNECTIONS, "state" => "idle").set(f64::from(stats.pool_idle));
    if !stats.database_up {
        return Ok(());
    }
    let providers = services.providers().ids();
    for provider in &providers {
        for state in ["active", "needs_reauth"] {
            let n = stats.credentials.iter().find(|(p, s, _)| p == provider && s == state).map_or(0, |(_, _, n)| *n);
            metrics::gauge!(m::CREDENTIALS, "provider" => provider.clone(), "state" => state).set(n as f64);
        }
        let n = stats.expiring_soon.iter().find(|(p, _)| p == provider).map_or(0, |(_, n)| *n);
        metrics::gauge!(m::CREDENTIALS_EXPIRING, "provider" => provider.clone()).set(n as f64);
    }
    metrics::gauge!(m::PRIMARY_KEY_AGE, "key_id" => stats.primary_key_id.clone())
        .set(stats.primary_key_age_seconds as f64);
    for (key_id, pending) in stats.pending_by_key {
        metrics::gauge!(m::REENCRYPTION_PENDING, "key_id" => key_id).set(pending as f64);
    }
    let deliveries = services.delivery_counts().await?;
    for status in ["pending", "dead"] {
        let n = deliveries.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        metrics::gauge!(m::WEBHOOK_BACKLOG, "status" => status).set(n as f64);
    }
    metrics::gauge!(m::PENDING_REVOCATIONS).set(services.pending_revocations().await? as f64);
    Ok(())
}
