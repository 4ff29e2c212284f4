//! Proactive refresh: credentials whose access token expires within a lead
//! window (longer than the request path's buffer) are refreshed before any
//! request has to wait for it, and credentials nobody used are refreshed at
//! least once per keep-alive period, so providers that revoke idle refresh
//! tokens do not.
//!
//! Each due credential goes through the same single-flight path requests use
//! (its `TokenActor`), so a request and this job never both call the provider.
//! Claiming the due rows is the store's job (with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so each replica claims different rows). Here: jitter, a bound
//! on concurrent provider calls, and per-provider backoff when a provider
//! answers 429 or 5xx.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use rand::Rng;

use super::JobError;

/// Why a credential is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// Its token expires within the lead window.
    Expiring,
    /// It has not been refreshed for a keep-alive period.
    Keepalive,
}

/// A claimed credential to refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    pub provider: String,
    pub email: String,
    pub reason: DueReason,
}

/// What one refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Refreshed,
    /// Someone else (a request, another replica) had already done it.
    NotNeeded,
    /// The provider failed transiently; back off from it.
    Deferred {
        retry_after: Option<Duration>,
    },
    /// The grant is gone (`needs_reauth`); nothing more to do.
    Failed,
}

/// What the job needs from the gateway.
pub trait RefreshSource: Send + Sync {
    /// Claims up to `limit` due credentials (active, with a refresh path, not
    /// leased elsewhere) for this replica.
    fn claim_due(&self, window: &Window, limit: usize) -> impl Future<Output = Result<Vec<Due>, JobError>> + Send;
    /// Refreshes one claimed credential through its single-flight path.
    fn refresh(&self, due: &Due) -> impl Future<Output = Attempt> + Send;
    /// Gives back a claim this run will not use (its provider is backing off).
    fn release(&self, due: &Due) -> impl Future<Output = ()> + Send;
}

/// Which credentials are due at `now`.
#[derive(Clone, Debug)]
pub struct Window {
    pub now: DateTime<Utc>,
    /// Tokens expiring before this are due.
    pub expiring_before: DateTime<Utc>,
    /// Providers that renew long-lived tokens by exchange (Meta) with their
    /// own, longer, lead: tokens expiring before `now + lead` are due.
    pub long_lived: Vec<(String, DateTime<Utc>)>,
    /// Credentials not refreshed since this are due for keep-alive.
    pub refreshed_before: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct RefreshConfig {
    /// Refresh tokens expiring within this (default 10 minutes; longer than
    /// the request path's `TOKEN_REFRESH_BUFFER_SECONDS`).
    pub lead: Duration,
    /// Lead for long-lived tokens renewed by exchange (Meta; default 7 days).
    pub long_lived_lead: Duration,
    pub long_lived_providers: Vec<String>,
    /// Refresh anything not refreshed for this long (default 24 hours).
    pub keepalive: Duration,
    /// Most credentials claimed per run.
    pub batch: usize,
    /// Most provider calls at once.
    pub concurrency: usize,
    /// Each refresh waits a random 0..jitter first, so a batch does not hit
    /// a provider in one burst.
    pub jitter: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            lead: Duration::from_secs(600),
            long_lived_lead: Duration::from_secs(7 * 86_400),
            long_lived_providers: Vec::new(),
            keepalive: Duration::from_secs(86_400),
            batch: 500,
            concurrency: 8,
            jitter: Duration::from_secs(2),
        }
    }
}

impl RefreshConfig {
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        let after = |d: Duration| now + TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        Window {
            now,
            expiring_before: after(self.lead),
            long_lived: self.long_lived_providers.iter().map(|p| (p.clone(), after(self.long_lived_lead))).collect(),
            refreshed_before: now - TimeDelta::from_std(self.keepalive).unwrap_or(TimeDelta::days(1)),
        }
    }
}

