//! Cross-replica notices over PostgreSQL LISTEN/NOTIFY. On SQLite (one
//! process by definition) there is nobody else to tell, so these are no-ops.

use sea_orm::sqlx::postgres::{PgListener, PgNotification};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Store, StoreError};
use crate::config::Backend;

/// The one channel every replica listens on.
pub const CHANNEL: &str = "gateway_events";

impl Store {
    /// Sends `payload` to every replica listening (PostgreSQL only).
    pub async fn notify(&self, payload: &str) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [CHANNEL.into(), payload.into()],
            ))
            .await?;
        Ok(())
    }

    /// A listener on [`CHANNEL`], holding one connection of its own
    /// (PostgreSQL only; `None` on SQLite).
    pub async fn listener(&self) -> Result<Option<Listener>, StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(None);
        }
        let pool = self.db().get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool)
            .await
            .map_err(|e| StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))))?;
        listener
            .listen(CHANNEL)
            .await
            .map_err(|e| StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))))?;
        Ok(Some(Listener { inner: listener }))
    }
}

/// Receives notices sent with [`Store::notify`].
pub struct Listener {
    inner: PgListener,
}

/// What a listener saw.
pub enum Heard {
    Payload(String),
    /// The connection dropped and was re-established: notices sent in the
    /// gap are lost, so caches must be treated as stale.
    Reconnected,
}

impl Listener {
    pub async fn recv(&mut self) -> Result<Heard, StoreError> {
        match self.inner.try_recv().await {
            Ok(Some(n)) => Ok(Heard::Payload(payload(&n))),
            Ok(None) => Ok(Heard::Reconnected),
            Err(e) => Err(StoreError::Unavailable(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))),
        }
    }
}

fn payload(n: &PgNotification) -> String {
    n.payload().to_owned()
}
