//! Re-encryption after a key rotation: every stored value whose key id is not
//! the primary's is opened with its old key and sealed again under the
//! primary, in batches.
//!
//! The store does each batch in one short transaction, claiming its rows (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas take different rows)
//! and writing each value only if it is still the one it read (so a token
//! refreshed meanwhile is never overwritten with its old value). The walk
//! goes through each table in row-id order behind a cursor, so a value that
//! no configured key can open is passed over, reported and left untouched,
//! never retried forever. Killing the process at any instant loses nothing:
//! a batch either committed or did not, and the next run starts again.
//!
//! Here: the loop, the pause switch, the throttle and the progress report;
//! the [`KeyRotationActor`] that holds re-encryption's state for the admin
//! endpoints; and the scheduled job that starts it when values remain under
//! old keys.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use actix::prelude::*;
use gateway_core::Services;
use gateway_core::keys::Position;

use crate::JobError;

/// Where the walk is: which table, and the last row id done in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub table: usize,
    pub after: Option<String>,
}

/// A value no configured key can decrypt (left untouched).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecryptable {
    pub table: &'static str,
    pub column: &'static str,
    pub row: String,
}

/// What one batch did.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Rows looked at.
    pub examined: u64,
    /// Values sealed again under the primary key.
    pub reencrypted: u64,
    /// Values that changed between read and write (someone else wrote them).
    pub conflicts: u64,
    pub undecryptable: Vec<Undecryptable>,
    /// `None` when the walk is over.
    pub next: Option<Cursor>,
}

#[derive(Clone, Debug)]
pub struct ReencryptConfig {
    pub batch_size: usize,
    /// Throttle: at most this many rows per second (`None`: as fast as it goes).
    pub max_rows_per_second: Option<u32>,
}

impl Default for ReencryptConfig {
    fn default() -> Self {
        Self { batch_size: 500, max_rows_per_second: Some(5_000) }
    }
}

/// Progress so far, handed to the caller after every batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    pub batches: u64,
    pub examined: u64,
    pub reencrypted: u64,
    pub conflicts: u64,
    pub undecryptable: Vec<Undecryptable>,
    /// The walk reached its end (false when paused).
    pub finished: bool,
}

/// One batch through the core (`dry_run`: open every value, write nothing).
pub async fn core_batch(services: &Services, cursor: Cursor, limit: usize, dry_run: bool) -> Result<Batch, JobError> {
    let position = Position { table: cursor.table, after: cursor.after };
    Ok(services.reencrypt_batch(&position, limit, dry_run).await?.into())
}

impl From<gateway_core::keys::BatchOutcome> for Batch {
    fn from(outcome: gateway_core::keys::BatchOutcome) -> Self {
        Self {
            examined: outcome.examined,
            reencrypted: outcome.reencrypted,
            conflicts: outcome.conflicts,
            undecryptable: outcome
                .undecryptable
                .into_iter()
                .map(|(col, row)| Undecryptable { table: col.table, column: col.column, row })
                .collect(),
            next: outcome.next.map(|p| Cursor { table: p.table, after: p.after }),
        }
    }
}

