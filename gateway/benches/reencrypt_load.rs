//! Re-encryption throughput on PostgreSQL, alone and while `POST /auth/token`
//! traffic runs against the same gateway.
//!
//! ```sh
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p gateway --bench reencrypt_load
//! ```
//!
//! Seeds `BENCH_CREDENTIALS` (100 000) credentials sealed under key A (bulk
//! inserts), then rotates twice:
//!
//! 1. **Alone**: the release gateway with key B primary and A for rotation,
//!    unthrottled, no other load: re-encryption's capacity. Target
//!    [`TARGET_ALONE`] rows per second.
//! 2. **Under load**: restarted with C primary and B for rotation, warms
//!    `BENCH_WARM` (10 000) credentials, measures the token endpoint's latency
//!    alone (`BENCH_CONNECTIONS`, 32), then starts re-encryption throttled by
//!    `REENCRYPT_MAX_ROWS_PER_SECOND` (`BENCH_REENCRYPT_RATE`, default 5000 as
//!    in production; 0 = unthrottled) and keeps the same load running until no
//!    value is left under B. Targets: [`TARGET_UNDER_LOAD`] rows per second,
//!    token p99 within [`TARGET_P99_RATIO`]× of before, no error.
//!
//! `REENCRYPT_BATCH_SIZE` in the environment reaches the gateway (default 500).
//!
//! Prints rows and values per second, each target and the ratio to it, the
//! token p99 before and during, and the error count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::seeding::seed_credentials;
use secrecy::{ExposeSecret, SecretString};
use support::{
    API_KEY, LoadResult, Server, database, email, env_or, free_port, run_load, token_request, wait_until_up,
};
use tokio::net::TcpStream;

/// Rows per second re-encrypted with no other load, unthrottled.
const TARGET_ALONE: f64 = 10_000.0;
/// Rows per second re-encrypted while serving the token load.
const TARGET_UNDER_LOAD: f64 = 5_000.0;
/// Token p99 during re-encryption, at most this many times the p99 before.
const TARGET_P99_RATIO: f64 = 2.0;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    if std::env::var("BENCH_DATABASE_URL").is_err() {
        eprintln!("set BENCH_DATABASE_URL to a PostgreSQL server (this benchmark is about PostgreSQL)");
        return;
    }
    let credentials = env_or("BENCH_CREDENTIALS", 100_000);
    let warm = env_or("BENCH_WARM", 10_000).min(credentials);
    let connections = env_or("BENCH_CONNECTIONS", 32) as usize;
    let rate = env_or("BENCH_REENCRYPT_RATE", 5_000);
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, drop_db) = database(&dir).await;

    let key_a = gateway::crypto::key::generate_fernet_key();
    let key_b = gateway::crypto::key::generate_fernet_key();
    let mut vars = support::gateway_vars(&mock, &url, key_a.expose_secret(), dir.path());
    // The limiter runs (its cost is measured) but never refuses the load generator.
    vars.extend(support::vars([("RATE_LIMIT_TOKEN_PER_SECOND", "1000000".to_owned())]));

    // Schema, canary and provider row under A, then the credentials.
    let settings = Settings::from_source(&Source::from_pairs(vars.clone())).unwrap();
    let store = Admin::open(&settings, true, Clock::system()).await.unwrap();
    store.sync_configured_providers(&settings).await.unwrap();
    let seeding = Instant::now();
    let expires = gateway::clock::Clock::system().now() + chrono::TimeDelta::days(30);
    let rows = support::credentials(0..credentials, expires);
    seed_credentials(&store, &rows, Clock::system().now()).await.unwrap();
    store.close().await;
    println!("seeded {credentials} credentials in {:.1} s", seeding.elapsed().as_secs_f64());

    // Rotation 1, alone: B primary, A for rotation, unthrottled, no job on a timer.
    vars.retain(|(k, _)| k != "AUTH_GATEWAY_ENCRYPTION_KEY");
    vars.extend([
        ("JOB_REENCRYPT_ENABLED".to_owned(), "false".to_owned()),
        ("JOB_PROACTIVE_REFRESH_ENABLED".to_owned(), "false".to_owned()),
    ]);
    let gateway = start(&vars, &key_b, &key_a, 0);
    wait_until_up(&gateway.addr).await;
    let (alone_took, alone_values) = reencrypt(&gateway.addr).await;
    drop(gateway);

    // Rotation 2, under load: C primary, B for rotation, throttled as configured.
    let key_c = gateway::crypto::key::generate_fernet_key();
    let gateway = start(&vars, &key_c, &key_b, rate);
    wait_until_up(&gateway.addr).await;
    let requests: Arc<Vec<Vec<u8>>> = Arc::new((0..warm).map(|i| token_request(&email(i))).collect());
    let warming = run_load(&gateway.addr, requests.clone(), connections, Duration::from_secs(5)).await;
    assert_eq!(warming.errors, 0, "warm-up failed");
    let before = run_load(&gateway.addr, requests.clone(), connections, Duration::from_secs(10)).await;
    let load = tokio::spawn({
        let (addr, requests) = (gateway.addr.clone(), requests.clone());
        async move {
            let mut results = Vec::new();
            loop {
                let r = run_load(&addr, requests.clone(), connections, Duration::from_secs(5)).await;
                let done = pending(&addr).await == 0;
                results.push(r);
                if done {
                    return results;
                }
            }
        }
    });
    let (loaded_took, loaded_values) = reencrypt(&gateway.addr).await;
    let during = merge(&load.await.unwrap());

    let rows_per_second = |took: Duration| credentials as f64 / took.as_secs_f64();
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!("re-encryption of {credentials} credentials ({alone_values} values) on PostgreSQL");
    let alone = rows_per_second(alone_took);
    println!(
        "alone, unthrottled:       {:>6.1} s, {:>6.0} rows/s, {:>6.0} values/s; target >= {TARGET_ALONE:.0} rows/s: {:.2}x ({})",
        alone_took.as_secs_f64(),
        alone,
        alone_values as f64 / alone_took.as_secs_f64(),
        alone / TARGET_ALONE,
        verdict(alone >= TARGET_ALONE)
    );
    let loaded = rows_per_second(loaded_took);
    println!(
        "under {connections}-connection load, throttle {rate} rows/s (0 = none): {:.1} s, {:.0} rows/s, {:.0} values/s; target >= {TARGET_UNDER_LOAD:.0} rows/s: {:.2}x ({})",
        loaded_took.as_secs_f64(),
        loaded,
        loaded_values as f64 / loaded_took.as_secs_f64(),
        loaded / TARGET_UNDER_LOAD,
        verdict(loaded >= TARGET_UNDER_LOAD)
    );
    println!("{:<28} {:>12} {:>10} {:>10} {:>8}", "POST /auth/token", "requests/s", "p50 µs", "p99 µs", "errors");
    for (name, r) in [("before re-encryption", &before), ("during re-encryption", &during)] {
        println!("{:<28} {:>12.0} {:>10} {:>10} {:>8}", name, r.rate, r.p50.as_micros(), r.p99.as_micros(), r.errors);
    }
    let ratio = during.p99.as_secs_f64() / before.p99.as_secs_f64();
    println!(
        "p99 during / before: {ratio:.2}x; target <= {TARGET_P99_RATIO:.1}x ({})",
        verdict(ratio <= TARGET_P99_RATIO)
    );
    println!("errors: {} ({})", during.errors, verdict(during.errors == 0));
    drop(gateway);
    if let Some(drop_db) = drop_db {
        drop_db.await;
    }
}

