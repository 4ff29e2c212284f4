//! Re-encryption batches: every encrypted value not under the primary key,
//! table by table in row-id order, sealed again under the primary.
//!
//! One batch = one short transaction on PostgreSQL, whose rows are claimed
//! with `FOR UPDATE SKIP LOCKED` so replicas work on different rows. A batch
//! costs three steps whatever its size: one SELECT; the crypto, on the
//! blocking pool in a few parallel chunks (so it uses every core and never
//! stalls the request tasks sharing the runtime); and one UPDATE per
//! [`WRITE_CHUNK`] rows that writes every column of the chunk at once. Each
//! value in that UPDATE is still a compare-and-swap on its old ciphertext
//! (`CASE WHEN col = old`), so a value rewritten meanwhile (a refresh) is
//! never replaced by its old token re-sealed, and a row is rewritten once
//! however many of its columns change (one new tuple, one set of index
//! entries). On SQLite (one process, one writer) the CAS alone suffices and
//! each UPDATE commits on its own, so a batch never holds SQLite's write lock
//! for long. A value that no configured key can open is reported and left
//! alone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use super::keys::EncryptedColumn;
use super::{Store, StoreError, placeholders};
use crate::config::Backend;
use crate::crypto::{Keyring, Place};

/// Rows per UPDATE on PostgreSQL: 1 + 2 × columns parameters a row, far
/// below the protocol's 65 535.
const WRITE_CHUNK_POSTGRES: usize = 1_000;
/// Rows per UPDATE on SQLite: each statement holds the database's single
/// write lock, so keep it short.
const WRITE_CHUNK_SQLITE: usize = 250;
/// Rows per blocking crypto task: a batch is split so every core opens and
/// seals, and no task runs long enough to matter.
const CRYPTO_CHUNK: usize = 250;

/// One table's walk: what to select, and how each value's place is named.
struct TableWalk {
    table: &'static str,
    /// Row id column, ordered by the walk.
    id: &'static str,
    /// (value column, key-id column).
    columns: &'static [(&'static str, &'static str)],
    /// Extra columns needed to build the place's row key.
    place_columns: &'static [&'static str],
    uuid_id: bool,
}

static WALKS: [TableWalk; 6] = [
    TableWalk {
        table: "oauth_credentials",
        id: "id",
        columns: &[("access_token", "access_token_key_id"), ("refresh_token", "refresh_token_key_id")],
        place_columns: &["provider_id", "profile_id"],
        uuid_id: true,
    },
    TableWalk {
        table: "oauth_providers",
        id: "id",
        columns: &[("client_secret", "client_secret_key_id")],
        place_columns: &[],
        uuid_id: false,
    },
    TableWalk {
        table: "oauth_sessions",
        id: "id",
        columns: &[("pkce_verifier", "pkce_verifier_key_id")],
        place_columns: &[],
        uuid_id: true,
    },
    TableWalk {
        table: "gateway_metadata",
        id: "key",
        columns: &[("value", "key_id")],
        place_columns: &[],
        uuid_id: false,
    },
    TableWalk {
        table: "webhooks",
        id: "id",
        columns: &[("secret", "secret_key_id")],
        place_columns: &[],
        uuid_id: true,
    },
    TableWalk {
        table: "pending_revocations",
        id: "id",
        columns: &[("token", "token_key_id")],
        place_columns: &[],
        uuid_id: true,
    },
];

/// Where a batch starts: the table index and the last row id done in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub table: usize,
    pub after: Option<String>,
}

/// What one batch did.
#[derive(Clone, Debug, Default)]
pub struct BatchOutcome {
    pub examined: u64,
    pub reencrypted: u64,
    pub conflicts: u64,
    /// (column, row id) of values no configured key opens.
    pub undecryptable: Vec<(EncryptedColumn, String)>,
    pub next: Option<Position>,
}

