//! API clients and their rights, key rotation with a grace period, disabled
//! clients, sessions readable only by their client, the audit log, rate
//! limits, CORS and the redirect allow-list.

use std::time::Duration;

use gateway::access::Action;
use gateway::access::NewClient;
use gateway::access::clients::hex;
use gateway::access::digest;
use mock_provider::{Consent, MockProvider};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, Backend, TestApp, TestDb, fernet_key, metric_sum, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    each_action_is_allowed_or_refused_by_the_clients_rights,
    providers_domains_and_networks_limit_a_client,
    a_rotated_key_keeps_working_for_its_grace_period,
    a_disabled_client_is_refused,
    a_session_is_readable_only_by_its_client,
    every_action_is_audited_and_no_audit_row_holds_a_secret,
);

/// Adds a client with `actions` (and optional limits) and returns its key.
async fn add_client(
    app: &TestApp,
    name: &str,
    actions: &[Action],
    providers: Option<&[&str]>,
    domains: Option<&[&str]>,
    networks: Option<&[&str]>,
) -> String {
    let key = format!("{name}-key-0123456789abcdefghijklmnopqrstuvwxyz");
    let list = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| (*s).to_owned()).collect());
    let new = NewClient {
        name: name.to_owned(),
        key_digest: hex(&digest(key.as_bytes())),
        actions: actions.to_vec(),
        providers: list(providers),
        domains: list(domains),
        networks: list(networks),
        exchange: Default::default(),
    };
    assert!(app.state.services.add_client(new).await.unwrap());
    app.state.services.clients().reload().await.unwrap();
    key
}

async fn call(app: &TestApp, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

fn alice() -> Value {
    json!({"provider": "mock", "user_email": "alice@company.com"})
}

async fn forbidden_reason(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");
    body["message"].as_str().unwrap().to_owned()
}

async fn each_action_is_allowed_or_refused_by_the_clients_rights(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    let probes: [(Action, reqwest::Method, &str, Option<Value>); 5] = [
        (Action::Init, reqwest::Method::POST, "/auth/init", Some(alice())),
        (Action::Status, reqwest::Method::GET, "/auth/providers/alice@company.com", None),
        (Action::Token, reqwest::Method::POST, "/auth/token", Some(alice())),
        (
            Action::Revoke,
            reqwest::Method::DELETE,
            "/auth/revoke",
            Some(json!({"provider": "mock", "user_email": "nobody@company.com"})),
        ),
        (Action::Admin, reqwest::Method::GET, "/admin/keys", None),
    ];
    for (allowed, ..) in &probes {
        let key = add_client(&app, &format!("only-{}", allowed.as_str()), &[*allowed], None, None, None).await;
        for (action, method, path, body) in &probes {
            let response = call(&app, &key, method.clone(), path, body.clone()).await;
            if action == allowed {
                assert_ne!(response.status(), 403, "{} may {}", allowed.as_str(), action.as_str());
            } else {
                let reason = forbidden_reason(response).await;
                assert!(reason.contains(action.as_str()), "{reason}");
            }
        }
    }
    // Refusals change nothing: alice's credential is still there.
    assert_eq!(app.count("oauth_credentials").await, 1);
    app.stop().await;
}

async fn providers_domains_and_networks_limit_a_client(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("google", "alice@company.com").await;
    let all = [Action::Init, Action::Status, Action::Token];
    let key = add_client(&app, "mail", &all, Some(&["mock"]), Some(&["company.com"]), Some(&["127.0.0.0/8"])).await;

    assert_eq!(call(&app, &key, reqwest::Method::POST, "/auth/token", Some(alice())).await.status(), 200);
    let google = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/auth/token",
        Some(json!({"provider": "google", "user_email": "alice@company.com"})),
    )
    .await;
    assert!(forbidden_reason(google).await.contains("google"));
    let other = call(
        &app,
        &key,
        reqwest::Method::POST,
        "/auth/init",
        Some(json!({"provider": "mock", "user_email": "eve@other.org"})),
    )
    .await;
    assert!(forbidden_reason(other).await.contains("other.org"));
    // The listing shows only the providers the client may use.
    let listed: Value =
        call(&app, &key, reqwest::Method::GET, "/auth/providers/alice@company.com", None).await.json().await.unwrap();
    assert_eq!(listed["providers"].as_array().unwrap().len(), 1);
    assert_eq!(listed["providers"][0]["provider"], "mock");

    let remote = add_client(&app, "remote", &all, None, None, Some(&["10.0.0.0/8"])).await;
    let refused = call(&app, &remote, reqwest::Method::POST, "/auth/token", Some(alice())).await;
    assert!(forbidden_reason(refused).await.contains("127.0.0.1"));
    app.stop().await;
}

