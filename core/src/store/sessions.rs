//! `oauth_sessions`: one row per authorization flow.
//!
//! Each step that may happen only once is a conditional UPDATE, so it holds
//! across replicas: opening the connect link (`link_used_at IS NULL`), using
//! the `state` at the callback (`callback_at IS NULL`), and finishing
//! (`status = 'pending'`).

use chrono::{DateTime, Utc};
use entity::oauth_sessions::{self as sessions, Column as S};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::credentials::{is_unique_violation, scopes_from_json, scopes_to_json};
use super::{Store, StoreError};
use crate::crypto::{Keyring, Place};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    Pending,
    Completed,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// A session as stored, without its PKCE verifier.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub id: Uuid,
    pub email: String,
    pub provider: String,
    pub state: String,
    pub status: SessionStatus,
    pub scopes: Vec<String>,
    pub redirect_after: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub connect_id: Option<String>,
    pub link_used_at: Option<DateTime<Utc>>,
    /// The API client that started the flow (`None` for flows from before clients existed).
    pub client: Option<String>,
}

impl SessionRecord {
    /// Pending but past its expiry: reported as failed ("Session expired").
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.status == SessionStatus::Pending && self.expires_at <= now
    }
}

impl From<sessions::Model> for SessionRecord {
    fn from(m: sessions::Model) -> Self {
        Self {
            id: m.id,
            email: m.profile_id,
            provider: m.provider_id,
            state: m.state,
            status: SessionStatus::parse(&m.status),
            scopes: scopes_from_json(m.scopes.as_ref()),
            redirect_after: m.redirect_after,
            expires_at: m.expires_at,
            created_at: m.created_at,
            completed_at: m.completed_at,
            failure_reason: m.failure_reason,
            connect_id: m.connect_id,
            link_used_at: m.link_used_at,
            client: m.client_id,
        }
    }
}

/// A session to create.
pub struct NewSession {
    pub id: Uuid,
    pub email: String,
    pub provider: String,
    pub state: String,
    pub connect_id: String,
    pub pkce_verifier: Option<SecretString>,
    pub scopes: Vec<String>,
    pub scopes_hash: String,
    pub redirect_after: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// The API client starting it.
    pub client: String,
}

/// A session and its opened PKCE verifier.
pub struct SessionWithVerifier {
    pub session: SessionRecord,
    pub pkce_verifier: Option<SecretString>,
}

/// What the callback found behind a `state`.
pub enum CallbackClaim {
    /// The state is ours to use, now and never again.
    Claimed(SessionWithVerifier),
    /// No session has this state.
    Unknown,
    /// The state belongs to a flow with another provider; nothing was changed.
    OtherProvider,
    /// The session exists but the state was used, the session finished, or it expired.
    Unusable(SessionRecord),
}

fn verifier_place(id: Uuid) -> Place {
    Place::new("oauth_sessions", "pkce_verifier", &id.to_string())
}

