//! Re-encryption batches: every encrypted value not under the primary key,
//! table by table in row-id order, sealed again under the primary.
//!
//! One batch = one short transaction on PostgreSQL, whose rows are claimed
//! with `FOR UPDATE SKIP LOCKED` so replicas work on different rows. Every
//! write is a compare-and-swap on the old ciphertext, so a value rewritten
//! meanwhile (a refresh) is never replaced by its old token re-sealed; on
//! SQLite (one process, one writer) the CAS alone suffices and each write
//! commits on its own, so a batch never holds SQLite's write lock for long.
//! A value that no configured key can open is reported and left alone.

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use super::keys::EncryptedColumn;
use super::{Store, StoreError, placeholders};
use crate::config::Backend;
use crate::crypto::{Keyring, Place};

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

const WALKS: [TableWalk; 6] = [
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

impl Store {
    /// Re-encrypts the values of up to `limit` rows from `position` on. With
    /// `dry_run`, opens every value (so undecryptable ones are found) and
    /// writes nothing.
    pub async fn reencrypt_batch(
        &self,
        keyring: &Keyring,
        position: &Position,
        limit: usize,
        dry_run: bool,
    ) -> Result<BatchOutcome, StoreError> {
        let Some(walk) = WALKS.get(position.table) else {
            return Ok(BatchOutcome::default());
        };
        let backend = match self.backend() {
            Backend::Postgres => DbBackend::Postgres,
            Backend::Sqlite => DbBackend::Sqlite,
        };
        let primary = keyring.primary_id().to_string();
        let mut select_columns: Vec<&str> = vec![walk.id];
        for (value, key_id) in walk.columns {
            select_columns.push(value);
            select_columns.push(key_id);
        }
        select_columns.extend(walk.place_columns);
        let pending: Vec<String> =
            walk.columns.iter().map(|(v, k)| format!("({v} IS NOT NULL AND {k} <> $1)")).collect();
        let mut values: Vec<Value> = vec![primary.clone().into(), i64::try_from(limit).unwrap_or(i64::MAX).into()];
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
        let select = Statement::from_sql_and_values(backend, placeholders(self.backend(), &sql), values);

        // PostgreSQL: claim and write in one transaction; SQLite: CAS writes, each on its own.
        let txn: Option<DatabaseTransaction> =
            if self.backend() == Backend::Postgres && !dry_run { Some(self.begin_write().await?) } else { None };
        let rows = match &txn {
            Some(t) => t.query_all_raw(select).await?,
            None => self.db().query_all_raw(select).await?,
        };
        let mut outcome = BatchOutcome { examined: rows.len() as u64, ..BatchOutcome::default() };
        let mut last_id = None;
        for row in &rows {
            let id = read_id(walk, row)?;
            let row_key = match walk.place_columns {
                [provider, email] => {
                    format!("{}/{}", row.try_get::<String>("", provider)?, row.try_get::<String>("", email)?)
                }
                _ => id.clone(),
            };
            for (value_col, key_col) in walk.columns {
                let value: Option<String> = row.try_get("", value_col)?;
                let key_id: Option<String> = row.try_get("", key_col)?;
                let (Some(value), Some(key_id)) = (value, key_id) else { continue };
                if key_id == primary {
                    continue;
                }
                let place = Place::new(walk.table, value_col, &row_key);
                let column = EncryptedColumn { table: walk.table, column: value_col };
                let opened = match keyring.open(&place, &key_id, &value) {
                    Ok(opened) => opened,
                    Err(err) => {
                        tracing::warn!(table = walk.table, column = value_col, row = %id, error = %err, "re-encryption: value left untouched");
                        outcome.undecryptable.push((column, id.clone()));
                        continue;
                    }
                };
                if dry_run {
                    outcome.reencrypted += 1;
                    continue;
                }
                let sealed = keyring.seal(&place, secrecy::ExposeSecret::expose_secret(&opened.secret).as_bytes());
                let sql = format!(
                    "UPDATE {} SET {value_col} = $1, {key_col} = $2 WHERE {} = $3 AND {value_col} = $4",
                    walk.table, walk.id
                );
                let update = Statement::from_sql_and_values(
                    backend,
                    placeholders(self.backend(), &sql),
                    [sealed.token.into(), sealed.key_id.to_string().into(), id_value(walk, &id)?, value.into()],
                );
                let result = match &txn {
                    Some(t) => t.execute_raw(update).await?,
                    None => self.db().execute_raw(update).await?,
                };
                if result.rows_affected() == 1 {
                    outcome.reencrypted += 1;
                    metrics::counter!(crate::telemetry::metrics::REENCRYPTED, "column" => *value_col).increment(1);
                } else {
                    outcome.conflicts += 1;
                }
            }
            last_id = Some(id);
        }
        if let Some(txn) = txn {
            txn.commit().await?;
        }
        outcome.next = if rows.len() == limit {
            Some(Position { table: position.table, after: last_id })
        } else if position.table + 1 < WALKS.len() {
            Some(Position { table: position.table + 1, after: None })
        } else {
            None
        };
        Ok(outcome)
    }
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