async fn a_rotated_key_keeps_working_for_its_grace_period(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    let old = add_client(&app, "rotating", &[Action::Token], None, None, None).await;
    let new = "rotating-new-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let until = app.clock.now() + chrono::TimeDelta::hours(1);
    assert!(app.state.services.rotate_client_key("rotating", hex(&digest(new.as_bytes())), until).await.unwrap());
    app.state.services.clients().reload().await.unwrap();

    for key in [old.as_str(), new] {
        assert_eq!(call(&app, key, reqwest::Method::POST, "/auth/token", Some(alice())).await.status(), 200);
    }
    app.clock.advance(Duration::from_secs(2 * 3600));
    let expired = call(&app, &old, reqwest::Method::POST, "/auth/token", Some(alice())).await;
    assert_eq!(forbidden_reason(expired).await, "Invalid API key.");
    assert_eq!(call(&app, new, reqwest::Method::POST, "/auth/token", Some(alice())).await.status(), 200);
    app.stop().await;
}

async fn a_disabled_client_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = add_client(&app, "retired", &[Action::Init], None, None, None).await;
    assert_eq!(call(&app, &key, reqwest::Method::POST, "/auth/init", Some(alice())).await.status(), 200);
    assert!(app.state.services.set_client_enabled("retired", false).await.unwrap());
    app.state.services.clients().reload().await.unwrap();
    let refused = call(&app, &key, reqwest::Method::POST, "/auth/init", Some(alice())).await;
    assert!(forbidden_reason(refused).await.contains("disabled"));
    app.stop().await;
}

async fn a_session_is_readable_only_by_its_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = add_client(&app, "client-a", &[Action::Init, Action::Status], None, None, None).await;
    let b = add_client(&app, "client-b", &[Action::Init, Action::Status], None, None, None).await;
    let started: Value = call(&app, &a, reqwest::Method::POST, "/auth/init", Some(alice())).await.json().await.unwrap();
    let id = started["session_id"].as_str().unwrap();
    assert_eq!(call(&app, &a, reqwest::Method::GET, &format!("/auth/status/{id}"), None).await.status(), 200);
    let other = call(&app, &b, reqwest::Method::GET, &format!("/auth/status/{id}?wait=5"), None).await;
    assert!(forbidden_reason(other).await.contains("another API client"));
    // B's identical init gets a session of its own, not A's.
    let b_started: Value =
        call(&app, &b, reqwest::Method::POST, "/auth/init", Some(alice())).await.json().await.unwrap();
    assert_ne!(b_started["session_id"], started["session_id"]);
    app.stop().await;
}

