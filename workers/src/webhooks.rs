//! `webhook_delivery`: fan new events out to their subscriptions and attempt
//! every due delivery (signed, with backoff, dead-lettered after the last
//! attempt); forget delivered ones after a week. Safe on every replica at
//! once: each delivery is leased to one.

use chrono::{DateTime, Utc};
use gateway_core::Services;
use gateway_core::webhooks::delivery::DeliveryReport;

use crate::JobError;

pub async fn run_once(services: &Services, now: DateTime<Utc>) -> Result<DeliveryReport, JobError> {
    let report = services.deliver_webhooks_once(now).await?;
    services.prune_webhooks(now).await?;
    Ok(report)
}
