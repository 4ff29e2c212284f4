//! The gateway's scheduled jobs, each end to end in one module:
//!
//! | module | job | default schedule |
//! |---|---|---|
//! | [`refresh`] | `proactive_refresh`: refresh credentials before they expire; keep idle grants alive | every 30 s |
//! | [`sweep`] + [`audit_prune`] | `session_sweep`: fail expired pending sessions, delete old finished ones, prune the audit log | every minute |
//! | [`reencrypt`] | `reencrypt`: re-encrypt values under old keys (when any remain), with the `KeyRotationActor` | every 5 minutes |
//! | [`gauges`] | `metrics_refresh`: recompute the database gauges | every 15 s |
//! | [`webhooks`] | `webhook_delivery`: fan events out, deliver them signed, retry, dead-letter | every 2 s |
//! | [`revocations`] | `revocation_retry`: revocations a provider could not take yet | every minute |
//! | [`probe`] | `connection_probe`: prove idle grants still work (opt-in) | every 10 minutes |
//!
//! **What it owns.** When each job runs ([`scheduler`]: cron schedules,
//! never two runs of one job at once, every run counted and logged) and what
//! it does, through the core's [`Services`]. Every
//! job exposes an idempotent `run_once(.., now)` that tests call directly.
//!
//! **What it must not do.** Reach the database other than through the core's
//! services, or know about HTTP. The `gateway` crate depends on this one (and
//! reaches the core through [`core`]); this one never on the `gateway`.

pub use gateway_core as core;

pub mod audit_prune;
pub mod gauges;
pub mod probe;
pub mod reencrypt;
pub mod refresh;
pub mod revocations;
pub mod scheduler;
pub mod sweep;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use chrono::{DateTime, Utc};
use gateway_core::Services;
use gateway_core::config::workers::{JobSettings, Schedule};

pub use scheduler::{JobSpec, RunResult, Scheduler};

