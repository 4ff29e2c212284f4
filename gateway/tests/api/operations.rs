//! Operating the gateway: every connection across users (filtered, paged),
//! the first numbers of an on-call person, offboarding, and the limits of
//! a restricted admin client.

use std::collections::HashSet;

use gateway::access::{Action, ClientExchange, NewClient};
use gateway::clock::Clock;
use gateway::core::admin::Admin;
use gateway::credentials::CredentialKey;
use gateway::email::Email;
use gateway::seeding::{SeedCredential, seed_credentials};
use serde_json::Value;

use crate::helpers::{API_KEY, Backend, TestApp, spawn_app};
use crate::on_both_backends;

on_both_backends!(operators_page_through_every_connection_while_users_connect, stats_count_what_on_call_needs_first);

/// Seeds `n` credentials per (provider, domain) with tokens expiring in `hours`.
async fn seed(app: &TestApp, prefix: &str, n: usize, providers: &[&str], domains: &[&str], hours: i64) {
    let settings = crate::helpers::settings(&app.db, &app.key, &[]);
    let (admin, _) = Admin::open_unchecked(&settings, Clock::system()).await.unwrap();
    let now = Clock::system().now();
    let mut rows = Vec::new();
    for provider in providers {
        for domain in domains {
            for i in 0..n {
                rows.push(SeedCredential {
                    key: CredentialKey {
                        email: Email::parse(&format!("{prefix}{i}@{domain}")).unwrap(),
                        provider: (*provider).to_owned(),
                    },
                    access_token: format!("at-{prefix}-{i}"),
                    refresh_token: format!("rt-{prefix}-{i}"),
                    expires_at: now + chrono::TimeDelta::hours(hours),
                });
            }
        }
    }
    seed_credentials(&admin, &rows, now).await.unwrap();
    admin.close().await;
}

async fn admin_get(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).header("x-api-key", key).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Every page of `query`, following `next_cursor`.
async fn all_pages(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let sep = if query.is_empty() { "" } else { "&" };
        let path = match &cursor {
            Some(c) => format!("/admin/credentials?{query}{sep}cursor={c}"),
            None => format!("/admin/credentials?{query}"),
        };
        let (status, body) = admin_get(app, key, &path).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["credentials"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
    panic!("more than 1000 pages");
}

fn users(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| format!("{}/{}", e["provider"].as_str().unwrap(), e["user_email"].as_str().unwrap()))
        .collect()
}

async fn operators_page_through_every_connection_while_users_connect(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, "u", 60, &["mock", "google"], &["company.com", "other.org"], 12).await;
    app.authorize("mock", "alice@company.com").await;

    // Pages of 50 while another 60 users connect between the pages: every row
    // that existed before is listed exactly once.
    let before: HashSet<String> = users(&all_pages(&app, API_KEY, "limit=1000").await).into_iter().collect();
    assert_eq!(before.len(), 241);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/credentials?limit=50&cursor={c}"),
            None => "/admin/credentials?limit=50".to_owned(),
        };
        let (status, body) = admin_get(&app, API_KEY, &path).await;
        assert_eq!(status, 200, "{body}");
        let page = body["credentials"].as_array().unwrap();
        assert!(page.len() <= 50);
        seen.extend(users(page));
        round += 1;
        seed(&app, &format!("late{round}-"), 10, &["mock"], &["company.com"], 12).await;
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row listed twice");
    assert!(before.iter().all(|u| unique.contains(u)), "every row that existed is listed");

    // Filters.
    let company = all_pages(&app, API_KEY, "domain=company.com&provider=google").await;
    assert_eq!(company.len(), 60);
    assert!(company.iter().all(|e| e["user_email"].as_str().unwrap().ends_with("@company.com")));
    let soon = (Clock::system().now() + chrono::TimeDelta::hours(6)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expiring = all_pages(&app, API_KEY, &format!("expiring_before={}", soon.replace('+', "%2B"))).await;
    assert_eq!(users(&expiring), vec!["mock/alice@company.com"], "only Alice's token expires within 6 h");
    let entry = &expiring[0];
    for field in ["authorized_at", "last_refreshed_at", "last_verified_at", "expires_at"] {
        assert!(entry[field].is_string(), "{field}: {entry}");
    }
    assert_eq!(entry["state"], "active");
    assert!(!entry.to_string().contains("access_token"), "never a token: {entry}");
    let unused = all_pages(&app, API_KEY, "not_used_since=2000-01-01T00:00:00Z&domain=other.org").await;
    assert_eq!(unused.len(), 120, "never used counts as not used since");
    app.token_ok("mock", "alice@company.com").await;
    let reauth = all_pages(&app, API_KEY, "state=needs_reauth").await;
    assert!(reauth.is_empty());

    // Bad input gets a clear error.
    for bad in ["limit=0", "limit=1001", "cursor=nope", "state=gone", "domain=%25", "provider=..%2F"] {
        let (status, body) = admin_get(&app, API_KEY, &format!("/admin/credentials?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"] == "invalid_request" || body["error"] == "unknown_provider", "{bad}: {body}");
    }
    app.stop().await;
}

