//! What the scheduled jobs do to this gateway: the implementations of the
//! `workers` crate's traits, and the job list `gateway serve` schedules.
//!
//! | job | what | default schedule |
//! |---|---|---|
//! | `proactive_refresh` | refresh credentials before they expire; keep idle grants alive | every 30 s |
//! | `session_sweep` | fail expired pending sessions; delete old finished ones | every minute |
//! | `reencrypt` | re-encrypt values under old keys (when any remain) | every 5 minutes |
//! | `metrics_refresh` | recompute the database gauges | every 15 s |

use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, TimeDelta, Utc};
use workers::jobs::JobError;
use workers::jobs::reencrypt::{Batch, Cursor, ReencryptStore, Undecryptable};
use workers::jobs::refresh::{Attempt, Due, DueReason, ProviderBackoff, RefreshConfig, RefreshSource, Window};
use workers::jobs::sweep::SweepStore;
use workers::{JobSpec, Scheduler};

use crate::actors::registry::TokenRegistry;
use crate::actors::rotation::{self, KeyRotationActor};
use crate::actors::token::RefreshReport;
use crate::app::Deps;
use crate::config::jobs::JobSettings;
use crate::crypto::Keyring;
use crate::email::Email;
use crate::events::Event;
use crate::refresh::{Need, TokenError, Trigger};
use crate::store::credentials::CredentialKey;
use crate::store::jobs::DueFilter;
use crate::store::reencrypt::Position;
use crate::store::{Store, StoreError};
use crate::telemetry::metrics as m;

fn job_error(err: StoreError) -> JobError {
    JobError::new(format!("{err:#}"))
}

/// The proactive refresh and the session sweep, against this gateway.
#[derive(Debug)]
pub struct Jobs {
    pub deps: Deps,
    pub tokens: Arc<TokenRegistry>,
    pub settings: JobSettings,
    pub backoff: ProviderBackoff,
    /// Audit records older than this are pruned by the sweep.
    pub audit_retention: std::time::Duration,
}

impl Jobs {
    pub fn refresh_config(&self) -> RefreshConfig {
        RefreshConfig {
            lead: self.settings.refresh_lead,
            long_lived_lead: self.settings.long_lived_lead,
            long_lived_providers: self.deps.providers.long_lived_ids(),
            keepalive: self.settings.keepalive,
            batch: self.settings.refresh_batch,
            concurrency: self.settings.refresh_concurrency,
            jitter: self.settings.refresh_jitter,
        }
    }

    fn key(due: &Due) -> Option<CredentialKey> {
        Some(CredentialKey { email: Email::parse(&due.email).ok()?, provider: due.provider.clone() })
    }

    /// One proactive refresh run.
    pub async fn refresh_once(&self, now: DateTime<Utc>) -> Result<workers::jobs::refresh::RefreshReport, JobError> {
        workers::jobs::refresh::run_once(self, &self.refresh_config(), &self.backoff, now).await
    }

    /// One session sweep (which also prunes the audit log past its retention).
    pub async fn sweep_once(&self, now: DateTime<Utc>) -> Result<workers::jobs::sweep::SweepReport, JobError> {
        let report = workers::jobs::sweep::run_once(self, self.settings.session_retention, now).await?;
        let before = now - TimeDelta::from_std(self.audit_retention).unwrap_or(TimeDelta::days(365));
        let pruned = self.deps.store.prune_audit(before).await.map_err(job_error)?;
        if pruned > 0 {
            tracing::info!(pruned, "audit records past their retention deleted");
        }
        Ok(report)
    }
}

impl RefreshSource for Jobs {
    async fn claim_due(&self, window: &Window, limit: usize) -> Result<Vec<Due>, JobError> {
        let filter = DueFilter {
            now: window.now,
            expiring_before: window.expiring_before,
            long_lived: window.long_lived.clone(),
            refreshed_before: window.refreshed_before,
        };
        let lease = TimeDelta::from_std(self.deps.tuning.refresh_lease).unwrap_or(TimeDelta::minutes(1));
        let claimed = self
            .deps
            .store
            .claim_due(&filter, &self.deps.instance_id, window.now + lease, limit)
            .await
            .map_err(job_error)?;
        Ok(claimed
            .into_iter()
            .map(|c| {
                let before = window
                    .long_lived
                    .iter()
                    .find(|(p, _)| *p == c.provider)
                    .map_or(window.expiring_before, |(_, b)| *b);
                let expiring = c.token_expiry.is_some_and(|e| e < before);
                Due {
                    reason: if expiring { DueReason::Expiring } else { DueReason::Keepalive },
                    email: c.email,
                    provider: c.provider,
                }
            })
            .collect())
    }

    async fn refresh(&self, due: &Due) -> Attempt {
        let Some(key) = Self::key(due) else { return Attempt::Failed };
        let (trigger, need) = match due.reason {
            DueReason::Expiring => {
                let lead = if self.deps.providers.long_lived_ids().contains(&due.provider) {
                    self.settings.long_lived_lead
                } else {
                    self.settings.refresh_lead
                };
                (Trigger::Proactive, Need::ExpiresWithin(lead))
            }
            DueReason::Keepalive => (Trigger::Keepalive, Need::Always),
        };
        match self.tokens.refresh(&key, trigger, need).await {
            Ok(RefreshReport::Refreshed) => Attempt::Refreshed,
            Ok(RefreshReport::NotNeeded) => {
                self.release(due).await;
                Attempt::NotNeeded
            }
            Ok(RefreshReport::Deferred) => Attempt::Deferred { retry_after: None },
            Err(TokenError::ProviderUnavailable { retry_after }) => {
                Attempt::Deferred { retry_after: Some(std::time::Duration::from_secs(retry_after)) }
            }
            Err(TokenError::RefreshFailed) => Attempt::Failed,
            Err(TokenError::NotAuthenticated | TokenError::Busy) => Attempt::NotNeeded,
            Err(err) => {
                tracing::warn!(provider = %due.provider, error = %err, "proactive refresh failed");
                self.release(due).await;
                Attempt::Deferred { retry_after: None }
            }
        }
    }

