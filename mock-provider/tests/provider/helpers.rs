//! Shared test plumbing: an HTTP client that does not follow redirects, and the steps of
//! the authorization-code flow.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mock_provider::MockProvider;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

pub const REDIRECT_URI: &str = "http://localhost:8080/callback";
/// RFC 7636 appendix B's verifier.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const STATE: &str = "state-123";

/// Every request in these tests is bounded by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(REQUEST_TIMEOUT).build().unwrap()
}

/// Computed here rather than with the crate's helper, so the test checks the crate.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An authorization URL with the usual parameters; `overrides` replace or add parameters,
/// and an empty value removes one.
pub fn authorize_url(provider: &MockProvider, overrides: &[(&str, &str)]) -> Url {
    let challenge = challenge(VERIFIER);
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", provider.client_id()),
        ("redirect_uri", REDIRECT_URI),
        ("state", STATE),
        ("scope", "openid email https://mail.example.com/read"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in overrides {
        params.retain(|(existing, _)| existing != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    Url::parse_with_params(&provider.authorize_url(), &params).unwrap()
}

pub fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), StatusCode::FOUND, "expected a redirect");
    let location = response.headers()[reqwest::header::LOCATION].to_str().unwrap();
    Url::parse(location).unwrap()
}

pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// Runs `/authorize` and returns the code from the redirect.
pub async fn code(provider: &MockProvider, client: &reqwest::Client, login_hint: &str) -> String {
    let url = authorize_url(provider, &[("login_hint", login_hint)]);
    let response = client.get(url).send().await.unwrap();
    let location = location(&response);
    assert_eq!(query_param(&location, "state").as_deref(), Some(STATE));
    query_param(&location, "code").expect("the redirect carries a code")
}

/// Exchanges a code with client_secret_post and the right verifier.
pub async fn exchange(provider: &MockProvider, client: &reqwest::Client, code: &str) -> reqwest::Response {
    client
        .post(provider.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
        ])
        .send()
        .await
        .unwrap()
}

/// The whole flow for `email`: returns the token response body.
pub async fn login(provider: &MockProvider, client: &reqwest::Client, email: &str) -> Value {
    let code = code(provider, client, email).await;
    let response = exchange(provider, client, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

pub async fn refresh(provider: &MockProvider, client: &reqwest::Client, refresh_token: &str) -> reqwest::Response {
    client
        .post(provider.token_url())
        .basic_auth(provider.client_id(), Some(provider.client_secret()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap()
}

/// Meta's long-lived token exchange, over GET with query parameters as Meta documents it.
pub async fn fb_exchange(provider: &MockProvider, client: &reqwest::Client, access_token: &str) -> reqwest::Response {
    client
        .get(provider.token_url())
        .query(&[
            ("grant_type", "fb_exchange_token"),
            ("client_id", provider.client_id()),
            ("client_secret", provider.client_secret()),
            ("fb_exchange_token", access_token),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn userinfo(provider: &MockProvider, client: &reqwest::Client, access_token: &str) -> reqwest::Response {
    client.get(provider.userinfo_url()).bearer_auth(access_token).send().await.unwrap()
}

/// Asserts an OAuth error answer and returns its body.
pub async fn expect_oauth_error(response: reqwest::Response, status: StatusCode, error: &str) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "body: {body}");
    body
}

pub fn str_field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name].as_str().unwrap_or_else(|| panic!("{name} missing in {body}"))
}
