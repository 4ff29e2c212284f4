//! `/auth/token`: single-flight refresh, rotation, failure classification,
//! scopes, and revocation seen by other replicas.

use std::time::Duration;

use mock_provider::{Endpoint, Fault, MockProvider};
use serde_json::Value;

use crate::helpers::{Backend, TestDb, eventually, fernet_key, postgres_available, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    two_hundred_callers_share_one_refresh,
    rotated_refresh_tokens_are_stored_and_the_old_one_never_used,
    invalid_grant_marks_the_credential_for_reauthorization,
    transient_faults_are_retried_and_never_mark_reauthorization,
    an_expired_token_and_a_provider_down_is_provider_unavailable,
    a_grant_lacking_required_scopes_is_never_returned,
    reauthorizing_replaces_a_needs_reauth_credential,
    meta_tokens_are_renewed_by_exchange_and_keep_their_real_expiry,
    warm_credentials_are_served_without_an_actor_until_they_need_a_refresh,
);

const ALICE: &str = "alice@company.com";
/// Past the refresh buffer (300 s) of a 3600 s token, but not past its expiry.
const INTO_BUFFER: Duration = Duration::from_secs(3400);

async fn two_hundred_callers_share_one_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    let before = app.token_ok("mock", ALICE).await["access_token"].as_str().unwrap().to_owned();
    app.clock.advance(INTO_BUFFER);

    let calls = (0..200).map(|_| {
        let (client, url) = (app.client.clone(), app.url("/auth/token"));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("x-api-key", crate::helpers::API_KEY)
                .json(&serde_json::json!({"provider": "mock", "user_email": ALICE}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
        })
    });
    let tokens: Vec<String> = futures::future::join_all(calls).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(app.mock.refresh_count_for(ALICE), 1, "exactly one refresh at the provider");
    let fresh = &tokens[0];
    assert_ne!(fresh, &before);
    assert!(tokens.iter().all(|t| t == fresh), "every caller gets the new token");
    assert!(app.mock.access_token_is_valid(fresh));
    app.stop().await;
}

async fn rotated_refresh_tokens_are_stored_and_the_old_one_never_used(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_rotate_refresh_tokens(true);
    app.authorize("mock", ALICE).await;

    for round in 1..=3 {
        app.clock.advance(INTO_BUFFER);
        let token = app.token_ok("mock", ALICE).await;
        assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()), "round {round}");
        assert_eq!(app.mock.refresh_count_for(ALICE), round);
    }
    // The mock refuses a rotated-away refresh token with invalid_grant: had
    // the gateway used an old one, the credential would be needs_reauth.
    assert_eq!(app.mock.counters().token_errors, 0);
    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{ALICE}"), None).await.json().await.unwrap();
    assert_eq!(listed["providers"][0]["state"], "active");
    app.stop().await;
}

async fn invalid_grant_marks_the_credential_for_reauthorization(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    app.mock.invalidate_refresh_tokens_for(ALICE);
    app.clock.advance(Duration::from_secs(3700));

    let response = app.token("mock", ALICE, None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "refresh_failed");
    assert_eq!(body["auth_required"], true);

    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{ALICE}"), None).await.json().await.unwrap();
    assert_eq!(listed["providers"][0]["state"], "needs_reauth");
    // Later requests are refused without asking the provider again.
    let refreshes_before = app.mock.counters().token_errors;
    assert_eq!(app.token("mock", ALICE, None).await.status(), 401);
    assert_eq!(app.mock.counters().token_errors, refreshes_before);
    app.stop().await;
}

async fn transient_faults_are_retried_and_never_mark_reauthorization(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    let old = app.token_ok("mock", ALICE).await["access_token"].clone();

    // Two failures, then success: retried within the request.
    app.mock.inject(Endpoint::Token, Fault::ServerError, 1);
    app.mock.inject(Endpoint::Token, Fault::DropConnection, 1);
    app.clock.advance(INTO_BUFFER);
    let refreshed = app.token_ok("mock", ALICE).await;
    assert_ne!(refreshed["access_token"], old);
    assert_eq!(app.mock.refresh_count_for(ALICE), 1);

    // A provider that keeps failing: the still-valid token is served, the
    // credential stays active.
    app.mock.inject(Endpoint::Token, Fault::TooManyRequests { retry_after_secs: 1 }, 100);
    app.clock.advance(INTO_BUFFER);
    let served = app.token_ok("mock", ALICE).await;
    assert_eq!(served["access_token"], refreshed["access_token"], "the current token while it is still valid");
    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{ALICE}"), None).await.json().await.unwrap();
    assert_eq!(listed["providers"][0]["state"], "active", "a transient failure never marks re-authorization");
    app.stop().await;
}

async fn an_expired_token_and_a_provider_down_is_provider_unavailable(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    app.mock.inject(Endpoint::Token, Fault::Status(503), 100);
    app.clock.advance(Duration::from_secs(3700));

    let response = app.token("mock", ALICE, None).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "provider_unavailable");
    assert_eq!(body["auth_required"], false);
    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{ALICE}"), None).await.json().await.unwrap();
    assert_eq!(listed["providers"][0]["state"], "active");

    app.mock.clear_faults();
    assert_eq!(app.token("mock", ALICE, None).await.status(), 200, "recovers when the provider does");
    app.stop().await;
}