/// A row read by a batch, with the values it must seal again.
struct Stale {
    id: String,
    /// The place's row key (`provider/email` for a credential, the id else).
    row_key: String,
    /// (column index in the walk, stored key id, ciphertext).
    values: Vec<(usize, String, String)>,
}

/// A row's values to write: its id and (column index, old, new ciphertext).
type Write = (String, Vec<(usize, String, String)>);

/// What the crypto made of one stale value.
enum Resealed {
    /// Old and new ciphertext: the UPDATE's compare-and-swap pair.
    Sealed {
        column: usize,
        old: String,
        new: String,
    },
    /// Opened (dry run: nothing sealed).
    Opened,
    Undecryptable {
        column: usize,
        error: crate::crypto::CryptoError,
    },
}

impl Store {
    /// Re-encrypts the values of up to `limit` rows from `position` on. With
    /// `dry_run`, opens every value (so undecryptable ones are found) and
    /// writes nothing.
    pub async fn reencrypt_batch(
        &self,
        keyring: &Arc<Keyring>,
        position: &Position,
        limit: usize,
        dry_run: bool,
    ) -> Result<BatchOutcome, StoreError> {
        let Some(walk) = WALKS.get(position.table) else {
            return Ok(BatchOutcome::default());
        };
        let started = Instant::now();
        let primary = keyring.primary_id().to_string();
        // PostgreSQL: claim and write in one transaction; SQLite: CAS writes, each on its own.
        let txn: Option<DatabaseTransaction> =
            if self.backend() == Backend::Postgres && !dry_run { Some(self.begin_write().await?) } else { None };
        let stale = match &txn {
            Some(t) => self.read_stale(t, walk, position, &primary, limit, dry_run).await?,
            None => self.read_stale(self.db(), walk, position, &primary, limit, dry_run).await?,
        };
        let selected = started.elapsed();
        let mut outcome = BatchOutcome { examined: stale.len() as u64, ..BatchOutcome::default() };
        let last_id = stale.last().map(|s| s.id.clone());

        let resealed = reseal(keyring, walk, stale, dry_run).await?;
        let writes = sort_out(walk, resealed, &mut outcome);
        let sealed = started.elapsed();
        match &txn {
            Some(t) => self.write_resealed(t, walk, &primary, &writes, &mut outcome).await?,
            None => self.write_resealed(self.db(), walk, &primary, &writes, &mut outcome).await?,
        }
        if let Some(txn) = txn {
            txn.commit().await?;
        }
        tracing::debug!(
            table = walk.table,
            rows = outcome.examined,
            select_ms = selected.as_secs_f64() * 1e3,
            crypto_ms = (sealed - selected).as_secs_f64() * 1e3,
            write_ms = (started.elapsed() - sealed).as_secs_f64() * 1e3,
            "re-encryption batch"
        );
        outcome.next = if outcome.examined == limit as u64 {
            Some(Position { table: position.table, after: last_id })
        } else if position.table + 1 < WALKS.len() {
            Some(Position { table: position.table + 1, after: None })
        } else {
            None
        };
        Ok(outcome)
    }

    /// Up to `limit` rows after the cursor holding a value under another key
    /// than the primary, locked (PostgreSQL, not a dry run) and skipped when
    /// another replica holds them.
    async fn read_stale(
        &self,
        conn: &impl ConnectionTrait,
        walk: &TableWalk,
        position: &Position,
        primary: &str,
        limit: usize,
        dry_run: bool,
    ) -> Result<Vec<Stale>, StoreError> {
        let select = self.select_stale(walk, position, primary, limit, dry_run)?;
        conn.query_all_raw(select).await?.iter().map(|row| read_stale(walk, row, primary)).collect()
    }

