//! The webhook outbox and its deliveries.
//!
//! [`enqueue`] writes an event on the connection (or transaction) of the
//! change it reports, so the two commit or roll back together. The delivery
//! job then fans each event out (one `webhook_deliveries` row per matching
//! subscription; the unique (event, webhook) index makes a repeated fan-out
//! harmless), claims due deliveries under a lease (`FOR UPDATE SKIP LOCKED`
//! on PostgreSQL, so each is attempted by one replica at a time), and records
//! each attempt's result.

use chrono::{DateTime, TimeDelta, Utc};
use entity::webhook_deliveries::{self as deliveries, Column as D};
use entity::webhook_events::{self as events, Column as E};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement};
use uuid::Uuid;

use super::{Store, StoreError, db_backend, placeholders};
use crate::config::Backend;
use crate::webhooks::events::Event;

/// Writes `event` on `conn` (the change's own transaction, where there is one).
pub(crate) async fn enqueue<C: ConnectionTrait>(conn: &C, event: &Event, now: DateTime<Utc>) -> Result<(), StoreError> {
    let row = events::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_type: Set(event.kind.as_str().to_owned()),
        payload: Set(event.payload(now)),
        created_at: Set(now),
        fanned_out: Set(false),
    };
    events::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

/// An event not yet fanned out.
#[derive(Clone, Debug)]
pub struct PendingEvent {
    pub id: Uuid,
    pub event_type: String,
}

/// A delivery claimed for one attempt, with what it needs.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub webhook_id: Uuid,
    pub event_type: String,
    pub attempts: i32,
    pub payload: String,
}

/// A delivery as listed by `gateway webhooks deliveries`.
#[derive(Clone, Debug)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub webhook_id: Uuid,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<deliveries::Model> for DeliveryRow {
    fn from(m: deliveries::Model) -> Self {
        Self {
            id: m.id,
            event_id: m.event_id,
            webhook_id: m.webhook_id,
            event_type: m.event_type,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_status: m.last_status,
            last_error: m.last_error,
            created_at: m.created_at,
            delivered_at: m.delivered_at,
        }
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered,
    /// Try again at the given time.
    Retry {
        at: DateTime<Utc>,
        status: Option<u16>,
        error: String,
    },
    /// No attempt left: dead-lettered.
    Dead {
        status: Option<u16>,
        error: String,
    },
}

impl Store {
    /// The body of event `id`.
    pub async fn event_payload(&self, id: Uuid) -> Result<String, StoreError> {
        let payload: Option<String> =
            events::Entity::find_by_id(id).select_only().column(E::Payload).into_tuple().one(self.db()).await?;
        Ok(payload.unwrap_or_default())
    }

