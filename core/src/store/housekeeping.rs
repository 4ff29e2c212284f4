//! The workers' statements: claiming credentials due for a proactive refresh,
//! and sweeping sessions. Written as SQL (one statement each) because they
//! are the places where PostgreSQL's row locking matters: `FOR UPDATE SKIP
//! LOCKED` lets every replica claim a different set of rows at the same time.
//! SQLite (one process) runs the same statement without it.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError, db_backend, placeholders};
use crate::config::Backend;

/// A credential claimed for a proactive refresh.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub email: String,
    pub provider: String,
    pub token_expiry: Option<DateTime<Utc>>,
}

/// Which credentials are due (see `workers::jobs::refresh::Window`).
#[derive(Clone, Debug)]
pub struct DueFilter {
    pub now: DateTime<Utc>,
    pub expiring_before: DateTime<Utc>,
    /// (provider, expiring before) for providers renewed by exchange.
    pub long_lived: Vec<(String, DateTime<Utc>)>,
    pub refreshed_before: DateTime<Utc>,
    /// Tokens are refreshed ahead of expiry only for credentials used (or
    /// authorized) since this; `None`: all of them.
    pub used_since: Option<DateTime<Utc>>,
}

/// A session the sweep failed.
#[derive(Clone, Debug)]
pub struct Expired {
    pub id: Uuid,
    pub provider: String,
}

impl Store {
    /// Leases up to `limit` due credentials to `owner` until `until`, and
    /// returns them. Due: active, not leased, and either expiring soon with a
    /// refresh token (or by exchange for long-lived providers), or not
    /// refreshed since `refreshed_before` (keep-alive).
    pub async fn claim_due(
        &self,
        filter: &DueFilter,
        owner: &str,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut values: Vec<Value> = vec![
            owner.into(),
            until.into(),
            filter.now.into(),
            filter.expiring_before.into(),
            filter.refreshed_before.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ];
        let mut long_lived = String::new();
        for (provider, before) in &filter.long_lived {
            let p = values.len() + 1;
            values.push(provider.clone().into());
            values.push((*before).into());
            long_lived.push_str(&format!(" OR (provider_id = ${p} AND token_expiry < ${})", p + 1));
        }
        // An idle credential's token is not refreshed ahead of its expiry
        // (the keep-alive and long-lived branches stay): last use, or the
        // consent for one never used yet.
        let in_use = match filter.used_since {
            Some(since) => {
                values.push(since.into());
                format!(" AND COALESCE(last_used_at, authorized_at, created_at) >= ${}", values.len())
            }
            None => String::new(),
        };
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE oauth_credentials SET refresh_lease_owner = $1, refresh_lease_until = $2 \
             WHERE id IN (\
               SELECT id FROM oauth_credentials \
               WHERE state = 'active' \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until < $3) \
                 AND ((refresh_token IS NOT NULL AND token_expiry < $4{in_use}){long_lived} \
                      OR (refresh_token IS NOT NULL AND COALESCE(last_refreshed_at, created_at) < $5)) \
               ORDER BY token_expiry LIMIT $6 {lock}) \
             RETURNING profile_id, provider_id, token_expiry"
        );
        let stmt =
            Statement::from_sql_and_values(db_backend(self.backend()), placeholders(self.backend(), &sql), values);
        let rows = self.db().query_all_raw(stmt).await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    email: row.try_get("", "profile_id")?,
                    provider: row.try_get("", "provider_id")?,
                    token_expiry: row.try_get("", "token_expiry")?,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(StoreError::from)
    }

    /// Fails every pending session past its expiry ("Session expired").
    pub async fn expire_pending_sessions(&self, now: DateTime<Utc>) -> Result<Vec<Expired>, StoreError> {
        let sql = "UPDATE oauth_sessions SET status = 'failed', failure_reason = 'expired', completed_at = $1, \
                   pkce_verifier = NULL, pkce_verifier_key_id = NULL \
                   WHERE status = 'pending' AND expires_at < $1 RETURNING id, provider_id, profile_id";
        let stmt =
            Statement::from_sql_and_values(db_backend(self.backend()), placeholders(self.backend(), sql), [now.into()]);
        // The sessions and their `session.failed` events commit together.
        let txn = self.begin_write().await?;
        let rows = txn.query_all_raw(stmt).await?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let (id, provider, user): (Uuid, String, String) =
                (row.try_get("", "id")?, row.try_get("", "provider_id")?, row.try_get("", "profile_id")?);
            super::outbox::enqueue(&txn, &super::sessions::session_failed(id, &provider, &user, "expired"), now)
                .await?;
            expired.push(Expired { id, provider });
        }
        txn.commit().await?;
        Ok(expired)
    }

    /// Deletes sessions that finished before `before`.
    pub async fn delete_finished_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sql = "DELETE FROM oauth_sessions WHERE status <> 'pending' AND completed_at < $1";
        let stmt = Statement::from_sql_and_values(
            db_backend(self.backend()),
            placeholders(self.backend(), sql),
            [before.into()],
        );
        Ok(self.db().execute_raw(stmt).await?.rows_affected())
    }
}
