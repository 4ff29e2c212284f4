//! The audit log: who (client), what (action), for which user and provider,
//! when, with what outcome, under which request id. Never a token.
//!
//! Records are queued and written in batches by one task (one multi-row
//! INSERT at most every [`FLUSH_EVERY`]), so a token read costs a channel
//! send, not a database write. What is queued when the process is killed
//! (at most a fraction of a second of records) is lost; a graceful stop
//! flushes the queue. A full queue drops records and counts them in
//! `audit_dropped_total` rather than slow requests down.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::store::audit::AuditRecord;

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const BATCH: usize = 1000;
const QUEUE: usize = 100_000;

enum Message {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// Where handlers and flows send audit records.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl Audit {
    /// Starts the writer task.
    pub fn start(store: Store) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(writer(store, rx));
        (Self { tx }, task)
    }

    /// Queues a record (never blocks).
    pub fn record(&self, record: AuditRecord) {
        if self.tx.try_send(Message::Record(record)).is_err() {
            metrics::counter!(crate::telemetry::metrics::AUDIT_DROPPED).increment(1);
            tracing::warn!("audit queue full: a record was dropped");
        }
    }

    /// Writes everything queued so far (tests, shutdown).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Message>) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Record(r)) => {
                    batch.push(r);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                Some(Message::Flush(done)) => waiting.push(done),
                None => {
                    write(&store, &mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        write(&store, &mut batch).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn write(store: &Store, batch: &mut Vec<AuditRecord>) {
    if batch.is_empty() {
        return;
    }
    if let Err(err) = store.append_audit(batch).await {
        metrics::counter!(crate::telemetry::metrics::AUDIT_DROPPED).increment(batch.len() as u64);
        tracing::error!(error = %err, records = batch.len(), "could not write audit records");
    }
    batch.clear();
}

/// A record for `action` now.
pub fn record(client: &str, action: &str, outcome: &str, at: DateTime<Utc>) -> AuditRecord {
    AuditRecord {
        occurred_at: at,
        client: client.to_owned(),
        action: action.to_owned(),
        user_email: None,
        provider: None,
        outcome: outcome.to_owned(),
        request_id: crate::http::request_id::current(),
        detail: None,
    }
}