    /// Writes `writes` in [`WRITE_CHUNK_POSTGRES`] / [`WRITE_CHUNK_SQLITE`]
    /// rows per UPDATE, each value a compare-and-swap on its old ciphertext,
    /// and counts what was written and what had changed meanwhile.
    async fn write_resealed(
        &self,
        conn: &impl ConnectionTrait,
        walk: &TableWalk,
        primary: &str,
        writes: &[Write],
        outcome: &mut BatchOutcome,
    ) -> Result<(), StoreError> {
        let chunk = match self.backend() {
            Backend::Postgres => WRITE_CHUNK_POSTGRES,
            Backend::Sqlite => WRITE_CHUNK_SQLITE,
        };
        for rows in writes.chunks(chunk) {
            let written = conn.query_all_raw(self.cas_update(walk, primary, rows)?).await?;
            count_written(walk, rows, &written, outcome)?;
        }
        Ok(())
    }

    /// The SELECT of [`Self::read_stale`].
    fn select_stale(
        &self,
        walk: &TableWalk,
        position: &Position,
        primary: &str,
        limit: usize,
        dry_run: bool,
    ) -> Result<Statement, StoreError> {
        let mut select_columns: Vec<&str> = vec![walk.id];
        for (value, key_id) in walk.columns {
            select_columns.push(value);
            select_columns.push(key_id);
        }
        select_columns.extend(walk.place_columns);
        let pending: Vec<String> =
            walk.columns.iter().map(|(v, k)| format!("({v} IS NOT NULL AND {k} <> $1)")).collect();
        let mut values: Vec<Value> = vec![primary.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()];
        let after = match &position.after {
            Some(after) => {
                values.push(id_value(walk, after)?);
                format!("{} > $3 AND ", walk.id)
            }
            None => String::new(),
        };
        let lock = if self.backend() == Backend::Postgres && !dry_run { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT {} FROM {} WHERE {after}({}) ORDER BY {} LIMIT $2{lock}",
            select_columns.join(", "),
            walk.table,
            pending.join(" OR "),
            walk.id
        );
        Ok(Statement::from_sql_and_values(self.db_backend(), placeholders(self.backend(), &sql), values))
    }

    /// One UPDATE for `rows`: each listed value is set to its new ciphertext
    /// (and the primary's key id) only where the column still holds the old
    /// one; the others keep what they hold. Returns the written rows' values,
    /// so the caller tells written values from conflicts.
    ///
    /// ```sql
    /// UPDATE t SET c = CASE WHEN t.c = v.column2 THEN v.column3 ELSE t.c END,
    ///              c_key_id = CASE WHEN t.c = v.column2 THEN $1 ELSE t.c_key_id END, ...
    /// FROM (VALUES ($2, $3, $4, ...), ...) AS v
    /// WHERE t.id = v.column1 AND (t.c = v.column2 OR ...)
    /// RETURNING t.id, t.c, ...
    /// ```
    fn cas_update(&self, walk: &TableWalk, primary: &str, rows: &[Write]) -> Result<Statement, StoreError> {
        let table = walk.table;
        // VALUES columns are named column1, column2, … on both backends
        // (SQLite has no column list on a derived table's alias).
        let old = |i: usize| format!("v.column{}", 2 + 2 * i);
        let new = |i: usize| format!("v.column{}", 3 + 2 * i);
        let mut set = Vec::new();
        let mut changed = Vec::new();
        for (i, (value, key_id)) in walk.columns.iter().enumerate() {
            let cas = format!("{table}.{value} = {}", old(i));
            set.push(format!("{value} = CASE WHEN {cas} THEN {} ELSE {table}.{value} END", new(i)));
            set.push(format!("{key_id} = CASE WHEN {cas} THEN $1 ELSE {table}.{key_id} END"));
            changed.push(cas);
        }
        let width = 1 + 2 * walk.columns.len();
        let mut values: Vec<Value> = Vec::with_capacity(1 + rows.len() * width);
        values.push(primary.into());
        let mut tuples = Vec::with_capacity(rows.len());
        for (id, pairs) in rows {
            values.push(id_value(walk, id)?);
            for column in 0..walk.columns.len() {
                let pair = pairs.iter().find(|(c, _, _)| *c == column);
                values.push(pair.map(|(_, old, _)| old.clone()).into());
                values.push(pair.map(|(_, _, new)| new.clone()).into());
            }
            let first = values.len() - width + 1;
            let params: Vec<String> = (first..first + width).map(|n| format!("${n}")).collect();
            tuples.push(format!("({})", params.join(", ")));
        }
        let returning: Vec<String> = walk.columns.iter().map(|(value, _)| format!("{table}.{value}")).collect();
        let sql = format!(
            "UPDATE {table} SET {} FROM (VALUES {}) AS v WHERE {table}.{} = v.column1 AND ({}) RETURNING {table}.{}, {}",
            set.join(", "),
            tuples.join(", "),
            walk.id,
            changed.join(" OR "),
            walk.id,
            returning.join(", ")
        );
        Ok(Statement::from_sql_and_values(self.db_backend(), placeholders(self.backend(), &sql), values))
    }

