//! What the benchmarks share: child server processes, and a minimal HTTP/1.1
//! load generator (pre-built requests, Content-Length framing) that takes as
//! little of the shared CPU as possible.

#![allow(dead_code)]

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const API_KEY: &str = "bench-api-key-0123456789-abcdefghijklmnopqrstuvwxyz";

/// The environment every benchmark's gateway starts from: the database at
/// `database_url`, values sealed with `key`, the benchmark API key, quiet
/// logs, loopback, its files under `data_dir`, and the running mock as its
/// only provider. Each benchmark adds what it studies (scopes, rate limits,
/// ports, issuers).
pub fn gateway_vars(
    mock: &mock_provider::MockProvider,
    database_url: &str,
    key: &str,
    data_dir: &std::path::Path,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url.to_owned()),
        ("AUTH_GATEWAY_ENCRYPTION_KEY", key.to_owned()),
        ("AUTH_GATEWAY_API_KEY", API_KEY.to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
        ("AUTH_GATEWAY_PROVIDERS", "mock".to_owned()),
        ("MOCK_CLIENT_ID", mock.client_id().to_owned()),
        ("MOCK_CLIENT_SECRET", mock.client_secret().to_owned()),
        ("MOCK_AUTH_URL", mock.authorize_url()),
        ("MOCK_TOKEN_URL", mock.token_url()),
        ("HOST", "127.0.0.1".to_owned()),
        ("DATA_DIR", data_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `(name, value)` pairs as the owned strings [`gateway_vars`] holds.
pub fn vars<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> impl Iterator<Item = (String, String)> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v))
}

/// The address of the benchmarks' `i`th user.
pub fn email(i: u64) -> String {
    format!("user{i}@bench.example.com")
}

/// Credentials `ids` for the mock provider, tokens expiring at `expires_at`
/// (the refresh tokens are placeholders the mock does not know).
pub fn credentials(
    ids: std::ops::Range<u64>,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Vec<gateway::seeding::SeedCredential> {
    ids.map(|i| gateway::seeding::SeedCredential {
        key: gateway::credentials::CredentialKey {
            email: gateway::email::Email::parse(&email(i)).unwrap(),
            provider: "mock".into(),
        },
        access_token: format!("mock_at_bench_{i}_{}", "x".repeat(120)),
        refresh_token: format!("mock_rt_bench_{i}"),
        expires_at,
    })
    .collect()
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Starts the release `gateway` binary with exactly `vars` (plus a free
/// `PORT`); returns once `/health` answers, with how long that took.
pub async fn start_gateway(vars: &[(String, String)]) -> (Server, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .envs(vars.iter().filter(|(k, _)| k != "PORT").cloned())
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, addr: format!("127.0.0.1:{port}") };
    wait_until_up(&server.addr).await;
    (server, started.elapsed())
}

/// The first (cold) `POST /auth/token` of each email, one after the other on
/// one keep-alive connection (each loads, decrypts and starts an actor);
/// their latencies, sorted.
pub async fn first_requests(addr: &str, emails: impl IntoIterator<Item = String>) -> Vec<Duration> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut latencies = Vec::new();
    for email in emails {
        let request = token_request(&email);
        let started = Instant::now();
        let status = exchange(&mut conn, &request, &mut buf).await;
        latencies.push(started.elapsed());
        assert_eq!(status, 200, "first request for {email} failed");
    }
    latencies.sort();
    latencies
}

/// The `q` quantile of sorted durations (zero when there are none).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn wait_until_up(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut conn) = TcpStream::connect(addr).await {
            let mut buf = Vec::new();
            let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            if exchange(&mut conn, req.as_bytes(), &mut buf).await == 200 {
                return;
            }
        }
        // Short: start-up time is measured by this loop.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the gateway did not start");
}

pub fn token_request(email: &str) -> Vec<u8> {
    let body = format!(r#"{{"provider":"mock","user_email":"{email}"}}"#);
    format!(
        "POST /auth/token HTTP/1.1\r\nHost: bench\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends one request on a keep-alive connection and reads one response;
/// returns its status code.
pub async fn exchange(conn: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> u16 {
    if conn.write_all(request).await.is_err() {
        return 0;
    }
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or_default();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return 0,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return status;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return 0,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub struct LoadResult {
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: u64,
}

/// The round with the median throughput (its latencies come with it), and
/// the errors of every round.
pub fn median(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let errors = runs.iter().map(|r| r.errors).sum();
    let mid = runs.swap_remove(runs.len() / 2);
    LoadResult { errors, ..mid }
}

pub async fn load(addr: &str, requests: Arc<Vec<Vec<u8>>>, connections: usize, duration: Duration) -> LoadResult {
    // A short warm-up so that connection set-up and lazy start are not measured.
    let _ = run_load(addr, requests.clone(), connections, Duration::from_secs(1)).await;
    run_load(addr, requests, connections, duration).await
}

pub async fn run_load(addr: &str, requests: Arc<Vec<Vec<u8>>>, connections: usize, duration: Duration) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, requests, stop) = (addr.to_owned(), requests.clone(), stop.clone());
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(&addr).await.unwrap();
                conn.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(4096);
                let mut latencies = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                let mut rng = rand::rngs::StdRng::from_entropy();
                while !stop.load(Ordering::Relaxed) {
                    let request = &requests[rng.gen_range(0..requests.len())];
                    let t = Instant::now();
                    let status = exchange(&mut conn, request, &mut buf).await;
                    latencies.push(t.elapsed());
                    if status != 200 {
                        errors += 1;
                        if status == 0 {
                            conn = TcpStream::connect(&addr).await.unwrap();
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    let elapsed = started.elapsed();
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    LoadResult { rate: all.len() as f64 / elapsed.as_secs_f64(), p50: pick(0.50), p99: pick(0.99), errors }
}

/// SQLite in `dir`, or a fresh database on `BENCH_DATABASE_URL` (dropped after).
pub async fn database(
    dir: &tempfile::TempDir,
) -> (String, Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>) {
    match std::env::var("BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            use sea_orm::ConnectionTrait;
            let name = format!("gw_bench_{}", uuid::Uuid::new_v4().simple());
            let conn = sea_orm::Database::connect(&admin).await.unwrap();
            conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&format!("/{name}"));
            let drop = Box::pin(async move {
                let _ = conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            });
            (url.to_string(), Some(drop as _))
        }
        _ => (format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()), None),
    }
}
