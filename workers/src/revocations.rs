//! `revocation_retry`: revocations a provider could not take when a grant
//! was deleted, tried again with backoff until it does (or given up and
//! audited after a day and a half).

use chrono::{DateTime, Utc};
use gateway_core::Services;
use gateway_core::credentials::revocations::RevocationReport;

use crate::JobError;

pub async fn run_once(services: &Services, now: DateTime<Utc>) -> Result<RevocationReport, JobError> {
    Ok(services.retry_revocations_once(now).await?)
}