async fn stats_count_what_on_call_needs_first(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app, "soon", 3, &["mock"], &["company.com"], 0).await;
    seed(&app, "later", 4, &["mock"], &["company.com"], 5).await;
    seed(&app, "g", 2, &["google"], &["other.org"], 48).await;
    app.init_ok("mock", "pending@company.com").await;
    let (status, stats) = admin_get(&app, API_KEY, "/admin/stats").await;
    assert_eq!(status, 200, "{stats}");
    let count = |list: &Value, provider: &str| {
        list.as_array().unwrap().iter().find(|e| e["provider"] == provider).map_or(0, |e| e["count"].as_u64().unwrap())
    };
    assert_eq!(count(&stats["expiring_within_1h"], "mock"), 3, "{stats}");
    assert_eq!(count(&stats["expiring_within_24h"], "mock"), 7, "{stats}");
    assert_eq!(count(&stats["expiring_within_24h"], "google"), 0, "{stats}");
    let active_mock = stats["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["provider"] == "mock" && e["state"] == "active")
        .map(|e| e["count"].as_u64().unwrap());
    assert_eq!(active_mock, Some(7));
    assert_eq!(stats["sessions"]["pending"], 1, "{stats}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_limited_to_domains_and_providers_reads_only_those() {
    let app = spawn_app(Backend::Sqlite).await;
    seed(&app, "u", 5, &["mock", "google"], &["company.com", "other.org"], 12).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("mock", "bob@other.org").await;
    let key = "ops-company-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let new = NewClient {
        name: "ops-company".into(),
        key_digest: gateway::access::clients::hex(&gateway::access::digest(key.as_bytes())),
        actions: vec![Action::Admin],
        providers: Some(vec!["mock".into()]),
        domains: Some(vec!["company.com".into()]),
        networks: None,
        exchange: ClientExchange::default(),
    };
    assert!(app.state.services.add_client(new).await.unwrap());
    let listed = all_pages(&app, key, "").await;
    assert_eq!(listed.len(), 6, "5 seeded + Alice, mock at company.com only");
    assert!(users(&listed).iter().all(|u| u.starts_with("mock/") && u.ends_with("@company.com")));
    let (_, stats) = admin_get(&app, key, "/admin/stats").await;
    let total: u64 = stats["credentials"].as_array().unwrap().iter().map(|e| e["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 6, "{stats}");
    app.state.services.audit().flush().await;
    let (_, audit) = admin_get(&app, key, "/admin/audit?limit=1000").await;
    let records = audit["records"].as_array().unwrap();
    assert!(records.iter().any(|r| r["user_email"] == "alice@company.com"), "{audit}");
    assert!(
        records.iter().all(|r| r["user_email"].as_str().is_some_and(|u| u.ends_with("@company.com"))),
        "nothing about other domains or without a user: {audit}"
    );
    app.stop().await;
}

on_both_backends!(offboarding_removes_everything_even_when_a_provider_is_down);

async fn offboarding_removes_everything_even_when_a_provider_is_down(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("google", "alice@company.com").await;
    app.authorize("mock", "bob@company.com").await;
    app.init_ok("mock", "alice@company.com").await;
    app.token_ok("mock", "alice@company.com").await;

    // Dry run: the list, and nothing changes.
    let dry = app.api(reqwest::Method::DELETE, "/admin/users/alice@company.com?dry_run=true", None).await;
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["credentials"].as_array().unwrap().len(), 2, "{dry}");
    assert!(dry["credentials"].as_array().unwrap().iter().all(|c| c["outcome"] == "would_revoke"));
    assert_eq!(app.count("oauth_credentials").await, 3);

    // The provider fails the first revocation: the grant is deleted anyway, its revocation queued.
    app.mock.inject(mock_provider::Endpoint::Revoke, mock_provider::Fault::ServerError, 1);
    let response = app.api(reqwest::Method::DELETE, "/admin/users/alice@company.com", None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let mut outcomes: Vec<&str> =
        body["credentials"].as_array().unwrap().iter().map(|c| c["outcome"].as_str().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes, vec!["failed", "revoked"], "{body}");
    assert_eq!(body["sessions_cancelled"], 1);
    assert_eq!(app.count("oauth_credentials").await, 1, "only Bob's is left");
    assert_eq!(app.count("pending_revocations").await, 1);
    assert_eq!(app.token("mock", "alice@company.com", None).await.status(), 404, "no cached token is served");

    // Again: nothing left to do (idempotent).
    let again: Value =
        app.api(reqwest::Method::DELETE, "/admin/users/alice@company.com", None).await.json().await.unwrap();
    assert_eq!(again["credentials"], serde_json::json!([]));

    // The job retries the revocation once its time comes, and forgets it.
    let revocations_before = app.mock.counters().revocations;
    let report = app.state.workers.revocations_once(Clock::system().now()).await.unwrap();
    assert_eq!(report.done, 0, "not due yet");
    let later = Clock::system().now() + chrono::TimeDelta::minutes(6);
    let report = app.state.workers.revocations_once(later).await.unwrap();
    assert_eq!(report.done, 1, "{report:?}");
    assert_eq!(app.mock.counters().revocations, revocations_before + 1);
    assert_eq!(app.count("pending_revocations").await, 0);

    // A whole domain, dry then for real.
    let dry: Value =
        app.api(reqwest::Method::DELETE, "/admin/domains/company.com?dry_run=true", None).await.json().await.unwrap();
    assert_eq!(users(dry["credentials"].as_array().unwrap()), vec!["mock/bob@company.com"]);
    assert_eq!(app.count("oauth_credentials").await, 1);
    let done: Value = app.api(reqwest::Method::DELETE, "/admin/domains/company.com", None).await.json().await.unwrap();
    assert_eq!(done["credentials"][0]["outcome"], "revoked", "{done}");
    assert_eq!(app.count("oauth_credentials").await, 0);

    // Every step is audited.
    app.state.services.audit().flush().await;
    let (_, audit) = admin_get(&app, API_KEY, "/admin/audit?user=alice@company.com&limit=100").await;
    let actions: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert!(
        actions.contains(&"offboard") && actions.contains(&"offboard_dry_run") && actions.contains(&"revoke_retry"),
        "{actions:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_proves_idle_grants_and_finds_dead_ones() {
    let app = spawn_app(Backend::Sqlite).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("mock", "bob@company.com").await;
    let bob = app.token_ok("mock", "bob@company.com").await;
    let in_two_days = Clock::system().now() + chrono::TimeDelta::days(2);
    // Bob revoked the app at the provider: his tokens stop working there.
    app.mock.invalidate_refresh_tokens_for("bob@company.com");
    let revoke = app
        .client
        .post(app.mock.revoke_url())
        .basic_auth(app.mock.client_id(), Some(app.mock.client_secret()))
        .form(&[("token", bob["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert!(revoke.status().is_success());
    let report = app.state.workers.probe_once(in_two_days).await.unwrap();
    assert_eq!((report.verified, report.refused), (1, 1), "{report:?}");
    let listed = all_pages(&app, API_KEY, "").await;
    let state = |u: &str| listed.iter().find(|e| e["user_email"] == u).map(|e| e["state"].clone()).unwrap();
    assert_eq!(state("alice@company.com"), "active");
    assert_eq!(state("bob@company.com"), "needs_reauth", "found dead before Bob's next tool call");
    app.stop().await;
}
