//! The scheduled jobs, run by hand with the app's clock: proactive refresh
//! (with faults, backoff, keep-alive), the session sweep, and the scheduler
//! itself on a fast schedule.

use std::time::Duration;

use mock_provider::{Endpoint, Fault, MockProvider};
use serde_json::Value;

use crate::helpers::{
    Backend, TestApp, TestDb, eventually, fernet_key, metric_sum, more_providers, spawn_app, spawn_app_on,
    spawn_app_with_vars,
};
use crate::on_both_backends;

on_both_backends!(
    proactive_refresh_keeps_every_request_off_the_provider,
    provider_faults_back_off_and_never_mark_reauthorization,
    invalid_grant_found_by_the_worker_marks_reauthorization,
    idle_credentials_are_kept_alive,
    only_credentials_in_use_are_refreshed_ahead,
    the_sweep_fails_expired_sessions_and_deletes_old_ones,
);

const STEP: Duration = Duration::from_secs(300);

async fn spawn_with_provider(backend: Backend, provider: &str) -> TestApp {
    let mock = MockProvider::start().await.unwrap();
    let vars = more_providers(&mock, &[provider]);
    spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await
}

async fn state_of(app: &TestApp, provider: &str, email: &str) -> String {
    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{email}"), None).await.json().await.unwrap();
    listed["providers"].as_array().unwrap().iter().find(|p| p["provider"] == provider).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn proactive_refresh_keeps_every_request_off_the_provider(backend: Backend) {
    // A provider of this test's own, so its metrics are this test's alone.
    let provider = match backend {
        Backend::Sqlite => "proactive-sqlite",
        Backend::Postgres => "proactive-pg",
    };
    let app = spawn_with_provider(backend, provider).await;
    let users: Vec<String> = (0..10).map(|i| format!("user{i}@company.com")).collect();
    for user in &users {
        app.authorize(provider, user).await;
    }
    // Two hours in five-minute steps: every token expires twice during the run.
    for _ in 0..24 {
        app.clock.advance(STEP);
        let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
        assert_eq!(report.failed + report.deferred, 0, "{report:?}");
        for user in &users {
            let token = app.token_ok(provider, user).await;
            assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
        }
    }
    for user in &users {
        assert_eq!(app.mock.refresh_count_for(user), 2, "{user} refreshed once per expiry");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let on_demand = metric_sum(&metrics, "token_refresh_total", &[("provider", provider), ("trigger", "on_demand")]);
    let proactive = metric_sum(
        &metrics,
        "token_refresh_total",
        &[("provider", provider), ("trigger", "proactive"), ("outcome", "success")],
    );
    assert_eq!(on_demand, 0.0, "no request waited on a refresh");
    assert_eq!(proactive, 20.0);
    assert_eq!(metric_sum(&metrics, "token_requests_total", &[("provider", provider), ("outcome", "refreshed")]), 0.0);
    app.stop().await;
}

async fn provider_faults_back_off_and_never_mark_reauthorization(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    app.clock.advance(Duration::from_secs(3300));
    app.mock.inject(Endpoint::Token, Fault::ServerError, 1000);

    let first = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!((first.claimed, first.deferred), (1, 1), "{first:?}");
    let calls = app.mock.counters().faults_served;
    let second = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(second.skipped, 1, "the provider is backing off: {second:?}");
    assert_eq!(app.mock.counters().faults_served, calls, "no call while backing off");
    assert_eq!(state_of(&app, "mock", "alice@company.com").await, "active");

    // After the backoff the provider is tried again and recovers.
    app.mock.clear_faults();
    app.clock.advance(Duration::from_secs(60));
    let third = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(third.refreshed, 1, "{third:?}");
    assert_eq!(state_of(&app, "mock", "alice@company.com").await, "active");
    app.stop().await;
}

async fn invalid_grant_found_by_the_worker_marks_reauthorization(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    app.mock.invalidate_refresh_tokens_for("alice@company.com");
    app.clock.advance(Duration::from_secs(3300));
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(state_of(&app, "mock", "alice@company.com").await, "needs_reauth");
    // needs_reauth credentials are left alone.
    let again = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(again.claimed, 0, "{again:?}");
    app.stop().await;
}

async fn idle_credentials_are_kept_alive(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_access_token_ttl(Duration::from_secs(30 * 86_400));
    app.authorize("mock", "alice@company.com").await;
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.claimed, 0, "nothing due right after authorization");

    app.clock.advance(Duration::from_secs(25 * 3600));
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.refreshed, 1, "{report:?}");
    assert_eq!(app.mock.refresh_count_for("alice@company.com"), 1);
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.claimed, 0, "kept alive once per period");
    app.stop().await;
}

