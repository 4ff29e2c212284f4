//! Counts for the periodic gauges: credentials by state, upcoming expiries,
//! when each key was first seen, and the pool's connections.

use chrono::{DateTime, Utc};
use entity::gateway_metadata;
use entity::oauth_credentials::{self as creds, Column as C};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, Set};

use super::{Store, StoreError};
use crate::config::Backend;

impl Store {
    /// (provider, state, count) over every credential.
    pub async fn credentials_by_state(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = creds::Entity::find()
            .select_only()
            .column(C::ProviderId)
            .column(C::State)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .group_by(C::ProviderId)
            .group_by(C::State)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|(p, s, n)| (p, s, u64::try_from(n).unwrap_or(0))).collect())
    }

    /// (provider, count) of active credentials expiring before `until`.
    pub async fn credentials_expiring_before(&self, until: DateTime<Utc>) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = creds::Entity::find()
            .select_only()
            .column(C::ProviderId)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .filter(C::State.eq("active"))
            .filter(C::TokenExpiry.lt(until))
            .group_by(C::ProviderId)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|(p, n)| (p, u64::try_from(n).unwrap_or(0))).collect())
    }

    /// When this database first saw `key_id` as its primary key (recorded now
    /// if it never did).
    pub async fn key_first_seen(&self, key_id: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, StoreError> {
        let name = format!("key_first_seen/{key_id}");
        let model = gateway_metadata::ActiveModel {
            key: Set(name.clone()),
            value: Set(now.to_rfc3339()),
            key_id: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        };
        gateway_metadata::Entity::insert(model)
            .on_conflict(OnConflict::column(gateway_metadata::Column::Key).do_nothing().to_owned())
            .exec_without_returning(self.db())
            .await?;
        let row = gateway_metadata::Entity::find_by_id(name).one(self.db()).await?;
        Ok(row.map_or(now, |r| r.created_at))
    }

    /// (in use, idle) connections of the pool.
    pub fn pool_connections(&self) -> (u32, u32) {
        let (size, idle) = match self.backend() {
            Backend::Postgres => {
                let pool = self.db().get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::Sqlite => {
                let pool = self.db().get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        let idle = u32::try_from(idle).unwrap_or(u32::MAX);
        (size.saturating_sub(idle), idle)
    }
}