    fn db_backend(&self) -> DbBackend {
        super::db_backend(self.backend())
    }
}

fn read_stale(walk: &TableWalk, row: &QueryResult, primary: &str) -> Result<Stale, StoreError> {
    let id = read_id(walk, row)?;
    let row_key = match walk.place_columns {
        [provider, email] => format!("{}/{}", row.try_get::<String>("", provider)?, row.try_get::<String>("", email)?),
        _ => id.clone(),
    };
    let mut values = Vec::new();
    for (column, (value_col, key_col)) in walk.columns.iter().enumerate() {
        let value: Option<String> = row.try_get("", value_col)?;
        let key_id: Option<String> = row.try_get("", key_col)?;
        if let (Some(value), Some(key_id)) = (value, key_id)
            && key_id != primary
        {
            values.push((column, key_id, value));
        }
    }
    Ok(Stale { id, row_key, values })
}

/// Opens and seals again every stale value, on the blocking pool in
/// [`CRYPTO_CHUNK`]-row tasks run side by side; rows come back in order.
async fn reseal(
    keyring: &Arc<Keyring>,
    walk: &'static TableWalk,
    stale: Vec<Stale>,
    dry_run: bool,
) -> Result<Vec<(String, Vec<Resealed>)>, StoreError> {
    let mut tasks = Vec::new();
    let mut rest = stale;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CRYPTO_CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        let keyring = keyring.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            chunk.into_iter().map(|row| reseal_row(&keyring, walk, row, dry_run)).collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.extend(task.await.map_err(StoreError::Task)?);
    }
    Ok(out)
}

fn reseal_row(keyring: &Keyring, walk: &TableWalk, row: Stale, dry_run: bool) -> (String, Vec<Resealed>) {
    let mut out = Vec::with_capacity(row.values.len());
    for (column, key_id, old) in row.values {
        let place = Place::new(walk.table, walk.columns[column].0, &row.row_key);
        let opened = match keyring.open(&place, &key_id, &old) {
            Ok(opened) => opened,
            Err(error) => {
                out.push(Resealed::Undecryptable { column, error });
                continue;
            }
        };
        if dry_run {
            out.push(Resealed::Opened);
            continue;
        }
        let sealed = keyring.seal(&place, secrecy::ExposeSecret::expose_secret(&opened.secret).as_bytes());
        out.push(Resealed::Sealed { column, old, new: sealed.token });
    }
    (row.id, out)
}

/// Reports what could not be opened (and counts what a dry run opened);
/// returns the rows with something to write.
fn sort_out(walk: &TableWalk, resealed: Vec<(String, Vec<Resealed>)>, outcome: &mut BatchOutcome) -> Vec<Write> {
    let mut writes = Vec::with_capacity(resealed.len());
    for (id, values) in resealed {
        let mut pairs = Vec::new();
        for value in values {
            match value {
                Resealed::Sealed { column, old, new } => pairs.push((column, old, new)),
                Resealed::Opened => outcome.reencrypted += 1,
                Resealed::Undecryptable { column, error } => {
                    let name = walk.columns[column].0;
                    tracing::warn!(table = walk.table, column = name, row = %id, error = %error, "re-encryption: value left untouched");
                    outcome.undecryptable.push((EncryptedColumn { table: walk.table, column: name }, id.clone()));
                }
            }
        }
        if !pairs.is_empty() {
            writes.push((id, pairs));
        }
    }
    writes
}

