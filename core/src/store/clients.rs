//! `api_clients`: API clients and their rights.

use chrono::{DateTime, Utc};
use entity::api_clients::{self as clients, Column as A};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::access::Action;

/// A client as stored (digests only).
#[derive(Clone, Debug)]
pub struct ClientRecord {
    pub id: Uuid,
    pub name: String,
    pub key_digest: String,
    pub previous_key_digest: Option<String>,
    pub previous_key_valid_until: Option<DateTime<Utc>>,
    pub actions: Vec<Action>,
    pub providers: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    /// CIDR blocks as written.
    pub networks: Option<Vec<String>>,
    pub enabled: bool,
    pub exchange: ClientExchange,
    pub created_at: DateTime<Utc>,
}

/// How a client takes part in token exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientExchange {
    /// The `aud` values its MCP server's subject tokens carry.
    pub audiences: Vec<String>,
    /// Whether `/auth/token` (a user named by the caller) is refused.
    pub require_exchange: bool,
    /// The public JWK (JSON) its workers sign assertions with.
    pub assertion_key: Option<String>,
}

/// A change to [`ClientExchange`]; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct ExchangeUpdate {
    pub audiences: Option<Vec<String>>,
    pub require_exchange: Option<bool>,
    /// `Some(None)` removes the key.
    pub assertion_key: Option<Option<String>>,
}

fn strings(json: Option<&serde_json::Value>) -> Option<Vec<String>> {
    json?.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

impl From<clients::Model> for ClientRecord {
    fn from(m: clients::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            key_digest: m.key_digest,
            previous_key_digest: m.previous_key_digest,
            previous_key_valid_until: m.previous_key_valid_until,
            actions: strings(Some(&m.allowed_actions))
                .unwrap_or_default()
                .iter()
                .filter_map(|a| Action::parse(a))
                .collect(),
            providers: strings(m.allowed_providers.as_ref()),
            domains: strings(m.allowed_domains.as_ref()),
            networks: strings(m.allowed_networks.as_ref()),
            enabled: m.enabled,
            exchange: ClientExchange {
                audiences: strings(m.audiences.as_ref()).unwrap_or_default(),
                require_exchange: m.require_exchange,
                assertion_key: m.assertion_key,
            },
            created_at: m.created_at,
        }
    }
}

/// A new client's rights.
#[derive(Clone, Debug)]
pub struct NewClient {
    pub name: String,
    pub key_digest: String,
    pub actions: Vec<Action>,
    pub providers: Option<Vec<String>>,
    pub domains: Option<Vec<String>>,
    pub networks: Option<Vec<String>>,
    pub exchange: ClientExchange,
}

fn json(list: &Option<Vec<String>>) -> Option<serde_json::Value> {
    list.as_ref().map(|l| serde_json::Value::from(l.clone()))
}

fn audiences_json(list: &[String]) -> Option<serde_json::Value> {
    (!list.is_empty()).then(|| serde_json::Value::from(list.to_vec()))
}

impl Store {
    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(clients::Entity::find().order_by_asc(A::Name).all(self.db()).await?.into_iter().map(Into::into).collect())
    }

    pub async fn find_client(&self, name: &str) -> Result<Option<ClientRecord>, StoreError> {
        Ok(clients::Entity::find().filter(A::Name.eq(name)).one(self.db()).await?.map(Into::into))
    }

    /// Adds a client; `Ok(false)` when the name is taken.
    pub async fn add_client(&self, new: NewClient, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let actions: Vec<&str> = new.actions.iter().map(|a| a.as_str()).collect();
        let model = clients::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(new.name.clone()),
            key_digest: Set(new.key_digest),
            previous_key_digest: Set(None),
            previous_key_valid_until: Set(None),
            allowed_providers: Set(json(&new.providers)),
            allowed_domains: Set(json(&new.domains)),
            allowed_actions: Set(serde_json::json!(actions)),
            allowed_networks: Set(json(&new.networks)),
            enabled: Set(true),
            audiences: Set(audiences_json(&new.exchange.audiences)),
            require_exchange: Set(new.exchange.require_exchange),
            assertion_key: Set(new.exchange.assertion_key),
            created_at: Set(now),
            updated_at: Set(now),
        };
        match clients::Entity::insert(model).exec_without_returning(self.db()).await {
            Ok(_) => Ok(true),
            Err(err) if super::credentials::is_unique_violation(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Enables or disables a client; `false` when there is no such client.
    pub async fn set_client_enabled(&self, name: &str, enabled: bool, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let Some(model) = clients::Entity::find().filter(A::Name.eq(name)).one(self.db()).await? else {
            return Ok(false);
        };
        let mut active: clients::ActiveModel = model.into();
        active.enabled = Set(enabled);
        active.updated_at = Set(now);
        active.update(self.db()).await?;
        Ok(true)
    }

    /// Gives a client a new key; the old one stays valid until `grace_until`.
    pub async fn rotate_client_key(
        &self,
        name: &str,
        new_digest: String,
        grace_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(model) = clients::Entity::find().filter(A::Name.eq(name)).one(self.db()).await? else {
            return Ok(false);
        };
        let old = model.key_digest.clone();
        let mut active: clients::ActiveModel = model.into();
        active.previous_key_digest = Set(Some(old));
        active.previous_key_valid_until = Set(Some(grace_until));
        active.key_digest = Set(new_digest);
        active.updated_at = Set(now);
        active.update(self.db()).await?;
        Ok(true)
    }

    /// Changes how a client takes part in token exchange; `false` when there is no such client.
    pub async fn update_client_exchange(
        &self,
        name: &str,
        update: ExchangeUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let Some(model) = clients::Entity::find().filter(A::Name.eq(name)).one(self.db()).await? else {
            return Ok(false);
        };
        let mut active: clients::ActiveModel = model.into();
        if let Some(audiences) = update.audiences {
            active.audiences = Set(audiences_json(&audiences));
        }
        if let Some(require) = update.require_exchange {
            active.require_exchange = Set(require);
        }
        if let Some(key) = update.assertion_key {
            active.assertion_key = Set(key);
        }
        active.updated_at = Set(now);
        active.update(self.db()).await?;
        Ok(true)
    }

    /// Records a worker assertion's `jti`; `Ok(false)` when it was already
    /// recorded (a replay, possibly at another replica).
    pub async fn record_assertion(
        &self,
        client_id: Uuid,
        jti: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let model = entity::used_assertions::ActiveModel {
            client_id: Set(client_id),
            jti: Set(jti.to_owned()),
            expires_at: Set(expires_at),
        };
        match entity::used_assertions::Entity::insert(model).exec_without_returning(self.db()).await {
            Ok(_) => Ok(true),
            Err(err) if super::credentials::is_unique_violation(&err) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Forgets the `jti`s of assertions that expired before `before`: they
    /// are refused for their age anyway.
    pub async fn prune_used_assertions(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        use entity::used_assertions::Column as U;
        let result =
            entity::used_assertions::Entity::delete_many().filter(U::ExpiresAt.lt(before)).exec(self.db()).await?;
        Ok(result.rows_affected)
    }
}
