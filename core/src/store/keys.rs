//! What the database says about encryption keys: the key canary, and how many
//! stored values each key id seals. Start-up uses both to refuse a key set
//! that can no longer read the database; re-encryption uses the counts.

use std::collections::BTreeMap;

use entity::gateway_metadata;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use secrecy::ExposeSecret;

use super::{Store, StoreError};
use crate::crypto::{CryptoError, Keyring, Place};

const CANARY_KEY: &str = "key_canary";
const CANARY_VALUE: &str = "mcp-auth-gateway key canary v1";

/// One encrypted column and the key-id column beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EncryptedColumn {
    pub table: &'static str,
    pub column: &'static str,
}

/// Every encrypted column in the schema.
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 7] = [
    EncryptedColumn { table: "oauth_credentials", column: "access_token" },
    EncryptedColumn { table: "oauth_credentials", column: "refresh_token" },
    EncryptedColumn { table: "oauth_providers", column: "client_secret" },
    EncryptedColumn { table: "oauth_sessions", column: "pkce_verifier" },
    EncryptedColumn { table: "gateway_metadata", column: "value" },
    EncryptedColumn { table: "webhooks", column: "secret" },
    EncryptedColumn { table: "pending_revocations", column: "token" },
];

/// How many values each key id seals, per column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyUsage {
    pub rows: BTreeMap<String, BTreeMap<EncryptedColumn, u64>>,
}

impl KeyUsage {
    /// Total values sealed under `key_id`.
    pub fn total(&self, key_id: &str) -> u64 {
        self.rows.get(key_id).map_or(0, |cols| cols.values().sum())
    }

    /// Key ids in use that `keyring` does not hold, with their value counts.
    pub fn unknown_to(&self, keyring: &Keyring) -> BTreeMap<String, u64> {
        self.rows.keys().filter(|id| !keyring.knows(id)).map(|id| (id.clone(), self.total(id))).collect()
    }
}

/// What the canary said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Canary {
    /// First start: the canary was written under the primary key.
    Created,
    /// The configured keys open it; `key_id` is the key that sealed it.
    Readable { key_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("the key canary was sealed by key id {stored_key_id}, which no configured key matches")]
    Unreadable { stored_key_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn canary_place() -> Place {
    Place::new("gateway_metadata", "value", CANARY_KEY)
}

impl Store {
    /// Writes the canary on first start; afterwards checks the keys open it.
    pub async fn check_canary(
        &self,
        keyring: &Keyring,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Canary, CanaryError> {
        let existing =
            gateway_metadata::Entity::find_by_id(CANARY_KEY).one(self.db()).await.map_err(StoreError::from)?;
        let Some(row) = existing else {
            let sealed = keyring.seal(&canary_place(), CANARY_VALUE.as_bytes());
            let model = gateway_metadata::ActiveModel {
                key: Set(CANARY_KEY.to_owned()),
                value: Set(sealed.token),
                key_id: Set(Some(sealed.key_id.to_string())),
                created_at: Set(now),
                updated_at: Set(now),
            };
            // Two replicas starting at once: the first canary wins, the other
            // is checked on its next start.
            gateway_metadata::Entity::insert(model)
                .on_conflict(OnConflict::column(gateway_metadata::Column::Key).do_nothing().to_owned())
                .exec_without_returning(self.db())
                .await
                .map_err(StoreError::from)?;
            return Ok(Canary::Created);
        };
        let stored_key_id = row.key_id.clone().unwrap_or_default();
        match keyring.open(&canary_place(), &stored_key_id, &row.value) {
            Ok(opened) if opened.secret.expose_secret() == CANARY_VALUE => {
                Ok(Canary::Readable { key_id: opened.key_id.to_string() })
            }
            Ok(_)
            | Err(CryptoError::NoMatchingKey { .. } | CryptoError::WrongPlace { .. } | CryptoError::Envelope(_)) => {
                Err(CanaryError::Unreadable { stored_key_id })
            }
            Err(other) => Err(StoreError::from(other).into()),
        }
    }

    /// Counts stored values per key id and column, by query on the key-id
    /// columns (never by trial decryption).
    pub async fn key_usage(&self) -> Result<KeyUsage, StoreError> {
        let mut usage = KeyUsage::default();
        for col in ENCRYPTED_COLUMNS {
            for (key_id, n) in self.count_by_key_id(col).await? {
                *usage.rows.entry(key_id).or_default().entry(col).or_default() += n;
            }
        }
        Ok(usage)
    }

    async fn count_by_key_id(&self, col: EncryptedColumn) -> Result<Vec<(String, u64)>, StoreError> {
        use entity::{oauth_credentials as c, oauth_providers as p, oauth_sessions as s};
        use entity::{pending_revocations as r, webhooks as w};
        let count = Expr::cust("COUNT(*)");
        let rows: Vec<(Option<String>, i64)> = match (col.table, col.column) {
            ("oauth_credentials", "access_token") => {
                grouped::<c::Entity, _>(c::Column::AccessTokenKeyId, count).all(self.db()).await?
            }
            ("oauth_credentials", "refresh_token") => {
                grouped::<c::Entity, _>(c::Column::RefreshTokenKeyId, count).all(self.db()).await?
            }
            ("oauth_providers", "client_secret") => {
                grouped::<p::Entity, _>(p::Column::ClientSecretKeyId, count).all(self.db()).await?
            }
            ("oauth_sessions", "pkce_verifier") => {
                grouped::<s::Entity, _>(s::Column::PkceVerifierKeyId, count).all(self.db()).await?
            }
            ("webhooks", "secret") => grouped::<w::Entity, _>(w::Column::SecretKeyId, count).all(self.db()).await?,
            ("pending_revocations", "token") => {
                grouped::<r::Entity, _>(r::Column::TokenKeyId, count).all(self.db()).await?
            }
            _ => grouped::<gateway_metadata::Entity, _>(gateway_metadata::Column::KeyId, count).all(self.db()).await?,
        };
        Ok(rows.into_iter().filter_map(|(id, n)| Some((id?, u64::try_from(n).unwrap_or(0)))).collect())
    }
}

/// `SELECT key_col, COUNT(*) FROM table WHERE key_col IS NOT NULL GROUP BY key_col`
fn grouped<E, C>(key_col: C, count: Expr) -> sea_orm::Selector<sea_orm::SelectGetableTuple<(Option<String>, i64)>>
where
    E: EntityTrait,
    C: ColumnTrait + Copy,
{
    E::find()
        .select_only()
        .column(key_col)
        .column_as(count, "n")
        .filter(key_col.is_not_null())
        .group_by(key_col)
        .into_tuple()
}
