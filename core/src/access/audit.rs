//! The audit log: who (client), what (action), for which user and provider,
//! when, with what outcome, under which request id. Never a token.
//!
//! Records are queued and written in batches by one task (one multi-row
//! INSERT at most every `FLUSH_EVERY`), so a token read costs a channel
//! send, not a database write. What is queued when the process is killed
//! (at most a fraction of a second of records) is lost; a graceful stop
//! flushes the queue. A full queue drops records and counts them in
//! `audit_dropped_total` rather than slow requests down.
//!
//! Token reads are the high-volume actions (an MCP server may read a token
//! on every tool call, thousands of times a second): `/auth/token` reads and
//! token exchanges vouched for by an identity provider. With
//! `AUDIT_TOKEN_READS=summary` (the default) they are summarised: one record
//! per client, user, provider, outcome (and, for exchanges, issuer, subject
//! and audience) per minute, with the count, the first and last time and the
//! first request id. `each` writes a record per read. Every other action —
//! worker assertions and refused exchanges included — is always recorded one
//! by one.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::store::audit::AUDIT_ROWS_PER_STATEMENT;
pub use crate::store::audit::{AuditFilter, AuditRecord};

const FLUSH_EVERY: Duration = Duration::from_millis(200);
const BATCH: usize = 1000;
const QUEUE: usize = 100_000;

/// How token reads are audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenReads {
    /// One record per client, user, provider and outcome per minute.
    Summary,
    /// One record per read.
    Each,
}

/// How long token reads are summarised before their record is written.
const SUMMARY_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ReadKey {
    action: &'static str,
    client: String,
    user: String,
    provider: String,
    outcome: &'static str,
    /// Who vouched for the user (exchanges).
    detail: Option<String>,
}

/// One read, as summarised.
#[derive(Clone, Copy, Debug)]
struct Read<'a> {
    action: &'static str,
    client: &'a str,
    user: &'a str,
    provider: &'a str,
    outcome: &'static str,
    detail: Option<&'a str>,
}

impl Read<'_> {
    fn hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.action, self.client, self.user, self.provider, self.outcome, self.detail).hash(&mut h);
        h.finish()
    }

    fn is(&self, key: &ReadKey) -> bool {
        key.action == self.action
            && key.client == self.client
            && key.user == self.user
            && key.provider == self.provider
            && key.outcome == self.outcome
            && key.detail.as_deref() == self.detail
    }
}

struct ReadSummary {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    first_request_id: Option<String>,
}

enum Message {
    Record(AuditRecord),
    Flush(oneshot::Sender<()>),
}

/// Where handlers and flows send audit records.
#[derive(Clone, Debug)]
pub struct Audit {
    tx: mpsc::Sender<Message>,
    token_reads: TokenReads,
    /// Token reads summed per key since the last window, sharded so that
    /// concurrent requests rarely meet on one lock. No channel message and
    /// no task wake-up per read: the writer drains it once per window.
    reads: std::sync::Arc<ReadShards>,
}

const SHARDS: usize = 16;

/// The keys (and their summaries) that share one 64-bit hash: almost always one.
type Bucket = Vec<(ReadKey, ReadSummary)>;

#[derive(Debug, Default)]
struct ReadShards {
    shards: [std::sync::Mutex<HashMap<u64, Bucket>>; SHARDS],
}

impl std::fmt::Debug for ReadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSummary").field("count", &self.count).finish_non_exhaustive()
    }
}

impl ReadShards {
    fn add(&self, read: Read<'_>, at: DateTime<Utc>) {
        self.add_at(read.hash(), read, at);
    }

    fn add_at(&self, hash: u64, read: Read<'_>, at: DateTime<Utc>) {
        let Ok(mut shard) = self.shards[(hash as usize) % SHARDS].lock() else { return };
        // A bucket per hash, so that two keys with one 64-bit hash keep their own counts.
        let bucket = shard.entry(hash).or_default();
        match bucket.iter_mut().find(|(key, _)| read.is(key)) {
            Some((_, summary)) => {
                summary.count += 1;
                summary.last = at;
            }
            None => {
                let key = ReadKey {
                    action: read.action,
                    client: read.client.to_owned(),
                    user: read.user.to_owned(),
                    provider: read.provider.to_owned(),
                    outcome: read.outcome,
                    detail: read.detail.map(str::to_owned),
                };
                let summary = ReadSummary {
                    count: 1,
                    first: at,
                    last: at,
                    first_request_id: crate::telemetry::request_id::current(),
                };
                bucket.push((key, summary));
            }
        }
    }

