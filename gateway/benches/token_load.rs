//! Load benchmark for `POST /auth/token` on warm credentials, against a bare
//! axum handler doing the same JSON parse and reply, in the same run.
//!
//! ```sh
//! cargo bench -p gateway --bench token_load
//! ```
//!
//! Seeds `BENCH_CREDENTIALS` (10 000) credentials straight into a fresh SQLite
//! database (or `BENCH_DATABASE_URL`, a PostgreSQL server to create a database
//! on), starts the release `gateway` binary as its own process against the
//! mock provider, then:
//! 1. times the first (cold) request of every credential, and the gateway's
//!    resident memory before and after, for memory per cached credential;
//! 2. loads it with `BENCH_CONNECTIONS` (64) keep-alive connections for
//!    `BENCH_SECONDS` (10), requests spread at random over the credentials;
//! 3. loads a bare axum server (this binary, re-run with `--bare`, in its own
//!    process) the same way, and prints throughputs, the ratio and p50/p99.
//!
//! The load generator is a minimal HTTP/1.1 client (pre-built requests,
//! Content-Length framing) so that it takes as little of the shared CPU as
//! possible; both servers face the same generator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::seeding::seed_credentials;

mod support;

use support::{Server, database, email, env_or, first_requests, load, median, quantile, start_gateway, token_request};

fn main() {
    if std::env::args().any(|a| a == "--bare") {
        return bare_server();
    }
    // `cargo bench` passes `--bench`; nothing else is expected.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

/// The baseline: the same JSON in and out, nothing else.
fn bare_server() {
    #[derive(serde::Deserialize)]
    struct Request {
        provider: String,
        user_email: String,
        #[allow(dead_code)]
        required_scopes: Option<Vec<String>>,
    }
    async fn handler(axum::Json(req): axum::Json<Request>) -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({
            "access_token": format!("mock_at_{}_{}", req.provider, req.user_email.len()),
            "token_type": "Bearer",
            "expires_at": "2026-11-27T16:00:00Z",
            "scopes": ["openid", "email", "mail.read"],
        }))
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let app = axum::Router::new().route("/auth/token", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.unwrap();
    });
}

async fn run() {
    let credentials = env_or("BENCH_CREDENTIALS", 10_000);
    let connections = env_or("BENCH_CONNECTIONS", 64) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, drop_db) = database(&dir).await;

    let key = gateway::crypto::key::generate_fernet_key();
    let key_text = secrecy::ExposeSecret::expose_secret(&key).to_owned();
    let mut vars = support::gateway_vars(&mock, &database_url, &key_text, dir.path());
    vars.extend(support::vars([
        // The limiter runs (its cost is measured) but never refuses the load generator.
        ("RATE_LIMIT_TOKEN_PER_SECOND", std::env::var("BENCH_TOKEN_LIMIT").unwrap_or_else(|_| "1000000".to_owned())),
        ("MOCK_SCOPES", "openid email mail.read".to_owned()),
        ("PORT", "0".to_owned()),
    ]));

    // Seed the credentials directly (sealed as the gateway seals them).
    let settings = Settings::from_source(&Source::from_pairs(vars.clone())).unwrap();
    let store = Admin::open(&settings, true, Clock::system()).await.unwrap();
    store.sync_configured_providers(&settings).await.unwrap();
    let seeding = Instant::now();
    let expires = Clock::system().now() + chrono::TimeDelta::hours(12);
    let rows = support::credentials(0..credentials, expires);
    seed_credentials(&store, &rows, Clock::system().now()).await.unwrap();
    store.close().await;
    println!("seeded {credentials} credentials in {:.1} s", seeding.elapsed().as_secs_f64());

    // The gateway, as its own process.
    let (gateway, _) = start_gateway(&vars).await;
    let rss_before = gateway.rss_kib();

    // 1. Cold: the first request of every credential (loads and decrypts from the store).
    let cold = first_requests(&gateway.addr, (0..credentials).map(email)).await;
    let rss_after = gateway.rss_kib();

    // 2. and 3. Warm load on the gateway, then on the bare handler.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new((0..credentials).map(|i| token_request(&email(i))).collect());
    // Both servers up; rounds alternate between them so that whatever else
    // the machine does weighs on both alike. Medians of the rounds are reported.
    let bare_child =
        Command::new(std::env::current_exe().unwrap()).arg("--bare").stdout(Stdio::piped()).spawn().unwrap();
    let bare = bare_server_addr(bare_child);
    let rounds = env_or("BENCH_ROUNDS", 3) as usize;
    let (mut gws, mut bases) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        gws.push(load(&gateway.addr, requests.clone(), connections, Duration::from_secs(seconds)).await);
        bases.push(load(&bare.addr, requests.clone(), connections, Duration::from_secs(seconds)).await);
    }
    let (gw, base) = (median(gws), median(bases));
    drop(gateway);

    println!();
    println!(
        "POST /auth/token, {credentials} warm credentials, {connections} connections, {rounds} alternating rounds of {seconds} s (medians), load generator on the same 2-core machine"
    );
    println!("{:<22} {:>12} {:>10} {:>10} {:>8}", "", "requests/s", "p50 µs", "p99 µs", "errors");
    for (name, r) in [("bare axum handler", &base), ("gateway", &gw)] {
        println!("{:<22} {:>12.0} {:>10} {:>10} {:>8}", name, r.rate, r.p50.as_micros(), r.p99.as_micros(), r.errors);
    }
    println!("throughput ratio gateway/bare: {:.0} %   (target >= 60 %)", 100.0 * gw.rate / base.rate);
    println!("p99 ratio gateway/bare: {:.2}x   (target <= 1.5x)", gw.p99.as_secs_f64() / base.p99.as_secs_f64());
    println!(
        "cold first request per credential: p50 {} µs, p99 {} µs, max {} µs",
        quantile(&cold, 0.50).as_micros(),
        quantile(&cold, 0.99).as_micros(),
        quantile(&cold, 1.0).as_micros()
    );
    println!(
        "gateway RSS {} KiB before warming, {} KiB after {credentials} credentials: {:.0} bytes per cached credential",
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / credentials as f64
    );
    drop(bare);
    if let Some(drop_db) = drop_db {
        drop_db.await;
    }
}

fn bare_server_addr(mut child: Child) -> Server {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_owned();
    Server { child, addr }
}
