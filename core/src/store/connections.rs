//! Credentials across users, for operators: filtered, paged by row id
//! (UUID v7, so a page boundary never moves under concurrent inserts: new
//! rows sort after every existing one), and the counts an on-call person
//! wants first. Never a token.

use chrono::{DateTime, Utc};
use entity::oauth_credentials::{self as creds, Column as C};
use entity::oauth_sessions::{self as sessions, Column as S};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::credentials::{CredentialState, scopes_from_json};
use super::{Store, StoreError};

/// Which credentials to list. `None` filters nothing; the `allowed_*`
/// lists are the caller's limits (a client limited to providers or domains).
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    pub provider: Option<String>,
    pub state: Option<CredentialState>,
    /// Lower-case email domain.
    pub domain: Option<String>,
    pub expiring_before: Option<DateTime<Utc>>,
    /// Not used since (or never).
    pub unused_since: Option<DateTime<Utc>>,
    /// Not refreshed since (or never).
    pub unrefreshed_since: Option<DateTime<Utc>>,
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_domains: Option<Vec<String>>,
}

/// One credential, without its secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: Uuid,
    pub provider: String,
    pub user_email: String,
    pub scopes: Vec<String>,
    pub state: CredentialState,
    pub last_error_category: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    pub authorized_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_verified_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<creds::Model> for Connection {
    fn from(row: creds::Model) -> Self {
        Self {
            id: row.id,
            scopes: scopes_from_json(row.scopes.as_ref()),
            state: CredentialState::parse(&row.state),
            last_error_category: row.last_error_category,
            last_error_at: row.last_error_at,
            consecutive_failures: row.consecutive_failures,
            authorized_at: row.authorized_at.unwrap_or(row.created_at),
            last_refreshed_at: row.last_refreshed_at,
            last_used_at: row.last_used_at,
            last_verified_at: row.last_verified_at,
            expires_at: row.token_expiry,
            provider: row.provider_id,
            user_email: row.profile_id,
        }
    }
}

/// `profile_id` ends with `@domain` (domains are validated: no LIKE wildcards).
fn in_domain(domain: &str) -> sea_orm::sea_query::SimpleExpr {
    C::ProfileId.like(format!("%@{domain}"))
}

fn condition(filter: &ConnectionFilter) -> Condition {
    let mut cond = Condition::all();
    if let Some(p) = &filter.provider {
        cond = cond.add(C::ProviderId.eq(p.as_str()));
    }
    if let Some(s) = filter.state {
        cond = cond.add(C::State.eq(s.as_str()));
    }
    if let Some(d) = &filter.domain {
        cond = cond.add(in_domain(d));
    }
    if let Some(t) = filter.expiring_before {
        cond = cond.add(C::TokenExpiry.lt(t));
    }
    if let Some(t) = filter.unused_since {
        cond = cond.add(Condition::any().add(C::LastUsedAt.is_null()).add(C::LastUsedAt.lt(t)));
    }
    if let Some(t) = filter.unrefreshed_since {
        cond = cond.add(Condition::any().add(C::LastRefreshedAt.is_null()).add(C::LastRefreshedAt.lt(t)));
    }
    if let Some(providers) = &filter.allowed_providers {
        cond = cond.add(C::ProviderId.is_in(providers.iter().map(String::as_str)));
    }
    if let Some(domains) = &filter.allowed_domains {
        cond = cond.add(domains.iter().fold(Condition::any(), |any, d| any.add(in_domain(d))));
    }
    cond
}

/// Sessions by status, and credentials by provider and state, for `/admin/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// (provider, state, count).
    pub credentials: Vec<(String, String, u64)>,
    /// (provider, count) of active credentials expiring before the first and second instants.
    pub expiring: [Vec<(String, u64)>; 2],
    /// (status, count).
    pub sessions: Vec<(String, u64)>,
}

