//! A session's status for `/auth/status`, long-polled until it leaves `pending`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::services::Deps;
use crate::store::sessions::{SessionRecord, SessionStatus};

use super::{FailReason, FlowError, MAX_WAIT};

/// A session's status for `/auth/status`, waiting up to `wait` for it to
/// leave `pending`. `changes` ticks whenever an event names this session.
pub(crate) async fn wait_status(
    deps: &Deps,
    id: Uuid,
    client: &str,
    mut changes: watch::Receiver<u64>,
    wait: Duration,
) -> Result<SessionRecord, FlowError> {
    let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
    loop {
        let record = deps.store.find_session(id).await?.ok_or(FlowError::SessionNotFound)?;
        // Only the client that started a flow may read it (checked before any wait).
        if record.client.as_deref() != Some(client) {
            return Err(FlowError::NotYours);
        }
        let now = deps.clock.now();
        if record.status != SessionStatus::Pending || record.is_expired(now) || tokio::time::Instant::now() >= deadline
        {
            return Ok(record);
        }
        // Wake for a change, for the session's expiry, or at the deadline.
        let until_expiry = (record.expires_at - now).to_std().unwrap_or_default();
        let wake_at = deadline.min(tokio::time::Instant::now() + until_expiry);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The actor dropped the channel; fall back to the deadline.
                    tokio::time::sleep_until(wake_at).await;
                }
            }
            () = tokio::time::sleep_until(wake_at) => {}
        }
    }
}

/// What `/auth/status` reports for a record at `now`.
pub fn reported_status(record: &SessionRecord, now: DateTime<Utc>) -> (SessionStatus, Option<FailReason>) {
    if record.is_expired(now) {
        return (SessionStatus::Failed, Some(FailReason::Expired));
    }
    let reason = record.failure_reason.as_deref().map(|r| FailReason::parse(r).unwrap_or(FailReason::ProviderError));
    (record.status, reason)
}
