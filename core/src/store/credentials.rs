//! `oauth_credentials`: stored grants, their refresh lease, and
//! compare-and-swap writes on `version`.
//!
//! Several replicas may share the table. A refresh first takes the row's
//! *lease* (`refresh_lease_owner`/`refresh_lease_until`, a conditional
//! UPDATE that only one replica can win), re-reads the row, calls the
//! provider, and writes the result with `WHERE version = <read version>`.
//! No connection is held while the provider answers, and a lease left by a
//! crashed replica simply expires.

use chrono::{DateTime, Utc};
use entity::oauth_credentials::{self as creds, Column as C};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::crypto::{Keyring, Place};
use crate::email::Email;
use crate::webhooks::{Event, EventType};

/// `active` or `needs_reauth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    Active,
    NeedsReauth,
}

impl CredentialState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        if s == "needs_reauth" { Self::NeedsReauth } else { Self::Active }
    }
}

/// Which credential: the natural key, also the ciphertexts' row key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    pub email: Email,
    pub provider: String,
}

impl CredentialKey {
    pub fn place(&self, column: &str) -> Place {
        Place::new("oauth_credentials", column, &format!("{}/{}", self.provider, self.email))
    }
}

/// A credential with its tokens opened.
pub struct StoredCredential {
    pub id: Uuid,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub state: CredentialState,
    pub version: i64,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("state", &self.state)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A credential without its secrets, for listings.
#[derive(Clone, Debug)]
pub struct CredentialSummary {
    pub provider: String,
    pub scopes: Vec<String>,
    pub authorized_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub state: CredentialState,
}

/// A revocation to try again later (the provider could not take it now).
#[derive(Clone, Copy, Debug)]
pub struct Retry<'a> {
    pub token: &'a SecretString,
    /// `refresh_token` or `access_token`.
    pub kind: &'a str,
    pub next_attempt_at: DateTime<Utc>,
}

