//! Names of the metrics the scheduler records (the gateway's catalogue lists
//! them with the rest).

/// Counter, label `job`: runs started.
pub const JOB_RUNS: &str = "job_runs_total";
/// Counter, label `job`: runs that failed.
pub const JOB_FAILURES: &str = "job_failures_total";
/// Histogram (seconds), label `job`.
pub const JOB_DURATION: &str = "job_duration_seconds";
/// Gauge, label `job`: Unix time of the last successful run.
pub const JOB_LAST_SUCCESS: &str = "job_last_success_timestamp_seconds";
