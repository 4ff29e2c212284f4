//! Audit pruning: records older than `AUDIT_RETENTION_DAYS` are deleted (run
//! with each session sweep). One statement, safe on every replica at once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gateway_core::Services;

use crate::JobError;

/// Deletes audit records past `retention`; returns how many.
pub async fn run_once(services: &Services, retention: Duration, now: DateTime<Utc>) -> Result<u64, JobError> {
    let before = now - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(365));
    let pruned = services.prune_audit(before).await?;
    if pruned > 0 {
        tracing::info!(pruned, "audit records past their retention deleted");
    }
    Ok(pruned)
}
