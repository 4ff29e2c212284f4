//! Revocation (RFC 7009) and the bearer-protected endpoints.

use mock_provider::MockProvider;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

async fn revoke(provider: &MockProvider, client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .post(provider.revoke_url())
        .basic_auth(provider.client_id(), Some(provider.client_secret()))
        .form(&[("token", token), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_access_tokens() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let refresh_token = str_field(&body, "refresh_token");
    let refreshed: Value = refresh(&provider, &client, refresh_token).await.json().await.unwrap();
    let access_tokens = [str_field(&body, "access_token"), str_field(&refreshed, "access_token")];
    for token in access_tokens {
        assert_eq!(userinfo(&provider, &client, token).await.status(), StatusCode::OK);
    }

    let response = revoke(&provider, &client, refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());

    for token in access_tokens {
        let response = userinfo(&provider, &client, token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
    }
    let again = refresh(&provider, &client, refresh_token).await;
    expect_oauth_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_an_access_token_spares_the_refresh_token() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let access = str_field(&body, "access_token");
    // A client_secret_post revocation, and the wrong hint: both are fine.
    let response = client
        .post(provider.revoke_url())
        .form(&[
            ("token", access),
            ("token_type_hint", "refresh_token"),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!provider.access_token_is_valid(access));
    let refreshed = refresh(&provider, &client, str_field(&body, "refresh_token")).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_tokens_revoke_fine_but_bad_clients_do_not() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let response = revoke(&provider, &client, "mock_rt_never_issued").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = client
        .post(provider.revoke_url())
        .basic_auth(provider.client_id(), Some("wrong"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    expect_oauth_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(provider.counters().revocations, 1);
}

#[tokio::test]
async fn api_me_returns_the_user_and_their_messages() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    let response = client.get(provider.api_url()).bearer_auth(str_field(&body, "access_token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["scopes"], serde_json::json!(["openid", "email", "https://mail.example.com/read"]));
    assert_eq!(me["messages"][0]["id"], 1);
    assert_eq!(me["messages"][0]["subject"], "Welcome");
    assert_eq!(provider.counters().api_calls, 1);
}

#[tokio::test]
async fn protected_endpoints_refuse_missing_and_bogus_tokens() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    for url in [provider.userinfo_url(), provider.api_url()] {
        let missing = client.get(&url).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(missing.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let bogus = client.get(&url).bearer_auth("mock_at_bogus").send().await.unwrap();
        assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(bogus.headers()["www-authenticate"], r#"Bearer error="invalid_token""#);
    }
    let counters = provider.counters();
    assert_eq!((counters.userinfo_calls, counters.api_calls), (2, 2));
}
