//! Which credentials are due for a proactive refresh — decided here, once.
//!
//! Due: active, not leased by another replica, with a way to refresh, and
//! either expiring within the lead window (a longer one for providers that
//! renew long-lived tokens by exchange, such as Meta) — but only when used
//! (or authorized) recently: an idle user's token is not kept fresh for
//! nobody — or not refreshed for a keep-alive period (providers revoke idle
//! refresh tokens). An idle user who comes back waits for one on-demand
//! refresh, single-flight in the credential's actor. Long-lived tokens are
//! renewed whether used or not: once expired they cannot be renewed at all.
//! Claiming leases them to this replica in one statement (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, so replicas claim different rows).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{CredentialKey, Need, Trigger};
use crate::email::Email;
use crate::store::housekeeping::DueFilter;
use crate::store::{Store, StoreError};

/// When credentials are due (`REFRESH_LEAD_MINUTES`, `LONG_LIVED_REFRESH_LEAD_DAYS`,
/// `REFRESH_KEEPALIVE_HOURS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuePolicy {
    /// Refresh tokens expiring within this (default 10 minutes; longer than
    /// the request path's `TOKEN_REFRESH_BUFFER_SECONDS`).
    pub lead: Duration,
    /// Lead for long-lived tokens renewed by exchange (default 7 days).
    pub long_lived_lead: Duration,
    /// Refresh anything not refreshed for this long (default 24 hours).
    pub keepalive: Duration,
    /// Refresh ahead of expiry only what was used (or authorized) within
    /// this (default 36 hours; `None`: everything).
    pub active: Option<Duration>,
}

impl Default for DuePolicy {
    fn default() -> Self {
        Self {
            lead: Duration::from_secs(600),
            long_lived_lead: Duration::from_secs(7 * 86_400),
            keepalive: Duration::from_secs(86_400),
            active: Some(Duration::from_secs(36 * 3600)),
        }
    }
}

/// Why a credential is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// Its token expires within the lead window.
    Expiring,
    /// It has not been refreshed for a keep-alive period.
    Keepalive,
}

/// A credential claimed for a proactive refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub key: CredentialKey,
    pub reason: DueReason,
    /// The lead that made it due (what the refresh must achieve).
    pub lead: Duration,
}

impl Due {
    /// The refresh's trigger (a metric label) and what it must achieve.
    pub fn refresh(&self) -> (Trigger, Need) {
        match self.reason {
            DueReason::Expiring => (Trigger::Proactive, Need::ExpiresWithin(self.lead)),
            DueReason::Keepalive => (Trigger::Keepalive, Need::AnyNewerThanSeen),
        }
    }
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The store's filter for credentials due at `now`.
fn window(policy: &DuePolicy, long_lived_providers: &[String], now: DateTime<Utc>) -> DueFilter {
    DueFilter {
        now,
        expiring_before: after(now, policy.lead),
        long_lived: long_lived_providers.iter().map(|p| (p.clone(), after(now, policy.long_lived_lead))).collect(),
        refreshed_before: now - TimeDelta::from_std(policy.keepalive).unwrap_or(TimeDelta::days(1)),
        used_since: policy.active.map(|a| now - TimeDelta::from_std(a).unwrap_or(TimeDelta::MAX)),
    }
}

/// Leases up to `limit` credentials due at `now` to `owner` until `until`.
pub(crate) async fn claim(
    store: &Store,
    policy: &DuePolicy,
    long_lived_providers: &[String],
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Due>, StoreError> {
    let filter = window(policy, long_lived_providers, now);
    let claimed = store.claim_due(&filter, owner, until, limit).await?;
    Ok(claimed
        .into_iter()
        .filter_map(|c| {
            let long_lived = long_lived_providers.contains(&c.provider);
            let (before, lead) = if long_lived {
                (after(now, policy.long_lived_lead), policy.long_lived_lead)
            } else {
                (filter.expiring_before, policy.lead)
            };
            let expiring = c.token_expiry.is_some_and(|e| e < before);
            // A row's email was validated when it was written; one that no
            // longer parses is skipped (its lease expires on its own).
            let email = Email::parse(&c.email).ok()?;
            Some(Due {
                key: CredentialKey { email, provider: c.provider },
                reason: if expiring { DueReason::Expiring } else { DueReason::Keepalive },
                lead,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_asks_for_its_own_refresh() {
        let key = CredentialKey { email: Email::parse("a@b.co").unwrap(), provider: "p".into() };
        let lead = Duration::from_secs(600);
        let expiring = Due { key: key.clone(), reason: DueReason::Expiring, lead };
        assert_eq!(expiring.refresh(), (Trigger::Proactive, Need::ExpiresWithin(lead)));
        let idle = Due { key, reason: DueReason::Keepalive, lead };
        assert_eq!(idle.refresh(), (Trigger::Keepalive, Need::AnyNewerThanSeen));
    }

    #[test]
    fn the_window_uses_each_lead() {
        let now = crate::clock::Clock::system().now();
        let w = window(&DuePolicy::default(), &["meta".into()], now);
        assert_eq!(w.expiring_before - now, TimeDelta::minutes(10));
        assert_eq!(w.long_lived[0].1 - now, TimeDelta::days(7));
        assert_eq!(now - w.refreshed_before, TimeDelta::hours(24));
        assert_eq!(w.used_since.map(|u| now - u), Some(TimeDelta::hours(36)));
        let everything = DuePolicy { active: None, ..DuePolicy::default() };
        assert_eq!(window(&everything, &[], now).used_since, None);
    }

    #[test]
    fn the_default_policy_is_the_documented_one() {
        let p = DuePolicy::default();
        assert_eq!((p.lead.as_secs(), p.long_lived_lead.as_secs(), p.keepalive.as_secs()), (600, 7 * 86_400, 86_400));
        assert_eq!(p.active, Some(Duration::from_secs(36 * 3600)));
    }
}
