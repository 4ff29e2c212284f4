//! What grows with the number of stored credentials, on PostgreSQL: start-up
//! time, the first (cold) `POST /auth/token` of a credential, and memory per
//! warm credential. One sub-command each, so each figure can be rerun alone:
//!
//! ```sh
//! export BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo bench -p gateway --bench scale -- seed     # SCALE_CREDENTIALS (1 000 000) into SCALE_DATABASE
//! cargo bench -p gateway --bench scale -- startup  # spawn to /health ready, SCALE_STARTS (3) times
//! cargo bench -p gateway --bench scale -- cold     # first request of SCALE_COLD (2 000) random credentials
//! cargo bench -p gateway --bench scale -- memory   # RSS growth over SCALE_WARM (100 000) warmed credentials, after SCALE_SETTLE_SECONDS (70)
//! cargo bench -p gateway --bench scale -- all      # seed (unless already seeded), then the three
//! cargo bench -p gateway --bench scale -- drop     # drop SCALE_DATABASE
//! ```
//!
//! The sub-command may also come from `SCALE_COMMAND`; the default is `all`.
//! `seed` (re)creates the database `SCALE_DATABASE` (`scale_bench`) on
//! `BENCH_DATABASE_URL`, migrates it, inserts the credentials with `COPY`
//! (sealed per row on every core: the envelope binds each value to its row)
//! and runs `VACUUM ANALYZE`, as autovacuum would after a bulk load. The
//! other sub-commands reuse that database: the encryption key is a fixed
//! benchmark key, so every run of the gateway can read what `seed` wrote.
//! Each figure is printed with its target and ratio; the gateway is the
//! release binary, started as its own process with the scheduler's default
//! jobs, against the mock provider.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::seeding::seed_credentials;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use sea_orm::{ConnectionTrait, Statement};
use support::{email, env_or, first_requests, quantile, start_gateway};

/// A fixed Fernet key (32 bytes of 0x2a): the database outlives one run.
/// A benchmark key, never a real one.
const BENCH_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";
/// Credentials per `COPY` while seeding (bounds the seeder's memory).
const SEED_BATCH: u64 = 50_000;

const STARTUP_TARGET: Duration = Duration::from_secs(5);
const COLD_P99_TARGET: Duration = Duration::from_millis(2);
const BYTES_PER_WARM_TARGET: f64 = 2048.0;

fn main() {
    let command = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("SCALE_COMMAND").ok())
        .unwrap_or_else(|| "all".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(&command));
}

struct Bench {
    admin_url: String,
    name: String,
    url: String,
}

async fn run(command: &str) {
    let admin_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = std::env::var("SCALE_DATABASE").unwrap_or_else(|_| "scale_bench".to_owned());
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "SCALE_DATABASE: letters, digits, _");
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    let bench = Bench { admin_url, name, url: url.to_string() };
    println!("load average at start: {}", load_average());
    match command {
        "seed" => seed(&bench).await,
        "startup" => startup(&bench).await,
        "cold" => cold(&bench).await,
        "memory" => memory(&bench).await,
        "drop" => drop_database(&bench).await,
        "all" => {
            if stored(&bench).await.is_none() {
                seed(&bench).await;
            }
            startup(&bench).await;
            cold(&bench).await;
            memory(&bench).await;
        }
        other => panic!("unknown sub-command {other}: seed, startup, cold, memory, all or drop"),
    }
    println!("load average at end: {}", load_average());
}

/// The gateway's environment; `mock` is the running mock provider.
fn gateway_vars(bench: &Bench, mock: &mock_provider::MockProvider) -> Vec<(String, String)> {
    let data_dir = std::env::temp_dir().join("gateway-scale-bench");
    let mut vars = support::gateway_vars(mock, &bench.url, BENCH_KEY, &data_dir);
    vars.extend(support::vars([
        ("RATE_LIMIT_TOKEN_PER_SECOND", "1000000".to_owned()),
        ("MOCK_SCOPES", "openid email mail.read".to_owned()),
    ]));
    vars
}

async fn admin_connection(bench: &Bench) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(&bench.admin_url).await.unwrap()
}

async fn drop_database(bench: &Bench) {
    let conn = admin_connection(bench).await;
    conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", bench.name)).await.unwrap();
    println!("dropped database {}", bench.name);
}

/// Credentials stored in the benchmark database, `None` if it does not exist.
async fn stored(bench: &Bench) -> Option<u64> {
    let conn = sea_orm::Database::connect(&bench.url).await.ok()?;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM oauth_credentials",
        ))
        .await
        .ok()??;
    let n: i64 = row.try_get("", "n").ok()?;
    Some(n as u64)
}

