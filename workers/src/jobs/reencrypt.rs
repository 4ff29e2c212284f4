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
//! Here: the loop, the pause switch, the throttle and the progress report.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::JobError;

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

/// What re-encryption needs from the store.
pub trait ReencryptStore: Send + Sync {
    /// Re-encrypts the values of up to `limit` rows after `cursor`.
    fn batch(&self, cursor: &Cursor, limit: usize) -> impl Future<Output = Result<Batch, JobError>> + Send;
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

/// Runs the walk to its end, or until `pause` is set (checked between
/// batches). `progress` sees the report after every batch.
pub async fn run_once<S: ReencryptStore>(
    store: &S,
    config: &ReencryptConfig,
    pause: &AtomicBool,
    progress: impl Fn(&ReencryptReport),
) -> Result<ReencryptReport, JobError> {
    let mut report = ReencryptReport::default();
    let mut cursor = Some(Cursor::default());
    let started = Instant::now();
    while let Some(current) = cursor {
        if pause.load(Ordering::Relaxed) {
            return Ok(report);
        }
        let batch = store.batch(&current, config.batch_size.max(1)).await?;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A walk over `rows` rows in one table; row 3 is undecryptable.
    struct Rows {
        rows: u64,
        done: Mutex<u64>,
    }

    impl ReencryptStore for Rows {
        async fn batch(&self, cursor: &Cursor, limit: usize) -> Result<Batch, JobError> {
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
        let report = run_once(&store, &config, &AtomicBool::new(false), |r| seen.lock().unwrap().push(r.examined))
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
        let report = run_once(&store, &ReencryptConfig::default(), &AtomicBool::new(true), |_| {}).await.unwrap();
        assert!(!report.finished);
        assert_eq!(report.batches, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_keeps_the_average_rate() {
        let store = Rows { rows: 1000, done: Mutex::new(0) };
        let config = ReencryptConfig { batch_size: 100, max_rows_per_second: Some(500) };
        let started = tokio::time::Instant::now();
        run_once(&store, &config, &AtomicBool::new(false), |_| {}).await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "1000 rows at 500/s take two seconds, took {took:?}"
        );
    }
}