/// Why a job run (or the scheduler) failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("database: {0}")]
    Store(#[from] gateway_core::StoreError),
    #[error("the scheduler failed")]
    Scheduler(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("job {job}: schedule {schedule:?} was refused")]
    Schedule {
        job: &'static str,
        schedule: String,
        #[source]
        source: tokio_cron_scheduler::JobSchedulerError,
    },
    #[error("the key rotation actor is unavailable")]
    Rotation(#[from] actix::MailboxError),
}

/// Every job, ready to run by hand (tests, admin) or on its schedule.
#[derive(Debug)]
pub struct Workers {
    services: Services,
    settings: JobSettings,
    backoff: refresh::ProviderBackoff,
    /// Audit records older than this are pruned with each session sweep.
    audit_retention: Duration,
    rotation: Addr<reencrypt::KeyRotationActor>,
}

impl Workers {
    /// The jobs for `services`; starts the key rotation actor on the core's
    /// actor system.
    pub fn new(services: Services, settings: JobSettings, audit_retention: Duration) -> Arc<Self> {
        let config = reencrypt::ReencryptConfig {
            batch_size: settings.reencrypt_batch,
            max_rows_per_second: settings.reencrypt_rate,
        };
        let actor_services = services.clone();
        let rotation = reencrypt::KeyRotationActor::start_in_arbiter(&services.arbiter(), move |_| {
            reencrypt::KeyRotationActor::new(actor_services, config)
        });
        Arc::new(Self { services, settings, backoff: Default::default(), audit_retention, rotation })
    }

    /// Re-encryption's state, for the admin endpoints.
    pub fn rotation(&self) -> &Addr<reencrypt::KeyRotationActor> {
        &self.rotation
    }

    /// One proactive refresh run.
    pub async fn refresh_once(&self, now: DateTime<Utc>) -> Result<refresh::RefreshReport, JobError> {
        refresh::run_once(&self.services, &self.refresh_config(), &self.backoff, now).await
    }

    /// One session sweep, with the audit log's pruning.
    pub async fn sweep_once(&self, now: DateTime<Utc>) -> Result<sweep::SweepReport, JobError> {
        let report = sweep::run_once(&self.services, self.settings.session_retention, now).await?;
        audit_prune::run_once(&self.services, self.audit_retention, now).await?;
        Ok(report)
    }

    /// Recomputes the database gauges.
    pub async fn gauges_once(&self, now: DateTime<Utc>) -> Result<(), JobError> {
        gauges::run_once(&self.services, now).await
    }

    /// One webhook delivery run.
    pub async fn webhooks_once(
        &self,
        now: DateTime<Utc>,
    ) -> Result<gateway_core::webhooks::delivery::DeliveryReport, JobError> {
        webhooks::run_once(&self.services, now).await
    }

    /// One run of revocation retries.
    pub async fn revocations_once(
        &self,
        now: DateTime<Utc>,
    ) -> Result<gateway_core::credentials::revocations::RevocationReport, JobError> {
        revocations::run_once(&self.services, now).await
    }

    /// One probe of idle grants.
    pub async fn probe_once(&self, now: DateTime<Utc>) -> Result<gateway_core::operations::ProbeReport, JobError> {
        probe::run_once(&self.services, now).await
    }

    fn refresh_config(&self) -> refresh::RefreshConfig {
        refresh::RefreshConfig {
            due: gateway_core::credentials::due::DuePolicy {
                lead: self.settings.refresh_lead,
                long_lived_lead: self.settings.long_lived_lead,
                keepalive: self.settings.keepalive,
                active: self.settings.active,
            },
            batch: self.settings.refresh_batch,
            concurrency: self.settings.refresh_concurrency,
            provider_concurrency: self.settings.refresh_provider_concurrency,
            budget: self.settings.refresh_run_budget,
            jitter: self.settings.refresh_jitter,
        }
    }

    /// The jobs that are enabled, on their schedules.
    pub fn specs(self: &Arc<Self>) -> Vec<JobSpec> {
        let s = &self.settings;
        [
            self.spec("proactive_refresh", &s.proactive_refresh, |w, now| async move {
                w.refresh_once(now).await.map(|r| format!("{r:?}"))
            }),
            self.spec("session_sweep", &s.session_sweep, |w, now| async move {
                w.sweep_once(now).await.map(|r| format!("{r:?}"))
            }),
            self.spec("reencrypt", &s.reencrypt, |w, _| async move {
                reencrypt::run_if_needed(&w.services, &w.rotation).await
            }),
            self.spec("metrics_refresh", &s.metrics_refresh, |w, now| async move {
                w.gauges_once(now).await.map(|()| "gauges refreshed".to_owned())
            }),
            self.spec("webhook_delivery", &s.webhook_delivery, |w, now| async move {
                w.webhooks_once(now).await.map(|r| format!("{r:?}"))
            }),
            self.spec("revocation_retry", &s.revocation_retry, |w, now| async move {
                w.revocations_once(now).await.map(|r| format!("{r:?}"))
            }),
            self.spec("connection_probe", &s.connection_probe, |w, now| async move {
                w.probe_once(now).await.map(|r| format!("{r:?}"))
            }),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The job `name` running `run` on `schedule`, if it is enabled.
    fn spec<F, Fut>(self: &Arc<Self>, name: &'static str, schedule: &Schedule, run: F) -> Option<JobSpec>
    where
        F: Fn(Arc<Self>, DateTime<Utc>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = RunResult> + Send + 'static,
    {
        let schedule = schedule.0.clone()?;
        let this = self.clone();
        Some(JobSpec::new(name, schedule, move |now| run(this.clone(), now)))
    }

    /// Starts the scheduler with every enabled job.
    pub async fn start_scheduler(self: &Arc<Self>) -> Result<Scheduler, JobError> {
        let clock = self.services.clock().clone();
        Scheduler::start(self.specs(), move || clock.now()).await
    }
}
