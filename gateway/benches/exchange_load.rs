//! Load benchmark for token exchange (`POST /oauth/token`) next to the plain
//! `POST /auth/token`, in the same run, against the same release gateway.
//!
//! ```sh
//! cargo bench -p gateway --bench exchange_load
//! ```
//!
//! Seeds `BENCH_CREDENTIALS` (2 000) warm credentials, trusts the mock
//! provider's identity provider, registers an API client with the audience
//! the minted access tokens carry, warms every credential and the JWKS cache
//! with one exchange each, then loads both endpoints with `BENCH_CONNECTIONS`
//! (64) keep-alive connections in `BENCH_ROUNDS` (3) alternating rounds of
//! `BENCH_SECONDS` (10), and prints throughput and p50/p99 of each, and the
//! ratios (target: exchange within 2× of /auth/token).
//!
//! Each exchange verifies an ES256 signature, checks the claims, and is
//! audited in full; /auth/token reads are audited as summaries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::access::{Action, ClientExchange, NewClient};
use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::seeding::seed_credentials;
use tokio::net::TcpStream;

mod support;

use support::{Server, database, email, env_or, exchange, free_port, load, median, token_request, wait_until_up};

const AUDIENCE: &str = "https://mail-mcp.bench.example";
const CLIENT_KEY: &str = "bench-exchange-client-key-0123456789abcdefghijklmnop";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

fn exchange_request(subject_token: &str) -> Vec<u8> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
        .append_pair("subject_token", subject_token)
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")
        .append_pair("audience", "mock")
        .finish();
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: bench\r\nX-API-Key: {CLIENT_KEY}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn run() {
    let credentials = env_or("BENCH_CREDENTIALS", 2_000);
    let connections = env_or("BENCH_CONNECTIONS", 64) as usize;
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_ROUNDS", 3) as usize;
    let mock = mock_provider::MockProvider::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (database_url, drop_db) = database(&dir).await;

    let key = gateway::crypto::key::generate_fernet_key();
    let mut vars = support::gateway_vars(&mock, &database_url, secrecy::ExposeSecret::expose_secret(&key), dir.path());
    vars.extend(support::vars([
        ("RATE_LIMIT_TOKEN_PER_SECOND", "1000000".to_owned()),
        ("MOCK_SCOPES", "openid email mail.read".to_owned()),
        ("AUTH_GATEWAY_TRUSTED_ISSUERS", "corp".to_owned()),
        ("IDP_CORP_ISSUER", mock.idp_issuer()),
    ]));

    let settings = Settings::from_source(&Source::from_pairs(vars.clone())).unwrap();
    let store = Admin::open(&settings, true, Clock::system()).await.unwrap();
    store.sync_configured_providers(&settings).await.unwrap();
    let now = Clock::system().now();
    let rows = support::credentials(0..credentials, now + chrono::TimeDelta::hours(12));
    seed_credentials(&store, &rows, now).await.unwrap();
    let client = NewClient {
        name: "mail-mcp".into(),
        key_digest: gateway::access::clients::hex(&gateway::access::digest(CLIENT_KEY.as_bytes())),
        actions: vec![Action::Init, Action::Status, Action::Token],
        providers: None,
        domains: None,
        networks: None,
        exchange: ClientExchange { audiences: vec![AUDIENCE.into()], ..ClientExchange::default() },
    };
    assert!(store.database().add_client(client, now).await.unwrap());
    store.close().await;

    // The subject tokens an MCP client would present: one per user, valid for the run.
    let subject_tokens: Vec<String> = (0..credentials)
        .map(|i| {
            let t = now.timestamp();
            mock.mint_idp_token(&serde_json::json!({
                "iss": mock.idp_issuer(), "sub": format!("00u{i}"), "aud": AUDIENCE,
                "iat": t, "exp": t + 7200, "email": email(i), "email_verified": true,
            }))
        })
        .collect();

    let port = free_port();
    vars.push(("PORT".into(), port.to_string()));
    let child =
        Command::new(env!("CARGO_BIN_EXE_gateway")).env_clear().envs(vars).stdout(Stdio::null()).spawn().unwrap();
    let gateway = Server { child, addr: format!("127.0.0.1:{port}") };
    wait_until_up(&gateway.addr).await;

    // Warm every credential and the key cache, and check each answer once.
    let exchanges: Arc<Vec<Vec<u8>>> = Arc::new(subject_tokens.iter().map(|t| exchange_request(t)).collect());
    let plain: Arc<Vec<Vec<u8>>> = Arc::new((0..credentials).map(|i| token_request(&email(i))).collect());
    let mut conn = TcpStream::connect(&gateway.addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let warming = Instant::now();
    for (i, request) in exchanges.iter().enumerate() {
        assert_eq!(exchange(&mut conn, request, &mut buf).await, 200, "warm-up exchange {i} failed");
    }
    println!("warmed {credentials} credentials by exchange in {:.1} s", warming.elapsed().as_secs_f64());

    let (mut plains, mut exs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        plains.push(load(&gateway.addr, plain.clone(), connections, Duration::from_secs(seconds)).await);
        exs.push(load(&gateway.addr, exchanges.clone(), connections, Duration::from_secs(seconds)).await);
    }
    let (plain, ex) = (median(plains), median(exs));
    drop(gateway);

    println!();
    println!(
        "{credentials} warm credentials, warm JWKS cache, {connections} connections, {rounds} alternating rounds of {seconds} s (medians), load generator on the same 2-core machine"
    );
    println!("{:<32} {:>12} {:>10} {:>10} {:>8}", "", "requests/s", "p50 µs", "p99 µs", "errors");
    for (name, r) in [("POST /auth/token (named user)", &plain), ("POST /oauth/token (exchange)", &ex)] {
        println!("{:<32} {:>12.0} {:>10} {:>10} {:>8}", name, r.rate, r.p50.as_micros(), r.p99.as_micros(), r.errors);
    }
    println!("p99 exchange/plain: {:.2}x   (target <= 2x)", ex.p99.as_secs_f64() / plain.p99.as_secs_f64());
    println!("throughput exchange/plain: {:.0} %", 100.0 * ex.rate / plain.rate);
    if let Some(drop_db) = drop_db {
        drop_db.await;
    }
}
