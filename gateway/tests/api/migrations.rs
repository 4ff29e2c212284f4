//! The one set of migrations works up and down on both backends, and the
//! schema enforces what the design document asks of it.

use gateway::core::admin::Database;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::SchemaManager;

use crate::helpers::{Backend, TestDb, postgres_available};
use crate::on_both_backends;

const TABLES: [&str; 4] = ["oauth_providers", "oauth_credentials", "oauth_sessions", "gateway_metadata"];

on_both_backends!(migrations_go_up_down_and_up_again, credentials_are_unique_per_user_and_provider);

/// The migrations of the database `db`, as the gateway runs them.
async fn database(db: &TestDb) -> Database {
    let settings = gateway::config::Settings::from_source(&gateway::config::Source::from_pairs([(
        "DATABASE_URL",
        db.url.as_str(),
    )]))
    .unwrap();
    Database::connect(&settings).await.unwrap()
}

async fn migrations_go_up_down_and_up_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    let manager = SchemaManager::new(&conn);
    let migrations = database(&db).await;

    migrations.migrate_up().await.unwrap();
    for table in TABLES {
        assert!(manager.has_table(table).await.unwrap(), "{table} after up");
    }
    assert!(migrations.migration_status().await.unwrap().iter().all(|(_, applied)| *applied), "nothing pending");

    migrations.migrate_down(None).await.unwrap();
    for table in TABLES {
        assert!(!manager.has_table(table).await.unwrap(), "{table} after down");
    }

    migrations.migrate_up().await.unwrap();
    for table in TABLES {
        assert!(manager.has_table(table).await.unwrap(), "{table} after up again");
    }
    conn.close().await.unwrap();
}

async fn credentials_are_unique_per_user_and_provider(backend: Backend) {
    let db = TestDb::new(backend).await;
    let conn = db.connect().await;
    database(&db).await.migrate_up().await.unwrap();
    insert_provider(&conn, "google").await;

    assert!(insert_credential(&conn, "alice@company.com", "google").await.is_ok());
    assert!(insert_credential(&conn, "alice@company.com", "google").await.is_err(), "UNIQUE(profile_id, provider_id)");
    assert!(insert_credential(&conn, "bob@company.com", "google").await.is_ok());
    assert!(insert_credential(&conn, "bob@company.com", "nosuch").await.is_err(), "provider foreign key");
    conn.close().await.unwrap();
}

/// PostgreSQL's CHECK and the gateway's own validation accept exactly the same addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_email_check_agrees_with_the_gateways_validation() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let conn = db.connect().await;
    database(&db).await.migrate_up().await.unwrap();
    insert_provider(&conn, "google").await;
    for (email, accepted) in gateway::email::GRAMMAR_EXAMPLES {
        let result = insert_credential(&conn, email, "google").await;
        assert_eq!(result.is_ok(), *accepted, "{email:?}: {result:?}");
    }
    conn.close().await.unwrap();
}

pub async fn insert_provider(conn: &sea_orm::DatabaseConnection, id: &str) {
    let now = gateway::clock::Clock::system().now();
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        sql(conn, "INSERT INTO oauth_providers (id, client_id, client_secret, client_secret_key_id, created_at, updated_at) VALUES ($1, 'cid', 'sealed', 'k1', $2, $2)"),
        [id.into(), now.into()],
    ))
    .await
    .unwrap();
}

pub async fn insert_credential(
    conn: &sea_orm::DatabaseConnection,
    email: &str,
    provider: &str,
) -> Result<(), sea_orm::DbErr> {
    let now = gateway::clock::Clock::system().now();
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        sql(conn, "INSERT INTO oauth_credentials (id, profile_id, provider_id, access_token, access_token_key_id, state, consecutive_failures, version, created_at, updated_at) VALUES ($1, $2, $3, 'sealed', 'k1', 'active', 0, 0, $4, $4)"),
        [uuid::Uuid::new_v4().into(), email.into(), provider.into(), now.into()],
    ))
    .await
    .map(|_| ())
}

/// SQLite spells numbered placeholders `?1` rather than `$1`.
pub fn sql(conn: &sea_orm::DatabaseConnection, postgres: &str) -> String {
    match conn.get_database_backend() {
        DbBackend::Postgres => postgres.to_owned(),
        _ => postgres.replace('$', "?"),
    }
}
