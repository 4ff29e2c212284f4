//! Session sweep: pending sessions past `expires_at` become `failed`
//! ("Session expired") so status polls see a clear end; finished sessions are
//! deleted after a retention period; the ids of spent worker assertions are
//! forgotten once the assertions have expired (they are refused for their age
//! anyway). Each is a single idempotent statement, safe to run on every
//! replica at once.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use gateway_core::Services;

use crate::JobError;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub deleted: u64,
    /// Spent assertion ids forgotten.
    pub assertions: u64,
}

pub async fn run_once(services: &Services, retention: Duration, now: DateTime<Utc>) -> Result<SweepReport, JobError> {
    let expired = services.expire_sessions(now).await?;
    let before = now - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(1));
    let deleted = services.delete_finished_sessions(before).await?;
    let assertions = services.prune_used_assertions(now).await?;
    Ok(SweepReport { expired, deleted, assertions })
}