/// Runs the walk to its end, or until `pause` is set (checked between
/// batches). `batch` re-encrypts up to `limit` rows after a cursor (the
/// core's [`Services::reencrypt_batch`] or the command line's); `progress`
/// sees the report after every batch.
pub async fn run_once<B, Fut>(
    batch: B,
    config: &ReencryptConfig,
    pause: &AtomicBool,
    progress: impl Fn(&ReencryptReport),
) -> Result<ReencryptReport, JobError>
where
    B: Fn(Cursor, usize) -> Fut,
    Fut: Future<Output = Result<Batch, JobError>>,
{
    let mut report = ReencryptReport::default();
    let mut cursor = Some(Cursor::default());
    let started = Instant::now();
    while let Some(current) = cursor {
        if pause.load(Ordering::Relaxed) {
            return Ok(report);
        }
        let batch = batch(current, config.batch_size.max(1)).await?;
        report.batches += 1;
        report.examined += batch.examined;
        report.reencrypted += batch.reencrypted;
        report.conflicts += batch.conflicts;
        report.undecryptable.extend(batch.undecryptable);
        cursor = batch.next;
        progress(&report);
        if let Some(rate) = config.max_rows_per_second.filter(|r| *r > 0) {
            // Keep the average at or below `rate`, so request traffic keeps its latency.
            let due = Duration::from_secs_f64(report.examined as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    report.finished = true;
    Ok(report)
}

// ---- the KeyRotationActor ---------------------------------------------------
//
// **State**: the phase (idle / running / paused / done), the progress of the
// current or last walk, its rate; the pause switch the walk checks between
// batches. **Lifetime**: the whole process; one instance. **Who holds its
// address**: [`crate::Workers`] (the `reencrypt` job and the admin endpoints).
// The walk itself runs on the main runtime and reports after every batch.

/// Why a [`Run`] did not re-encrypt to the end.
#[derive(Debug, thiserror::Error)]
pub enum RunRefused {
    #[error("re-encryption is already running")]
    AlreadyRunning,
    #[error("re-encryption stopped: {0}")]
    Failed(#[source] JobError),
    #[error("the re-encryption task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Runs re-encryption when values remain under keys other than the primary
/// (the scheduled `reencrypt` job).
pub async fn run_if_needed(services: &Services, rotation: &Addr<KeyRotationActor>) -> Result<String, JobError> {
    let pending = services.key_report().await?.pending_values;
    if pending == 0 {
        return Ok("nothing to re-encrypt".to_owned());
    }
    match rotation.send(Run).await? {
        Ok(report) => Ok(format!(
            "re-encrypted {} values ({} rows examined, {} undecryptable)",
            report.reencrypted,
            report.examined,
            report.undecryptable.len()
        )),
        Err(RunRefused::AlreadyRunning) => Ok(RunRefused::AlreadyRunning.to_string()),
        Err(RunRefused::Failed(err)) => Err(err),
        Err(refused @ RunRefused::Task(_)) => Ok(refused.to_string()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Running,
    Paused,
    Done,
}

/// What `GET /admin/keys` reports about re-encryption.
#[derive(Clone, Debug)]
pub struct RotationProgress {
    pub state: Phase,
    /// Rows looked at by the current (or last) walk.
    pub examined: u64,
    pub reencrypted: u64,
    /// Values no configured key could open (left untouched).
    pub undecryptable: Vec<UndecryptableValue>,
    /// Values re-encrypted per second by the current (or last) walk.
    pub rate_per_second: f64,
}

#[derive(Clone, Debug)]
pub struct UndecryptableValue {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: String,
}

/// Start (or resume) re-encryption and wait for the walk to end; `Err` when
/// one is already running.
#[derive(Message)]
#[rtype(result = "Result<ReencryptReport, RunRefused>")]
pub struct Run;

/// Stop the running walk after its current batch.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Pause;

#[derive(Message)]
#[rtype(result = "RotationProgress")]
pub struct Progress;

#[derive(Message)]
#[rtype(result = "()")]
struct Report(ReencryptReport);

pub struct KeyRotationActor {
    services: Services,
    config: ReencryptConfig,
    phase: Phase,
    pause: Arc<AtomicBool>,
    report: ReencryptReport,
    started: Option<Instant>,
    elapsed_secs: f64,
}

impl KeyRotationActor {
    pub fn new(services: Services, config: ReencryptConfig) -> Self {
        Self {
            services,
            config,
            phase: Phase::Idle,
            pause: Arc::new(AtomicBool::new(false)),
            report: ReencryptReport::default(),
            started: None,
            elapsed_secs: 0.0,
        }
    }
}

impl Actor for KeyRotationActor {
    type Context = Context<Self>;
}

impl Handler<Run> for KeyRotationActor {
    type Result = ResponseActFuture<Self, Result<ReencryptReport, RunRefused>>;

    fn handle(&mut self, _msg: Run, ctx: &mut Self::Context) -> Self::Result {
        if self.phase == Phase::Running {
            return Box::pin(actix::fut::ready(Err(RunRefused::AlreadyRunning)));
        }
        self.phase = Phase::Running;
        self.pause.store(false, Ordering::Relaxed);
        self.report = ReencryptReport::default();
        self.started = Some(Instant::now());
        let (services, config, pause, me) =
            (self.services.clone(), self.config.clone(), self.pause.clone(), ctx.address());
        let walk = tokio::runtime::Handle::current().spawn(async move {
            let batch = |cursor, limit| core_batch(&services, cursor, limit, false);
            let result = run_once(batch, &config, &pause, |report| me.do_send(Report(report.clone()))).await;
            if let Ok(report) = &result
                && report.finished
            {
                let event = gateway_core::webhooks::Event::reencryption_finished(
                    &services.keyring().primary_id().to_string(),
                    report.reencrypted,
                    report.undecryptable.len(),
                );
                if let Err(err) = services.emit(&event).await {
                    tracing::warn!(error = %err, "could not record the end of re-encryption for webhooks");
                }
            }
            result
        });
        Box::pin(actix::fut::wrap_future(walk).map(|result, act: &mut Self, _| {
            act.elapsed_secs = act.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            match result {
                Ok(Ok(report)) => {
                    act.phase = if report.finished { Phase::Done } else { Phase::Paused };
                    act.report = report.clone();
                    Ok(report)
                }
                Ok(Err(err)) => {
                    act.phase = Phase::Paused;
                    Err(RunRefused::Failed(err))
                }
                Err(join) => {
                    act.phase = Phase::Paused;
                    Err(RunRefused::Task(join))
                }
            }
        }))
    }
}

impl Handler<Report> for KeyRotationActor {
    type Result = ();

    fn handle(&mut self, msg: Report, _ctx: &mut Self::Context) {
        metrics::gauge!(gateway_core::telemetry::metrics::REENCRYPTION_UNDECRYPTABLE)
            .set(msg.0.undecryptable.len() as f64);
        self.report = msg.0;
    }
}

impl Handler<Pause> for KeyRotationActor {
    type Result = bool;

    fn handle(&mut self, _msg: Pause, _ctx: &mut Self::Context) -> bool {
        let running = self.phase == Phase::Running;
        self.pause.store(true, Ordering::Relaxed);
        running
    }
}

impl Handler<Progress> for KeyRotationActor {
    type Result = MessageResult<Progress>;

    fn handle(&mut self, _msg: Progress, _ctx: &mut Self::Context) -> Self::Result {
        let elapsed = match (self.phase, self.started) {
            (Phase::Running, Some(started)) => started.elapsed().as_secs_f64(),
            _ => self.elapsed_secs,
        };
        MessageResult(RotationProgress {
            state: self.phase,
            examined: self.report.examined,
            reencrypted: self.report.reencrypted,
            undecryptable: self
                .report
                .undecryptable
                .iter()
                .map(|u| UndecryptableValue { table: u.table, column: u.column, row_id: u.row.clone() })
                .collect(),
            rate_per_second: if elapsed > 0.0 { self.report.reencrypted as f64 / elapsed } else { 0.0 },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A walk over `rows` rows in one table; row 3 is undecryptable.
    struct Rows {
        rows: u64,
        done: Mutex<u64>,
    }

    impl Rows {
        fn batch(&self, cursor: Cursor, limit: usize) -> Result<Batch, JobError> {
            let start: u64 = cursor.after.as_deref().map_or(0, |a| a.parse().unwrap());
            let end = (start + limit as u64).min(self.rows);
            let undecryptable: Vec<_> = (start..end)
                .filter(|r| *r == 3)
                .map(|r| Undecryptable { table: "t", column: "c", row: r.to_string() })
                .collect();
            let reencrypted = end - start - undecryptable.len() as u64;
            *self.done.lock().unwrap() += reencrypted;
            let next = (end < self.rows).then(|| Cursor { table: 0, after: Some(end.to_string()) });
            Ok(Batch { examined: end - start, reencrypted, conflicts: 0, undecryptable, next })
        }
    }

    #[tokio::test]
    async fn walks_to_the_end_reporting_what_it_cannot_open() {
        let store = Rows { rows: 10, done: Mutex::new(0) };
        let seen = Mutex::new(Vec::new());
        let config = ReencryptConfig { batch_size: 4, max_rows_per_second: None };
        let report = run_once(
            |c, l| std::future::ready(store.batch(c, l)),
            &config,
            &AtomicBool::new(false),
            |r| seen.lock().unwrap().push(r.examined),
        )
        .await
        .unwrap();
        assert!(report.finished);
        assert_eq!((report.batches, report.examined, report.reencrypted), (3, 10, 9));
        assert_eq!(report.undecryptable, vec![Undecryptable { table: "t", column: "c", row: "3".into() }]);
        assert_eq!(*seen.lock().unwrap(), vec![4, 8, 10]);
    }

    #[tokio::test]
    async fn a_paused_walk_stops_between_batches() {
        let store = Rows { rows: 10, done: Mutex::new(0) };
        let report = run_once(
            |c, l| std::future::ready(store.batch(c, l)),
            &ReencryptConfig::default(),
            &AtomicBool::new(true),
            |_| {},
        )
        .await
        .unwrap();
        assert!(!report.finished);
        assert_eq!(report.batches, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_keeps_the_average_rate() {
        let store = Rows { rows: 1000, done: Mutex::new(0) };
        let config = ReencryptConfig { batch_size: 100, max_rows_per_second: Some(500) };
        let started = tokio::time::Instant::now();
        run_once(|c, l| std::future::ready(store.batch(c, l)), &config, &AtomicBool::new(false), |_| {}).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "1000 rows at 500/s take two seconds, took {took:?}"
        );
    }
}
