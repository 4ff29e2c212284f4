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
use mock_provider::MockProvider;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
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
                Self { backend, url, pg: None, _dir: dir }
            }
            Backend::Postgres => {
                let admin = std::env::var("TEST_DATABASE_URL").unwrap();
                let name = format!("gw_test_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(&admin).await.expect("connect to TEST_DATABASE_URL");
                conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                conn.close().await.unwrap();
                let url = with_database(&admin, &name);
                Self { backend, url, pg: Some((name, admin)), _dir: dir }
            }
        }
    }

    /// Another handle on a database some other `TestDb` owns (a second replica).
    pub fn attach(backend: Backend, url: &str) -> Self {
        Self { backend, url: url.to_owned(), pg: None, _dir: tempfile::tempdir().unwrap() }
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
        conn.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await.unwrap();
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
        conn.execute_unprepared(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
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
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(conn) = Database::connect(&admin).await {
                    let _ = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
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
    gateway::crypto::key::generate_fernet_key().expose_secret().to_owned()
}

/// Variables configuring the generic provider `mock` and the built-in
/// `google`, both pointed at `mock`.
pub fn provider_vars(mock: &MockProvider) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for prefix in ["MOCK", "GOOGLE", "META"] {
        vars.extend([
            (format!("{prefix}_CLIENT_ID"), mock.client_id().to_owned()),
            (format!("{prefix}_CLIENT_SECRET"), mock.client_secret().to_owned()),
            (format!("{prefix}_AUTH_URL"), mock.authorize_url()),
            (format!("{prefix}_TOKEN_URL"), mock.token_url()),
            (format!("{prefix}_REVOCATION_URL"), mock.revoke_url()),
            (format!("{prefix}_USERINFO_URL"), mock.userinfo_url()),
            (format!("{prefix}_SCOPES"), "openid email mail.read".to_owned()),
            // The id_tokens' issuer is the mock's base URL (Google's default is accounts.google.com).
            (format!("{prefix}_ISSUER"), mock.base_url()),
        ]);
    }
    vars.push(("AUTH_GATEWAY_PROVIDERS".into(), "mock".into()));
    vars
}

/// Extra variables adding generic providers `ids` served by `mock` (a test
/// whose metrics must not mix with other tests' uses a provider of its own).
pub fn more_providers(mock: &MockProvider, ids: &[&str]) -> Vec<(String, String)> {
    let all: Vec<&str> = std::iter::once("mock").chain(ids.iter().copied()).collect();
    let mut vars = vec![("AUTH_GATEWAY_PROVIDERS".to_owned(), all.join(","))];
    for id in ids {
        let prefix = id.to_ascii_uppercase().replace('-', "_");
        vars.extend([
            (format!("{prefix}_CLIENT_ID"), mock.client_id().to_owned()),
            (format!("{prefix}_CLIENT_SECRET"), mock.client_secret().to_owned()),
            (format!("{prefix}_AUTH_URL"), mock.authorize_url()),
            (format!("{prefix}_TOKEN_URL"), mock.token_url()),
            (format!("{prefix}_REVOCATION_URL"), mock.revoke_url()),
            (format!("{prefix}_USERINFO_URL"), mock.userinfo_url()),
            (format!("{prefix}_SCOPES"), "openid email mail.read".to_owned()),
        ]);
    }
    vars
}

/// The sum of every sample of `metric` whose labels include all of `labels`.
pub fn metric_sum(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Settings for a test gateway on `db`, with `extra` variables on top.
pub fn settings(db: &TestDb, key: &str, extra: &[(&str, &str)]) -> Settings {
    settings_with(db, key, &[], extra)
}

pub fn settings_with(db: &TestDb, key: &str, base: &[(String, String)], extra: &[(&str, &str)]) -> Settings {
    let data_dir = db.data_dir();
    let mut vars: Vec<(String, String)> = vec![
        ("DATABASE_URL".into(), db.url.clone()),
        ("AUTH_GATEWAY_ENCRYPTION_KEY".into(), key.into()),
        ("AUTH_GATEWAY_API_KEY".into(), API_KEY.into()),
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("DATA_DIR".into(), data_dir.display().to_string()),
        // Tests run the jobs by hand; spreading refreshes out only slows them.
        ("REFRESH_JITTER_SECONDS".into(), "0".into()),
        // Tests drive hundreds of flows from 127.0.0.1; the limits have tests of their own.
        ("RATE_LIMIT_INIT_PER_SECOND".into(), "0".into()),
        ("RATE_LIMIT_TOKEN_PER_SECOND".into(), "0".into()),
        ("RATE_LIMIT_BROWSER_PER_SECOND".into(), "0".into()),
    ];
    for (k, v) in base {
        vars.retain(|(name, _)| name != k);
        vars.push((k.clone(), v.clone()));
    }
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
    pub mock: MockProvider,
    /// The separate `/metrics` listener, when `METRICS_ADDR` was set.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The gateway's state: actors and the jobs' work, for tests that drive them.
    pub state: gateway::http::AppState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), gateway::startup::ServeError>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let db = TestDb::new(backend).await;
    let key = fernet_key();
    spawn_app_on(db, key, &[]).await
}

pub async fn spawn_app_on(db: TestDb, key: String, extra: &[(&str, &str)]) -> TestApp {
    let mock = MockProvider::start().await.unwrap();
    spawn_app_with(db, key, mock, extra).await
}

/// A gateway on `db` whose providers are served by `mock`.
pub async fn spawn_app_with(db: TestDb, key: String, mock: MockProvider, extra: &[(&str, &str)]) -> TestApp {
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    spawn_app_with_vars(db, key, mock, extra).await
}

/// Like [`spawn_app_with`], with owned variables (e.g. from [`more_providers`]).
/// `TEST_SCHEDULER=on` starts the job scheduler; otherwise tests run jobs by hand.
pub async fn spawn_app_with_vars(db: TestDb, key: String, mock: MockProvider, extra: Vec<(String, String)>) -> TestApp {
    let clock = Clock::system();
    let mut base = provider_vars(&mock);
    base.extend(extra.iter().cloned());
    let settings = settings_with(&db, &key, &base, &[]);
    let scheduler = extra.iter().any(|(k, v)| k == "TEST_SCHEDULER" && v == "on");
    let app = Application::build_with_clock(settings, StartOptions { migrate: true, scheduler }, clock.clone())
        .await
        .unwrap_or_else(|e| panic!("start-up failed: {e}"));
    let address = format!("http://{}", app.local_addr().unwrap());
    let metrics_addr = app.metrics_addr();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp { address, client, clock, db, key, mock, metrics_addr, state, stop: Some(stop), server: Some(server) }
}

pub async fn try_build(
    db: &TestDb,
    key: &str,
    extra: &[(&str, &str)],
    clock: Clock,
) -> Result<Application, StartupError> {
    Application::build_with_clock(settings(db, key, extra), StartOptions { migrate: true, scheduler: false }, clock)
        .await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get_health(&self) -> reqwest::Response {
        self.client.get(self.url("/health")).send().await.unwrap()
    }

    /// A JSON request with the API key.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path)).header("x-api-key", API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn init(&self, provider: &str, email: &str, scopes: Option<&[&str]>) -> reqwest::Response {
        let mut body = json!({"provider": provider, "user_email": email});
        if let Some(scopes) = scopes {
            body["scopes"] = json!(scopes);
        }
        self.api(reqwest::Method::POST, "/auth/init", Some(body)).await
    }

    /// `/auth/init` that must succeed: (auth_url, session_id).
    pub async fn init_ok(&self, provider: &str, email: &str) -> (String, String) {
        let response = self.init(provider, email, None).await;
        assert_eq!(response.status(), 200, "init failed: {}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        (body["auth_url"].as_str().unwrap().to_owned(), body["session_id"].as_str().unwrap().to_owned())
    }

    pub async fn status(&self, session_id: &str, wait: Option<u64>) -> reqwest::Response {
        let query = wait.map(|w| format!("?wait={w}")).unwrap_or_default();
        self.api(reqwest::Method::GET, &format!("/auth/status/{session_id}{query}"), None).await
    }

    pub async fn status_json(&self, session_id: &str) -> Value {
        let response = self.status(session_id, None).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn token(&self, provider: &str, email: &str, required: Option<&[&str]>) -> reqwest::Response {
        let mut body = json!({"provider": provider, "user_email": email});
        if let Some(required) = required {
            body["required_scopes"] = json!(required);
        }
        self.api(reqwest::Method::POST, "/auth/token", Some(body)).await
    }

    /// `/auth/token` that must succeed: the body.
    pub async fn token_ok(&self, provider: &str, email: &str) -> Value {
        let response = self.token(provider, email, None).await;
        assert_eq!(response.status(), 200, "token failed: {}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    pub async fn revoke(&self, provider: &str, email: &str) -> reqwest::Response {
        self.api(reqwest::Method::DELETE, "/auth/revoke", Some(json!({"provider": provider, "user_email": email})))
            .await
    }

    /// See [`press_continue`].
    pub async fn continue_connect(&self, connect_url: &str) -> reqwest::Response {
        press_continue(&self.client, connect_url).await
    }

    /// Follows `url` as a browser would (redirects by hand, so each hop can be
    /// inspected; the connect page's "Continue" pressed) until a page that
    /// does not redirect.
    pub async fn browse(&self, url: &str) -> Browsed {
        let mut url = url.to_owned();
        let mut hops = Vec::new();
        for _ in 0..10 {
            let response = if url.contains("/connect/") {
                self.continue_connect(&url).await
            } else {
                self.client.get(&url).send().await.unwrap()
            };
            if response.status().is_redirection() {
                let location = response.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
                hops.push(url.clone());
                url = location;
                continue;
            }
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.text().await.unwrap();
            hops.push(url.clone());
            return Browsed { status, body, headers, hops };
        }
        panic!("too many redirects from {url}");
    }

    /// The whole consent dance for `email` at `provider`; returns the session id.
    pub async fn authorize(&self, provider: &str, email: &str) -> String {
        let (auth_url, session_id) = self.init_ok(provider, email).await;
        let page = self.browse(&auth_url).await;
        assert_eq!(page.status, 200, "consent did not succeed: {}", page.body);
        session_id
    }

    /// Row count of a table, for "nothing changed" checks.
    pub async fn count(&self, table: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = self.db.connect().await;
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        conn.close().await.unwrap();
        n
    }

    /// Stops the server gracefully and returns how its loop ended.
    pub async fn stop_result(self) -> Result<(), gateway::startup::ServeError> {
        let TestApp { stop, server, .. } = self;
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let server = server.expect("the server runs until stopped");
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("server stops within 10 s").unwrap()
    }

    /// Stops the server gracefully and hands back the database.
    pub async fn stop(self) -> TestDb {
        let TestApp { db, stop, server, .. } = self;
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

/// Does what a user does with a connect link: opens its page and presses
/// "Continue" (the form's POST, with the page's cookie). Returns the POST's
/// answer, or the page's when there is no page to continue from (a used or
/// expired link).
pub async fn press_continue(client: &reqwest::Client, connect_url: &str) -> reqwest::Response {
    let page = client.get(connect_url).send().await.unwrap();
    if page.status() != 200 {
        return page;
    }
    let cookie = connect_cookie(&page);
    let body = page.text().await.unwrap();
    let csrf = form_value(&body, "csrf");
    client.post(connect_url).header(reqwest::header::COOKIE, cookie).form(&[("csrf", csrf)]).send().await.unwrap()
}

/// The `gw_connect=<value>` pair the connect page sets.
pub fn connect_cookie(page: &reqwest::Response) -> String {
    let set = page.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// The value of the hidden input `name` in `html`.
pub fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} field in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A page reached by following redirects.
pub struct Browsed {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
    /// Every URL visited, the final one last.
    pub hops: Vec<String>,
}

impl Browsed {
    /// The gateway callback URL among the hops (it carries code and state).
    pub fn callback_url(&self) -> Option<&str> {
        self.hops.iter().find(|h| h.contains("/auth/callback/")).map(String::as_str)
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
