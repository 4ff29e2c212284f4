//! Settings of the scheduled jobs: schedules (6-field cron, validated here),
//! on/off switches, and each job's limits.

use std::time::Duration;

use super::{ConfigErrors, Source};

/// One job's schedule, or `None` when disabled (`JOB_<NAME>_ENABLED=false`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule(pub Option<String>);

#[derive(Clone, Debug)]
pub struct JobSettings {
    pub proactive_refresh: Schedule,
    pub session_sweep: Schedule,
    pub reencrypt: Schedule,
    pub metrics_refresh: Schedule,
    /// Webhook fan-out and delivery (`JOB_WEBHOOK_DELIVERY_*`, every 2 s).
    pub webhook_delivery: Schedule,
    /// Retries of revocations providers could not take (`JOB_REVOCATION_RETRY_*`, every minute).
    pub revocation_retry: Schedule,
    /// Probes of idle grants (`JOB_CONNECTION_PROBE_*`, off unless enabled; every 10 minutes).
    pub connection_probe: Schedule,
    /// Refresh tokens expiring within this (`REFRESH_LEAD_MINUTES`, default 10).
    pub refresh_lead: Duration,
    /// Lead for long-lived tokens renewed by exchange (`LONG_LIVED_REFRESH_LEAD_DAYS`, default 7).
    pub long_lived_lead: Duration,
    /// Refresh credentials nobody refreshed for this long (`REFRESH_KEEPALIVE_HOURS`, default 24).
    pub keepalive: Duration,
    /// Refresh ahead of expiry only credentials used (or authorized) within
    /// this (`REFRESH_ACTIVE_HOURS`, default 36; `None` with 0: every one).
    pub active: Option<Duration>,
    /// Credentials claimed at a time (`REFRESH_BATCH_SIZE`, default 500); a
    /// run claims batch after batch while credentials remain due.
    pub refresh_batch: usize,
    /// Refresh calls in flight at once, all providers together
    /// (`REFRESH_CONCURRENCY`, default 128).
    pub refresh_concurrency: usize,
    /// Refresh calls in flight at once to any one provider
    /// (`REFRESH_PROVIDER_CONCURRENCY`, default 96).
    pub refresh_provider_concurrency: usize,
    /// A run stops claiming after this (`REFRESH_RUN_SECONDS`, default 20),
    /// finishes what it claimed, and leaves the rest to the next tick.
    pub refresh_run_budget: Duration,
    pub refresh_jitter: Duration,
    /// Finished sessions are deleted after this (`SESSION_RETENTION_HOURS`, default 24).
    pub session_retention: Duration,
    pub reencrypt_batch: usize,
    /// `REENCRYPT_MAX_ROWS_PER_SECOND` (0: unthrottled).
    pub reencrypt_rate: Option<u32>,
}

/// Refresh calls in flight at once, all providers together. A million
/// credentials on one-hour tokens need about 280 refreshes a second; at a
/// provider answering in 150 ms that takes 42 calls in flight, and the
/// capacity target (500/s) takes 75. 128 leaves room for slower answers and
/// for a second provider without letting one run open hundreds of sockets.
pub const DEFAULT_REFRESH_CONCURRENCY: u64 = 128;
/// Refresh calls in flight at once to any one provider. 96 calls at 150 ms
/// are about 640 token requests a second: above the 500/s target with room
/// for our own per-refresh database work, and a load that large providers'
/// token endpoints (Google's, Microsoft's) absorb as routine, yet well below
/// the total so that one provider cannot take every slot. Lower it for a
/// small self-hosted identity provider.
pub const DEFAULT_PROVIDER_CONCURRENCY: u64 = 96;
/// How long a proactive refresh run keeps claiming: shorter than the default
/// 30-second schedule, so the run (which finishes what it claimed) is over
/// before the next tick instead of making the scheduler skip it.
pub const DEFAULT_RUN_SECONDS: u64 = 20;

/// (name, default schedule, on by default).
const JOBS: [(&str, &str, bool); 7] = [
    ("PROACTIVE_REFRESH", "*/30 * * * * *", true),
    ("SESSION_SWEEP", "0 * * * * *", true),
    ("REENCRYPT", "0 */5 * * * *", true),
    ("METRICS_REFRESH", "*/15 * * * * *", true),
    ("WEBHOOK_DELIVERY", "*/2 * * * * *", true),
    ("REVOCATION_RETRY", "30 * * * * *", true),
    // It calls providers for idle users: an operator's choice.
    ("CONNECTION_PROBE", "0 */10 * * * *", false),
];

fn schedule(src: &Source, job: &str, default: &str, on: bool, errs: &mut ConfigErrors) -> Schedule {
    let enabled_var = format!("JOB_{job}_ENABLED");
    let enabled = src.flag(&enabled_var, on, errs);
    let var = format!("JOB_{job}_SCHEDULE");
    let expr = src.get_or(&var, default);
    if let Err(problem) = validate_schedule(&expr) {
        errs.push(
            &var,
            format!("is not a cron schedule ({problem})"),
            "use six fields with seconds, e.g. \"*/30 * * * * *\"",
        );
    }
    Schedule(enabled.then_some(expr))
}