/// The release gateway with `primary` sealing and `rotation` still opening,
/// re-encryption throttled to `rate` rows per second (0: none).
fn start(vars: &[(String, String)], primary: &SecretString, rotation: &SecretString, rate: u64) -> Server {
    let port = free_port();
    let mut vars = vars.to_vec();
    vars.extend([
        ("AUTH_GATEWAY_ENCRYPTION_KEY".to_owned(), primary.expose_secret().to_owned()),
        ("AUTH_GATEWAY_ROTATION_KEYS".to_owned(), rotation.expose_secret().to_owned()),
        ("PORT".to_owned(), port.to_string()),
        ("REENCRYPT_MAX_ROWS_PER_SECOND".to_owned(), rate.to_string()),
    ]);
    // To try another batch size: REENCRYPT_BATCH_SIZE=100 cargo bench ...
    vars.extend(std::env::var("REENCRYPT_BATCH_SIZE").ok().map(|v| ("REENCRYPT_BATCH_SIZE".to_owned(), v)));
    let child =
        Command::new(env!("CARGO_BIN_EXE_gateway")).env_clear().envs(vars).stdout(Stdio::null()).spawn().unwrap();
    Server { child, addr: format!("127.0.0.1:{port}") }
}

/// Starts re-encryption and waits until no value is left under an old key:
/// how long it took and how many values were pending.
async fn reencrypt(addr: &str) -> (Duration, u64) {
    let pending_before = pending(addr).await;
    let started = Instant::now();
    let status = admin(addr, "POST", "/admin/keys/reencrypt").await;
    assert!(status.contains("202"), "could not start re-encryption: {status}");
    while pending(addr).await > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (started.elapsed(), pending_before)
}

/// Weighted merge of consecutive load windows (p50/p99 of the worst window).
fn merge(runs: &[LoadResult]) -> LoadResult {
    let total: f64 = runs.iter().map(|r| r.rate).sum::<f64>() / runs.len().max(1) as f64;
    LoadResult {
        rate: total,
        p50: runs.iter().map(|r| r.p50).max().unwrap_or_default(),
        p99: runs.iter().map(|r| r.p99).max().unwrap_or_default(),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

async fn admin(addr: &str, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {API_KEY}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    out
}

async fn pending(addr: &str) -> u64 {
    let response = admin(addr, "GET", "/admin/keys").await;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["pending_values"].as_u64()).unwrap_or(u64::MAX)
}
