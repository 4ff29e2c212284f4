//! `oauth_providers`: every provider credentials and sessions may reference.
//! Providers configured by environment variables are upserted at start
//! (`source = 'env'`); `gateway providers add` writes `source = 'cli'` rows,
//! which the gateway loads as its runtime configuration.

use chrono::{DateTime, Utc};
use entity::oauth_providers::{self as providers, Column as P};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use secrecy::ExposeSecret;
use url::Url;

use super::{Store, StoreError};
use crate::crypto::{Keyring, Place};
use crate::oauth::provider::{ClientAuth, IdentityCheck, ProviderConfig, ProviderKind, ProviderSource};
use crate::webhooks::{Event, EventType};

fn secret_place(id: &str) -> Place {
    Place::new("oauth_providers", "client_secret", id)
}

/// What `gateway providers list` shows (no secret).
#[derive(Clone, Debug)]
pub struct ProviderRow {
    pub id: String,
    pub kind: String,
    pub source: String,
    pub client_id: String,
    pub auth_url: Option<String>,
    pub credentials: u64,
    /// Since when the provider refuses our client, and with which error.
    pub failing: Option<(DateTime<Utc>, String)>,
}

/// A provider's client configuration as the provider judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderHealthRow {
    pub id: String,
    pub failing: Option<(DateTime<Utc>, String)>,
}