impl Store {
    /// How many credentials are stored (0 when the table does not exist yet).
    pub async fn count_credentials(&self) -> Result<u64, StoreError> {
        // Raw SQL: the table may be at an older migration than the entity (`migrate down`).
        use sea_orm::ConnectionTrait;
        let stmt = sea_orm::Statement::from_string(
            super::db_backend(self.backend()),
            "SELECT COUNT(*) AS n FROM oauth_credentials",
        );
        match self.db().query_one_raw(stmt).await {
            Ok(row) => {
                Ok(row.and_then(|r| r.try_get::<i64>("", "n").ok()).map_or(0, |n| u64::try_from(n).unwrap_or(0)))
            }
            Err(err) if err.to_string().contains("no such table") || err.to_string().contains("does not exist") => {
                Ok(0)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Active credentials not proven to work since `before`, least recently proven first.
    pub async fn probe_candidates(
        &self,
        before: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<super::credentials::CredentialKey>, StoreError> {
        let rows: Vec<(String, String)> = creds::Entity::find()
            .select_only()
            .columns([C::ProfileId, C::ProviderId])
            .filter(C::State.eq(CredentialState::Active.as_str()))
            .filter(Condition::any().add(C::LastVerifiedAt.is_null()).add(C::LastVerifiedAt.lt(before)))
            .order_by_asc(C::LastVerifiedAt)
            .limit(limit)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(email, provider)| {
                Some(super::credentials::CredentialKey { email: crate::email::Email::parse(&email).ok()?, provider })
            })
            .collect())
    }

    /// The grant was just proven to work.
    pub async fn mark_verified(
        &self,
        key: &super::credentials::CredentialKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        creds::Entity::update_many()
            .col_expr(C::LastVerifiedAt, Expr::value(at))
            .filter(C::ProfileId.eq(key.email.as_str()))
            .filter(C::ProviderId.eq(key.provider.as_str()))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// At most `limit` credentials matching `filter`, after row `after`, in row order.
    pub async fn list_connections(
        &self,
        filter: &ConnectionFilter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Connection>, StoreError> {
        let mut query = creds::Entity::find().filter(condition(filter));
        if let Some(after) = after {
            query = query.filter(C::Id.gt(after));
        }
        let rows = query.order_by_asc(C::Id).limit(limit).all(self.db()).await?;
        Ok(rows.into_iter().map(Connection::from).collect())
    }

    /// The counts of `/admin/stats`, within the caller's limits.
    pub async fn counts(&self, limits: &ConnectionFilter, expiring: [DateTime<Utc>; 2]) -> Result<Counts, StoreError> {
        let count = || Expr::cust("COUNT(*)");
        let by_state: Vec<(String, String, i64)> = creds::Entity::find()
            .select_only()
            .column(C::ProviderId)
            .column(C::State)
            .column_as(count(), "n")
            .filter(condition(limits))
            .group_by(C::ProviderId)
            .group_by(C::State)
            .into_tuple()
            .all(self.db())
            .await?;
        let mut counts = Counts {
            credentials: by_state.into_iter().map(|(p, s, n)| (p, s, u64::try_from(n).unwrap_or(0))).collect(),
            ..Counts::default()
        };
        for (slot, until) in counts.expiring.iter_mut().zip(expiring) {
            let rows: Vec<(String, i64)> = creds::Entity::find()
                .select_only()
                .column(C::ProviderId)
                .column_as(count(), "n")
                .filter(condition(limits))
                .filter(C::State.eq(CredentialState::Active.as_str()))
                .filter(C::TokenExpiry.lt(until))
                .group_by(C::ProviderId)
                .into_tuple()
                .all(self.db())
                .await?;
            *slot = rows.into_iter().map(|(p, n)| (p, u64::try_from(n).unwrap_or(0))).collect();
        }
        let mut sessions_query = sessions::Entity::find().select_only().column(S::Status).column_as(count(), "n");
        if let Some(providers) = &limits.allowed_providers {
            sessions_query = sessions_query.filter(S::ProviderId.is_in(providers.iter().map(String::as_str)));
        }
        if let Some(domains) = &limits.allowed_domains {
            let any = domains.iter().fold(Condition::any(), |any, d| any.add(S::ProfileId.like(format!("%@{d}"))));
            sessions_query = sessions_query.filter(any);
        }
        let rows: Vec<(String, i64)> = sessions_query.group_by(S::Status).into_tuple().all(self.db()).await?;
        counts.sessions = rows.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect();
        Ok(counts)
    }
}