impl Store {
    /// Creates a session, or returns the pending one already waiting for the
    /// same user, provider and scopes with an unused link (`true` = reused).
    pub async fn create_or_reuse_session(
        &self,
        new: NewSession,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<(SessionRecord, bool), StoreError> {
        if let Some(existing) = self.pending_twin(&new).await? {
            if existing.expires_at > now {
                return Ok((existing, true));
            }
            // An expired twin would block the unique index: close it first.
            self.fail_session(existing.id, "expired", now).await?;
        }
        let sealed =
            new.pkce_verifier.as_ref().map(|v| keyring.seal(&verifier_place(new.id), v.expose_secret().as_bytes()));
        let model = sessions::ActiveModel {
            id: Set(new.id),
            profile_id: Set(new.email.clone()),
            provider_id: Set(new.provider.clone()),
            state: Set(new.state.clone()),
            status: Set(SessionStatus::Pending.as_str().to_owned()),
            redirect_after: Set(new.redirect_after.clone()),
            expires_at: Set(new.expires_at),
            created_at: Set(now),
            pkce_verifier: Set(sealed.as_ref().map(|s| s.token.clone())),
            pkce_verifier_key_id: Set(sealed.as_ref().map(|s| s.key_id.to_string())),
            scopes: Set(Some(scopes_to_json(&new.scopes))),
            failure_reason: Set(None),
            completed_at: Set(None),
            connect_id: Set(Some(new.connect_id.clone())),
            link_used_at: Set(None),
            callback_at: Set(None),
            scopes_hash: Set(Some(new.scopes_hash.clone())),
            client_id: Set(Some(new.client.clone())),
        };
        match sessions::Entity::insert(model).exec_without_returning(self.db()).await {
            Ok(_) => {}
            // Another request created the twin between our look and our insert.
            Err(err) if is_unique_violation(&err) => {
                if let Some(twin) = self.pending_twin(&new).await? {
                    return Ok((twin, true));
                }
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        }
        let record = self
            .find_session(new.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a session vanished right after it was written".into()))?;
        Ok((record, false))
    }

    async fn pending_twin(&self, new: &NewSession) -> Result<Option<SessionRecord>, StoreError> {
        Ok(sessions::Entity::find()
            .filter(S::ClientId.eq(new.client.as_str()))
            .filter(S::ProfileId.eq(new.email.as_str()))
            .filter(S::ProviderId.eq(new.provider.as_str()))
            .filter(S::ScopesHash.eq(new.scopes_hash.as_str()))
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .filter(S::LinkUsedAt.is_null())
            .one(self.db())
            .await?
            .map(Into::into))
    }

    pub async fn find_session(&self, id: Uuid) -> Result<Option<SessionRecord>, StoreError> {
        Ok(sessions::Entity::find_by_id(id).one(self.db()).await?.map(Into::into))
    }

    /// The session behind a connect link that can still be followed (unused,
    /// pending, unexpired), without using it.
    pub async fn peek_link(&self, connect_id: &str, now: DateTime<Utc>) -> Result<Option<SessionRecord>, StoreError> {
        Ok(sessions::Entity::find()
            .filter(S::ConnectId.eq(connect_id))
            .filter(S::LinkUsedAt.is_null())
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .filter(S::ExpiresAt.gt(now))
            .one(self.db())
            .await?
            .map(Into::into))
    }

    /// Marks the connect link used and gives the session until at least
    /// `until` (the user is now at the provider). `None` when the link is
    /// unknown, already used, or its session is no longer pending or has expired.
    pub async fn open_link(
        &self,
        connect_id: &str,
        keyring: &Keyring,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SessionWithVerifier>, StoreError> {
        let result = sessions::Entity::update_many()
            .col_expr(S::LinkUsedAt, Expr::value(now))
            .col_expr(S::ExpiresAt, at_least(until))
            .filter(S::ConnectId.eq(connect_id))
            .filter(S::LinkUsedAt.is_null())
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .filter(S::ExpiresAt.gt(now))
            .exec(self.db())
            .await?;
        if result.rows_affected != 1 {
            return Ok(None);
        }
        let row = sessions::Entity::find().filter(S::ConnectId.eq(connect_id)).one(self.db()).await?;
        row.map(|row| with_verifier(row, keyring)).transpose()
    }

    /// Uses a callback's `state` for `provider`, once, and gives the session
    /// until at least `until` to finish, so that neither the sweep nor a
    /// status poll expires a flow while its callback is completing it.
    pub async fn claim_callback(
        &self,
        state: &str,
        provider: &str,
        keyring: &Keyring,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<CallbackClaim, StoreError> {
        let Some(row) = sessions::Entity::find().filter(S::State.eq(state)).one(self.db()).await? else {
            return Ok(CallbackClaim::Unknown);
        };
        if row.provider_id != provider {
            return Ok(CallbackClaim::OtherProvider);
        }
        let result = sessions::Entity::update_many()
            .col_expr(S::CallbackAt, Expr::value(now))
            .col_expr(S::ExpiresAt, at_least(until))
            .filter(S::Id.eq(row.id))
            .filter(S::CallbackAt.is_null())
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .filter(S::ExpiresAt.gt(now))
            .exec(self.db())
            .await?;
        if result.rows_affected != 1 {
            return Ok(CallbackClaim::Unusable(row.into()));
        }
        Ok(CallbackClaim::Claimed(with_verifier(row, keyring)?))
    }

    /// pending → completed. False if it was no longer pending.
    pub async fn complete_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.finish(id, SessionStatus::Completed, None, now).await
    }

    /// Fails every pending session of `email` (`cancelled`, an offboarding):
    /// their links stop working. How many there were.
    pub async fn cancel_pending_sessions(&self, email: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let ids: Vec<Uuid> = sessions::Entity::find()
            .select_only()
            .column(S::Id)
            .filter(S::ProfileId.eq(email))
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .into_tuple()
            .all(self.db())
            .await?;
        let mut cancelled = 0;
        for id in ids {
            if self.finish(id, SessionStatus::Failed, Some("cancelled"), now).await? {
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    /// pending → failed with `reason`. False if it was no longer pending.
    pub async fn fail_session(&self, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.finish(id, SessionStatus::Failed, Some(reason), now).await
    }

    async fn finish(
        &self,
        id: Uuid,
        status: SessionStatus,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let result = sessions::Entity::update_many()
            .col_expr(S::Status, Expr::value(status.as_str()))
            .col_expr(S::FailureReason, Expr::value(reason.map(str::to_owned)))
            .col_expr(S::CompletedAt, Expr::value(now))
            // The verifier is useless once the flow is over.
            .col_expr(S::PkceVerifier, Expr::value(Option::<String>::None))
            .col_expr(S::PkceVerifierKeyId, Expr::value(Option::<String>::None))
            .filter(S::Id.eq(id))
            .filter(S::Status.eq(SessionStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
        if result.rows_affected == 1
            && let Some(reason) = reason
            && let Some(row) = sessions::Entity::find_by_id(id).one(&txn).await?
        {
            let event = session_failed(id, &row.provider_id, &row.profile_id, reason);
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected == 1)
    }
}

/// The `session.failed` event.
pub(super) fn session_failed(id: Uuid, provider: &str, user_email: &str, reason: &str) -> crate::webhooks::Event {
    crate::webhooks::Event::credential(crate::webhooks::EventType::SessionFailed, provider, user_email)
        .with("session_id", id.to_string())
        .with("reason", reason)
}

/// `expires_at`, moved to `until` if that is later (never shortened).
fn at_least(until: DateTime<Utc>) -> sea_orm::sea_query::SimpleExpr {
    Expr::case(S::ExpiresAt.lt(until), Expr::value(until)).finally(Expr::col(S::ExpiresAt)).into()
}

fn with_verifier(row: sessions::Model, keyring: &Keyring) -> Result<SessionWithVerifier, StoreError> {
    let pkce_verifier = match &row.pkce_verifier {
        Some(token) => Some(
            keyring
                .open(&verifier_place(row.id), row.pkce_verifier_key_id.as_deref().unwrap_or_default(), token)?
                .secret,
        ),
        None => None,
    };
    Ok(SessionWithVerifier { session: row.into(), pkce_verifier })
}