pub fn parse(src: &Source, refresh_buffer: Option<Duration>, errs: &mut ConfigErrors) -> JobSettings {
    let [refresh, sweep, reencrypt, metrics, webhooks, revocations, probe] =
        JOBS.map(|(job, default, on)| schedule(src, job, default, on, errs));
    let minutes = |n: u64| Duration::from_secs(n * 60);
    let refresh_lead = minutes(src.number("REFRESH_LEAD_MINUTES", 10, 1..=1440, "minutes", errs).unwrap_or(10));
    if let Some(buffer) = refresh_buffer
        && refresh_lead <= buffer
    {
        errs.push(
            "REFRESH_LEAD_MINUTES",
            "is not longer than TOKEN_REFRESH_BUFFER_SECONDS, so requests would refresh before the worker does",
            "make the lead window longer than the request path's buffer",
        );
    }
    JobSettings {
        proactive_refresh: refresh,
        session_sweep: sweep,
        reencrypt,
        metrics_refresh: metrics,
        webhook_delivery: webhooks,
        revocation_retry: revocations,
        connection_probe: probe,
        refresh_lead,
        long_lived_lead: Duration::from_secs(
            86_400 * src.number("LONG_LIVED_REFRESH_LEAD_DAYS", 7, 1..=59, "days", errs).unwrap_or(7),
        ),
        keepalive: Duration::from_secs(
            3600 * src.number("REFRESH_KEEPALIVE_HOURS", 24, 1..=8760, "hours", errs).unwrap_or(24),
        ),
        active: match src.number("REFRESH_ACTIVE_HOURS", 36, 0..=8760, "hours (0: every credential)", errs) {
            Some(0) => None,
            hours => Some(Duration::from_secs(3600 * hours.unwrap_or(36))),
        },
        refresh_batch: src.number("REFRESH_BATCH_SIZE", 500, 1..=10_000, "credentials", errs).unwrap_or(500) as usize,
        refresh_concurrency: src
            .number("REFRESH_CONCURRENCY", DEFAULT_REFRESH_CONCURRENCY, 1..=1024, "calls", errs)
            .unwrap_or(DEFAULT_REFRESH_CONCURRENCY) as usize,
        refresh_provider_concurrency: src
            .number("REFRESH_PROVIDER_CONCURRENCY", DEFAULT_PROVIDER_CONCURRENCY, 1..=1024, "calls per provider", errs)
            .unwrap_or(DEFAULT_PROVIDER_CONCURRENCY) as usize,
        refresh_run_budget: Duration::from_secs(
            src.number("REFRESH_RUN_SECONDS", DEFAULT_RUN_SECONDS, 1..=3600, "seconds", errs)
                .unwrap_or(DEFAULT_RUN_SECONDS),
        ),
        refresh_jitter: Duration::from_secs(
            src.number("REFRESH_JITTER_SECONDS", 2, 0..=60, "seconds", errs).unwrap_or(2),
        ),
        session_retention: Duration::from_secs(
            3600 * src.number("SESSION_RETENTION_HOURS", 24, 1..=8760, "hours", errs).unwrap_or(24),
        ),
        reencrypt_batch: src.number("REENCRYPT_BATCH_SIZE", 500, 1..=10_000, "rows", errs).unwrap_or(500) as usize,
        reencrypt_rate: match src.number("REENCRYPT_MAX_ROWS_PER_SECOND", 5000, 0..=1_000_000, "rows per second", errs)
        {
            Some(0) | None => None,
            Some(n) => u32::try_from(n).ok(),
        },
    }
}

/// Whether `schedule` is a cron expression the scheduler accepts (six
/// fields, seconds first). The same parser the scheduler runs.
pub fn validate_schedule(schedule: &str) -> Result<(), tokio_cron_scheduler::JobSchedulerError> {
    tokio_cron_scheduler::Job::new_async(schedule, |_, _| Box::pin(async {})).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_switches() {
        let mut errs = ConfigErrors::default();
        let jobs =
            parse(&Source::from_pairs([("JOB_REENCRYPT_ENABLED", "false")]), Some(Duration::from_secs(300)), &mut errs);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(jobs.proactive_refresh, Schedule(Some("*/30 * * * * *".into())));
        assert_eq!(jobs.reencrypt, Schedule(None));
        assert_eq!(jobs.connection_probe, Schedule(None), "probing providers is opt-in");
        assert_eq!(jobs.webhook_delivery, Schedule(Some("*/2 * * * * *".into())));
        assert_eq!(jobs.refresh_lead, Duration::from_secs(600));
        assert_eq!((jobs.refresh_concurrency, jobs.refresh_provider_concurrency), (128, 96));
        assert_eq!(jobs.refresh_run_budget, Duration::from_secs(20));
    }

    #[test]
    fn bad_schedules_and_a_lead_inside_the_buffer_are_errors() {
        let mut errs = ConfigErrors::default();
        parse(
            &Source::from_pairs([("JOB_SESSION_SWEEP_SCHEDULE", "every minute"), ("REFRESH_LEAD_MINUTES", "5")]),
            Some(Duration::from_secs(600)),
            &mut errs,
        );
        assert!(errs.names("JOB_SESSION_SWEEP_SCHEDULE") && errs.names("REFRESH_LEAD_MINUTES"), "{errs}");
    }
}