/// Tokens to store after an authorization or a refresh.
pub struct NewTokens {
    pub access_token: SecretString,
    /// `None` keeps the stored refresh token (providers that do not rotate).
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` keeps the stored scopes.
    pub scopes: Option<Vec<String>>,
}

pub(super) fn scopes_from_json(json: Option<&serde_json::Value>) -> Vec<String> {
    json.and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

pub(super) fn scopes_to_json(scopes: &[String]) -> serde_json::Value {
    serde_json::Value::from(scopes.to_vec())
}

impl Store {
    async fn credential_row(&self, key: &CredentialKey) -> Result<Option<creds::Model>, StoreError> {
        Ok(creds::Entity::find().filter(row_of(key)).one(self.db()).await?)
    }

    /// The credential with its tokens opened, if one is stored.
    pub async fn load_credential(
        &self,
        key: &CredentialKey,
        keyring: &Keyring,
    ) -> Result<Option<StoredCredential>, StoreError> {
        let Some(row) = self.credential_row(key).await? else {
            return Ok(None);
        };
        open_row(key, row, keyring).map(Some)
    }

    /// Stores the tokens of a completed authorization: inserts the credential
    /// or replaces the stored grant, and makes it `active` again.
    ///
    /// One `INSERT … ON CONFLICT DO UPDATE` statement: it takes SQLite's write
    /// lock before it reads anything, so it waits in the busy handler instead
    /// of failing at once the way a deferred read-then-write transaction does
    /// when another writer committed in between (see docs/architecture.md's design
    /// notes), and two callbacks for the same user cannot both insert. A
    /// replaced grant keeps its row id and bumps `version`, so a refresh that
    /// read the old grant can no longer write.
    pub async fn upsert_authorized(
        &self,
        key: &CredentialKey,
        tokens: &NewTokens,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<StoredCredential, StoreError> {
        let access = keyring.seal(&key.place("access_token"), tokens.access_token.expose_secret().as_bytes());
        let refresh = tokens
            .refresh_token
            .as_ref()
            .map(|r| keyring.seal(&key.place("refresh_token"), r.expose_secret().as_bytes()));
        let scopes = tokens.scopes.clone().unwrap_or_default();
        let model = creds::ActiveModel {
            id: Set(Uuid::now_v7()),
            profile_id: Set(key.email.as_str().to_owned()),
            provider_id: Set(key.provider.clone()),
            access_token: Set(access.token),
            access_token_key_id: Set(access.key_id.to_string()),
            refresh_token: Set(refresh.as_ref().map(|r| r.token.clone())),
            refresh_token_key_id: Set(refresh.as_ref().map(|r| r.key_id.to_string())),
            token_expiry: Set(tokens.expires_at),
            scopes: Set(Some(scopes_to_json(&scopes))),
            state: Set(CredentialState::Active.as_str().to_owned()),
            last_error_category: Set(None),
            last_error_at: Set(None),
            consecutive_failures: Set(0),
            last_used_at: Set(None),
            last_refreshed_at: Set(Some(now)),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            refresh_lease_until: Set(None),
            refresh_lease_owner: Set(None),
            authorized_at: Set(Some(now)),
            last_verified_at: Set(Some(now)),
        };
        // A re-consent without a refresh token keeps the stored one (Google
        // answers a repeated consent without it).
        let keep_if_null = |col: &str| Expr::cust(format!("COALESCE(excluded.{col}, oauth_credentials.{col})"));
        let on_conflict = OnConflict::columns([C::ProfileId, C::ProviderId])
            .update_columns([
                C::AccessToken,
                C::AccessTokenKeyId,
                C::TokenExpiry,
                C::Scopes,
                C::State,
                C::LastErrorCategory,
                C::LastErrorAt,
                C::ConsecutiveFailures,
                C::LastRefreshedAt,
                C::AuthorizedAt,
                C::LastVerifiedAt,
                C::RefreshLeaseOwner,
                C::RefreshLeaseUntil,
                C::UpdatedAt,
            ])
            .value(C::RefreshToken, keep_if_null("refresh_token"))
            .value(C::RefreshTokenKeyId, keep_if_null("refresh_token_key_id"))
            .value(C::Version, Expr::cust("oauth_credentials.version + 1"))
            .to_owned();
        // The grant and its `credential.connected` event commit together.
        let txn = self.begin_write().await?;
        let row = creds::Entity::insert(model).on_conflict(on_conflict).exec_with_returning(&txn).await?;
        let event =
            Event::credential(EventType::CredentialConnected, &key.provider, key.email.as_str()).with("scopes", scopes);
        super::outbox::enqueue(&txn, &event, now).await?;
        txn.commit().await?;
        open_row(key, row, keyring)
    }

    /// Takes the refresh lease of `key` for `owner` until `until`. False when
    /// another replica holds an unexpired lease (or there is no such row).
    pub async fn try_lease(
        &self,
        key: &CredentialKey,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = creds::Entity::update_many()
            .col_expr(C::RefreshLeaseOwner, Expr::value(owner))
            .col_expr(C::RefreshLeaseUntil, Expr::value(until))
            .filter(row_of(key))
            .filter(C::RefreshLeaseUntil.is_null().or(C::RefreshLeaseUntil.lt(now)).or(C::RefreshLeaseOwner.eq(owner)))
            .exec(self.db())
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives the lease back (only if `owner` still holds it).
    pub async fn release_lease(&self, key: &CredentialKey, owner: &str) -> Result<(), StoreError> {
        creds::Entity::update_many()
            .col_expr(C::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(C::RefreshLeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .filter(row_of(key))
            .filter(C::RefreshLeaseOwner.eq(owner))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Writes refreshed tokens if row `id` is still at `version`; releases the
    /// lease in the same write. Returns the new version, or `None` when the
    /// row changed or vanished meanwhile (a re-authorized credential after a
    /// delete is a new row, whatever its version).
    pub async fn store_refreshed(
        &self,
        key: &CredentialKey,
        id: Uuid,
        version: i64,
        tokens: &NewTokens,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let access = keyring.seal(&key.place("access_token"), tokens.access_token.expose_secret().as_bytes());
        let mut update = creds::Entity::update_many()
            .col_expr(C::AccessToken, Expr::value(access.token))
            .col_expr(C::AccessTokenKeyId, Expr::value(access.key_id.to_string()))
            .col_expr(C::TokenExpiry, Expr::value(tokens.expires_at))
            .col_expr(C::LastRefreshedAt, Expr::value(now))
            .col_expr(C::LastVerifiedAt, Expr::value(now))
            .col_expr(C::LastErrorCategory, Expr::value(Option::<String>::None))
            .col_expr(C::LastErrorAt, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(C::ConsecutiveFailures, Expr::value(0))
            .col_expr(C::State, Expr::value(CredentialState::Active.as_str()))
            .col_expr(C::Version, Expr::col(C::Version).add(1))
            .col_expr(C::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(C::RefreshLeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(C::UpdatedAt, Expr::value(now));
        // A rotated refresh token goes in the same write as the access token.
        if let Some(refresh) = &tokens.refresh_token {
            let sealed = keyring.seal(&key.place("refresh_token"), refresh.expose_secret().as_bytes());
            update = update
                .col_expr(C::RefreshToken, Expr::value(sealed.token))
                .col_expr(C::RefreshTokenKeyId, Expr::value(sealed.key_id.to_string()));
        }
        if let Some(scopes) = &tokens.scopes {
            update = update.col_expr(C::Scopes, Expr::value(scopes_to_json(scopes)));
        }
        let txn = self.begin_write().await?;
        let result = update.filter(C::Id.eq(id)).filter(C::Version.eq(version)).exec(&txn).await?;
        if result.rows_affected == 1 {
            let event = Event::credential(EventType::CredentialRefreshed, &key.provider, key.email.as_str())
                .with("expires_at", tokens.expires_at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok((result.rows_affected == 1).then_some(version + 1))
    }

    /// Records a failed refresh of row `id` at `version`: a permanent failure
    /// makes the credential `needs_reauth`; a transient one only counts.
    /// Releases the lease. False when the row changed or vanished meanwhile.
    pub async fn record_refresh_failure(
        &self,
        key: &CredentialKey,
        id: Uuid,
        version: i64,
        category: &str,
        permanent: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut update = creds::Entity::update_many()
            .col_expr(C::LastErrorCategory, Expr::value(category))
            .col_expr(C::LastErrorAt, Expr::value(now))
            .col_expr(C::ConsecutiveFailures, Expr::col(C::ConsecutiveFailures).add(1))
            .col_expr(C::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(C::RefreshLeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(C::UpdatedAt, Expr::value(now));
        if permanent {
            update = update
                .col_expr(C::State, Expr::value(CredentialState::NeedsReauth.as_str()))
                .col_expr(C::Version, Expr::col(C::Version).add(1));
        }
        let txn = self.begin_write().await?;
        let result = update.filter(C::Id.eq(id)).filter(C::Version.eq(version)).exec(&txn).await?;
        if permanent && result.rows_affected == 1 {
            let event = Event::credential(EventType::CredentialNeedsReauth, &key.provider, key.email.as_str())
                .with("category", category);
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected == 1)
    }

    /// Deletes the credential, with its `credential.revoked` event (`outcome`:
    /// what the provider did) and, when the provider could not take the
    /// revocation, the token to try again (`retry`), all in one transaction.
    /// True if there was a credential.
    pub async fn delete_credential(
        &self,
        key: &CredentialKey,
        outcome: &str,
        retry: Option<Retry<'_>>,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let result = creds::Entity::delete_many().filter(row_of(key)).exec(&txn).await?;
        if result.rows_affected > 0 {
            if let Some(retry) = retry {
                Store::queue_revocation(&txn, keyring, key, retry, now).await?;
            }
            let event = Event::credential(EventType::CredentialRevoked, &key.provider, key.email.as_str())
                .with("provider_revocation", outcome);
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected > 0)
    }

    /// The user's credentials, without secrets.
    pub async fn list_credentials(&self, email: &Email) -> Result<Vec<CredentialSummary>, StoreError> {
        let rows = creds::Entity::find()
            .filter(C::ProfileId.eq(email.as_str()))
            .order_by_asc(C::ProviderId)
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| CredentialSummary {
                scopes: scopes_from_json(row.scopes.as_ref()),
                authorized_at: row.authorized_at.unwrap_or(row.created_at),
                expires_at: row.token_expiry,
                state: CredentialState::parse(&row.state),
                provider: row.provider_id,
            })
            .collect())
    }

    /// Records when these credentials were last served: one statement per
    /// [`TOUCH_BATCH`] credentials, not one each.
    pub async fn touch_last_used(&self, keys: &[&CredentialKey], at: DateTime<Utc>) -> Result<(), StoreError> {
        for batch in keys.chunks(TOUCH_BATCH) {
            let rows = batch.iter().fold(Condition::any(), |rows, key| rows.add(row_of(key)));
            creds::Entity::update_many().col_expr(C::LastUsedAt, Expr::value(at)).filter(rows).exec(self.db()).await?;
        }
        Ok(())
    }
}

/// Credentials per `last_used_at` statement: two parameters each, far under
/// either backend's limit on bound parameters.
pub const TOUCH_BATCH: usize = 500;

/// The one row of `key`'s credential.
fn row_of(key: &CredentialKey) -> Condition {
    Condition::all().add(C::ProfileId.eq(key.email.as_str())).add(C::ProviderId.eq(key.provider.as_str()))
}

fn open_row(key: &CredentialKey, row: creds::Model, keyring: &Keyring) -> Result<StoredCredential, StoreError> {
    let access = keyring.open(&key.place("access_token"), &row.access_token_key_id, &row.access_token)?;
    let refresh = match (&row.refresh_token, &row.refresh_token_key_id) {
        (Some(token), key_id) => {
            Some(keyring.open(&key.place("refresh_token"), key_id.as_deref().unwrap_or_default(), token)?.secret)
        }
        (None, _) => None,
    };
    Ok(StoredCredential {
        id: row.id,
        access_token: access.secret,
        refresh_token: refresh,
        expires_at: row.token_expiry,
        scopes: scopes_from_json(row.scopes.as_ref()),
        state: CredentialState::parse(&row.state),
        version: row.version,
    })
}

pub(super) fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
}