async fn a_grant_lacking_required_scopes_is_never_returned(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    assert_eq!(app.token("mock", ALICE, Some(&["mail.read"])).await.status(), 200);

    let response = app.token("mock", ALICE, Some(&["mail.read", "mail.send", "calendar"])).await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "scope_insufficient");
    assert_eq!(body["auth_required"], true);
    assert_eq!(body["missing_scopes"], serde_json::json!(["mail.send", "calendar"]));
    assert!(body.get("access_token").is_none());
    app.stop().await;
}

async fn reauthorizing_replaces_a_needs_reauth_credential(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", ALICE).await;
    app.mock.invalidate_refresh_tokens_for(ALICE);
    app.clock.advance(Duration::from_secs(3700));
    assert_eq!(app.token("mock", ALICE, None).await.status(), 401);

    app.authorize("mock", ALICE).await;
    let token = app.token_ok("mock", ALICE).await;
    assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    assert_eq!(app.count("oauth_credentials").await, 1);
    app.stop().await;
}

async fn meta_tokens_are_renewed_by_exchange_and_keep_their_real_expiry(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_issue_refresh_tokens(false);
    app.authorize("meta", ALICE).await;
    let first = app.token_ok("meta", ALICE).await;

    app.clock.advance(INTO_BUFFER);
    let renewed = app.token_ok("meta", ALICE).await;
    assert_ne!(renewed["access_token"], first["access_token"]);
    assert_eq!(app.mock.counters().exchange_grants, 1, "renewed by fb_exchange_token, not a refresh grant");
    assert_eq!(app.mock.counters().refresh_grants, 0);
    let expires: chrono::DateTime<chrono::Utc> = renewed["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - app.clock.now()).num_days();
    assert!((59..=60).contains(&days), "a long-lived token's real expiry is tracked ({days} days)");
    app.stop().await;
}

async fn warm_credentials_are_served_without_an_actor_until_they_need_a_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let users: Vec<String> = (0..6).map(|i| format!("warm{i}@company.com")).collect();
    for user in &users {
        app.authorize("mock", user).await;
    }
    let in_memory = || app.state.services.tokens_in_memory();

    // First requests, every user at once: each reads its row and keeps it.
    let first = futures::future::join_all(users.iter().map(|u| app.token_ok("mock", u))).await;
    assert!(first.iter().all(|t| app.mock.access_token_is_valid(t["access_token"].as_str().unwrap())));
    assert_eq!((in_memory().credentials, in_memory().actors), (6, 0), "warm, and no actor for it");
    // A crowd on warm credentials is answered from memory: still no actor.
    let crowd = futures::future::join_all(users.iter().cycle().take(60).map(|u| app.token_ok("mock", u))).await;
    assert_eq!(crowd.len(), 60);
    assert_eq!(in_memory().actors, 0);
    // Users with no credential leave nothing behind, however often asked for.
    for i in 0..20 {
        assert_eq!(app.token("mock", &format!("nobody{i}@company.com"), None).await.status(), 404);
    }
    assert_eq!(in_memory().credentials, 6);

    // Uses after the first are written by the sweep.
    app.state.services.sweep_tokens().await;
    app.clock.advance(Duration::from_secs(60));
    app.token_ok("mock", &users[1]).await;
    app.state.services.sweep_tokens().await;
    let listed: Value = app.api(reqwest::Method::GET, "/admin/credentials", None).await.json().await.unwrap();
    let last_used = |email: &str| {
        let row = listed["credentials"].as_array().unwrap().iter().find(|c| c["user_email"] == email).unwrap();
        chrono::DateTime::parse_from_rfc3339(row["last_used_at"].as_str().unwrap()).unwrap()
    };
    assert!(last_used(&users[1]) > last_used(&users[2]), "the later use of {} is recorded", users[1]);

    // Into the refresh buffer: a crowd on one credential starts its actor, which refreshes once.
    app.clock.advance(INTO_BUFFER);
    let refreshed = futures::future::join_all((0..8).map(|_| app.token_ok("mock", &users[0]))).await;
    assert_eq!(app.mock.refresh_count_for(&users[0]), 1, "one refresh for the crowd");
    assert!(refreshed.iter().all(|t| t["access_token"] == refreshed[0]["access_token"]));
    assert_ne!(refreshed[0]["access_token"], first[0]["access_token"]);
    assert_eq!((in_memory().credentials, in_memory().actors), (6, 1));

    // A warm credential with no actor is revoked like any other.
    assert_eq!(app.revoke("mock", &users[3]).await.status(), 200);
    assert_eq!(app.token("mock", &users[3], None).await.status(), 404);
    app.stop().await;
}

/// PostgreSQL only: two gateways on one database; a revoke on one is seen by
/// the other (which had the token warm in memory) within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_replica_reaches_the_other_within_a_second() {
    if !postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let key = fernet_key();
    let mock = MockProvider::start().await.unwrap();
    let url = db.url.clone();
    let a = spawn_app_with(db, key.clone(), mock.clone(), &[]).await;
    let b_db = TestDb::attach(Backend::Postgres, &url);
    let b = spawn_app_with(b_db, key, mock, &[]).await;

    a.authorize("mock", ALICE).await;
    assert_eq!(b.token("mock", ALICE, None).await.status(), 200, "B warms its cache");
    assert_eq!(a.revoke("mock", ALICE).await.status(), 200);
    let gone =
        eventually(Duration::from_secs(1), || async { b.token("mock", ALICE, None).await.status() == 404 }).await;
    assert!(gone, "replica B still served a revoked token after a second");
    b.stop().await;
    a.stop().await;
}
