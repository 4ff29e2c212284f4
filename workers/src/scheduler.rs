//! Runs jobs on cron schedules, never two runs of one job at once, and counts
//! and logs every run.
//!
//! Schedules are 6-field cron expressions (with seconds), validated when the
//! configuration loads (`gateway_core::config::workers::validate_schedule`, the
//! same parser). A run that fails is logged
//! and counted; the job runs again at its next tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};

use gateway_core::telemetry::metrics as m;

use crate::JobError;

/// What one run reports when it succeeds (a short summary for the log).
pub type RunResult = Result<String, JobError>;
type RunFn = dyn Fn(DateTime<Utc>) -> Pin<Box<dyn Future<Output = RunResult> + Send>> + Send + Sync;

/// A job to schedule.
#[derive(Clone)]
pub struct JobSpec {
    pub name: &'static str,
    /// 6-field cron, e.g. `*/30 * * * * *` (every 30 seconds).
    pub schedule: String,
    run: Arc<RunFn>,
    /// Held for the whole run: a tick that finds it held is skipped.
    running: Arc<Mutex<()>>,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec").field("name", &self.name).field("schedule", &self.schedule).finish()
    }
}

impl JobSpec {
    pub fn new<F, Fut>(name: &'static str, schedule: impl Into<String>, run: F) -> Self
    where
        F: Fn(DateTime<Utc>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = RunResult> + Send + 'static,
    {
        let run: Arc<RunFn> = Arc::new(move |now| Box::pin(run(now)));
        Self { name, schedule: schedule.into(), run, running: Arc::new(Mutex::new(())) }
    }

    /// Runs the job now, unless a run is already in progress (`None`).
    /// Counts, times and logs the run.
    pub async fn run_now(&self, now: DateTime<Utc>) -> Option<RunResult> {
        let Ok(_guard) = self.running.try_lock() else {
            tracing::info!(job = self.name, "previous run still in progress; skipping this tick");
            return None;
        };
        let span = tracing::info_span!("job", job = self.name);
        metrics::counter!(m::JOB_RUNS, "job" => self.name).increment(1);
        let started = Instant::now();
        let result = tracing::Instrument::instrument((self.run)(now), span.clone()).await;
        metrics::histogram!(m::JOB_DURATION, "job" => self.name).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(summary) => {
                metrics::gauge!(m::JOB_LAST_SUCCESS, "job" => self.name).set(now.timestamp() as f64);
                span.in_scope(|| tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "{summary}"));
            }
            Err(err) => {
                metrics::counter!(m::JOB_FAILURES, "job" => self.name).increment(1);
                span.in_scope(|| tracing::warn!(error = %err, "job run failed; it runs again at its next tick"));
            }
        }
        Some(result)
    }
}

/// The running scheduler. Dropping it does not stop it: call [`Scheduler::shutdown`].
pub struct Scheduler {
    inner: JobScheduler,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scheduler")
    }
}

impl Scheduler {
    /// Schedules `jobs` and starts ticking. `now` gives each run its time (the
    /// gateway's clock).
    pub async fn start(
        jobs: Vec<JobSpec>,
        now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
    ) -> Result<Self, JobError> {
        let inner = JobScheduler::new().await?;
        let now = Arc::new(now);
        for spec in jobs {
            let (name, schedule) = (spec.name, spec.schedule.clone());
            // A scheduled job counts as fresh at start: JobStale then fires
            // only if it does not succeed within its threshold from now.
            metrics::gauge!(m::JOB_LAST_SUCCESS, "job" => name).set(now().timestamp() as f64);
            let now = now.clone();
            let job = Job::new_async(schedule.as_str(), move |_, _| {
                let (spec, now) = (spec.clone(), now.clone());
                Box::pin(async move {
                    spec.run_now(now()).await;
                })
            })
            .map_err(|source| JobError::Schedule { job: name, schedule: schedule.clone(), source })?;
            inner.add(job).await?;
            tracing::info!(job = name, %schedule, "job scheduled");
        }
        inner.start().await?;
        Ok(Self { inner })
    }

    pub async fn shutdown(mut self) {
        if let Err(err) = self.inner.shutdown().await {
            tracing::warn!(error = %err, "scheduler did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::config::workers::validate_schedule;

    use super::*;

    #[test]
    fn schedules_are_validated() {
        assert!(validate_schedule("*/30 * * * * *").is_ok());
        assert!(validate_schedule("0 */5 * * * *").is_ok());
        assert!(validate_schedule("every minute").is_err());
        assert!(validate_schedule("61 * * * * *").is_err());
    }

    #[tokio::test]
    async fn a_job_never_overlaps_itself() {
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let wait = Arc::new(Mutex::new(Some(wait)));
        let spec = JobSpec::new("test", "* * * * * *", move |_| {
            let wait = wait.clone();
            async move {
                if let Some(rx) = wait.lock().await.take() {
                    let _ = rx.await;
                }
                Ok("done".to_owned())
            }
        });
        let first = tokio::spawn({
            let spec = spec.clone();
            async move { spec.run_now(gateway_core::clock::Clock::system().now()).await }
        });
        // The first run holds the guard until released; wait (bounded) until it does.
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while spec.running.try_lock().is_ok() {
            assert!(Instant::now() < deadline, "the first run never started");
            tokio::task::yield_now().await;
        }
        assert!(
            spec.run_now(gateway_core::clock::Clock::system().now()).await.is_none(),
            "a second run while the first is in progress is skipped"
        );
        release.send(()).unwrap();
        assert!(matches!(first.await.unwrap(), Some(Ok(done)) if done == "done"));
        assert!(
            spec.run_now(gateway_core::clock::Clock::system().now()).await.is_some(),
            "runs again once the first finished"
        );
    }

    #[tokio::test]
    async fn a_failed_run_is_reported_not_fatal() {
        let unavailable = || gateway_core::StoreError::Corrupt("database unavailable".into());
        let spec = JobSpec::new("failing", "* * * * * *", move |_| async move { Err(JobError::Store(unavailable())) });
        assert!(matches!(
            spec.run_now(gateway_core::clock::Clock::system().now()).await,
            Some(Err(JobError::Store(_)))
        ));
        assert!(spec.run_now(gateway_core::clock::Clock::system().now()).await.is_some());
    }
}
