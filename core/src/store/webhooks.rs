//! `webhooks`: subscriptions, their secrets sealed like client secrets
//! (place `webhooks/secret/<id>`), and `pending_revocations`: grants whose
//! revocation a provider could not take yet (place
//! `pending_revocations/token/<id>`).

use chrono::{DateTime, Utc};
use entity::pending_revocations::{self as revocations, Column as R};
use entity::webhooks::{self as hooks, Column as W};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set, Statement};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{Store, StoreError, db_backend, placeholders};
use crate::config::Backend;
use crate::crypto::{Keyring, Place};

/// A subscription as stored (its secret sealed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn secret_place(id: Uuid) -> Place {
    Place::new("webhooks", "secret", &id.to_string())
}

pub(crate) fn revocation_place(id: Uuid) -> Place {
    Place::new("pending_revocations", "token", &id.to_string())
}

/// A revocation to retry, its token opened.
pub struct PendingRevocation {
    pub id: Uuid,
    pub provider: String,
    pub user_email: String,
    pub token: SecretString,
    /// `refresh_token` or `access_token`.
    pub kind: String,
    pub attempts: i32,
}

impl std::fmt::Debug for PendingRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRevocation")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

fn strings(json: &serde_json::Value) -> Vec<String> {
    json.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

impl Store {
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[String],
        secret: &SecretString,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::now_v7();
        let sealed = keyring.seal(&secret_place(id), secret.expose_secret().as_bytes());
        let row = hooks::ActiveModel {
            id: Set(id),
            url: Set(url.to_owned()),
            events: Set(serde_json::Value::from(events.to_vec())),
            secret: Set(sealed.token),
            secret_key_id: Set(sealed.key_id.to_string()),
            enabled: Set(true),
            created_at: Set(now),
        };
        hooks::Entity::insert(row).exec_without_returning(self.db()).await?;
        Ok(id)
    }

    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
        Ok(hooks::Entity::find()
            .order_by_asc(W::Id)
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| WebhookRow {
                id: m.id,
                events: strings(&m.events),
                url: m.url,
                enabled: m.enabled,
                created_at: m.created_at,
            })
            .collect())
    }

    /// The signing secret of subscription `id`, opened.
    pub async fn webhook_secret(&self, id: Uuid, keyring: &Keyring) -> Result<Option<SecretString>, StoreError> {
        let Some(row) = hooks::Entity::find_by_id(id).one(self.db()).await? else { return Ok(None) };
        Ok(Some(keyring.open(&secret_place(id), &row.secret_key_id, &row.secret)?.secret))
    }

    /// Removes a subscription; false if there was none.
    pub async fn remove_webhook(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(hooks::Entity::delete_many().filter(W::Id.eq(id)).exec(self.db()).await?.rows_affected > 0)
    }

    /// Queues `token` for another revocation attempt, on `conn` (the
    /// transaction deleting the credential).
    pub(crate) async fn queue_revocation<C: ConnectionTrait>(
        conn: &C,
        keyring: &Keyring,
        key: &super::credentials::CredentialKey,
        retry: super::credentials::Retry<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let id = Uuid::now_v7();
        let sealed = keyring.seal(&revocation_place(id), retry.token.expose_secret().as_bytes());
        let row = revocations::ActiveModel {
            id: Set(id),
            provider_id: Set(key.provider.clone()),
            profile_id: Set(key.email.as_str().to_owned()),
            token: Set(sealed.token),
            token_key_id: Set(sealed.key_id.to_string()),
            token_kind: Set(retry.kind.to_owned()),
            attempts: Set(1),
            next_attempt_at: Set(retry.next_attempt_at),
            last_error: Set(Some("failed".to_owned())),
            created_at: Set(now),
        };
        revocations::Entity::insert(row).exec_without_returning(conn).await?;
        Ok(())
    }

    /// Claims up to `limit` due revocations by moving their next attempt to
    /// `hold_until` (one replica at a time: `SKIP LOCKED` on PostgreSQL).
    pub async fn claim_revocations(
        &self,
        keyring: &Keyring,
        now: DateTime<Utc>,
        hold_until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<PendingRevocation>, StoreError> {
        let skip_locked = if self.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE pending_revocations SET next_attempt_at = $1 WHERE id IN (\
               SELECT id FROM pending_revocations WHERE next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3{skip_locked}) \
             RETURNING id"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stmt = Statement::from_sql_and_values(
            db_backend(self.backend()),
            placeholders(self.backend(), &sql),
            [hold_until.into(), now.into(), limit.into()],
        );
        let ids: Vec<Uuid> =
            self.db().query_all_raw(stmt).await?.iter().map(|r| r.try_get("", "id")).collect::<Result<_, _>>()?;
        let rows = revocations::Entity::find().filter(R::Id.is_in(ids)).all(self.db()).await?;
        rows.into_iter()
            .map(|m| {
                let token = keyring.open(&revocation_place(m.id), &m.token_key_id, &m.token)?.secret;
                Ok(PendingRevocation {
                    id: m.id,
                    provider: m.provider_id,
                    user_email: m.profile_id,
                    token,
                    kind: m.token_kind,
                    attempts: m.attempts,
                })
            })
            .collect()
    }

    /// A revocation that went through (or was given up): forgotten.
    pub async fn forget_revocation(&self, id: Uuid) -> Result<(), StoreError> {
        revocations::Entity::delete_many().filter(R::Id.eq(id)).exec(self.db()).await?;
        Ok(())
    }

    /// Another failed attempt; the next at `next`.
    pub async fn revocation_failed_again(
        &self,
        id: Uuid,
        category: &str,
        next: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        revocations::Entity::update_many()
            .col_expr(R::Attempts, Expr::col(R::Attempts).add(1))
            .col_expr(R::LastError, Expr::value(category))
            .col_expr(R::NextAttemptAt, Expr::value(next))
            .filter(R::Id.eq(id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// How many revocations wait for a retry.
    pub async fn pending_revocation_count(&self) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        Ok(revocations::Entity::find().count(self.db()).await?)
    }
}