/// A value was written where the row the UPDATE returned holds its new
/// ciphertext (fresh random IV: nobody else can have written the same);
/// every other attempted value met a changed column, a conflict.
fn count_written(
    walk: &TableWalk,
    rows: &[Write],
    written: &[QueryResult],
    outcome: &mut BatchOutcome,
) -> Result<(), StoreError> {
    let mut now: HashMap<String, Vec<Option<String>>> = HashMap::with_capacity(written.len());
    for row in written {
        let values =
            walk.columns.iter().map(|(value, _)| row.try_get::<Option<String>>("", value)).collect::<Result<_, _>>()?;
        now.insert(read_id(walk, row)?, values);
    }
    for (id, pairs) in rows {
        for (column, _, new) in pairs {
            let hit = now.get(id).and_then(|v| v.get(*column)).is_some_and(|v| v.as_deref() == Some(new.as_str()));
            if hit {
                outcome.reencrypted += 1;
                metrics::counter!(crate::telemetry::metrics::REENCRYPTED, "column" => walk.columns[*column].0)
                    .increment(1);
            } else {
                outcome.conflicts += 1;
            }
        }
    }
    Ok(())
}

fn id_value(walk: &TableWalk, id: &str) -> Result<Value, StoreError> {
    if walk.uuid_id {
        Uuid::parse_str(id).map(Value::from).map_err(|e| StoreError::Corrupt(format!("bad re-encryption cursor: {e}")))
    } else {
        Ok(id.to_owned().into())
    }
}

