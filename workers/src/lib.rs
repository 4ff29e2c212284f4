//! The gateway's scheduled jobs.
//!
//! This crate owns *when* and *how much*: the schedule, never running a job
//! twice at once, pacing (jitter, concurrency bounds, per-provider backoff,
//! throttled batches), and the counting and logging of every run. *What* a
//! job does to the database or to a credential is the gateway's: each job
//! states what it needs as a trait ([`jobs::refresh::RefreshSource`],
//! [`jobs::sweep::SweepStore`], [`jobs::reencrypt::ReencryptStore`]) and the
//! gateway implements it. So this crate depends on nothing of the gateway's,
//! and `gateway serve` starts the [`scheduler::Scheduler`].
//!
//! Every job exposes an idempotent `run_once(.., now)` that tests call
//! directly; the scheduler only schedules, logs and counts.

pub mod jobs;
pub mod metric_names;
pub mod scheduler;

pub use jobs::JobError;
pub use scheduler::{JobSpec, Scheduler, validate_schedule};
