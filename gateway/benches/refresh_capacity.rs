//! Proactive refresh capacity on PostgreSQL: refreshes a second by one
//! replica, then by three on the same database, against a provider that
//! answers every token request in 150 ms.
//!
//! ```sh
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p gateway --bench refresh_capacity
//! ```
//!
//! For each part, a fresh database: `BENCH_CREDENTIALS` (20 000) credentials
//! seeded all due (tokens expiring in a minute, refresh tokens the mock
//! provider knows), the mock provider answering after `BENCH_LATENCY_MS`
//! (150). Then the gateways (in this process, each with its own services,
//! actors and connection pool, the job run by hand as the scheduler would)
//! run the proactive refresh until nothing is due:
//! (a) one replica: refreshes per second, against the 500/s target, and the
//! most token requests the provider saw in flight against
//! `REFRESH_PROVIDER_CONCURRENCY`;
//! (b) three replicas at once: total refreshes per second, the ratio to one
//! replica, and whether the provider refreshed each credential exactly once.
//! `REFRESH_*` variables in the environment reach the gateways (e.g.
//! `REFRESH_PROVIDER_CONCURRENCY=64` to see the cap bind).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use futures::future::join_all;
use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::credentials::CredentialKey;
use gateway::email::Email;
use gateway::seeding::{SeedCredential, seed_credentials};
use gateway::startup::{Application, StartOptions};
use mock_provider::{Latency, MockConfig, MockProvider};
use secrecy::ExposeSecret;
use support::{database, env_or};
use tokio::sync::oneshot;

/// What one replica must sustain.
const TARGET_PER_SECOND: f64 = 500.0;
/// The scopes the gateway asks for on refresh, so the seeded grants carry them.
const SCOPES: [&str; 3] = ["openid", "email", "mail.read"];

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    if std::env::var("BENCH_DATABASE_URL").is_err() {
        eprintln!("set BENCH_DATABASE_URL to a PostgreSQL server (this benchmark is about PostgreSQL)");
        return;
    }
    let n = env_or("BENCH_CREDENTIALS", 20_000) as usize;
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", 150));

    let one = measure(1, n, latency).await;
    let three = measure(3, n, latency).await;

    println!();
    println!("proactive refresh of {n} due credentials on PostgreSQL, provider latency {} ms", latency.as_millis());
    println!("one replica: {:.0} refreshes/s ({} in {:.1} s)", one.rate(), one.refreshed, one.elapsed.as_secs_f64());
    println!("target: {TARGET_PER_SECOND:.0} refreshes/s per replica");
    println!("one replica / target: {:.2}x", one.rate() / TARGET_PER_SECOND);
    println!("one replica, most token calls in flight at the provider: {} (cap {})", one.max_in_flight, one.cap);
    println!(
        "three replicas: {:.0} refreshes/s ({} in {:.1} s)",
        three.rate(),
        three.refreshed,
        three.elapsed.as_secs_f64()
    );
    println!("three replicas / one replica: {:.2}x", three.rate() / one.rate());
    println!(
        "three replicas, most token calls in flight at the provider: {} (3 x cap {})",
        three.max_in_flight, three.cap
    );
    for (name, m) in [("one replica", &one), ("three replicas", &three)] {
        println!(
            "{name}: CPU of gateways and mock per refresh: {:.2} ms (PostgreSQL not included)",
            m.cpu_ms_per_refresh
        );
    }
    for (name, m) in [("one replica", &one), ("three replicas", &three)] {
        println!(
            "{name}: credentials refreshed exactly once: {} of {n} (twice or more: {}, never: {})",
            m.once, m.more, m.never
        );
    }
}

struct Measured {
    refreshed: usize,
    elapsed: Duration,
    max_in_flight: u64,
    cap: usize,
    once: usize,
    more: usize,
    never: usize,
    /// This process's CPU (gateways and mock, not PostgreSQL) per refresh.
    cpu_ms_per_refresh: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.refreshed as f64 / self.elapsed.as_secs_f64()
    }
}

/// `replicas` gateways on a fresh database with `n` due credentials, run
/// until nothing is due.
async fn measure(replicas: usize, n: usize, latency: Duration) -> Measured {
    let mock = MockProvider::start_with(MockConfig { token_latency: Latency::Fixed(latency), ..MockConfig::default() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, drop_db) = database(&dir).await;
    let vars = gateway_vars(&mock, &url, &dir);
    let settings = Settings::from_source(&Source::from_pairs(vars.clone())).unwrap();
    let cap = settings.jobs.refresh_provider_concurrency;
    seed(&settings, &mock, n).await;

    let mut apps = Vec::new();
    for _ in 0..replicas {
        let settings = Settings::from_source(&Source::from_pairs(vars.clone())).unwrap();
        let app =
            Application::build_with_clock(settings, StartOptions { migrate: true, scheduler: false }, Clock::system())
                .await
                .unwrap();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        apps.push((state, stop, server));
    }

    let (started, cpu_before) = (Instant::now(), cpu_seconds());
    let refreshed: usize = join_all(apps.iter().map(|(state, _, _)| async move {
        let mut refreshed = 0;
        loop {
            let report = state.workers.refresh_once(Clock::system().now()).await.unwrap();
            refreshed += report.refreshed;
            if report.claimed == 0 {
                return refreshed;
            }
        }
    }))
    .await
    .into_iter()
    .sum();
    let (elapsed, cpu) = (started.elapsed(), cpu_seconds() - cpu_before);

    let counts = mock.refresh_counts();
    let once = counts.values().filter(|c| **c == 1).count();
    let more = counts.values().filter(|c| **c > 1).count();
    let measured = Measured {
        refreshed,
        elapsed,
        max_in_flight: mock.counters().max_token_requests_in_flight,
        cap,
        once,
        more,
        never: n - counts.len(),
        cpu_ms_per_refresh: cpu * 1000.0 / refreshed.max(1) as f64,
    };
    for (_, stop, server) in apps {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(30), server).await;
    }
    if let Some(drop_db) = drop_db {
        drop_db.await;
    }
    measured
}

/// User and system CPU time of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()).unwrap_or(0.0);
    // The kernel's USER_HZ, 100 on every Linux this runs on.
    ticks / 100.0
}

fn gateway_vars(mock: &MockProvider, url: &str, dir: &tempfile::TempDir) -> Vec<(String, String)> {
    let key = gateway::crypto::key::generate_fernet_key();
    let mut vars = support::gateway_vars(mock, url, key.expose_secret(), dir.path());
    vars.extend(support::vars([("MOCK_SCOPES", SCOPES.join(" ")), ("PORT", "0".to_owned())]));
    // Settings under study, from the caller's environment.
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("REFRESH_")));
    vars
}

/// Schema and provider rows, then `n` credentials due now, each with a
/// refresh token the mock provider knows.
async fn seed(settings: &Settings, mock: &MockProvider, n: usize) {
    let admin = Admin::open(settings, true, Clock::system()).await.unwrap();
    admin.sync_configured_providers(settings).await.unwrap();
    let now = Clock::system().now();
    let rows: Vec<SeedCredential> = (0..n)
        .map(|i| {
            let email = support::email(i as u64);
            SeedCredential {
                refresh_token: mock.grant_refresh_token(&email, &SCOPES),
                key: CredentialKey { email: Email::parse(&email).unwrap(), provider: "mock".into() },
                access_token: format!("mock_at_bench_{i}"),
                expires_at: now + chrono::TimeDelta::minutes(1),
            }
        })
        .collect();
    seed_credentials(&admin, &rows, now).await.unwrap();
    admin.close().await;
}
