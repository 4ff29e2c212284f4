//! Proactive refresh: credentials whose access token expires within a lead
//! window (longer than the request path's buffer) are refreshed before any
//! request has to wait for it, and credentials nobody used are refreshed at
//! least once per keep-alive period, so providers that revoke idle refresh
//! tokens do not.
//!
//! Each due credential goes through the same single-flight path requests use
//! (its `TokenActor`), so a request and this job never both call the provider.
//! Claiming the due rows is the store's job (with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL, so each replica claims different rows). Here: a run claims
//! batch after batch while credentials remain due, for up to a time budget
//! shorter than the schedule's interval (then finishes what it claimed);
//! bounds on provider calls in flight, in total and per provider
//! (`limits`); jitter on the run's first batch; and per-provider backoff
//! when a provider answers 429 or 5xx.

mod limits;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;

use gateway_core::Services;
use gateway_core::actors::token::RefreshOutcome;
use gateway_core::credentials::due::{Due, DuePolicy};
use gateway_core::credentials::{CredentialKey, TokenError};

use self::limits::CallLimits;
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
    /// Most credentials claimed at a time.
    pub batch: usize,
    /// Most provider calls at once, all providers together.
    pub concurrency: usize,
    /// Most calls at once to any one provider.
    pub provider_concurrency: usize,
    /// A run stops claiming after this long (and finishes what it claimed).
    pub budget: Duration,
    /// Each refresh of a run's first batch waits a random 0..jitter first,
    /// so the run does not open on a provider in one burst; later batches
    /// are paced by the bounds on calls in flight.
    pub jitter: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            due: DuePolicy::default(),
            batch: 500,
            concurrency: 128,
            provider_concurrency: 96,
            budget: Duration::from_secs(20),
            jitter: Duration::from_secs(2),
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
    /// Distinct credentials claimed, over every batch of the run.
    pub claimed: usize,
    /// Batches claimed (the last one may have come back short or empty).
    pub batches: usize,
    pub refreshed: usize,
    pub not_needed: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Claimed but given back because their provider is backing off.
    pub skipped: usize,
}

/// One run: claims and refreshes due credentials until none are left, the
/// budget is spent, or a claim brings nothing new.
pub async fn run_once(
    services: &Services,
    config: &RefreshConfig,
    backoff: &ProviderBackoff,
    now: DateTime<Utc>,
) -> Result<RefreshReport, JobError> {
    let started = tokio::time::Instant::now();
    let limits = CallLimits::new(config.concurrency, config.provider_concurrency);
    let batch = config.batch.max(1);
    let mut report = RefreshReport::default();
    // Everything claimed this run: a credential is tried once per run, even
    // if it comes back due (a provider issuing tokens shorter than the lead).
    let mut seen: HashSet<CredentialKey> = HashSet::new();
    // Claims this run will not use, kept until it ends so that the next
    // batch reaches past them; then given back.
    let mut held: Vec<CredentialKey> = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut claiming = true;
    let mut budget_spent = false;
    let mut outcome = Ok(());

    loop {
        // Claim ahead while fewer than a batch are waiting or in flight, so
        // the call slots never idle between batches.
        if claiming && in_flight.len() < batch {
            let at = now + TimeDelta::from_std(started.elapsed()).unwrap_or_default();
            match services.claim_due(&config.due, batch, at).await {
                Ok(due) => {
                    report.batches += 1;
                    let (full, first) = (due.len() == batch, report.batches == 1);
                    let mut fresh = 0;
                    for due in due {
                        if !seen.insert(due.key.clone()) {
                            held.push(due.key);
                        } else if backoff.blocked(&due.key.provider, now) {
                            report.claimed += 1;
                            report.skipped += 1;
                            held.push(due.key);
                            fresh += 1;
                        } else {
                            report.claimed += 1;
                            fresh += 1;
                            let jitter = if first { config.jitter } else { Duration::ZERO };
                            in_flight.push(refresh_one(services, &limits, backoff, due, jitter, now));
                        }
                    }
                    let more = full && fresh > 0;
                    budget_spent = more && started.elapsed() >= config.budget;
                    claiming = more && !budget_spent;
                }
                // The first claim failing fails the run; a later one ends
                // the claiming, and the run fails once the claimed are done.
                Err(err) if report.batches == 0 => return Err(err.into()),
                Err(err) => {
                    claiming = false;
                    outcome = Err(err);
                }
            }
        }
        match in_flight.next().await {
            Some((due, attempt)) => tally(&mut report, backoff, &due, attempt, now),
            None if claiming => {}
            None => break,
        }
    }
    for key in &held {
        services.release_claim(key).await;
    }
    if budget_spent {
        tracing::info!(claimed = report.claimed, "refresh run budget spent; what is still due waits for the next run");
    }
    outcome.map(|()| report).map_err(Into::into)
}

/// Refreshes one claimed credential once its jitter has passed and a call
/// slot is free; `None` when its provider started backing off meanwhile.
async fn refresh_one(
    services: &Services,
    limits: &CallLimits,
    backoff: &ProviderBackoff,
    due: Due,
    jitter: Duration,
    now: DateTime<Utc>,
) -> (Due, Option<Attempt>) {
    let jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(0);
    if jitter_ms > 0 {
        let wait = rand::thread_rng().gen_range(0..=jitter_ms);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let _permit = limits.acquire(&due.key.provider).await;
    // A provider that started failing during this run is not called again.
    if backoff.blocked(&due.key.provider, now) {
        services.release_claim(&due.key).await;
        return (due, None);
    }
    let attempt = attempt(services, &due).await;
    (due, Some(attempt))
}

fn tally(
    report: &mut RefreshReport,
    backoff: &ProviderBackoff,
    due: &Due,
    attempt: Option<Attempt>,
    now: DateTime<Utc>,
) {
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
