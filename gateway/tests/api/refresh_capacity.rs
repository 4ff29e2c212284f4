//! Proactive refresh at scale: a run drains every due credential batch after
//! batch, within its time budget, and never has more calls in flight to a
//! provider than `REFRESH_PROVIDER_CONCURRENCY`, measured at the provider.

use std::time::Duration;

use gateway::clock::Clock;
use gateway::core::admin::Admin;
use gateway::credentials::CredentialKey;
use gateway::email::Email;
use gateway::seeding::{SeedCredential, seed_credentials};
use mock_provider::{Latency, MockProvider};

use crate::helpers::{Backend, TestApp, TestDb, fernet_key, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    calls_to_a_provider_never_exceed_its_cap,
    a_run_drains_batch_after_batch,
    a_run_stops_claiming_when_its_budget_is_spent,
);

/// Scopes the test providers are configured with (a refresh asks for them).
const SCOPES: [&str; 3] = ["openid", "email", "mail.read"];

/// A gateway whose provider `mock` answers every token request after `latency`.
async fn spawn_slow_provider(backend: Backend, latency: Duration, vars: &[(&str, &str)]) -> TestApp {
    let mock = MockProvider::start().await.unwrap();
    mock.set_token_latency(Latency::Fixed(latency));
    spawn_app_with(TestDb::new(backend).await, fernet_key(), mock, vars).await
}

/// Seeds `n` credentials of `mock` whose tokens expire in a minute (so all
/// are due), each with a refresh token the provider knows; returns the users.
async fn seed_due(app: &TestApp, n: usize) -> Vec<String> {
    let settings = crate::helpers::settings(&app.db, &app.key, &[]);
    let (admin, _) = Admin::open_unchecked(&settings, Clock::system()).await.unwrap();
    let now = app.clock.now();
    let users: Vec<String> = (0..n).map(|i| format!("busy{i}@company.com")).collect();
    let rows: Vec<SeedCredential> = users
        .iter()
        .map(|user| SeedCredential {
            key: CredentialKey { email: Email::parse(user).unwrap(), provider: "mock".into() },
            access_token: format!("at-{user}"),
            refresh_token: app.mock.grant_refresh_token(user, &SCOPES),
            expires_at: now + chrono::TimeDelta::minutes(1),
        })
        .collect();
    seed_credentials(&admin, &rows, now).await.unwrap();
    admin.close().await;
    users
}

fn assert_each_refreshed_once(app: &TestApp, users: &[String]) {
    let twice: Vec<&String> = users.iter().filter(|u| app.mock.refresh_count_for(u) != 1).collect();
    assert!(twice.is_empty(), "refreshed other than once: {twice:?}");
}

async fn calls_to_a_provider_never_exceed_its_cap(backend: Backend) {
    // The total would allow 32; the provider's cap is 4.
    let vars = [("REFRESH_CONCURRENCY", "32"), ("REFRESH_PROVIDER_CONCURRENCY", "4")];
    let app = spawn_slow_provider(backend, Duration::from_millis(100), &vars).await;
    let users = seed_due(&app, 40).await;

    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.refreshed, 40, "{report:?}");
    assert_each_refreshed_once(&app, &users);
    // 40 calls of 100 ms each against 4 slots: the cap is reached, never passed.
    assert_eq!(app.mock.counters().max_token_requests_in_flight, 4);
    app.stop().await;
}

async fn a_run_drains_batch_after_batch(backend: Backend) {
    let app = spawn_slow_provider(backend, Duration::from_millis(10), &[("REFRESH_BATCH_SIZE", "10")]).await;
    let users = seed_due(&app, 35).await;

    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!((report.claimed, report.refreshed), (35, 35), "one run, every due credential: {report:?}");
    assert!(report.batches >= 4, "in batches of ten: {report:?}");
    assert_each_refreshed_once(&app, &users);
    let again = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(again.claimed, 0, "nothing left due: {again:?}");
    app.stop().await;
}

async fn a_run_stops_claiming_when_its_budget_is_spent(backend: Backend) {
    // One call at a time, 100 ms each: 40 credentials take 4 s, the budget is 1 s.
    let vars = [("REFRESH_BATCH_SIZE", "5"), ("REFRESH_PROVIDER_CONCURRENCY", "1"), ("REFRESH_RUN_SECONDS", "1")];
    let app = spawn_slow_provider(backend, Duration::from_millis(100), &vars).await;
    let users = seed_due(&app, 40).await;

    let first = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert!(first.claimed > 5, "the run claimed more than one batch: {first:?}");
    assert!(first.claimed < 40, "then stopped claiming: {first:?}");
    assert_eq!(first.refreshed, first.claimed, "and finished what it claimed: {first:?}");
    // The next runs pick up where it stopped.
    let mut refreshed = first.refreshed;
    for _ in 0..10 {
        let next = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
        refreshed += next.refreshed;
        if next.claimed == 0 {
            break;
        }
    }
    assert_eq!(refreshed, 40);
    assert_each_refreshed_once(&app, &users);
    app.stop().await;
}