    async fn release(&self, due: &Due) {
        if let Some(key) = Self::key(due)
            && let Err(err) = self.deps.store.release_lease(&key, &self.deps.instance_id).await
        {
            tracing::debug!(error = %err, "could not release a refresh claim (it expires on its own)");
        }
    }
}

impl SweepStore for Jobs {
    async fn expire_pending(&self, now: DateTime<Utc>) -> Result<u64, JobError> {
        let expired = self.deps.store.expire_pending_sessions(now).await.map_err(job_error)?;
        for session in &expired {
            metrics::counter!(m::SESSIONS_FAILED, "provider" => session.provider.clone(), "reason" => "expired")
                .increment(1);
            self.deps.events.publish(Event::Session { id: session.id }).await;
        }
        Ok(expired.len() as u64)
    }

    async fn delete_finished(&self, before: DateTime<Utc>) -> Result<u64, JobError> {
        self.deps.store.delete_finished_sessions(before).await.map_err(job_error)
    }
}

/// Re-encryption against the store (also what `gateway reencrypt` runs).
#[derive(Clone, Debug)]
pub struct Reencryption {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// Open every value, write nothing.
    pub dry_run: bool,
}

impl ReencryptStore for Reencryption {
    async fn batch(&self, cursor: &Cursor, limit: usize) -> Result<Batch, JobError> {
        let position = Position { table: cursor.table, after: cursor.after.clone() };
        let outcome =
            self.store.reencrypt_batch(&self.keyring, &position, limit, self.dry_run).await.map_err(job_error)?;
        Ok(Batch {
            examined: outcome.examined,
            reencrypted: outcome.reencrypted,
            conflicts: outcome.conflicts,
            undecryptable: outcome
                .undecryptable
                .into_iter()
                .map(|(col, row)| Undecryptable { table: col.table, column: col.column, row })
                .collect(),
            next: outcome.next.map(|p| Cursor { table: p.table, after: p.after }),
        })
    }
}

/// The jobs `gateway serve` schedules (those enabled).
pub fn specs(jobs: Arc<Jobs>, rotation: Addr<KeyRotationActor>) -> Vec<JobSpec> {
    let settings = jobs.settings.clone();
    let mut specs = Vec::new();
    if let Some(schedule) = settings.proactive_refresh.0.clone() {
        let jobs = jobs.clone();
        specs.push(JobSpec::new("proactive_refresh", schedule, move |now| {
            let jobs = jobs.clone();
            async move { jobs.refresh_once(now).await.map(|r| format!("{r:?}")) }
        }));
    }
    if let Some(schedule) = settings.session_sweep.0.clone() {
        let jobs = jobs.clone();
        specs.push(JobSpec::new("session_sweep", schedule, move |now| {
            let jobs = jobs.clone();
            async move { jobs.sweep_once(now).await.map(|r| format!("{r:?}")) }
        }));
    }
    if let Some(schedule) = settings.reencrypt.0.clone() {
        let deps = jobs.deps.clone();
        specs.push(JobSpec::new("reencrypt", schedule, move |_now| {
            let (deps, rotation) = (deps.clone(), rotation.clone());
            async move { reencrypt_if_needed(&deps, &rotation).await }
        }));
    }
    if let Some(schedule) = settings.metrics_refresh.0 {
        let deps = jobs.deps.clone();
        specs.push(JobSpec::new("metrics_refresh", schedule, move |now| {
            let deps = deps.clone();
            async move {
                crate::telemetry::gauges::refresh(&deps.store, &deps.keyring, &deps.providers.ids(), now)
                    .await
                    .map(|()| "gauges refreshed".to_owned())
                    .map_err(job_error)
            }
        }));
    }
    specs
}

/// Runs re-encryption when values remain under keys other than the primary.
async fn reencrypt_if_needed(deps: &Deps, rotation: &Addr<KeyRotationActor>) -> Result<String, JobError> {
    let usage = deps.store.key_usage().await.map_err(job_error)?;
    let primary = deps.keyring.primary_id().as_str();
    let pending: u64 = usage.rows.keys().filter(|id| id.as_str() != primary).map(|id| usage.total(id)).sum();
    if pending == 0 {
        return Ok("nothing to re-encrypt".to_owned());
    }
    match rotation.send(rotation::Run).await {
        Ok(Ok(report)) => Ok(format!(
            "re-encrypted {} values ({} rows examined, {} undecryptable)",
            report.reencrypted,
            report.examined,
            report.undecryptable.len()
        )),
        Ok(Err(already)) => Ok(already),
        Err(err) => Err(JobError::new(err)),
    }
}

/// Starts the scheduler with `specs`.
pub async fn start(specs: Vec<JobSpec>, deps: &Deps) -> Result<Scheduler, JobError> {
    let clock = deps.clock.clone();
    Scheduler::start(specs, move || clock.now()).await
}
