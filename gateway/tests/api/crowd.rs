//! A crowd of users consenting at once, while MCP servers read tokens and the
//! scheduled jobs and the audit writer run: no consent may be lost.
//!
//! Each user goes the whole way a browser does — `/auth/init`, the connect
//! link, the provider, the callback page — then the session must say
//! `completed` and `/auth/token` must hand out the provider's token. The same
//! crowd runs on SQLite and PostgreSQL inside the test process (debug build),
//! and against the release binary as a separate process
//! (`crowd_against_the_release_build`, which `scripts/test` runs with
//! `GATEWAY_RELEASE_BIN` set).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mock_provider::{MockConfig, MockProvider};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, Backend, TestDb, fernet_key, postgres_available, provider_vars, spawn_app_with_vars};
use crate::on_both_backends;

on_both_backends!(two_hundred_and_forty_users_consent_twelve_at_a_time_and_none_is_lost);

const USERS: usize = 240;
const AT_ONCE: usize = 12;
const TOKEN_READERS: usize = 3;

/// Every job on a one-second schedule, every token read audited one by one:
/// as many writers beside the callbacks as the gateway ever has.
fn busy_gateway_vars() -> Vec<(String, String)> {
    [
        ("TEST_SCHEDULER", "on"),
        ("JOB_PROACTIVE_REFRESH_SCHEDULE", "* * * * * *"),
        ("JOB_SESSION_SWEEP_SCHEDULE", "* * * * * *"),
        ("JOB_METRICS_REFRESH_SCHEDULE", "* * * * * *"),
        ("AUDIT_TOKEN_READS", "each"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Tokens that live ten minutes and a second: inside the 10-minute proactive
/// lead a second after they are issued, so the refresh job writes every
/// credential again and again while the crowd consents.
fn mock_config() -> MockConfig {
    MockConfig { access_token_ttl: Duration::from_secs(10 * 60 + 1), ..MockConfig::default() }
}

async fn two_hundred_and_forty_users_consent_twelve_at_a_time_and_none_is_lost(backend: Backend) {
    let mock = MockProvider::start_with(mock_config()).await.unwrap();
    let app = spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, busy_gateway_vars()).await;
    let report = run_crowd(&format!("debug, {backend:?}"), &app.address, &app.mock).await;
    report.assert_nothing_lost();
    assert_eq!(app.count("oauth_credentials").await, USERS as i64, "one credential per user");
    app.stop().await;
}

/// The same crowd against the release binary (`GATEWAY_RELEASE_BIN`), on
/// SQLite and, when configured, PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_against_the_release_build() {
    // scripts/test builds the release binary and runs this test with it.
    let Some(bin) = std::env::var_os("GATEWAY_RELEASE_BIN").filter(|b| !b.is_empty()) else {
        eprintln!("skipped here: scripts/test runs it with GATEWAY_RELEASE_BIN set to a release gateway binary");
        return;
    };
    let mut backends = vec![Backend::Sqlite];
    if postgres_available() {
        backends.push(Backend::Postgres);
    }
    for backend in backends {
        let db = TestDb::new(backend).await;
        let mock = MockProvider::start_with(mock_config()).await.unwrap();
        let gateway = ReleaseGateway::start(&bin, &db, &mock);
        let report = run_crowd(&format!("release, {backend:?}"), &gateway.address, &mock).await;
        report.assert_nothing_lost();
    }
}

/// What the crowd saw.
#[derive(Debug, Default)]
struct CrowdReport {
    completed: usize,
    /// User → what went wrong, for every consent that did not end in a stored credential.
    lost: BTreeMap<String, String>,
    token_reads: u64,
    /// Token reads that were not answered 200 (status → count).
    failed_reads: BTreeMap<u16, u64>,
    /// Refreshes the provider granted meanwhile (the jobs were writing too).
    refreshes: u64,
    elapsed: Duration,
}

impl CrowdReport {
    fn assert_nothing_lost(&self) {
        assert!(self.lost.is_empty(), "{} of {USERS} consents lost: {:#?}", self.lost.len(), self.lost);
        assert_eq!(self.completed, USERS);
        assert!(self.failed_reads.is_empty(), "token reads failed: {:?}", self.failed_reads);
        assert!(self.token_reads > 0, "the readers ran");
    }
}

async fn run_crowd(label: &str, address: &str, mock: &MockProvider) -> CrowdReport {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let connected: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let reads = Arc::new(AtomicU64::new(0));
    let failed_reads: Arc<std::sync::Mutex<BTreeMap<u16, u64>>> = Arc::default();

    let readers: Vec<_> = (0..TOKEN_READERS)
        .map(|i| {
            let (client, address) = (client.clone(), address.to_owned());
            let (done, connected, reads, failed) =
                (done.clone(), connected.clone(), reads.clone(), failed_reads.clone());
            tokio::spawn(async move {
                let mut n = i;
                while !done.load(Ordering::Relaxed) {
                    let user = {
                        let users = connected.lock().unwrap();
                        if users.is_empty() { None } else { Some(users[n % users.len()].clone()) }
                    };
                    n += 7;
                    let Some(user) = user else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    let status = token(&client, &address, &user).await.status().as_u16();
                    reads.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        *failed.lock().unwrap().entry(status).or_default() += 1;
                    }
                }
            })
        })
        .collect();

    let outcomes: Vec<(String, Result<(), String>)> = futures::stream::iter(0..USERS)
        .map(|i| {
            let (client, address) = (client.clone(), address.to_owned());
            let connected = connected.clone();
            async move {
                let user = format!("crowd{i}@company.com");
                let outcome = consent(&client, &address, &user).await;
                if outcome.is_ok() {
                    connected.lock().unwrap().push(user.clone());
                }
                (user, outcome)
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }

    let mut report = CrowdReport { elapsed: started.elapsed(), ..CrowdReport::default() };
    for (user, outcome) in outcomes {
        match outcome {
            Ok(()) => report.completed += 1,
            Err(why) => {
                report.lost.insert(user, why);
            }
        }
    }
    // Each stored credential holds a token the provider issued.
    let sample: Vec<String> = connected.lock().unwrap().iter().take(20).cloned().collect();
    for user in &sample {
        let body: Value = token(&client, address, user).await.json().await.unwrap();
        assert!(mock.access_token_is_valid(body["access_token"].as_str().unwrap()), "{user}: not the provider's token");
    }
    report.token_reads = reads.load(Ordering::Relaxed);
    report.failed_reads = failed_reads.lock().unwrap().clone();
    report.refreshes = mock.counters().refresh_grants;
    eprintln!(
        "crowd ({label}): {} users, {AT_ONCE} at a time, {} completed in {:?}; {} token reads, {} refreshes beside",
        USERS, report.completed, report.elapsed, report.token_reads, report.refreshes
    );
    report
}

async fn token(client: &reqwest::Client, address: &str, user: &str) -> reqwest::Response {
    client
        .post(format!("{address}/auth/token"))
        .header("x-api-key", API_KEY)
        .json(&json!({"provider": "mock", "user_email": user}))
        .send()
        .await
        .unwrap()
}

/// One user's whole consent; `Err` says where it was lost.
async fn consent(client: &reqwest::Client, address: &str, user: &str) -> Result<(), String> {
    let init = client
        .post(format!("{address}/auth/init"))
        .header("x-api-key", API_KEY)
        .json(&json!({"provider": "mock", "user_email": user}))
        .send()
        .await
        .map_err(|e| format!("init: {e}"))?;
    if init.status() != 200 {
        return Err(format!("init answered {}: {}", init.status(), init.text().await.unwrap_or_default()));
    }
    let init: Value = init.json().await.map_err(|e| format!("init body: {e}"))?;
    let mut url = init["auth_url"].as_str().ok_or("no auth_url")?.to_owned();
    let session = init["session_id"].as_str().ok_or("no session_id")?.to_owned();
    // The connect page's "Continue", then the redirects by hand: provider → callback page.
    let mut response = crate::helpers::press_continue(client, &url).await;
    let page = loop {
        if response.status() == 200 && response.url().path().starts_with("/connect/") {
            return Err("the connect page could not be continued".to_owned());
        }
        if response.status().is_redirection() {
            url = response.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned();
            response = client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
            continue;
        }
        break (response.status().as_u16(), response.text().await.unwrap_or_default());
    };
    if page.0 != 200 || !page.1.contains("Authentication Successful") {
        let text: String = page.1.chars().filter(|c| !c.is_control()).collect();
        let summary = text.split("<p>").nth(1).unwrap_or(&text).chars().take(160).collect::<String>();
        return Err(format!("callback page {}: {summary}", page.0));
    }
    let status: Value = client
        .get(format!("{address}/auth/status/{session}"))
        .header("x-api-key", API_KEY)
        .send()
        .await
        .map_err(|e| format!("status: {e}"))?
        .json()
        .await
        .map_err(|e| format!("status body: {e}"))?;
    if status["status"] != "completed" {
        return Err(format!("status says {status}"));
    }
    let token = token(client, address, user).await;
    if token.status() != 200 {
        return Err(format!("token answered {}", token.status()));
    }
    Ok(())
}

/// The release binary as a child process, configured like the in-process gateway.
struct ReleaseGateway {
    child: Child,
    address: String,
    _data: tempfile::TempDir,
}

impl ReleaseGateway {
    fn start(bin: &std::ffi::OsStr, db: &TestDb, mock: &MockProvider) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(bin);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("AUTH_GATEWAY_ENCRYPTION_KEY", fernet_key())
            .env("AUTH_GATEWAY_API_KEY", API_KEY)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATA_DIR", data.path())
            .env("RATE_LIMIT_INIT_PER_SECOND", "0")
            .env("RATE_LIMIT_TOKEN_PER_SECOND", "0")
            .env("RATE_LIMIT_BROWSER_PER_SECOND", "0")
            .env("REFRESH_JITTER_SECONDS", "0")
            .env("RUST_LOG", "info")
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in provider_vars(mock).into_iter().chain(busy_gateway_vars()) {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the gateway never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let address = loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("the release gateway printed no 'gateway ready' line within 60 s")
            });
            if line.contains("gateway ready") {
                let start = line.find("address=").unwrap() + "address=".len();
                break format!("http://{}", line[start..].split_whitespace().next().unwrap());
            }
        };
        Self { child, address, _data: data }
    }
}

impl Drop for ReleaseGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