async fn seed(bench: &Bench) {
    let credentials = env_or("SCALE_CREDENTIALS", 1_000_000);
    drop_database(bench).await;
    admin_connection(bench).await.execute_unprepared(&format!("CREATE DATABASE {}", bench.name)).await.unwrap();
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let settings = Settings::from_source(&Source::from_pairs(gateway_vars(bench, &mock))).unwrap();
    let store = Admin::open(&settings, true, Clock::system()).await.unwrap();
    store.sync_configured_providers(&settings).await.unwrap();

    let started = Instant::now();
    // Far enough ahead that a database seeded today still serves next month
    // without refreshing (the mock provider knows none of these grants).
    let expires = Clock::system().now() + chrono::TimeDelta::days(365);
    let mut from = 0;
    while from < credentials {
        let to = (from + SEED_BATCH).min(credentials);
        let rows = support::credentials(from..to, expires);
        seed_credentials(&store, &rows, Clock::system().now()).await.unwrap();
        from = to;
        eprint!("\rseeded {from}/{credentials}");
    }
    eprintln!();
    let inserted = started.elapsed();
    store.close().await;
    let conn = sea_orm::Database::connect(&bench.url).await.unwrap();
    conn.execute_unprepared("VACUUM ANALYZE").await.unwrap();
    println!(
        "seeded {credentials} credentials in {:.1} s ({:.0} rows/s), VACUUM ANALYZE {:.1} s more",
        inserted.as_secs_f64(),
        credentials as f64 / inserted.as_secs_f64(),
        (started.elapsed() - inserted).as_secs_f64()
    );
}

async fn seeded(bench: &Bench) -> u64 {
    match stored(bench).await {
        Some(n) if n > 0 => n,
        _ => panic!("database {} is not seeded: run the `seed` sub-command first", bench.name),
    }
}

async fn startup(bench: &Bench) {
    let credentials = seeded(bench).await;
    let starts = env_or("SCALE_STARTS", 3).max(1);
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let vars = gateway_vars(bench, &mock);
    let mut times = Vec::new();
    for run in 1..=starts {
        let (gateway, took) = start_gateway(&vars).await;
        drop(gateway);
        println!("start {run}: {} ms to /health ready", took.as_millis());
        times.push(took);
    }
    times.sort();
    let median = quantile(&times, 0.5);
    print_figure(
        &format!("start-up to ready, {credentials} stored (median of {starts})"),
        median.as_secs_f64(),
        STARTUP_TARGET.as_secs_f64(),
        "s",
    );
}

async fn cold(bench: &Bench) {
    let credentials = seeded(bench).await;
    let count = env_or("SCALE_COLD", 2_000).min(credentials);
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let (gateway, _) = start_gateway(&gateway_vars(bench, &mock)).await;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let picks = rand::seq::index::sample(&mut rng, credentials as usize, count as usize);
    let latencies = first_requests(&gateway.addr, picks.into_iter().map(|i| email(i as u64))).await;
    drop(gateway);
    let (p50, p99) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99));
    println!(
        "cold first /auth/token, {count} random of {credentials}: p50 {} µs, p99 {} µs, max {} µs",
        p50.as_micros(),
        p99.as_micros(),
        quantile(&latencies, 1.0).as_micros()
    );
    print_figure(
        &format!("cold first /auth/token p99, {credentials} stored"),
        p99.as_secs_f64() * 1000.0,
        COLD_P99_TARGET.as_secs_f64() * 1000.0,
        "ms",
    );
}

async fn memory(bench: &Bench) {
    let credentials = seeded(bench).await;
    let warm = env_or("SCALE_WARM", 100_000).min(credentials);
    let connections = env_or("SCALE_WARM_CONNECTIONS", 4).max(1);
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let (gateway, _) = start_gateway(&gateway_vars(bench, &mock)).await;
    // Let start-up's own allocations settle before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = gateway.rss_kib();
    let started = Instant::now();
    // A random set, warmed over a few connections (each in its own order).
    let mut picks: Vec<u64> = (0..credentials).collect();
    let mut rng = rand::rngs::StdRng::from_entropy();
    picks.shuffle(&mut rng);
    picks.truncate(warm as usize);
    let tasks: Vec<_> = picks
        .chunks(picks.len().div_ceil(connections as usize).max(1))
        .map(|slice| {
            let (addr, emails) = (gateway.addr.clone(), slice.iter().map(|&i| email(i)).collect::<Vec<_>>());
            tokio::spawn(async move { first_requests(&addr, emails).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let warming = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let right_after = gateway.rss_kib();
    // The audit summary holds a record per user until its minute is written:
    // memory per active user for a minute, not per warm credential. Measured
    // again once that has happened (SCALE_SETTLE_SECONDS).
    let settle = Duration::from_secs(env_or("SCALE_SETTLE_SECONDS", 70));
    tokio::time::sleep(settle.saturating_sub(Duration::from_secs(2))).await;
    let after = gateway.rss_kib();
    drop(gateway);
    let per = |rss: u64| (rss.saturating_sub(before) * 1024) as f64 / warm as f64;
    println!(
        "gateway RSS {before} KiB before, {right_after} KiB 2 s after warming {warm} of {credentials} ({:.1} s over {connections} connections), {after} KiB after {} s",
        warming.as_secs_f64(),
        settle.as_secs()
    );
    println!(
        "memory per warm credential 2 s after warming, the minute's audit summary included: {:.0} bytes",
        per(right_after)
    );
    print_figure(&format!("memory per warm credential, {warm} warm"), per(after), BYTES_PER_WARM_TARGET, "bytes");
}

/// One line per figure: value, target, ratio (≤ 1 meets the target).
fn print_figure(name: &str, value: f64, target: f64, unit: &str) {
    let verdict = if value <= target { "meets" } else { "MISSES" };
    println!("FIGURE {name}: {value:.2} {unit} (target <= {target} {unit}, ratio {:.2}, {verdict})", value / target);
}

/// The machine's 1/5/15-minute load (the figures are only as quiet as it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
