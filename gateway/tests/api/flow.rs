//! The authorization flow over real HTTP against the mock provider, driven
//! as a browser would: init → connect link → provider → callback → status →
//! token → providers → revoke.

use std::time::{Duration, Instant};

use mock_provider::Consent;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    the_full_flow_stores_a_credential_and_serves_its_token,
    a_retried_init_returns_the_waiting_session,
    the_connect_link_works_once_and_sends_pkce_and_login_hint,
    a_replayed_callback_changes_nothing,
    an_expired_session_reports_failed_and_its_link_is_dead,
    a_callback_for_another_provider_changes_nothing,
    a_different_account_consenting_is_refused_and_nothing_is_stored,
    access_denied_fails_the_session,
    google_without_a_refresh_token_is_a_failure,
    status_long_polls_until_the_session_completes,
    a_link_scanner_fetching_the_link_uses_nothing,
    continue_is_accepted_only_from_the_connect_page,
    a_link_opened_twice_before_consenting_still_works_once,
);

const ALICE: &str = "alice@company.com";

async fn the_full_flow_stores_a_credential_and_serves_its_token(backend: Backend) {
    let app = spawn_app(backend).await;

    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    assert!(auth_url.starts_with(&format!("{}/connect/", app.address)), "{auth_url}");
    assert_eq!(app.status_json(&session_id).await["status"], "pending");

    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Authentication Successful"));
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(page.headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(
        !page.body.contains("mock_at_") && !page.body.contains("mock_code_"),
        "the page must not show tokens or codes"
    );

    let status = app.status_json(&session_id).await;
    assert_eq!(status["status"], "completed");
    assert_eq!(status["user_email"], ALICE);
    assert_eq!(status["provider"], "mock");

    let token = app.token_ok("mock", ALICE).await;
    let access = token["access_token"].as_str().unwrap();
    assert!(app.mock.access_token_is_valid(access), "the gateway must hand out the provider's token");
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_at"].is_string());
    let scopes: Vec<&str> = token["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(scopes.contains(&"mail.read"), "{scopes:?}");
    // The second read is served from memory: same token.
    assert_eq!(app.token_ok("mock", "Alice@Company.com").await["access_token"], access);

    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{ALICE}"), None).await.json().await.unwrap();
    assert_eq!(listed["user_email"], ALICE);
    assert_eq!(listed["providers"][0]["provider"], "mock");
    assert_eq!(listed["providers"][0]["state"], "active");
    assert!(listed["providers"][0]["authenticated_at"].is_string());
    assert!(listed.to_string().find("mock_at_").is_none(), "listings carry no token");

    let revoked = app.revoke("mock", ALICE).await;
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert_eq!(revoked["success"], true);
    assert_eq!(revoked["provider_revocation"], "revoked");
    assert!(!app.mock.access_token_is_valid(access), "revoking the grant revokes its access token at the provider");
    assert_eq!(app.mock.counters().revocations, 1);

    let after = app.token("mock", ALICE, None).await;
    assert_eq!(after.status(), 404);
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["error"], "not_authenticated");
    assert_eq!(after["auth_required"], true);
    assert_eq!(app.revoke("mock", ALICE).await.status(), 404);
    app.stop().await;
}

async fn a_retried_init_returns_the_waiting_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (url_a, id_a) = app.init_ok("mock", ALICE).await;
    let (url_b, id_b) = app.init_ok("mock", ALICE).await;
    assert_eq!((&url_a, &id_a), (&url_b, &id_b), "same user, provider and scopes while pending: same session");

    let other_scopes = app.init("mock", ALICE, Some(&["mail.send"])).await.json::<Value>().await.unwrap();
    assert_ne!(other_scopes["session_id"], id_a.as_str(), "other scopes: another session");

    // Once the link has been opened, a retry gets a fresh link.
    let _ = app.continue_connect(&url_a).await;
    let (_, id_c) = app.init_ok("mock", ALICE).await;
    assert_ne!(id_c, id_a);
    assert_eq!(app.count("oauth_sessions").await, 3);
    app.stop().await;
}