/// Per-provider backoff, kept across runs: a provider that answered 429/5xx
/// is left alone until its backoff ends (doubling from 30 s to 10 min).
#[derive(Debug, Default)]
pub struct ProviderBackoff {
    state: Mutex<HashMap<String, (DateTime<Utc>, Duration)>>,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

impl ProviderBackoff {
    pub fn blocked(&self, provider: &str, now: DateTime<Utc>) -> bool {
        self.state.lock().ok().and_then(|s| s.get(provider).map(|(until, _)| *until > now)).unwrap_or(false)
    }

    fn failed(&self, provider: &str, now: DateTime<Utc>, retry_after: Option<Duration>) {
        if let Ok(mut state) = self.state.lock() {
            let previous = state.get(provider).map(|(_, d)| *d);
            let next =
                previous.map_or(BACKOFF_FIRST, |d| (d * 2).min(BACKOFF_MAX)).max(retry_after.unwrap_or_default());
            state
                .insert(provider.to_owned(), (now + TimeDelta::from_std(next).unwrap_or(TimeDelta::minutes(10)), next));
        }
    }

    fn succeeded(&self, provider: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.remove(provider);
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    pub claimed: usize,
    pub refreshed: usize,
    pub not_needed: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Claimed but given back because their provider is backing off.
    pub skipped: usize,
}

pub async fn run_once<S: RefreshSource>(
    source: &S,
    config: &RefreshConfig,
    backoff: &ProviderBackoff,
    now: DateTime<Utc>,
) -> Result<RefreshReport, JobError> {
    let due = source.claim_due(&config.window(now), config.batch).await?;
    let mut report = RefreshReport { claimed: due.len(), ..RefreshReport::default() };
    let (blocked, ready): (Vec<Due>, Vec<Due>) = due.into_iter().partition(|d| backoff.blocked(&d.provider, now));
    for due in &blocked {
        source.release(due).await;
    }
    report.skipped = blocked.len();

    let results = futures::stream::iter(ready)
        .map(|due| async move {
            let jitter_ms = u64::try_from(config.jitter.as_millis()).unwrap_or(0);
            if jitter_ms > 0 {
                let wait = rand::thread_rng().gen_range(0..=jitter_ms);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            // A provider that started failing during this run is not called again.
            if backoff.blocked(&due.provider, now) {
                source.release(&due).await;
                return (due, None);
            }
            let attempt = source.refresh(&due).await;
            (due, Some(attempt))
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    for (due, attempt) in results {
        match attempt {
            None => report.skipped += 1,
            Some(Attempt::Refreshed) => {
                report.refreshed += 1;
                backoff.succeeded(&due.provider);
            }
            Some(Attempt::NotNeeded) => report.not_needed += 1,
            Some(Attempt::Deferred { retry_after }) => {
                report.deferred += 1;
                backoff.failed(&due.provider, now, retry_after);
            }
            Some(Attempt::Failed) => report.failed += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let backoff = ProviderBackoff::default();
        let now = Utc::now();
        assert!(!backoff.blocked("p", now));
        backoff.failed("p", now, None);
        assert!(backoff.blocked("p", now + TimeDelta::seconds(29)));
        assert!(!backoff.blocked("p", now + TimeDelta::seconds(31)));
        backoff.failed("p", now, None);
        assert!(backoff.blocked("p", now + TimeDelta::seconds(59)));
        backoff.failed("p", now, Some(Duration::from_secs(3600)));
        assert!(backoff.blocked("p", now + TimeDelta::minutes(59)));
        backoff.succeeded("p");
        assert!(!backoff.blocked("p", now));
    }

    #[test]
    fn the_window_uses_each_lead() {
        let config = RefreshConfig { long_lived_providers: vec!["meta".into()], ..RefreshConfig::default() };
        let now = Utc::now();
        let w = config.window(now);
        assert_eq!(w.expiring_before - now, TimeDelta::minutes(10));
        assert_eq!(w.long_lived[0].1 - now, TimeDelta::days(7));
        assert_eq!(now - w.refreshed_before, TimeDelta::hours(24));
    }
}
