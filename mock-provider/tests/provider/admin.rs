//! The `/__admin` HTTP controls, as the Python tests and the demo use them.

use mock_provider::{Counters, MockProvider};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn admin_post(client: &reqwest::Client, provider: &MockProvider, path: &str, body: Value) -> reqwest::Response {
    client.post(format!("{}/__admin/{path}", provider.base_url())).json(&body).send().await.unwrap()
}

async fn admin_get(client: &reqwest::Client, provider: &MockProvider, path: &str) -> Value {
    let response = client.get(format!("{}/__admin/{path}", provider.base_url())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn counters_and_refresh_counts_over_http() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    refresh(&provider, &client, str_field(&body, "refresh_token")).await;

    let counters: Counters = serde_json::from_value(admin_get(&client, &provider, "counters").await).unwrap();
    assert_eq!(counters, provider.counters());
    assert_eq!(counters.refresh_grants, 1);
    assert_eq!(admin_get(&client, &provider, "refresh-counts").await, json!({"alice@example.com": 1}));
    let last = admin_get(&client, &provider, "last-authorize").await;
    assert!(last.as_array().unwrap().contains(&json!(["login_hint", "alice@example.com"])));
}

#[tokio::test]
async fn consent_over_http() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let forced = json!({"mode": "approve_as", "email": "bob@example.com"});
    assert_eq!(admin_post(&client, &provider, "consent", forced).await.status(), StatusCode::NO_CONTENT);
    let body = login(&provider, &client, "alice@example.com").await;
    let me: Value = userinfo(&provider, &client, str_field(&body, "access_token")).await.json().await.unwrap();
    assert_eq!(me["email"], "bob@example.com");

    admin_post(&client, &provider, "consent", json!({"mode": "deny"})).await;
    let response = client.get(authorize_url(&provider, &[])).send().await.unwrap();
    assert_eq!(query_param(&location(&response), "error").as_deref(), Some("access_denied"));

    admin_post(&client, &provider, "consent", json!({"mode": "approve_as_login_hint"})).await;
    login(&provider, &client, "carol@example.com").await;

    let bad = admin_post(&client, &provider, "consent", json!({"mode": "maybe"})).await;
    assert!(bad.status().is_client_error());
}

#[tokio::test]
async fn faults_over_http() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let refresh_token = str_field(&body, "refresh_token");

    let fault = json!({"endpoint": "token", "fault": {"kind": "status", "code": 502}, "times": 2});
    assert_eq!(admin_post(&client, &provider, "faults", fault).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(refresh(&provider, &client, refresh_token).await.status(), StatusCode::BAD_GATEWAY);

    let cleared = client.delete(format!("{}/__admin/faults", provider.base_url())).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::NO_CONTENT);
    assert_eq!(refresh(&provider, &client, refresh_token).await.status(), StatusCode::OK);

    for fault in [
        json!({"kind": "server_error"}),
        json!({"kind": "too_many_requests", "retry_after_secs": 5}),
        json!({"kind": "slow", "millis": 1}),
        json!({"kind": "invalid_grant"}),
        json!({"kind": "invalid_client"}),
        json!({"kind": "drop_connection"}),
    ] {
        let body = json!({"endpoint": "api", "fault": fault});
        let response = admin_post(&client, &provider, "faults", body).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{fault}");
    }
    let api = |client: reqwest::Client, url: String, token: String| async move {
        client.get(url).bearer_auth(token).send().await
    };
    let access = str_field(&body, "access_token").to_owned();
    let mut outcomes = Vec::new();
    for _ in 0..7 {
        let outcome = api(client.clone(), provider.api_url(), access.clone()).await;
        outcomes.push(outcome.map(|response| response.status().as_u16()).ok());
    }
    assert_eq!(outcomes, [Some(500), Some(429), Some(200), Some(400), Some(401), None, Some(200)]);

    let bad = json!({"endpoint": "token", "fault": {"kind": "status", "code": 42}});
    assert_eq!(admin_post(&client, &provider, "faults", bad).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn settings_over_http() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let update = json!({
        "access_token_ttl_secs": 120,
        "rotate_refresh_tokens": true,
        "granted_scopes": ["email"],
    });
    let response = admin_post(&client, &provider, "settings", update).await;
    assert_eq!(response.status(), StatusCode::OK);
    let settings: Value = response.json().await.unwrap();
    assert_eq!(settings["access_token_ttl_secs"], 120);
    assert_eq!(settings["granted_scopes"], json!(["email"]));

    let body = login(&provider, &client, "alice@example.com").await;
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["scope"], "email");
    let rotated: Value = refresh(&provider, &client, str_field(&body, "refresh_token")).await.json().await.unwrap();
    assert!(rotated["refresh_token"].is_string());

    let reset = json!({"granted_scopes": null, "issue_refresh_tokens": false});
    admin_post(&client, &provider, "settings", reset).await;
    let settings = admin_get(&client, &provider, "settings").await;
    assert_eq!(settings["granted_scopes"], Value::Null);
    assert_eq!(settings["access_token_ttl_secs"], 120, "absent fields are unchanged");
    let body = login(&provider, &client, "alice@example.com").await;
    assert_eq!(body["scope"], "openid email https://mail.example.com/read");
    assert!(body.get("refresh_token").is_none());
}

#[tokio::test]
async fn invalidate_over_http() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let response = admin_post(&client, &provider, "invalidate", json!({"email": "alice@example.com"})).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let refreshed = refresh(&provider, &client, str_field(&body, "refresh_token")).await;
    expect_oauth_error(refreshed, StatusCode::BAD_REQUEST, "invalid_grant").await;
}