async fn the_connect_link_works_once_and_sends_pkce_and_login_hint(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, _) = app.init_ok("mock", ALICE).await;

    let first = app.continue_connect(&auth_url).await;
    assert_eq!(first.status(), 302);
    let location = url::Url::parse(first.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(&app.mock.authorize_url()));
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["code_challenge"].len() >= 43);
    assert_eq!(query["login_hint"], ALICE);
    assert!(query["state"].len() >= 22, "state carries at least 128 bits");
    assert_eq!(query["redirect_uri"], format!("{}/auth/callback/mock", app.address));

    let second = app.client.get(&auth_url).send().await.unwrap();
    assert_eq!(second.status(), 404);
    assert!(second.text().await.unwrap().contains("already used or has expired"));
    app.stop().await;
}

async fn a_replayed_callback_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 200);
    let token_before = app.token_ok("mock", ALICE).await["access_token"].clone();
    let grants_before = app.mock.counters().authorization_code_grants;

    let replay = app.client.get(page.callback_url().unwrap()).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already"));
    assert_eq!(app.mock.counters().authorization_code_grants, grants_before, "a replay never reaches the provider");
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    assert_eq!(app.token_ok("mock", ALICE).await["access_token"], token_before);

    let unknown = app.client.get(app.url("/auth/callback/mock?code=x&state=never-issued")).send().await.unwrap();
    assert_eq!(unknown.status(), 400);
    let missing = app.client.get(app.url("/auth/callback/mock?code=x")).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    app.stop().await;
}

async fn an_expired_session_reports_failed_and_its_link_is_dead(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    app.clock.advance(Duration::from_secs(16 * 60));

    let status = app.status_json(&session_id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"], "Session expired");
    assert_eq!(status["reason"], "expired");

    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 404);
    assert_eq!(app.mock.counters().authorizations, 0, "an expired link never reaches the provider");

    // A new init after expiry starts a new session.
    let (_, fresh) = app.init_ok("mock", ALICE).await;
    assert_ne!(fresh, session_id);
    app.stop().await;
}

async fn a_callback_for_another_provider_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    // Stop at the provider's redirect back to us, and deliver it to the wrong provider path.
    let to_provider = app.continue_connect(&auth_url).await;
    let provider_url = to_provider.headers()["location"].to_str().unwrap().to_owned();
    let back = app.client.get(&provider_url).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().replace("/auth/callback/mock", "/auth/callback/google");

    let response = app.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.status_json(&session_id).await["status"], "pending");
    assert_eq!(app.mock.counters().authorization_code_grants, 0);

    // The right provider path still works: nothing was used up.
    let right = app.browse(&callback.replace("/auth/callback/google", "/auth/callback/mock")).await;
    assert_eq!(right.status, 200, "{}", right.body);
    app.stop().await;
}

async fn a_different_account_consenting_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_consent(Consent::ApproveAs("bob@company.com".into()));
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;

    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("different account"), "{}", page.body);
    let status = app.status_json(&session_id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "account_mismatch");
    assert_eq!(app.count("oauth_credentials").await, 0);
    assert_eq!(app.token("mock", ALICE, None).await.status(), 404);
    assert_eq!(app.token("mock", "bob@company.com", None).await.status(), 404);
    assert_eq!(app.mock.counters().revocations, 1, "tokens that are not stored are revoked");
    app.stop().await;
}

async fn access_denied_fails_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_consent(Consent::Deny);
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 400);
    let status = app.status_json(&session_id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "access_denied");
    assert_eq!(app.count("oauth_credentials").await, 0);
    app.stop().await;
}

async fn google_without_a_refresh_token_is_a_failure(backend: Backend) {
    let app = spawn_app(backend).await;
    app.mock.set_issue_refresh_tokens(false);
    let (auth_url, session_id) = app.init_ok("google", ALICE).await;
    let query = {
        let first = app.continue_connect(&auth_url).await;
        url::Url::parse(first.headers()["location"].to_str().unwrap())
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert_eq!(query["access_type"], "offline");
    assert_eq!(query["prompt"], "consent");
    assert!(query["scope"].split(' ').any(|s| s == "openid"), "identity scopes are added");

    let (auth_url, session_id_2) = app.init_ok("google", ALICE).await;
    assert_ne!(session_id, session_id_2);
    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 400);
    let status = app.status_json(&session_id_2).await;
    assert_eq!(status["reason"], "no_refresh_token");
    assert_eq!(app.count("oauth_credentials").await, 0);

    // With a refresh token it works.
    app.mock.set_issue_refresh_tokens(true);
    app.authorize("google", ALICE).await;
    assert!(app.token_ok("google", ALICE).await["access_token"].is_string());
    app.stop().await;
}

