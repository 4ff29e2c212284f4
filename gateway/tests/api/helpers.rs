//! `spawn_app()` and friends: real gateways on real databases.
//!
//! PostgreSQL tests run when `TEST_DATABASE_URL` points at a server the
//! tests may create databases on (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! Without it they print a notice and pass, unless `REQUIRE_POSTGRES=1`,
//! which CI sets so that skipped PostgreSQL tests fail the run.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::startup::{Application, StartOptions, StartupError};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::oneshot;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `<name>_sqlite` and `<name>_postgres` tests from one
/// `async fn <name>(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => { $( $crate::paste_tests!($name); )+ };
}

#[macro_export]
macro_rules! paste_tests {
    ($name:ident) => {
        pub mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_available() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        }
    };
}

/// Whether PostgreSQL tests should run; panics when they are required but
/// not configured, so CI cannot skip them silently.
pub fn postgres_available() -> bool {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        return true;
    }
    assert!(
        std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set"
    );
    eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL variant");
    false
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// PostgreSQL: the database name and the server's admin URL.
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/gateway.db?mode=rwc", dir.path().display());
                Self {
                    backend,
                    url,
                    pg: None,
                    _dir: dir,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("TEST_DATABASE_URL").unwrap();
                let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(&admin)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let url = with_database(&admin, &name);
                Self {
                    backend,
                    url,
                    pg: Some((name, admin)),
                    _dir: dir,
                }
            }
        }
    }

    /// A direct connection, for tests that inspect or tamper with rows.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(&self.url).await.unwrap()
    }

    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }

    /// PostgreSQL only: refuse new connections and end current ones, as if
    /// the server went away; `restore` undoes it.
    pub async fn cut_off(&self) {
        let (name, admin) = self.pg.as_ref().expect("cut_off is PostgreSQL only");
        let conn = Database::connect(admin).await.unwrap();
        conn.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .await
            .unwrap();
        conn.execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    pub async fn restore(&self) {
        let (name, admin) = self.pg.as_ref().expect("restore is PostgreSQL only");
        let conn = Database::connect(admin).await.unwrap();
        conn.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((name, admin)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot block on itself.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(conn) = Database::connect(&admin).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Replaces the database name in a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

pub const API_KEY: &str = "test-api-key-0123456789-abcdefghijklmnopqrstuvwxyz";

/// A fresh random Fernet key string.
pub fn fernet_key() -> String {
    use secrecy::ExposeSecret;
    gateway::crypto::key::generate_fernet_key()
        .expose_secret()
        .to_owned()
}

/// Settings for a test gateway on `db`, with `extra` variables on top.
pub fn settings(db: &TestDb, key: &str, extra: &[(&str, &str)]) -> Settings {
    let data_dir = db.data_dir();
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("AUTH_GATEWAY_ENCRYPTION_KEY".into(), key.into()),
        ("AUTH_GATEWAY_API_KEY".into(), API_KEY.into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push(((*k).into(), (*v).into()));
    }
    Settings::from_source(&Source::from_pairs(vars)).unwrap()
}

/// A running gateway.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: Clock,
    pub db: TestDb,
    pub key: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let db = TestDb::new(backend).await;
    let key = fernet_key();
    spawn_app_on(db, key, &[]).await
}

pub async fn spawn_app_on(db: TestDb, key: String, extra: &[(&str, &str)]) -> TestApp {
    let clock = Clock::system();
    let app = try_build(&db, &key, extra, clock.clone())
        .await
        .unwrap_or_else(|e| panic!("start-up failed: {e}"));
    let address = format!("http://{}", app.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        clock,
        db,
        key,
        stop: Some(stop),
        server: Some(server),
    }
}

pub async fn try_build(
    db: &TestDb,
    key: &str,
    extra: &[(&str, &str)],
    clock: Clock,
) -> Result<Application, StartupError> {
    Application::build_with_clock(settings(db, key, extra), StartOptions::default(), clock).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get_health(&self) -> reqwest::Response {
        self.client.get(self.url("/health")).send().await.unwrap()
    }

    /// Stops the server gracefully and hands back the database.
    pub async fn stop(self) -> TestDb {
        let TestApp {
            db, stop, server, ..
        } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if let Some(server) = server {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server stops within 10 s")
                .unwrap()
                .unwrap();
        }
        db
    }
}

/// Polls `check` every 50 ms until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
