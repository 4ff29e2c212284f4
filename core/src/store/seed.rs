//! Many credentials at once, for tests and benchmarks that need up to
//! millions of rows quickly. Not used by the gateway itself: real
//! credentials only come from authorizations.
//!
//! Every value is sealed for its own row (the envelope binds it to
//! `<provider>/<email>`), so no ciphertext can be reused: sealing is spread
//! over the machine's cores. PostgreSQL then takes the rows in one `COPY`;
//! SQLite gets one multi-row INSERT per thousand.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};

use super::credentials::CredentialKey;
use super::{Store, StoreError};
use crate::crypto::{Keyring, Sealed};

/// The columns every seeded row fills, in the order both paths write them.
const COLUMNS: &str = "id, profile_id, provider_id, access_token, access_token_key_id, refresh_token, \
    refresh_token_key_id, token_expiry, scopes, state, consecutive_failures, version, created_at, updated_at, \
    last_refreshed_at, authorized_at";
const SCOPES_JSON: &str = r#"["openid","email","mail.read"]"#;

/// One credential to insert: its key and its (plain) tokens.
pub struct SeedCredential {
    pub key: CredentialKey,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

/// A credential with its two values sealed.
struct SealedRow<'a> {
    credential: &'a SeedCredential,
    access: Sealed,
    refresh: Sealed,
}

/// Seals every row, one slice per core (Fernet is the CPU cost of seeding).
fn seal_all<'a>(keyring: &Keyring, credentials: &'a [SeedCredential]) -> Vec<SealedRow<'a>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_thread = credentials.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = credentials
            .chunks(per_thread)
            .map(|slice| {
                scope.spawn(move || {
                    slice
                        .iter()
                        .map(|c| SealedRow {
                            credential: c,
                            access: keyring.seal(&c.key.place("access_token"), c.access_token.as_bytes()),
                            refresh: keyring.seal(&c.key.place("refresh_token"), c.refresh_token.as_bytes()),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A sealing thread can only fail by panicking: pass the panic on.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}

impl Store {
    /// Inserts `credentials` sealed under `keyring`'s primary key.
    pub async fn seed_credentials(
        &self,
        keyring: &Keyring,
        credentials: &[SeedCredential],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let rows = seal_all(keyring, credentials);
        match self.db().get_database_backend() {
            sea_orm::DbBackend::Postgres => self.copy_rows(&rows, now).await,
            _ => self.insert_rows(&rows, now).await,
        }
    }

    /// PostgreSQL: one `COPY ... FROM STDIN` (text format), sent in pieces.
    async fn copy_rows(&self, rows: &[SealedRow<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        use sea_orm::sqlx::postgres::PgPoolCopyExt;
        let failed =
            |e: sea_orm::sqlx::Error| StoreError::from(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e.into())));
        let pool = self.db().get_postgres_connection_pool();
        let mut copy =
            pool.copy_in_raw(&format!("COPY oauth_credentials ({COLUMNS}) FROM STDIN")).await.map_err(failed)?;
        let now = now.to_rfc3339();
        let mut buf = String::with_capacity(1 << 20);
        for row in rows {
            let c = row.credential;
            let expires = c.expires_at.to_rfc3339();
            let email = c.key.email.to_string();
            let fields: [&str; 16] = [
                &uuid::Uuid::now_v7().to_string(),
                &email,
                &c.key.provider,
                &row.access.token,
                row.access.key_id.as_str(),
                &row.refresh.token,
                row.refresh.key_id.as_str(),
                &expires,
                SCOPES_JSON,
                "active",
                "0",
                "1",
                &now,
                &now,
                &now,
                &now,
            ];
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    buf.push('\t');
                }
                push_copy_text(&mut buf, field);
            }
            buf.push('\n');
            if buf.len() >= 1 << 20 {
                copy.send(buf.as_bytes()).await.map_err(failed)?;
                buf.clear();
            }
        }
        copy.send(buf.as_bytes()).await.map_err(failed)?;
        copy.finish().await.map_err(failed)?;
        Ok(())
    }

    /// SQLite (and any other backend): one multi-row INSERT per thousand.
    async fn insert_rows(&self, rows: &[SealedRow<'_>], now: DateTime<Utc>) -> Result<(), StoreError> {
        let backend = self.db().get_database_backend();
        for chunk in rows.chunks(1000) {
            let mut sql = format!("INSERT INTO oauth_credentials ({COLUMNS}) VALUES ");
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 12);
            for (i, row) in chunk.iter().enumerate() {
                let c = row.credential;
                let p: Vec<String> = (1..=12).map(|k| format!("${}", values.len() + k)).collect();
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, '{SCOPES_JSON}', 'active', 0, 1, {}, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]
                ));
                values.extend([
                    uuid::Uuid::now_v7().into(),
                    c.key.email.to_string().into(),
                    c.key.provider.clone().into(),
                    row.access.token.clone().into(),
                    row.access.key_id.to_string().into(),
                    row.refresh.token.clone().into(),
                    row.refresh.key_id.to_string().into(),
                    c.expires_at.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                    now.into(),
                ]);
            }
            let sql = if backend == sea_orm::DbBackend::Sqlite { sql.replace('$', "?") } else { sql };
            self.db().execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        }
        Ok(())
    }
}

/// Appends `value` escaped for `COPY`'s text format (backslash, tab and line ends).
fn push_copy_text(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::push_copy_text;

    #[test]
    fn copy_text_escapes_what_would_split_a_row() {
        let mut out = String::new();
        push_copy_text(&mut out, "a\\b\tc\nd\re");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re");
    }
}
