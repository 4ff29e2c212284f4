//! `audit_log`: appended in batches, read with filters, pruned by age.

use chrono::{DateTime, Utc};
use entity::audit_log::{self as audit, Column as L};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, Value};
use uuid::Uuid;

use super::{Store, StoreError};

/// One audit record. Never holds a token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub occurred_at: DateTime<Utc>,
    pub client: String,
    pub action: String,
    pub user_email: Option<String>,
    pub provider: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub user_email: Option<String>,
    pub client: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: u64,
    /// The reader's limits: only records about these providers (`None`: any).
    pub allowed_providers: Option<Vec<String>>,
    /// The reader's limits: only records about users of these domains (`None`: any).
    pub allowed_domains: Option<Vec<String>>,
}

/// Rows per INSERT: 9 bind parameters each, so 9 000 parameters, well under
/// SQLite's limit of 32 766 and PostgreSQL's of 65 535 per statement.
pub const AUDIT_ROWS_PER_STATEMENT: usize = 1000;

impl Store {
    /// Appends `records`, [`AUDIT_ROWS_PER_STATEMENT`] rows per statement.
    pub async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for chunk in records.chunks(AUDIT_ROWS_PER_STATEMENT) {
            self.append_audit_rows(chunk).await?;
        }
        Ok(())
    }

    async fn append_audit_rows(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let backend = self.db().get_database_backend();
        let mut sql = String::from(
            "INSERT INTO audit_log (id, occurred_at, client, action, user_email, provider, outcome, request_id, detail) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(records.len() * 9);
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let p: Vec<String> = (1..=9).map(|k| format!("${}", values.len() + k)).collect();
            sql.push_str(&format!("({})", p.join(", ")));
            values.extend([
                Uuid::now_v7().into(),
                r.occurred_at.into(),
                r.client.clone().into(),
                r.action.clone().into(),
                r.user_email.clone().into(),
                r.provider.clone().into(),
                r.outcome.clone().into(),
                r.request_id.clone().into(),
                r.detail.clone().into(),
            ]);
        }
        let sql = if backend == sea_orm::DbBackend::Sqlite { sql.replace('$', "?") } else { sql };
        self.db().execute_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        Ok(())
    }

    /// Records matching `filter`, newest first.
    pub async fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let mut query =
            audit::Entity::find().order_by_desc(L::OccurredAt).order_by_desc(L::Id).limit(filter.limit.max(1));
        if let Some(user) = &filter.user_email {
            query = query.filter(L::UserEmail.eq(user.as_str()));
        }
        if let Some(client) = &filter.client {
            query = query.filter(L::Client.eq(client.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(L::OccurredAt.gte(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(L::OccurredAt.lt(until));
        }
        // A reader limited to providers or domains sees only records about them.
        if let Some(providers) = &filter.allowed_providers {
            query = query.filter(L::Provider.is_in(providers.iter().map(String::as_str)));
        }
        if let Some(domains) = &filter.allowed_domains {
            let any =
                domains.iter().fold(sea_orm::Condition::any(), |any, d| any.add(L::UserEmail.like(format!("%@{d}"))));
            query = query.filter(any);
        }
        Ok(query
            .all(self.db())
            .await?
            .into_iter()
            .map(|m| AuditRecord {
                occurred_at: m.occurred_at,
                client: m.client,
                action: m.action,
                user_email: m.user_email,
                provider: m.provider,
                outcome: m.outcome,
                request_id: m.request_id,
                detail: m.detail,
            })
            .collect())
    }

    /// Deletes records older than `before` (the retention setting).
    pub async fn prune_audit(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(audit::Entity::delete_many().filter(L::OccurredAt.lt(before)).exec(self.db()).await?.rows_affected)
    }
}
