//! Many credentials at once, for tests and benchmarks that need tens of
//! thousands of rows quickly (one multi-row INSERT per thousand). Not used
//! by the gateway itself: real credentials only come from authorizations.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement, Value};

use super::credentials::CredentialKey;
use super::{Store, StoreError};
use crate::crypto::Keyring;

/// One credential to insert: its key and its (plain) tokens.
pub struct SeedCredential {
    pub key: CredentialKey,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Inserts `credentials` sealed under `keyring`'s primary key.
    pub async fn seed_credentials(
        &self,
        keyring: &Keyring,
        credentials: &[SeedCredential],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let backend = self.db().get_database_backend();
        for chunk in credentials.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO oauth_credentials (id, profile_id, provider_id, access_token, access_token_key_id, refresh_token, \
                 refresh_token_key_id, token_expiry, scopes, state, consecutive_failures, version, created_at, updated_at, \
                 last_refreshed_at, authorized_at) VALUES ",
            );
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 12);
            for (i, c) in chunk.iter().enumerate() {
                let access = keyring.seal(&c.key.place("access_token"), c.access_token.as_bytes());
                let refresh = keyring.seal(&c.key.place("refresh_token"), c.refresh_token.as_bytes());
                let p: Vec<String> = (1..=12).map(|k| format!("${}", values.len() + k)).collect();
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, '[\"openid\",\"email\",\"mail.read\"]', 'active', 0, 1, {}, {}, {}, {})",
                    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]
                ));
                values.extend([
                    uuid::Uuid::now_v7().into(),
                    c.key.email.to_string().into(),
                    c.key.provider.clone().into(),
                    access.token.into(),
                    access.key_id.to_string().into(),
                    refresh.token.into(),
                    refresh.key_id.to_string().into(),
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
