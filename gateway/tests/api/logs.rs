//! With logging at debug level, a full flow (consent, token reads, refreshes,
//! revoke) writes no token, refresh token, code, client secret, key or API
//! key to the log. The gateway runs as its own process, logging as in
//! production, so this checks the real output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use mock_provider::{MockConfig, MockProvider};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, eventually, fernet_key, provider_vars};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_flow_at_debug_level_logs_no_secret() {
    // Tokens that live 60 s are always inside the 300 s refresh buffer, so
    // every token read below also refreshes.
    let mock = MockProvider::start_with(MockConfig {
        access_token_ttl: Duration::from_secs(60),
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = fernet_key();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_clear()
        .envs(provider_vars(&mock))
        .env("DATABASE_URL", format!("sqlite://{}/gw.db?mode=rwc", dir.path().display()))
        .env("AUTH_GATEWAY_ENCRYPTION_KEY", &key)
        .env("AUTH_GATEWAY_API_KEY", API_KEY)
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let up = eventually(Duration::from_secs(60), || async {
        client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "the gateway did not start");

    let api = |method: reqwest::Method, path: &str, body: Value| {
        client.request(method, format!("{base}{path}")).header("x-api-key", API_KEY).json(&body).send()
    };
    let alice = json!({"provider": "mock", "user_email": "alice@company.com"});
    let init: Value = api(reqwest::Method::POST, "/auth/init", alice.clone()).await.unwrap().json().await.unwrap();
    let mut url = init["auth_url"].as_str().unwrap().to_owned();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let response = if url.contains("/connect/") {
            crate::helpers::press_continue(&client, &url).await
        } else {
            client.get(&url).send().await.unwrap()
        };
        if !response.status().is_redirection() {
            assert_eq!(response.status(), 200);
            break;
        }
        url = response.headers()["location"].to_str().unwrap().to_owned();
        if let Some(code) = url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "code") {
            codes.push(code.1.into_owned());
        }
    }
    assert_eq!(codes.len(), 1, "the flow went through the provider");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let token: Value =
            api(reqwest::Method::POST, "/auth/token", alice.clone()).await.unwrap().json().await.unwrap();
        tokens.push(token["access_token"].as_str().unwrap().to_owned());
    }
    assert!(mock.refresh_count_for("alice@company.com") >= 2, "refreshes happened");
    assert_eq!(api(reqwest::Method::DELETE, "/auth/revoke", alice).await.unwrap().status(), 200);

    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let mut log = String::new();
    child.stdout.take().unwrap().read_to_string(&mut log).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    let _ = child.wait();

    assert!(log.contains("authorization completed") && log.contains("DEBUG"), "the log is at debug level:\n{log}");
    let mut secrets: Vec<(&str, String)> = vec![
        ("API key", API_KEY.to_owned()),
        ("encryption key", key.clone()),
        ("client secret", mock.client_secret().to_owned()),
        ("any access token", mock_provider::ACCESS_TOKEN_PREFIX.to_owned()),
        ("any refresh token", mock_provider::REFRESH_TOKEN_PREFIX.to_owned()),
        ("any code", mock_provider::CODE_PREFIX.to_owned()),
    ];
    secrets.extend(tokens.into_iter().map(|t| ("a served token", t)));
    secrets.extend(codes.into_iter().map(|c| ("the code", c)));
    for (what, secret) in secrets {
        assert!(!log.contains(&secret), "{what} leaked into the log");
    }
}
