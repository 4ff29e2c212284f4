//! The authorization-code grant with PKCE, client authentication and the id_token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use mock_provider::{MockProvider, subject_for};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Sha256;

use crate::helpers::*;

#[tokio::test]
async fn full_flow_with_pkce_issues_working_tokens() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    assert!(code.starts_with("mock_code_"));

    let response = exchange(&provider, &client, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"].as_u64(), Some(3600), "expires_in is a JSON integer");
    assert_eq!(body["scope"], "openid email https://mail.example.com/read");
    let access = str_field(&body, "access_token");
    let refresh = str_field(&body, "refresh_token");
    assert!(access.starts_with("mock_at_") && access.len() >= 40);
    assert!(refresh.starts_with("mock_rt_") && refresh.len() >= 40);
    assert!(provider.access_token_is_valid(access));

    let me: Value = userinfo(&provider, &client, access).await.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["sub"], subject_for("alice@example.com"));

    let counters = provider.counters();
    assert_eq!(counters.authorizations, 1);
    assert_eq!(counters.authorization_code_grants, 1);
    assert_eq!(counters.userinfo_calls, 1);
}

#[tokio::test]
async fn id_token_is_signed_with_the_client_secret() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let url = authorize_url(&provider, &[("login_hint", "alice@example.com"), ("nonce", "n-1")]);
    let location = location(&client.get(url).send().await.unwrap());
    let code = query_param(&location, "code").unwrap();
    let body: Value = exchange(&provider, &client, &code).await.json().await.unwrap();
    let id_token = str_field(&body, "id_token");

    // Verified by hand, independently of the crate's own JWT code.
    let parts: Vec<&str> = id_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut mac = Hmac::<Sha256>::new_from_slice(provider.client_secret().as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("signature verifies");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "HS256");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["aud"], provider.client_id());
    assert_eq!(claims["iss"], provider.base_url());
    assert_eq!(claims["sub"], subject_for("alice@example.com"));
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);

    // The crate's verifier agrees, and refuses another key.
    assert!(mock_provider::jwt::verify_hs256(id_token, provider.client_secret().as_bytes()).is_ok());
    assert!(mock_provider::jwt::verify_hs256(id_token, b"wrong").is_err());
}

#[tokio::test]
async fn wrong_or_missing_verifier_is_invalid_grant() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    let wrong_verifier = "x".repeat(43);
    for verifier in [None, Some(wrong_verifier.as_str())] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
        ];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        let response = client.post(provider.token_url()).form(&form).send().await.unwrap();
        expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // A failed attempt does not burn the code.
    assert_eq!(exchange(&provider, &client, &code).await.status(), StatusCode::OK);
    assert_eq!(provider.counters().token_errors, 2);
}

#[tokio::test]
async fn reused_code_is_refused_and_revokes_its_tokens() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    let first: Value = exchange(&provider, &client, &code).await.json().await.unwrap();
    let access = str_field(&first, "access_token");
    assert!(provider.access_token_is_valid(access));

    let again = exchange(&provider, &client, &code).await;
    expect_oauth_error(again, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(!provider.access_token_is_valid(access));
    let refreshed = refresh(&provider, &client, str_field(&first, "refresh_token")).await;
    expect_oauth_error(refreshed, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn redirect_uri_must_match() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    let response = client
        .post(provider.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://localhost:8080/other"),
            ("code_verifier", VERIFIER),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    expect_oauth_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn basic_client_authentication_works() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    let response = client
        .post(provider.token_url())
        .basic_auth(provider.client_id(), Some(provider.client_secret()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_client_credentials_are_invalid_client() {
    let provider = MockProvider::start().await.unwrap();
    let client = client();
    let code = code(&provider, &client, "alice@example.com").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];

    let basic = client
        .post(provider.token_url())
        .basic_auth(provider.client_id(), Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(basic.headers().contains_key("www-authenticate"));
    expect_oauth_error(basic, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let mut post_form = form.to_vec();
    post_form.extend([("client_id", provider.client_id()), ("client_secret", "wrong")]);
    let post = client.post(provider.token_url()).form(&post_form).send().await.unwrap();
    expect_oauth_error(post, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let missing = client.post(provider.token_url()).form(&form).send().await.unwrap();
    expect_oauth_error(missing, StatusCode::UNAUTHORIZED, "invalid_client").await;

    // The code survived the failed attempts.
    assert_eq!(exchange(&provider, &client, &code).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn no_refresh_token_and_no_id_token_modes() {
    let provider = MockProvider::start().await.unwrap();
    provider.set_issue_refresh_tokens(false);
    provider.set_issue_id_token(false);
    let body = login(&provider, &client(), "alice@example.com").await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body.get("id_token").is_none(), "{body}");
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn granted_scopes_override_the_request() {
    let provider = MockProvider::start().await.unwrap();
    provider.set_granted_scopes(Some(vec!["openid".into(), "email".into()]));
    let client = client();
    let body = login(&provider, &client, "alice@example.com").await;
    assert_eq!(body["scope"], "openid email");
    let api: Value = client
        .get(provider.api_url())
        .bearer_auth(str_field(&body, "access_token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["scopes"], serde_json::json!(["openid", "email"]));
}