impl Store {
    /// Inserts or updates the provider's row, sealing its client secret.
    pub async fn upsert_provider(
        &self,
        p: &ProviderConfig,
        keyring: &Keyring,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sealed = keyring.seal(&secret_place(&p.id), p.client_secret.expose_secret().as_bytes());
        let params: Vec<[String; 2]> = p.auth_params.iter().map(|(k, v)| [k.clone(), v.clone()]).collect();
        let model = providers::ActiveModel {
            id: Set(p.id.clone()),
            client_id: Set(p.client_id.clone()),
            client_secret: Set(sealed.token),
            client_secret_key_id: Set(sealed.key_id.to_string()),
            auth_url: Set(Some(p.auth_url.to_string())),
            token_url: Set(Some(p.token_url.to_string())),
            scopes: Set(Some(serde_json::Value::from(p.default_scopes.clone()))),
            created_at: Set(now),
            updated_at: Set(now),
            kind: Set(p.kind.as_str().to_owned()),
            revocation_url: Set(p.revocation_url.as_ref().map(ToString::to_string)),
            userinfo_url: Set(p.userinfo_url.as_ref().map(ToString::to_string)),
            auth_params: Set(Some(serde_json::json!(params))),
            pkce: Set(p.pkce),
            client_auth: Set(p.client_auth.as_str().to_owned()),
            identity_check: Set(p.identity_check.as_str().to_owned()),
            login_hint: Set(p.login_hint),
            redirect_uri: Set(p.redirect_uri.as_ref().map(ToString::to_string)),
            source: Set(match p.source {
                ProviderSource::Env => "env",
                ProviderSource::Database => "cli",
            }
            .to_owned()),
            // A new configuration has not been refused yet.
            failing_since: Set(None),
            failure_category: Set(None),
            issuer: Set((!p.issuers.is_empty()).then(|| p.issuers.join(","))),
            trust_unverified_email: Set(p.trust_unverified_email),
        };
        providers::Entity::insert(model)
            .on_conflict(
                OnConflict::column(P::Id)
                    .update_columns([
                        P::ClientId,
                        P::ClientSecret,
                        P::ClientSecretKeyId,
                        P::AuthUrl,
                        P::TokenUrl,
                        P::Scopes,
                        P::UpdatedAt,
                        P::Kind,
                        P::RevocationUrl,
                        P::UserinfoUrl,
                        P::AuthParams,
                        P::Pkce,
                        P::ClientAuth,
                        P::IdentityCheck,
                        P::LoginHint,
                        P::RedirectUri,
                        P::Source,
                        P::FailingSince,
                        P::FailureCategory,
                        P::Issuer,
                        P::TrustUnverifiedEmail,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await?;
        Ok(())
    }

    /// Providers managed in the database (`source = 'cli'`), secrets opened.
    /// A row that cannot be used is skipped with a warning, not fatal.
    pub async fn load_database_providers(&self, keyring: &Keyring) -> Result<Vec<ProviderConfig>, StoreError> {
        let rows = providers::Entity::find().filter(P::Source.eq("cli")).all(self.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.id.clone();
            match provider_from_row(row, keyring) {
                Ok(p) => out.push(p),
                Err(problem) => {
                    tracing::warn!(provider = %id, problem = %problem, "skipping unusable provider row")
                }
            }
        }
        Ok(out)
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderRow>, StoreError> {
        let rows = providers::Entity::find().order_by_asc(P::Id).all(self.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let credentials = entity::oauth_credentials::Entity::find()
                .filter(entity::oauth_credentials::Column::ProviderId.eq(row.id.as_str()))
                .count(self.db())
                .await?;
            out.push(ProviderRow {
                id: row.id,
                kind: row.kind,
                source: row.source,
                client_id: row.client_id,
                auth_url: row.auth_url,
                credentials,
                failing: row.failing_since.map(|since| (since, row.failure_category.unwrap_or_default())),
            });
        }
        Ok(out)
    }

    /// Records that the provider refuses our client (`category`:
    /// `invalid_client` or `unauthorized_client`). True if it was not yet
    /// known to be failing.
    pub async fn set_provider_failing(&self, id: &str, category: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let result = providers::Entity::update_many()
            .col_expr(P::FailingSince, Expr::value(now))
            .col_expr(P::FailureCategory, Expr::value(category))
            .filter(P::Id.eq(id))
            .filter(P::FailingSince.is_null())
            .exec(&txn)
            .await?;
        if result.rows_affected == 1 {
            let event = Event {
                kind: EventType::ProviderFailing,
                data: serde_json::json!({"provider": id, "category": category}),
            };
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected == 1)
    }

    /// Records that the provider accepts our client again. True if it was failing.
    pub async fn clear_provider_failing(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let txn = self.begin_write().await?;
        let result = providers::Entity::update_many()
            .col_expr(P::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
            .col_expr(P::FailureCategory, Expr::value(Option::<String>::None))
            .filter(P::Id.eq(id))
            .filter(P::FailingSince.is_not_null())
            .exec(&txn)
            .await?;
        if result.rows_affected == 1 {
            let event = Event { kind: EventType::ProviderRecovered, data: serde_json::json!({"provider": id}) };
            super::outbox::enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        Ok(result.rows_affected == 1)
    }

    /// Every provider's health as recorded.
    pub async fn provider_health(&self) -> Result<Vec<ProviderHealthRow>, StoreError> {
        let rows: Vec<(String, Option<DateTime<Utc>>, Option<String>)> = providers::Entity::find()
            .select_only()
            .columns([P::Id, P::FailingSince, P::FailureCategory])
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, since, category)| ProviderHealthRow {
                id,
                failing: since.map(|since| (since, category.unwrap_or_default())),
            })
            .collect())
    }

    /// Removes a provider added by the CLI, and its sessions.
    pub async fn delete_provider(&self, id: &str) -> Result<ProviderRemoval, StoreError> {
        let Some(row) = providers::Entity::find_by_id(id.to_owned()).one(self.db()).await? else {
            return Ok(ProviderRemoval::NotFound);
        };
        if row.source == "env" {
            return Ok(ProviderRemoval::FromEnvironment);
        }
        let credentials = entity::oauth_credentials::Entity::find()
            .filter(entity::oauth_credentials::Column::ProviderId.eq(id))
            .count(self.db())
            .await?;
        if credentials > 0 {
            return Ok(ProviderRemoval::InUse(credentials));
        }
        providers::Entity::delete_by_id(id.to_owned()).exec(self.db()).await?;
        Ok(ProviderRemoval::Removed)
    }
}

/// What `delete_provider` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderRemoval {
    Removed,
    NotFound,
    /// Configured by environment variables: remove those instead.
    FromEnvironment,
    /// This many credentials still use it: revoke them first.
    InUse(u64),
}

/// Why a provider row cannot be served.
#[derive(Debug, thiserror::Error)]
enum UnusableRow {
    #[error("no {0}")]
    Missing(&'static str),
    #[error("bad {what}")]
    BadUrl {
        what: &'static str,
        #[source]
        source: url::ParseError,
    },
    #[error("its client secret cannot be opened")]
    Secret(#[from] crate::crypto::CryptoError),
}

fn provider_from_row(row: providers::Model, keyring: &Keyring) -> Result<ProviderConfig, UnusableRow> {
    let url = |s: Option<&str>, what: &'static str| -> Result<Url, UnusableRow> {
        Url::parse(s.ok_or(UnusableRow::Missing(what))?).map_err(|source| UnusableRow::BadUrl { what, source })
    };
    let optional_url = |s: Option<&str>| s.and_then(|s| Url::parse(s).ok());
    let secret = keyring.open(&secret_place(&row.id), &row.client_secret_key_id, &row.client_secret)?;
    let auth_params = row
        .auth_params
        .as_ref()
        .and_then(|v| v.as_array())
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_str()?.to_owned(), p.get(1)?.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(ProviderConfig {
        auth_url: url(row.auth_url.as_deref(), "authorization URL")?,
        token_url: url(row.token_url.as_deref(), "token URL")?,
        revocation_url: optional_url(row.revocation_url.as_deref()),
        userinfo_url: optional_url(row.userinfo_url.as_deref()),
        redirect_uri: optional_url(row.redirect_uri.as_deref()),
        kind: ProviderKind::parse(&row.kind).unwrap_or(ProviderKind::Generic),
        client_id: row.client_id,
        client_secret: secret.secret,
        default_scopes: super::credentials::scopes_from_json(row.scopes.as_ref()),
        auth_params,
        pkce: row.pkce,
        client_auth: ClientAuth::parse(&row.client_auth).unwrap_or(ClientAuth::Basic),
        identity_check: IdentityCheck::parse(&row.identity_check).unwrap_or(IdentityCheck::Optional),
        login_hint: row.login_hint,
        source: ProviderSource::Database,
        issuers: row
            .issuer
            .as_deref()
            .map(|i| i.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        trust_unverified_email: row.trust_unverified_email,
        // Microsoft is configured by environment variables only.
        tenant_rule: None,
        id: row.id,
    })
}
