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
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use rand::Rng;

use gateway_core::Services;
use gateway_core::actors::token::RefreshOutcome;
use gateway_core::credentials::TokenError;
use gateway_core::credentials::due::{Due, DuePolicy};

use crate::JobError;

/// What one refresh did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Refreshed,
    /// Someone else (a request, another replica) had already done it.
    NotNeeded,
    /// The provider failed transiently (or refuses our client); back off from it.
    Deferred {
        retry_after: Option<Duration>,
    },
    /// The grant is gone (`needs_reauth`); nothing more to do.
    Failed,
}

#[derive(Clone, Debug)]
pub struct RefreshConfig {
    /// Which credentials are due.
    pub due: DuePolicy,
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
        Self { due: DuePolicy::default(), batch: 500, concurrency: 8, jitter: Duration::from_secs(2) }
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

pub async fn run_once(
    services: &Services,
    config: &RefreshConfig,
    backoff: &ProviderBackoff,
    now: DateTime<Utc>,
) -> Result<RefreshReport, JobError> {
    let due = services.claim_due(&config.due, config.batch, now).await?;
    let mut report = RefreshReport { claimed: due.len(), ..RefreshReport::default() };
    let (blocked, ready): (Vec<Due>, Vec<Due>) = due.into_iter().partition(|d| backoff.blocked(&d.key.provider, now));
    for due in &blocked {
        services.release_claim(&due.key).await;
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
            if backoff.blocked(&due.key.provider, now) {
                services.release_claim(&due.key).await;
                return (due, None);
            }
            let attempt = attempt(services, &due).await;
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
                backoff.succeeded(&due.key.provider);
            }
            Some(Attempt::NotNeeded) => report.not_needed += 1,
            Some(Attempt::Deferred { retry_after }) => {
                report.deferred += 1;
                backoff.failed(&due.key.provider, now, retry_after);
            }
            Some(Attempt::Failed) => report.failed += 1,
        }
    }
    Ok(report)
}

/// Refreshes one claimed credential through its single-flight actor.
async fn attempt(services: &Services, due: &Due) -> Attempt {
    let (trigger, need) = due.refresh();
    match services.refresh(&due.key, trigger, need).await {
        Ok(RefreshOutcome::Refreshed) => Attempt::Refreshed,
        Ok(RefreshOutcome::NotNeeded) => {
            services.release_claim(&due.key).await;
            Attempt::NotNeeded
        }
        Ok(RefreshOutcome::Deferred) => Attempt::Deferred { retry_after: None },
        Err(TokenError::ProviderUnavailable { retry_after }) => {
            Attempt::Deferred { retry_after: Some(Duration::from_secs(retry_after)) }
        }
        Err(TokenError::RefreshFailed) => Attempt::Failed,
        Err(TokenError::NotAuthenticated | TokenError::Busy) => Attempt::NotNeeded,
        Err(err) => {
            tracing::warn!(provider = %due.key.provider, error = %err, "proactive refresh failed");
            services.release_claim(&due.key).await;
            Attempt::Deferred { retry_after: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_honours_retry_after() {
        let backoff = ProviderBackoff::default();
        let now = gateway_core::clock::Clock::system().now();
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
}
