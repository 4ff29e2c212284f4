//! Revocations a provider could not take when the credential was deleted
//! (it was down, or timed out): retried with backoff until it does, then
//! forgotten; given up (and audited) after [`MAX_ATTEMPTS`]. The credential
//! itself is gone from the start — a user who offboards or disconnects is
//! never kept waiting on a provider.

use chrono::{DateTime, TimeDelta, Utc};

use crate::oauth::client::RevocationOutcome;
use crate::services::Deps;
use crate::store::StoreError;

/// Attempts in all (the first, at deletion, included).
pub const MAX_ATTEMPTS: i32 = 12;
/// Revocations retried per run.
const BATCH: u64 = 100;

/// The wait before the first retry.
pub fn first_retry() -> TimeDelta {
    TimeDelta::minutes(5)
}

/// The wait after attempt number `attempts`: 5 min, doubling, at most 6 h.
pub fn backoff(attempts: i32) -> TimeDelta {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
    (first_retry() * 2_i32.saturating_pow(doublings)).min(TimeDelta::hours(6))
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevocationReport {
    /// Taken by the provider (revoked, already invalid, or no endpoint any more).
    pub done: u64,
    pub failed_again: u64,
    pub given_up: u64,
}

pub(crate) async fn retry_once(deps: &Deps, now: DateTime<Utc>) -> Result<RevocationReport, StoreError> {
    let mut report = RevocationReport::default();
    // Claimed for ten minutes: longer than the attempts of one run.
    let claimed = deps.store.claim_revocations(&deps.keyring, now, now + TimeDelta::minutes(10), BATCH).await?;
    for pending in claimed {
        let outcome = match deps.providers.get(&pending.provider).await {
            Some(provider) => deps.oauth.revoke(&provider, &pending.token, &pending.kind).await,
            // The provider was removed: nobody to tell any more.
            None => RevocationOutcome::NotSupported,
        };
        let mut record = crate::access::audit::record("gateway", "revoke_retry", outcome.as_str(), now);
        record.user_email = Some(pending.user_email.clone());
        record.provider = Some(pending.provider.clone());
        if outcome != RevocationOutcome::Failed {
            deps.store.forget_revocation(pending.id).await?;
            report.done += 1;
        } else if pending.attempts + 1 >= MAX_ATTEMPTS {
            deps.store.forget_revocation(pending.id).await?;
            tracing::error!(provider = %pending.provider, attempts = pending.attempts + 1, "gave up revoking a grant at its provider");
            record.outcome = "given_up".to_owned();
            report.given_up += 1;
        } else {
            deps.store.revocation_failed_again(pending.id, "failed", now + backoff(pending.attempts + 1)).await?;
            report.failed_again += 1;
        }
        deps.audit.record(record);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_six_hours() {
        assert_eq!(backoff(1), TimeDelta::minutes(5));
        assert_eq!(backoff(2), TimeDelta::minutes(10));
        assert_eq!(backoff(4), TimeDelta::minutes(40));
        assert_eq!(backoff(11), TimeDelta::hours(6));
        let total: i64 = (1..MAX_ATTEMPTS).map(|a| backoff(a).num_minutes()).sum();
        assert!(total > 24 * 60, "retries span more than a day: {total} min");
    }
}