async fn status_long_polls_until_the_session_completes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;

    let pending = Instant::now();
    let body: Value = app.status(&session_id, Some(1)).await.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert!(pending.elapsed() >= Duration::from_millis(900), "wait=1 waits about a second while pending");

    let poll = {
        let client = app.client.clone();
        let url = app.url(&format!("/auth/status/{session_id}?wait=30"));
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = client
                .get(url)
                .header("x-api-key", crate::helpers::API_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (body, started.elapsed())
        })
    };
    // Let the poll register before completing (a bounded wait, not a sync point:
    // the poll is correct either way, this only makes it exercise the wake-up).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.browse(&auth_url).await.status, 200);
    let (body, waited) = tokio::time::timeout(Duration::from_secs(10), poll).await.unwrap().unwrap();
    assert_eq!(body["status"], "completed");
    assert!(waited < Duration::from_secs(10), "the poll returns when the session completes, not at its deadline");

    let too_long = app.status(&session_id, Some(61)).await;
    assert_eq!(too_long.status(), 400);
    app.stop().await;
}

async fn a_link_scanner_fetching_the_link_uses_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    // Safe Links, unfurlers: a HEAD and a GET, no cookies, no redirects followed.
    let head = app.client.head(&auth_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let page = app.client.get(&auth_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"].to_str().unwrap().contains("form-action 'self' http://127.0.0.1")
    );
    let set_cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let body = page.text().await.unwrap();
    assert!(body.contains("Continue to mock") && body.contains(ALICE), "{body}");
    assert!(!body.contains("<script"), "no JavaScript needed");
    assert_eq!(app.status_json(&session_id).await["status"], "pending");
    assert_eq!(app.mock.counters().authorizations, 0, "nobody was sent to the provider");
    // The user's own visit then works.
    let done = app.browse(&auth_url).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    app.stop().await;
}

async fn continue_is_accepted_only_from_the_connect_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let page = app.client.get(&auth_url).send().await.unwrap();
    let cookie = crate::helpers::connect_cookie(&page);
    let csrf = crate::helpers::form_value(&page.text().await.unwrap(), "csrf");
    let post = |cookie: Option<&str>, value: &str, extra: Option<(&'static str, &'static str)>| {
        let mut request = app.client.post(&auth_url).form(&[("csrf", value.to_owned())]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.to_owned());
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.send()
    };
    // A form on another site: no cookie (SameSite=Strict), or a value of its own.
    assert_eq!(post(None, &csrf, None).await.unwrap().status(), 403);
    assert_eq!(post(Some(&cookie), "guessed", None).await.unwrap().status(), 403);
    assert_eq!(post(Some("gw_connect="), "", None).await.unwrap().status(), 403);
    // A browser saying the POST comes from elsewhere.
    assert_eq!(post(Some(&cookie), &csrf, Some(("origin", "https://evil.example"))).await.unwrap().status(), 403);
    assert_eq!(post(Some(&cookie), &csrf, Some(("sec-fetch-site", "cross-site"))).await.unwrap().status(), 403);
    assert_eq!(app.status_json(&session_id).await["status"], "pending", "nothing used");
    assert_eq!(app.mock.counters().authorizations, 0);
    // From the page itself (as a browser sends it): to the provider.
    let origin = app.address.clone();
    let same = app
        .client
        .post(&auth_url)
        .header("cookie", cookie)
        .header("origin", origin)
        .header("sec-fetch-site", "same-origin")
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 302);
    assert!(same.headers()["location"].to_str().unwrap().starts_with(&app.mock.authorize_url()));
    app.stop().await;
}

async fn a_link_opened_twice_before_consenting_still_works_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, _) = app.init_ok("mock", ALICE).await;
    let first = app.client.get(&auth_url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = app.client.get(&auth_url).send().await.unwrap();
    let cookie = crate::helpers::connect_cookie(&second);
    let csrf = crate::helpers::form_value(&second.text().await.unwrap(), "csrf");
    let press = || app.client.post(&auth_url).header("cookie", cookie.clone()).form(&[("csrf", csrf.clone())]).send();
    assert_eq!(press().await.unwrap().status(), 302);
    let again = press().await.unwrap();
    assert_eq!(again.status(), 404);
    assert!(again.text().await.unwrap().contains("already used"));
    app.stop().await;
}