    /// Events not fanned out yet, oldest first.
    pub async fn unfanned_events(&self, limit: u64) -> Result<Vec<PendingEvent>, StoreError> {
        let rows: Vec<(Uuid, String)> = events::Entity::find()
            .select_only()
            .columns([E::Id, E::EventType])
            .filter(E::FannedOut.eq(false))
            .order_by_asc(E::Id)
            .limit(limit)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|(id, event_type)| PendingEvent { id, event_type }).collect())
    }

    /// Creates `event`'s deliveries to `webhooks` and marks it fanned out, in
    /// one transaction (a second replica doing the same adds nothing).
    pub async fn fan_out(&self, event: &PendingEvent, webhooks: &[Uuid], now: DateTime<Utc>) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        for webhook in webhooks {
            let row = deliveries::ActiveModel {
                id: Set(Uuid::now_v7()),
                event_id: Set(event.id),
                webhook_id: Set(*webhook),
                event_type: Set(event.event_type.clone()),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                next_attempt_at: Set(now),
                lease_until: Set(None),
                lease_owner: Set(None),
                last_status: Set(None),
                last_error: Set(None),
                created_at: Set(now),
                delivered_at: Set(None),
            };
            let ignore = OnConflict::columns([D::EventId, D::WebhookId]).do_nothing().to_owned();
            deliveries::Entity::insert(row).on_conflict(ignore).exec_without_returning(&txn).await.or_else(|err| {
                match err {
                    // SQLite reports "nothing inserted" for a do-nothing conflict.
                    sea_orm::DbErr::RecordNotInserted => Ok(0),
                    other => Err(other),
                }
            })?;
        }
        events::Entity::update_many()
            .col_expr(E::FannedOut, Expr::value(true))
            .filter(E::Id.eq(event.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Claims up to `limit` due deliveries for `owner` until `until`.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let skip_locked = if self.backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_until = $2 WHERE id IN (\
               SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
               AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at, id LIMIT $4{skip_locked}) \
             RETURNING id, event_id, webhook_id, event_type, attempts"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let stmt = Statement::from_sql_and_values(
            db_backend(self.backend()),
            placeholders(self.backend(), &sql),
            [owner.into(), until.into(), now.into(), limit.into()],
        );
        let rows = self.db().query_all_raw(stmt).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let event_id: Uuid = row.try_get("", "event_id")?;
            let payload: Option<String> = events::Entity::find_by_id(event_id)
                .select_only()
                .column(E::Payload)
                .into_tuple()
                .one(self.db())
                .await?;
            out.push(ClaimedDelivery {
                id: row.try_get("", "id")?,
                event_id,
                webhook_id: row.try_get("", "webhook_id")?,
                event_type: row.try_get("", "event_type")?,
                attempts: row.try_get("", "attempts")?,
                payload: payload.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Records an attempt of delivery `id` (claimed by `owner`).
    pub async fn record_attempt(
        &self,
        id: Uuid,
        owner: &str,
        result: &AttemptResult,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut update = deliveries::Entity::update_many()
            .col_expr(D::Attempts, Expr::col(D::Attempts).add(1))
            .col_expr(D::LeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(D::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None));
        update = match result {
            AttemptResult::Delivered => update
                .col_expr(D::Status, Expr::value("delivered"))
                .col_expr(D::DeliveredAt, Expr::value(now))
                .col_expr(D::LastError, Expr::value(Option::<String>::None)),
            AttemptResult::Retry { at, status, error } => update
                .col_expr(D::NextAttemptAt, Expr::value(*at))
                .col_expr(D::LastStatus, Expr::value(status.map(i32::from)))
                .col_expr(D::LastError, Expr::value(error.clone())),
            AttemptResult::Dead { status, error } => update
                .col_expr(D::Status, Expr::value("dead"))
                .col_expr(D::LastStatus, Expr::value(status.map(i32::from)))
                .col_expr(D::LastError, Expr::value(error.clone())),
        };
        update.filter(D::Id.eq(id)).filter(D::LeaseOwner.eq(owner)).exec(self.db()).await?;
        Ok(())
    }

    /// Puts dead-lettered deliveries (of one subscription, or all) back in
    /// the queue for a fresh round of attempts; how many.
    pub async fn redeliver_dead(&self, webhook: Option<Uuid>, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut update = deliveries::Entity::update_many()
            .col_expr(D::Status, Expr::value("pending"))
            .col_expr(D::Attempts, Expr::value(0))
            .col_expr(D::NextAttemptAt, Expr::value(now))
            .col_expr(D::LastError, Expr::value(Option::<String>::None))
            .filter(D::Status.eq("dead"));
        if let Some(webhook) = webhook {
            update = update.filter(D::WebhookId.eq(webhook));
        }
        Ok(update.exec(self.db()).await?.rows_affected)
    }

    /// Deliveries, newest first, optionally of one status.
    pub async fn list_deliveries(&self, status: Option<&str>, limit: u64) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut query = deliveries::Entity::find().order_by_desc(D::Id).limit(limit);
        if let Some(status) = status {
            query = query.filter(D::Status.eq(status));
        }
        Ok(query.all(self.db()).await?.into_iter().map(DeliveryRow::from).collect())
    }

    /// (status, count) of deliveries.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = deliveries::Entity::find()
            .select_only()
            .column(D::Status)
            .column_as(Expr::cust("COUNT(*)"), "n")
            .group_by(D::Status)
            .into_tuple()
            .all(self.db())
            .await?;
        Ok(rows.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect())
    }

    /// Forgets delivered deliveries and fanned-out events older than `before`
    /// (dead ones stay until an operator has seen them: they are the record).
    pub async fn prune_webhooks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let delivered = deliveries::Entity::delete_many()
            .filter(D::Status.eq("delivered"))
            .filter(D::CreatedAt.lt(before))
            .exec(self.db())
            .await?
            .rows_affected;
        let events = events::Entity::delete_many()
            .filter(E::FannedOut.eq(true))
            .filter(E::CreatedAt.lt(before))
            .filter(
                E::Id.not_in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(D::EventId)
                        .from(deliveries::Entity)
                        .and_where(Expr::col(D::Status).ne(Expr::value("delivered")))
                        .to_owned(),
                ),
            )
            .exec(self.db())
            .await?
            .rows_affected;
        Ok(delivered + events)
    }
}

/// The retention of delivered webhooks' rows.
pub const WEBHOOK_RETENTION: TimeDelta = TimeDelta::days(7);
