//! `connection_probe` (off unless enabled): asks each provider's userinfo
//! endpoint whether grants nobody proved for a day still work, so operators
//! (and `credential.needs_reauth` subscribers) see a dead grant before the
//! user's next tool call does.

use chrono::{DateTime, Utc};
use gateway_core::Services;
use gateway_core::operations::{PROBE_AFTER, ProbeReport};

use crate::JobError;

/// Grants probed per run.
pub const BATCH: u64 = 200;

pub async fn run_once(services: &Services, now: DateTime<Utc>) -> Result<ProbeReport, JobError> {
    Ok(services.probe_idle_once(now - PROBE_AFTER, BATCH).await?)
}