    fn drain(&self) -> Vec<(ReadKey, ReadSummary)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                out.extend(shard.drain().flat_map(|(_, bucket)| bucket));
            }
        }
        out
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl Audit {
    /// Starts the writer task.
    pub(crate) fn start(store: Store, token_reads: TokenReads) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let reads = std::sync::Arc::new(ReadShards::default());
        let task = tokio::spawn(writer(store, rx, reads.clone()));
        (Self { tx, token_reads, reads }, task)
    }

    /// Queues a record (never blocks).
    pub fn record(&self, record: AuditRecord) {
        self.send(Message::Record(record));
    }

    /// Records a token read (summarised or one by one, see the module docs).
    pub fn token_read(&self, client: &str, user: &str, provider: &str, outcome: &'static str, at: DateTime<Utc>) {
        let read = Read { action: "token", client, user, provider, outcome, detail: None };
        self.read(read, at);
    }

    /// Records a token exchange vouched for by an identity provider;
    /// `identity` says who vouched (issuer, subject, audience). Summarised
    /// like token reads.
    pub fn exchange(
        &self,
        client: &str,
        user: &str,
        provider: &str,
        outcome: &'static str,
        identity: &str,
        at: DateTime<Utc>,
    ) {
        let read = Read { action: "exchange", client, user, provider, outcome, detail: Some(identity) };
        self.read(read, at);
    }

    fn read(&self, read: Read<'_>, at: DateTime<Utc>) {
        match self.token_reads {
            TokenReads::Each => {
                let mut r = record(read.client, read.action, read.outcome, at);
                r.user_email = Some(read.user.to_owned());
                r.provider = Some(read.provider.to_owned());
                r.detail = read.detail.map(str::to_owned);
                self.record(r);
            }
            TokenReads::Summary => self.reads.add(read, at),
        }
    }

    fn send(&self, message: Message) {
        if self.tx.try_send(message).is_err() {
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

async fn writer(store: Store, mut rx: mpsc::Receiver<Message>, reads: std::sync::Arc<ReadShards>) {
    let mut batch: Vec<AuditRecord> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let mut window = tokio::time::interval(SUMMARY_WINDOW);
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Record(r)) => {
                    batch.push(r);
                    if batch.len() < BATCH {
                        continue;
                    }
                }
                Some(Message::Flush(done)) => {
                    batch.extend(summaries(&reads));
                    waiting.push(done);
                }
                None => {
                    batch.extend(summaries(&reads));
                    write(&store, &mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => {}
            _ = window.tick() => batch.extend(summaries(&reads)),
        }
        write(&store, &mut batch).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// The summarised token reads as records (and a fresh window).
fn summaries(reads: &ReadShards) -> Vec<AuditRecord> {
    reads
        .drain()
        .into_iter()
        .map(|(key, s)| {
            let what = if key.action == "exchange" { "exchange(s)" } else { "read(s)" };
            let counted = format!("{} {what} from {} to {}", s.count, s.first.to_rfc3339(), s.last.to_rfc3339());
            AuditRecord {
                occurred_at: s.first,
                client: key.client,
                action: key.action.to_owned(),
                user_email: Some(key.user),
                provider: Some(key.provider),
                outcome: key.outcome.to_owned(),
                request_id: s.first_request_id,
                detail: Some(match key.detail {
                    Some(identity) => format!("{identity}; {counted}"),
                    None => counted,
                }),
            }
        })
        .collect()
}

/// Writes `batch` in statements the database accepts however large it is
/// (a minute's summary holds one record per user); a statement that fails
/// loses only its own records.
async fn write(store: &Store, batch: &mut Vec<AuditRecord>) {
    for chunk in batch.chunks(AUDIT_ROWS_PER_STATEMENT) {
        if let Err(err) = store.append_audit(chunk).await {
            metrics::counter!(crate::telemetry::metrics::AUDIT_DROPPED).increment(chunk.len() as u64);
            tracing::error!(error = %err, records = chunk.len(), "could not write audit records");
        }
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
        request_id: crate::telemetry::request_id::current(),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_counted_per_key_even_when_two_keys_share_a_hash() {
        let reads = ReadShards::default();
        let at = crate::clock::Clock::system().now();
        let read =
            |user, outcome| Read { action: "token", client: "mail", user, provider: "google", outcome, detail: None };
        for _ in 0..3 {
            reads.add_at(7, read("alice@company.com", "memory"), at);
        }
        reads.add_at(7, read("bob@company.com", "memory"), at);
        reads.add(read("alice@company.com", "store"), at);
        // An exchange of the same user is its own record, as is each identity.
        reads.add(Read { action: "exchange", detail: Some("iss=a sub=1"), ..read("alice@company.com", "memory") }, at);
        reads.add(Read { action: "exchange", detail: Some("iss=a sub=2"), ..read("alice@company.com", "memory") }, at);

        let mut counts: Vec<(String, &str, u64)> =
            reads.drain().into_iter().map(|(key, summary)| (key.user, key.outcome, summary.count)).collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("alice@company.com".to_owned(), "memory", 1),
                ("alice@company.com".to_owned(), "memory", 1),
                ("alice@company.com".to_owned(), "memory", 3),
                ("alice@company.com".to_owned(), "store", 1),
                ("bob@company.com".to_owned(), "memory", 1),
            ]
        );
        assert!(reads.drain().is_empty(), "a drain starts a fresh window");
    }
}