async fn every_action_is_audited_and_no_audit_row_holds_a_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    app.authorize("mock", "alice@company.com").await;
    let token = app.token_ok("mock", "alice@company.com").await["access_token"].as_str().unwrap().to_owned();
    app.mock.set_consent(Consent::Deny);
    let (denied, _) = app.init_ok("mock", "bob@company.com").await;
    app.browse(&denied).await;
    assert_eq!(app.revoke("mock", "alice@company.com").await.status(), 200);
    let limited = add_client(&app, "limited", &[Action::Token], None, None, None).await;
    assert_eq!(call(&app, &limited, reqwest::Method::DELETE, "/auth/revoke", Some(alice())).await.status(), 403);
    app.state.services.audit().flush().await;

    let log: Value = app.api(reqwest::Method::GET, "/admin/audit?limit=1000", None).await.json().await.unwrap();
    let rows = log["records"].as_array().unwrap();
    let has = |client: &str, action: &str, outcome: &str| {
        rows.iter().any(|r| r["client"] == client && r["action"] == action && r["outcome"] == outcome)
    };
    assert!(has("bootstrap", "init", "session_created"), "{log}");
    assert!(has("bootstrap", "complete", "completed"), "{log}");
    assert!(has("bootstrap", "fail", "access_denied"), "{log}");
    assert!(has("bootstrap", "token", "store") || has("bootstrap", "token", "memory"), "{log}");
    assert!(has("bootstrap", "revoke", "revoked"), "{log}");
    assert!(has("limited", "revoke", "forbidden"), "{log}");
    let token_read = rows.iter().find(|r| r["action"] == "token").unwrap();
    assert!(token_read["detail"].as_str().unwrap().starts_with("1 read(s) from"), "{token_read}");
    assert_eq!(token_read["user_email"], "alice@company.com");
    assert_eq!(token_read["provider"], "mock");
    assert!(token_read["request_id"].is_string());

    // Filters.
    let bob: Value =
        app.api(reqwest::Method::GET, "/admin/audit?user=bob@company.com", None).await.json().await.unwrap();
    assert!(bob["records"].as_array().unwrap().iter().all(|r| r["user_email"] == "bob@company.com"));
    let mine: Value = app.api(reqwest::Method::GET, "/admin/audit?client=limited", None).await.json().await.unwrap();
    assert_eq!(mine["records"].as_array().unwrap().len(), 1);

    // No audit row holds a token, a code, or a key.
    use sea_orm::{ConnectionTrait, Statement};
    let conn = app.db.connect().await;
    let all = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT client, action, user_email, provider, outcome, request_id, detail FROM audit_log".to_owned(),
        ))
        .await
        .unwrap();
    let mut text = String::new();
    for row in &all {
        for col in ["client", "action", "user_email", "provider", "outcome", "request_id", "detail"] {
            text.push_str(&row.try_get::<Option<String>>("", col).unwrap().unwrap_or_default());
            text.push('\n');
        }
    }
    conn.close().await.unwrap();
    for secret in [
        token.as_str(),
        mock_provider::ACCESS_TOKEN_PREFIX,
        mock_provider::REFRESH_TOKEN_PREFIX,
        mock_provider::CODE_PREFIX,
        API_KEY,
        &limited,
    ] {
        assert!(!text.contains(secret), "the audit log holds a secret");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_per_client_and_per_address() {
    let mock = MockProvider::start().await.unwrap();
    let limits = [
        ("RATE_LIMIT_TOKEN_PER_SECOND", "2"),
        ("RATE_LIMIT_BROWSER_PER_SECOND", "1"),
        ("AUTH_GATEWAY_TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let app = spawn_app_with(TestDb::new(Backend::Sqlite).await, fernet_key(), mock, &limits).await;
    let b = add_client(&app, "b", &[Action::Token], None, None, None).await;
    let token = |key: String, from: &'static str| {
        let (client, url) = (app.client.clone(), app.url("/auth/token"));
        async move {
            client
                .post(url)
                .header("x-api-key", key)
                .header("x-forwarded-for", from)
                .json(&alice())
                .send()
                .await
                .unwrap()
        }
    };
    // Burst of 4 (twice the rate) for the bootstrap client from 10.0.0.1, then 429.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(token(API_KEY.to_owned(), "10.0.0.1").await.status().as_u16());
    }
    assert_eq!(&statuses[..4], &[404, 404, 404, 404], "not_authenticated, but not limited");
    assert_eq!(statuses[4], 429);
    let limited = token(API_KEY.to_owned(), "10.0.0.9").await;
    assert_eq!(limited.status(), 429, "the client's own limit, from any address");
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Another client from another address is not affected.
    assert_eq!(token(b.clone(), "10.0.0.2").await.status(), 404);

    // Browser pages, per address: a burst of 2, then a 429 page.
    let mut pages = Vec::new();
    for _ in 0..3 {
        pages.push(app.client.get(app.url("/connect/nope")).send().await.unwrap());
    }
    assert_eq!(pages[2].status(), 429);
    assert!(pages[2].headers().contains_key("retry-after"));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metric_sum(&metrics, "rate_limited_total", &[("route", "/auth/token")]) >= 2.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/auth/token"))
            .header("origin", origin.to_owned())
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,content-type")
            .send()
    };
    let off = spawn_app(Backend::Sqlite).await;
    let response = preflight(&off, "https://app.example.com").await.unwrap();
    assert!(!response.headers().contains_key("access-control-allow-origin"));
    off.stop().await;

    let mock = MockProvider::start().await.unwrap();
    let on = spawn_app_with(
        TestDb::new(Backend::Sqlite).await,
        fernet_key(),
        mock,
        &[("CORS_ALLOWED_ORIGINS", "https://app.example.com")],
    )
    .await;
    let allowed = preflight(&on, "https://app.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let other = preflight(&on, "https://evil.example.com").await.unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    on.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_after_goes_only_to_allowed_hosts() {
    let mock = MockProvider::start().await.unwrap();
    let app = spawn_app_with(
        TestDb::new(Backend::Sqlite).await,
        fernet_key(),
        mock,
        &[("AUTH_GATEWAY_REDIRECT_HOSTS", "app.example.com")],
    )
    .await;
    let refused = app
        .api(reqwest::Method::POST, "/auth/init", Some(json!({"provider": "mock", "user_email": "alice@company.com", "redirect_after": "https://evil.example.com/x"})))
        .await;
    assert_eq!(refused.status(), 400);
    assert!(
        refused.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("AUTH_GATEWAY_REDIRECT_HOSTS")
    );
    assert_eq!(app.count("oauth_sessions").await, 0);

    let started: Value = app
        .api(reqwest::Method::POST, "/auth/init", Some(json!({"provider": "mock", "user_email": "alice@company.com", "redirect_after": "https://app.example.com/done"})))
        .await
        .json()
        .await
        .unwrap();
    // connect → provider → callback, then the callback's 303 (not followed: that host is not ours).
    let mut url = started["auth_url"].as_str().unwrap().to_owned();
    for hop in 0..2 {
        let hop = if hop == 0 { app.continue_connect(&url).await } else { app.client.get(&url).send().await.unwrap() };
        url = hop.headers()["location"].to_str().unwrap().to_owned();
    }
    let callback = app.client.get(&url).send().await.unwrap();
    assert_eq!(callback.status(), 303);
    assert_eq!(callback.headers()["location"], "https://app.example.com/done");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reads_are_summarised_unless_each_is_asked_for() {
    async fn token_rows(extra: &[(&str, &str)]) -> Vec<Value> {
        let mock = MockProvider::start().await.unwrap();
        let app = spawn_app_with(TestDb::new(Backend::Sqlite).await, fernet_key(), mock, extra).await;
        app.authorize("mock", "alice@company.com").await;
        for _ in 0..5 {
            app.token_ok("mock", "alice@company.com").await;
        }
        app.state.services.audit().flush().await;
        let log: Value = app.api(reqwest::Method::GET, "/admin/audit?limit=1000", None).await.json().await.unwrap();
        app.stop().await;
        log["records"].as_array().unwrap().iter().filter(|r| r["action"] == "token").cloned().collect()
    }

    // Summary (the default): one record for the five reads with the same outcome.
    let summarised = token_rows(&[]).await;
    let total: u64 = summarised
        .iter()
        .map(|r| r["detail"].as_str().unwrap().split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 5, "{summarised:?}");
    assert!(summarised.len() <= 2, "one record per outcome (store, memory): {summarised:?}");

    let each = token_rows(&[("AUDIT_TOKEN_READS", "each")]).await;
    assert_eq!(each.len(), 5, "{each:?}");
    assert!(each.iter().all(|r| r["detail"].is_null() && r["request_id"].is_string()), "{each:?}");
}