/// `last_used_at` of `email`'s credential, as operators see it.
async fn last_used(app: &TestApp, email: &str) -> Option<String> {
    let page: Value = app.api(reqwest::Method::GET, "/admin/credentials", None).await.json().await.unwrap();
    let entry = page["credentials"].as_array().unwrap().iter().find(|c| c["user_email"] == email).cloned().unwrap();
    entry["last_used_at"].as_str().map(str::to_owned)
}

async fn only_credentials_in_use_are_refreshed_ahead(backend: Backend) {
    // Keep-alive out of the way: this is about refreshing ahead of expiry.
    let app = spawn_app_on(TestDb::new(backend).await, fernet_key(), &[("REFRESH_KEEPALIVE_HOURS", "720")]).await;
    let (alice, bob) = ("alice@company.com", "bob@company.com");
    app.authorize("mock", alice).await;
    app.authorize("mock", bob).await;

    // Just connected counts as in use: both are refreshed ahead.
    app.clock.advance(Duration::from_secs(3300));
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.refreshed, 2, "{report:?}");
    assert_eq!(last_used(&app, alice).await, None, "a refresh by the worker is not a use");

    // Two days on, neither has been used: no token is refreshed for nobody.
    app.clock.advance(Duration::from_secs(48 * 3600));
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.claimed, 0, "idle credentials are not refreshed ahead: {report:?}");

    // Alice comes back: her requests at once wait on a single refresh.
    let (alice_before, bob_before) = (app.mock.refresh_count_for(alice), app.mock.refresh_count_for(bob));
    let tokens = futures::future::join_all((0..8).map(|_| app.token_ok("mock", alice))).await;
    for token in &tokens {
        assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    }
    assert_eq!(app.mock.refresh_count_for(alice), alice_before + 1, "one refresh for the returning user");
    assert!(eventually(Duration::from_secs(10), || async { last_used(&app, alice).await.is_some() }).await);

    // In use again, so refreshed ahead again; Bob still is not.
    app.clock.advance(Duration::from_secs(3300));
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!((report.claimed, report.refreshed), (1, 1), "{report:?}");
    assert_eq!(app.mock.refresh_count_for(alice), alice_before + 2);
    assert_eq!(app.mock.refresh_count_for(bob), bob_before, "an idle user's token is left to expire");
    app.stop().await;
}

async fn the_sweep_fails_expired_sessions_and_deletes_old_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, expiring) = app.init_ok("mock", "alice@company.com").await;
    app.authorize("mock", "bob@company.com").await;
    let report = app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!((report.expired, report.deleted), (0, 0));

    app.clock.advance(Duration::from_secs(16 * 60));
    let report = app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(report.expired, 1);
    let status = app.status_json(&expiring).await;
    assert_eq!((status["status"].as_str(), status["error"].as_str()), (Some("failed"), Some("Session expired")));
    let again = app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(again.expired, 0, "idempotent");

    app.clock.advance(Duration::from_secs(25 * 3600));
    let report = app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(report.deleted, 2, "the failed and the completed session");
    let swept = app.status(&expiring, None).await;
    assert_eq!(swept.status(), 404);
    assert_eq!(swept.json::<Value>().await.unwrap()["error"], "session_not_found");
    assert_eq!(app.count("oauth_sessions").await, 0);
    assert_eq!(app.count("oauth_credentials").await, 1, "credentials are not swept");
    app.stop().await;
}

/// The scheduler runs jobs by itself (SQLite: the schedule, not the store, is under test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_runs_the_sweep_on_its_schedule() {
    let mock = MockProvider::start().await.unwrap();
    let vars = vec![
        ("TEST_SCHEDULER".to_owned(), "on".to_owned()),
        ("JOB_SESSION_SWEEP_SCHEDULE".to_owned(), "* * * * * *".to_owned()),
        ("JOB_PROACTIVE_REFRESH_ENABLED".to_owned(), "false".to_owned()),
    ];
    let app = spawn_app_with_vars(TestDb::new(Backend::Sqlite).await, fernet_key(), mock, vars).await;
    let (_, session) = app.init_ok("mock", "alice@company.com").await;
    app.clock.advance(Duration::from_secs(16 * 60));
    let swept = eventually(Duration::from_secs(10), || async {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = app.db.connect().await;
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT status FROM oauth_sessions".to_owned(),
            ))
            .await
            .unwrap();
        conn.close().await.unwrap();
        row.is_some_and(|r| r.try_get::<String>("", "status").unwrap() == "failed")
    })
    .await;
    assert!(swept, "the sweep did not run within 10 s");
    assert_eq!(app.status_json(&session).await["reason"], "expired");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric_sum(&metrics, "job_runs_total", &[("job", "session_sweep")]) >= 1.0);
    assert!(metric_sum(&metrics, "job_last_success_timestamp_seconds", &[("job", "session_sweep")]) > 0.0);
    app.stop().await;
}