fn read_id(walk: &TableWalk, row: &QueryResult) -> Result<String, StoreError> {
    Ok(if walk.uuid_id { row.try_get::<Uuid>("", walk.id)?.to_string() } else { row.try_get::<String>("", walk.id)? })
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::config::DatabaseSettings;
    use crate::crypto::Key;
    use crate::email::Email;
    use crate::oauth::provider::{ProviderKind, test_provider};
    use crate::store::credentials::CredentialKey;
    use crate::store::seed::SeedCredential;

    /// A freshly migrated store: a SQLite file, or a new database on
    /// `TEST_DATABASE_URL`'s PostgreSQL server (`None` when that is not set,
    /// unless `REQUIRE_POSTGRES=1`), and how to drop it.
    async fn store(backend: Backend, dir: &tempfile::TempDir) -> Option<(Store, Option<(String, String)>)> {
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}/gateway.db?mode=rwc", dir.path().display()), None),
            Backend::Postgres => {
                let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
                    assert_ne!(std::env::var("REQUIRE_POSTGRES").as_deref(), Ok("1"), "TEST_DATABASE_URL is not set");
                    return None;
                };
                let name = format!("gw_test_{}", Uuid::new_v4().simple());
                let conn = sea_orm::Database::connect(&admin).await.unwrap();
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&format!("/{name}"));
                (url.to_string(), Some((admin, name)))
            }
        };
        let settings = DatabaseSettings { url: SecretString::from(url), backend, embedded_default: false };
        let store = Store::connect(&settings).await.unwrap();
        store.migrate_up().await.unwrap();
        Some((store, pg))
    }

    async fn drop_database(pg: Option<(String, String)>) {
        if let Some((admin, name)) = pg {
            let conn = sea_orm::Database::connect(&admin).await.unwrap();
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
        }
    }

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32]).unwrap()
    }

    fn credential(user: &str) -> CredentialKey {
        CredentialKey { email: Email::parse(&format!("{user}@company.com")).unwrap(), provider: "google".into() }
    }

    /// Sets one token column of `user`'s row to `token` sealed under the
    /// primary: what a refresh does.
    async fn refresh(store: &Store, keyring: &Keyring, user: &str, column: &str, token: &str) {
        let key = credential(user);
        let sealed = keyring.seal(&key.place(column), token.as_bytes());
        let sql = format!("UPDATE oauth_credentials SET {column} = $1, {column}_key_id = $2 WHERE profile_id = $3");
        let values: [Value; 3] = [sealed.token.into(), sealed.key_id.to_string().into(), key.email.to_string().into()];
        let update = Statement::from_sql_and_values(store.db_backend(), placeholders(store.backend(), &sql), values);
        assert_eq!(store.db().execute_raw(update).await.unwrap().rows_affected(), 1);
    }

    async fn tokens(store: &Store, keyring: &Keyring, user: &str) -> (String, String) {
        let stored = store.load_credential(&credential(user), keyring).await.unwrap().unwrap();
        (stored.access_token.expose_secret().to_owned(), stored.refresh_token.unwrap().expose_secret().to_owned())
    }

    /// Values read and sealed again, then refreshed before the batch writes:
    /// the write replaces exactly the values still as read, column by column,
    /// and counts the others as conflicts.
    async fn the_batched_write_skips_exactly_the_values_changed_meanwhile(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let Some((store, pg)) = store(backend, &dir).await else { return };
        let old = Keyring::new(key(1), vec![]).unwrap();
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        store.upsert_provider(&test_provider(ProviderKind::Google), &old, now).await.unwrap();
        let users = ["alice", "bob", "carol", "dave"];
        let seeds: Vec<SeedCredential> = users
            .iter()
            .map(|u| SeedCredential {
                key: credential(u),
                access_token: format!("{u}-access"),
                refresh_token: format!("{u}-refresh"),
                expires_at: now,
            })
            .collect();
        store.seed_credentials(&old, &seeds, now).await.unwrap();

        let rotated = Arc::new(Keyring::new(key(2), vec![key(1)]).unwrap());
        let primary = rotated.primary_id().to_string();
        let walk = &WALKS[0];
        let stale = store.read_stale(store.db(), walk, &Position::default(), &primary, 10, true).await.unwrap();
        let mut outcome = BatchOutcome::default();
        let writes = sort_out(walk, reseal(&rotated, walk, stale, false).await.unwrap(), &mut outcome);
        assert_eq!(writes.len(), 4);

        // Meanwhile: bob's access token and carol's refresh token are refreshed, dave's both.
        refresh(&store, &rotated, "bob", "access_token", "bob-access-2").await;
        refresh(&store, &rotated, "carol", "refresh_token", "carol-refresh-2").await;
        refresh(&store, &rotated, "dave", "access_token", "dave-access-2").await;
        refresh(&store, &rotated, "dave", "refresh_token", "dave-refresh-2").await;

        store.write_resealed(store.db(), walk, &primary, &writes, &mut outcome).await.unwrap();
        assert_eq!((outcome.reencrypted, outcome.conflicts), (4, 4));
        let only_new = Keyring::new(key(2), vec![]).unwrap();
        let expected = [
            ("alice", "alice-access", "alice-refresh"),
            ("bob", "bob-access-2", "bob-refresh"),
            ("carol", "carol-access", "carol-refresh-2"),
            ("dave", "dave-access-2", "dave-refresh-2"),
        ];
        for (user, access, refresh) in expected {
            assert_eq!(tokens(&store, &only_new, user).await, (access.to_owned(), refresh.to_owned()), "{user}");
        }
        store.close().await;
        drop_database(pg).await;
    }

    #[tokio::test]
    async fn the_batched_write_skips_exactly_the_values_changed_meanwhile_sqlite() {
        the_batched_write_skips_exactly_the_values_changed_meanwhile(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn the_batched_write_skips_exactly_the_values_changed_meanwhile_postgres() {
        the_batched_write_skips_exactly_the_values_changed_meanwhile(Backend::Postgres).await;
    }
}
