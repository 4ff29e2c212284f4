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
    pub created_at: DateTime<Utc>,
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
}

fn json(list: &Option<Vec<String>>) -> Option<serde_json::Value> {
    list.as_ref().map(|l| serde_json::Value::from(l.clone()))
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
}
