//! Session sweep: pending sessions past `expires_at` become `failed`
//! ("Session expired") so status polls see a clear end; finished sessions are
//! deleted after a retention period. Both are single idempotent statements,
//! safe to run on every replica at once.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::JobError;

/// What the sweep needs from the store.
pub trait SweepStore: Send + Sync {
    /// Fails every pending session that expired before `now`; returns how many.
    fn expire_pending(&self, now: DateTime<Utc>) -> impl Future<Output = Result<u64, JobError>> + Send;
    /// Deletes finished sessions that finished before `before`; returns how many.
    fn delete_finished(&self, before: DateTime<Utc>) -> impl Future<Output = Result<u64, JobError>> + Send;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: u64,
    pub deleted: u64,
}

pub async fn run_once<S: SweepStore>(
    store: &S,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<SweepReport, JobError> {
    let expired = store.expire_pending(now).await?;
    let before = now - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(1));
    let deleted = store.delete_finished(before).await?;
    Ok(SweepReport { expired, deleted })
}
