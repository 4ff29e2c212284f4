//! Verified users, not named users: `POST /oauth/token` (RFC 8693) hands out
//! the provider token of the user a trusted identity provider's JWT proves,
//! bound to the MCP server it was issued for — or of the user a client's
//! registered worker key asserts, once per assertion.
//!
//! The identity provider is the mock provider's own (ES256/EdDSA keys, a JWKS
//! with rotation, forgeries on request). Refusals that depend only on the
//! token run on SQLite; what the database decides (single-use assertions,
//! the crowd) runs on both backends.

use std::time::Duration;

use gateway::access::{Action, ClientExchange, NewClient};
use mock_provider::idp::{Alg, Forgery, SigningKey};
use mock_provider::{Consent, Endpoint, Fault, MockProvider};
use serde_json::{Value, json};

use crate::helpers::{API_KEY, Backend, TestApp, TestDb, fernet_key, spawn_app_with_vars};
use crate::on_both_backends;

on_both_backends!(
    a_verified_user_gets_their_own_token,
    a_worker_assertion_is_accepted_once,
    a_crowd_of_users_each_gets_their_own_token,
);

const ALICE: &str = "alice@company.com";
const MAIL_AUDIENCE: &str = "https://mail-mcp.company.com";
const CAL_AUDIENCE: &str = "https://calendar-mcp.company.com";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A gateway trusting the mock's identity provider as `corp`, with `extra` settings.
async fn spawn(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mock = MockProvider::start().await.unwrap();
    let mut vars = vec![
        ("AUTH_GATEWAY_TRUSTED_ISSUERS".to_owned(), "corp".to_owned()),
        ("IDP_CORP_ISSUER".to_owned(), mock.idp_issuer()),
    ];
    vars.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await
}

/// Adds an API client for the MCP server whose tokens carry `audience`; returns its key.
async fn add_client(app: &TestApp, name: &str, audience: &str, exchange: ClientExchange) -> String {
    let key = format!("{name}-key-0123456789abcdefghijklmnopqrstuvwxyz");
    let mut exchange = exchange;
    if exchange.audiences.is_empty() {
        exchange.audiences = vec![audience.to_owned()];
    }
    let new = NewClient {
        name: name.to_owned(),
        key_digest: gateway::access::clients::hex(&gateway::access::digest(key.as_bytes())),
        actions: vec![Action::Init, Action::Status, Action::Token],
        providers: None,
        domains: None,
        networks: None,
        exchange,
    };
    assert!(app.state.services.add_client(new).await.unwrap());
    key
}

fn now(app: &TestApp) -> i64 {
    app.state.services.now().timestamp()
}

/// The claims of a good access token for `email`, issued for `audience` a minute ago.
fn claims(app: &TestApp, email: &str, audience: &str) -> Value {
    let now = now(app);
    json!({
        "iss": app.mock.idp_issuer(),
        "sub": format!("00u-{email}"),
        "aud": audience,
        "iat": now - 60,
        "exp": now + 3600,
        "email": email,
        "email_verified": true,
        "scp": ["mcp:tools"],
    })
}

/// `POST /oauth/token` as `key` for `provider`: (status, body, headers).
async fn exchange(app: &TestApp, key: &str, token: &str, provider: &str) -> (u16, Value) {
    let form = [
        ("grant_type", GRANT_TYPE),
        ("subject_token", token),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("audience", provider),
    ];
    let response = app.client.post(app.url("/oauth/token")).header("x-api-key", key).form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(response.headers()["cache-control"], "no-store", "token endpoint answers are never cached");
    (status, response.json().await.unwrap())
}

/// An exchange that must be refused as `invalid_grant` for `reason`.
async fn refused(app: &TestApp, key: &str, token: &str, reason: &str) {
    let (status, body) = exchange(app, key, token, "mock").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    assert!(!body.to_string().contains(token), "the answer never echoes the token");
}

/// The email the provider's API says `token` belongs to.
async fn owner_of(app: &TestApp, token: &str) -> String {
    let me: Value = app.client.get(app.mock.api_url()).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    me["email"].as_str().unwrap_or_default().to_owned()
}

async fn a_verified_user_gets_their_own_token(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    app.authorize("mock", "bob@company.com").await;

    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    let (status, body) = exchange(&app, &key, &token, "mock").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    assert!(body["scope"].as_str().unwrap().split(' ').any(|s| s == "mail.read"), "{body}");
    let provider_token = body["access_token"].as_str().unwrap();
    assert_eq!(owner_of(&app, provider_token).await, ALICE, "the provider says the token is Alice's");

    // Every exchange is audited with issuer, subject, client and audience.
    app.state.services.audit().flush().await;
    let records = app
        .state
        .services
        .read_audit(&gateway::core::access::audit::AuditFilter {
            user_email: Some(ALICE.into()),
            client: Some("mail-mcp".into()),
            since: None,
            until: None,
            limit: 10,
            allowed_providers: None,
            allowed_domains: None,
        })
        .await
        .unwrap();
    let record = records.iter().find(|r| r.action == "exchange").expect("the exchange is audited");
    let detail = record.detail.as_deref().unwrap();
    for part in
        [&format!("iss={}", app.mock.idp_issuer()), &format!("sub=00u-{ALICE}"), &format!("aud={MAIL_AUDIENCE}")]
    {
        assert!(detail.contains(part.as_str()), "{detail} lacks {part}");
    }
    assert_eq!(record.provider.as_deref(), Some("mock"));
    assert!(!detail.contains(&token) && !detail.contains(provider_token), "no token in the audit log");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_comes_from_the_token_never_from_the_request() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    app.authorize("mock", "bob@company.com").await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    // A caller that also names Bob, every way a request could: Alice's token is still Alice's.
    let form = [
        ("grant_type", GRANT_TYPE),
        ("subject_token", token.as_str()),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("audience", "mock"),
        ("user_email", "bob@company.com"),
        ("login_hint", "bob@company.com"),
    ];
    let response = app.client.post(app.url("/oauth/token")).header("x-api-key", &key).form(&form).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(owner_of(&app, body["access_token"].as_str().unwrap()).await, ALICE, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grant_the_answer_is_a_link_bound_to_the_verified_user() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));

    let (status, body) = exchange(&app, &key, &token, "mock").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("authorization_required")), "{body}");
    assert_eq!(body["reason"], "not_authenticated");
    let auth_url = body["auth_url"].as_str().expect("a connect link for the verified user");
    let session_id = body["session_id"].as_str().unwrap();

    // Mallory opening Alice's link cannot make her grant Alice's.
    app.mock.set_consent(Consent::ApproveAs("mallory@company.com".into()));
    app.browse(auth_url).await;
    let status: Value = app
        .client
        .get(app.url(&format!("/auth/status/{session_id}")))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["reason"], "account_mismatch", "the link is bound to Alice: {status}");

    // Alice herself completes a new link; then the exchange succeeds.
    app.mock.set_consent(Consent::ApproveAsLoginHint);
    let (_, body) = exchange(&app, &key, &token, "mock").await;
    app.browse(body["auth_url"].as_str().unwrap()).await;
    let (status, body) = exchange(&app, &key, &token, "mock").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(owner_of(&app, body["access_token"].as_str().unwrap()).await, ALICE);

    // A grant lacking a scope the server needs: a link asking for it.
    let form = [
        ("grant_type", GRANT_TYPE),
        ("subject_token", token.as_str()),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
        ("audience", "mock"),
        ("scope", "mail.read mail.send"),
    ];
    let response = app.client.post(app.url("/oauth/token")).header("x-api-key", &key).form(&form).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "scope_insufficient", "{body}");
    assert_eq!(body["missing_scopes"], json!(["mail.send"]));
    // That consent asks for what Alice granted before as well: it takes nothing away.
    app.browse(body["auth_url"].as_str().unwrap()).await;
    let asked = app.mock.last_authorize_query().unwrap();
    let scope = &asked.iter().find(|(k, _)| k == "scope").unwrap().1;
    for wanted in ["openid", "email", "mail.read", "mail.send"] {
        assert!(scope.split(' ').any(|s| s == wanted), "{wanted} not asked for: {scope}");
    }
    let response = app.client.post(app.url("/oauth/token")).header("x-api-key", &key).form(&form).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["scope"].as_str().map(|s| s.contains("mail.read") && s.contains("mail.send")),
        Some(true),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_verified_before_is_checked_again_for_audience_and_time() {
    let app = spawn(Backend::Sqlite, &[("IDP_CORP_CLOCK_SKEW_SECONDS", "0")]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    assert_eq!(exchange(&app, &key, &token, "mock").await.0, 200);
    assert_eq!(exchange(&app, &key, &token, "mock").await.0, 200, "a repeat is served");
    // The operator moves the client to another audience: the remembered token no longer counts.
    let update = gateway::access::ExchangeUpdate { audiences: Some(vec![CAL_AUDIENCE.into()]), ..Default::default() };
    assert!(app.state.services.update_client_exchange("mail-mcp", update).await.unwrap());
    refused(&app, &key, &token, "wrong_audience").await;
    // A token that expires within the second is refused once it has.
    let update = gateway::access::ExchangeUpdate { audiences: Some(vec![MAIL_AUDIENCE.into()]), ..Default::default() };
    assert!(app.state.services.update_client_exchange("mail-mcp", update).await.unwrap());
    let mut short = claims(&app, ALICE, MAIL_AUDIENCE);
    short["exp"] = json!(now(&app) + 2);
    let short = app.mock.mint_idp_token(&short);
    assert_eq!(exchange(&app, &key, &short, "mock").await.0, 200);
    let expired = crate::helpers::eventually(Duration::from_secs(5), || async {
        exchange(&app, &key, &short, "mock").await.1["reason"] == "expired"
    })
    .await;
    assert!(expired, "a remembered token is refused once it expires");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_an_untrusted_issuer_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["iss"] = json!("https://evil.example.com");
    refused(&app, &key, &app.mock.mint_idp_token(&c), "untrusted_issuer").await;
    c["iss"] = json!(format!("{}/", app.mock.idp_issuer()));
    refused(&app, &key, &app.mock.mint_idp_token(&c), "untrusted_issuer").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    for aud in [json!("https://somewhere-else.example"), json!([]), json!(null), json!(["x", "y"])] {
        let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
        c["aud"] = aud;
        refused(&app, &key, &app.mock.mint_idp_token(&c), "wrong_audience").await;
    }
    // One of several audiences is enough.
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["aud"] = json!(["https://other.example", MAIL_AUDIENCE]);
    assert_eq!(exchange(&app, &key, &app.mock.mint_idp_token(&c), "mock").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_cannot_replay_another_servers_user_token() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let mail = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    let calendar = add_client(&app, "calendar-mcp", CAL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let for_calendar = app.mock.mint_idp_token(&claims(&app, ALICE, CAL_AUDIENCE));
    refused(&app, &mail, &for_calendar, "wrong_audience").await;
    assert_eq!(exchange(&app, &calendar, &for_calendar, "mock").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_an_audience_cannot_exchange() {
    let app = spawn(Backend::Sqlite, &[]).await;
    app.authorize("mock", ALICE).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    let (status, body) = exchange(&app, API_KEY, &token, "mock").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("unauthorized_client")), "{body}");
    assert_eq!(body["reason"], "no_audience_registered");
    assert!(body["error_description"].as_str().unwrap().contains("--audience"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outside_its_rights_is_refused_with_the_reason() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let exchange_only =
        |name: &str, actions: Vec<Action>, providers: Option<Vec<String>>, domains: Option<Vec<String>>| {
            let key = format!("{name}-key-0123456789abcdefghijklmnopqrstuvwxyz");
            let new = NewClient {
                name: name.to_owned(),
                key_digest: gateway::access::clients::hex(&gateway::access::digest(key.as_bytes())),
                actions,
                providers,
                domains,
                networks: None,
                exchange: ClientExchange { audiences: vec![MAIL_AUDIENCE.into()], ..ClientExchange::default() },
            };
            (key, new)
        };
    app.authorize("mock", ALICE).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    let cases = [
        (
            exchange_only("no-token-right", vec![Action::Status], None, None),
            "unauthorized_client",
            "action_not_allowed",
        ),
        (
            exchange_only("google-only", vec![Action::Token], Some(vec!["google".into()]), None),
            "invalid_target",
            "provider_not_allowed",
        ),
        (
            exchange_only("other-domain", vec![Action::Token], None, Some(vec!["other.org".into()])),
            "unauthorized_client",
            "domain_not_allowed",
        ),
    ];
    for ((key, new), error, reason) in cases {
        assert!(app.state.services.add_client(new).await.unwrap());
        let (status, body) = exchange(&app, &key, &token, "mock").await;
        assert_eq!(
            (status, body["error"].as_str(), body["reason"].as_str()),
            (400, Some(error), Some(reason)),
            "{body}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let app = spawn(Backend::Sqlite, &[("IDP_CORP_CLOCK_SKEW_SECONDS", "30")]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["exp"] = json!(now(&app) - 31);
    refused(&app, &key, &app.mock.mint_idp_token(&c), "expired").await;
    c.as_object_mut().unwrap().remove("exp");
    refused(&app, &key, &app.mock.mint_idp_token(&c), "missing_claim").await;
    // Within the skew it still counts.
    c["exp"] = json!(now(&app) - 10);
    assert_eq!(exchange(&app, &key, &app.mock.mint_idp_token(&c), "mock").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_valid_is_refused() {
    let app = spawn(Backend::Sqlite, &[("IDP_CORP_CLOCK_SKEW_SECONDS", "30")]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["nbf"] = json!(now(&app) + 120);
    refused(&app, &key, &app.mock.mint_idp_token(&c), "not_yet_valid").await;
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["iat"] = json!(now(&app) + 120);
    refused(&app, &key, &app.mock.mint_idp_token(&c), "not_yet_valid").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_too_long_ago_is_refused() {
    let app =
        spawn(Backend::Sqlite, &[("IDP_CORP_MAX_TOKEN_AGE_SECONDS", "600"), ("IDP_CORP_CLOCK_SKEW_SECONDS", "0")])
            .await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["iat"] = json!(now(&app) - 3600);
    refused(&app, &key, &app.mock.mint_idp_token(&c), "too_old").await;
    c.as_object_mut().unwrap().remove("iat");
    refused(&app, &key, &app.mock.mint_idp_token(&c), "missing_claim").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_token_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let forged = app.mock.forge_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE), Forgery::AlgNone);
    refused(&app, &key, &forged, "algorithm_refused").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_hs256_with_the_public_key_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let forged = app.mock.forge_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE), Forgery::Hs256WithPublicKey);
    refused(&app, &key, &forged, "algorithm_refused").await;
    // Not even an algorithm the key set supports, if the issuer is not configured for it.
    let app_es_only = spawn(Backend::Sqlite, &[("IDP_CORP_ALGORITHMS", "EdDSA")]).await;
    let key2 = add_client(&app_es_only, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    let es256 = app_es_only.mock.mint_idp_token(&claims(&app_es_only, ALICE, MAIL_AUDIENCE));
    refused(&app_es_only, &key2, &es256, "algorithm_refused").await;
    app_es_only.stop().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_tampered_signature_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let good = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    // Bob's claims under Alice's signature.
    let bobs = app.mock.mint_idp_token(&claims(&app, "bob@company.com", MAIL_AUDIENCE));
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = bobs.split('.').nth(1).unwrap();
    refused(&app, &key, &parts.join("."), "bad_signature").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_is_refused_after_one_refetch() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    // Warm the key cache.
    assert_eq!(
        exchange(&app, &key, &app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE)), "mock").await.0,
        200
    );
    let warm = app.mock.counters().jwks_fetches;
    assert_eq!(warm, 1);
    let unpublished = app.mock.forge_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE), Forgery::UnpublishedKey);
    refused(&app, &key, &unpublished, "unknown_key").await;
    assert_eq!(app.mock.counters().jwks_fetches, warm + 1, "exactly one refetch for the unknown kid");
    // A flood of them costs the identity provider nothing more.
    for _ in 0..25 {
        refused(&app, &key, &unpublished, "unknown_key").await;
    }
    assert_eq!(app.mock.counters().jwks_fetches, warm + 1, "refetches are rate-limited");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_and_accepted() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    assert_eq!(
        exchange(&app, &key, &app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE)), "mock").await.0,
        200
    );
    // The IdP rotates to an Ed25519 key and retires the old one.
    app.mock.rotate_idp_key(Some(Alg::EdDsa), true);
    let (status, body) =
        exchange(&app, &key, &app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE)), "mock").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.mock.counters().jwks_fetches, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_email_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    for verified in [json!(false), json!("yes"), json!(1), json!(null)] {
        let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
        c["email_verified"] = verified;
        refused(&app, &key, &app.mock.mint_idp_token(&c), "unverified_email").await;
    }
    let mut c = claims(&app, ALICE, MAIL_AUDIENCE);
    c["email"] = json!("not an address");
    refused(&app, &key, &app.mock.mint_idp_token(&c), "invalid_email").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_without_email_verified_may_name_the_claim_to_trust() {
    // Entra ID: no email_verified; the tenant-controlled upn is the address.
    let app =
        spawn(Backend::Sqlite, &[("IDP_CORP_EMAIL_CLAIM", "upn"), ("IDP_CORP_REQUIRE_VERIFIED_EMAIL", "false")]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let mut c = claims(&app, "someone-else@company.com", MAIL_AUDIENCE);
    c["upn"] = json!(ALICE);
    c.as_object_mut().unwrap().remove("email_verified");
    let (status, body) = exchange(&app, &key, &app.mock.mint_idp_token(&c), "mock").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(owner_of(&app, body["access_token"].as_str().unwrap()).await, ALICE);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bound_to_exchange_may_not_name_users() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let strict = ClientExchange { require_exchange: true, ..ClientExchange::default() };
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, strict).await;
    app.authorize("mock", ALICE).await;
    let named = app
        .client
        .post(app.url("/auth/token"))
        .header("x-api-key", &key)
        .json(&json!({"provider": "mock", "user_email": ALICE}))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 403);
    let body: Value = named.json().await.unwrap();
    assert_eq!(body["error"], "exchange_required", "{body}");
    assert!(body["message"].as_str().unwrap().contains("/oauth/token"));
    // Nor may it start a sign-in for, or list the grants of, a user it names.
    let sessions = app.count("oauth_sessions").await;
    let init = app
        .client
        .post(app.url("/auth/init"))
        .header("x-api-key", &key)
        .json(&json!({"provider": "mock", "user_email": "bob@company.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 403);
    assert_eq!(init.json::<Value>().await.unwrap()["error"], "exchange_required");
    let listed =
        app.client.get(app.url(&format!("/auth/providers/{ALICE}"))).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(listed.status(), 403);
    assert_eq!(app.count("oauth_sessions").await, sessions, "no session started");
    // The same client with a proof of the user is served.
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    assert_eq!(exchange(&app, &key, &token, "mock").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_unreachable_identity_provider_gives_a_clean_503() {
    let app = spawn(Backend::Sqlite, &[("IDP_CORP_JWKS_REFETCH_SECONDS", "0")]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    for fault in [Fault::ServerError, Fault::Status(404), Fault::DropConnection] {
        app.mock.inject(Endpoint::Jwks, fault.clone(), 1);
        let (status, body) = exchange(&app, &key, &token, "mock").await;
        assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")), "{fault:?}: {body}");
        assert!(body["retry_after"].as_u64().is_some(), "{body}");
    }
    let health: Value = app.get_health().await.json().await.unwrap();
    assert_eq!(health["issuers"][0]["last_fetch_failed"], true, "{health}");
    // Once it answers again, so does the gateway.
    let (status, body) = exchange(&app, &key, &token, "mock").await;
    assert_eq!(status, 200, "{body}");
    let health: Value = app.get_health().await.json().await.unwrap();
    assert_eq!(health["issuers"][0]["keys"], 1, "{health}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_exchanges_fetch_the_keys_once() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    app.authorize("mock", ALICE).await;
    // A slow IdP makes every request arrive while the first fetch is in flight.
    app.mock.inject(Endpoint::Jwks, Fault::Slow(Duration::from_millis(300)), 1);
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    let answers = futures::future::join_all((0..20).map(|_| exchange(&app, &key, &token, "mock"))).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert_eq!(app.mock.counters().jwks_fetches, 1, "one fetch served twenty cold requests");
    app.stop().await;
}

// ---- worker assertions ------------------------------------------------------

/// A client whose workers sign with `worker`.
async fn add_worker_client(app: &TestApp, name: &str, worker: &SigningKey) -> String {
    let exchange = ClientExchange {
        audiences: vec![MAIL_AUDIENCE.to_owned()],
        require_exchange: true,
        assertion_key: Some(worker.public_jwk().to_string()),
    };
    add_client(app, name, MAIL_AUDIENCE, exchange).await
}

/// A worker assertion of `client` for `email`, issued `age` seconds ago, living `life` seconds.
fn assertion(app: &TestApp, worker: &SigningKey, client: &str, email: &str, age: i64, life: i64) -> String {
    let iat = now(app) - age;
    worker.sign(&json!({
        "iss": client,
        "sub": email,
        "aud": app.address,
        "iat": iat,
        "exp": iat + life,
        "jti": uuid::Uuid::new_v4().to_string(),
        "audit_context": "nightly inbox digest",
    }))
}

async fn a_worker_assertion_is_accepted_once(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let worker = SigningKey::generate(Alg::EdDsa);
    let key = add_worker_client(&app, "digest-worker", &worker).await;
    app.authorize("mock", ALICE).await;
    let signed = assertion(&app, &worker, "digest-worker", ALICE, 0, 30);
    let (status, body) = exchange(&app, &key, &signed, "mock").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(owner_of(&app, body["access_token"].as_str().unwrap()).await, ALICE);
    refused(&app, &key, &signed, "replayed").await;

    // Replayed concurrently, it is accepted exactly once.
    let signed = assertion(&app, &worker, "digest-worker", ALICE, 0, 30);
    let answers = futures::future::join_all((0..8).map(|_| exchange(&app, &key, &signed, "mock"))).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(accepted, 1, "{answers:?}");
    assert!(answers.iter().filter(|(s, _)| *s != 200).all(|(_, b)| b["reason"] == "replayed"), "{answers:?}");

    // Spent ids are kept while the assertions could still be presented, and forgotten after.
    assert_eq!(app.count("used_assertions").await, 2);
    let report = app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!((report.assertions, app.count("used_assertions").await), (0, 2));
    let later = app.clock.now() + chrono::TimeDelta::seconds(120);
    assert_eq!(app.state.workers.sweep_once(later).await.unwrap().assertions, 2);
    assert_eq!(app.count("used_assertions").await, 0);

    // The audit log records why the job needed the token.
    app.state.services.audit().flush().await;
    let filter = gateway::core::access::audit::AuditFilter {
        user_email: Some(ALICE.into()),
        client: Some("digest-worker".into()),
        since: None,
        until: None,
        limit: 50,
        allowed_providers: None,
        allowed_domains: None,
    };
    let records = app.state.services.read_audit(&filter).await.unwrap();
    assert!(
        records.iter().any(|r| r.detail.as_deref().is_some_and(
            |d| d.contains("via=worker_assertion") && d.contains("audit_context=\"nightly inbox digest\"")
        )),
        "{records:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_assertion_older_than_60_seconds_is_refused() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let worker = SigningKey::generate(Alg::Es256);
    let key = add_worker_client(&app, "digest-worker", &worker).await;
    app.authorize("mock", ALICE).await;
    refused(&app, &key, &assertion(&app, &worker, "digest-worker", ALICE, 70, 60), "assertion_too_old").await;
    refused(&app, &key, &assertion(&app, &worker, "digest-worker", ALICE, 0, 120), "assertion_lifetime").await;
    assert_eq!(exchange(&app, &key, &assertion(&app, &worker, "digest-worker", ALICE, 30, 60), "mock").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_assertion_must_be_signed_by_its_own_key_and_say_why() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let worker = SigningKey::generate(Alg::Es256);
    let key = add_worker_client(&app, "digest-worker", &worker).await;
    let other_worker = SigningKey::generate(Alg::Es256);
    let _other = add_worker_client(&app, "other-worker", &other_worker).await;
    app.authorize("mock", ALICE).await;
    // Signed by another client's worker key, in this client's name.
    refused(&app, &key, &assertion(&app, &other_worker, "digest-worker", ALICE, 0, 30), "bad_signature").await;
    // In another client's name: not this client's to make.
    refused(&app, &key, &assertion(&app, &other_worker, "other-worker", ALICE, 0, 30), "untrusted_issuer").await;
    // Without an audit context, or for another audience.
    let iat = now(&app);
    let base = json!({"iss": "digest-worker", "sub": ALICE, "aud": app.address, "iat": iat, "exp": iat + 30});
    let mut no_context = base.clone();
    no_context["jti"] = json!("j-1");
    refused(&app, &key, &worker.sign(&no_context), "missing_claim").await;
    let mut elsewhere = base;
    elsewhere["jti"] = json!("j-2");
    elsewhere["audit_context"] = json!("report");
    elsewhere["aud"] = json!("https://another-gateway.example");
    refused(&app, &key, &worker.sign(&elsewhere), "wrong_audience").await;
    // Dated in the future; or a jti or audit context past their limits (255 and 500 bytes).
    let signed = |extra: Value| {
        let iat = now(&app);
        let mut claims = json!({"iss": "digest-worker", "sub": ALICE, "aud": app.address, "iat": iat, "exp": iat + 30,
                                "jti": uuid::Uuid::new_v4().to_string(), "audit_context": "report"});
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        worker.sign(&claims)
    };
    let iat = now(&app) + 30;
    refused(&app, &key, &signed(json!({"iat": iat, "exp": iat + 30})), "not_yet_valid").await;
    refused(&app, &key, &signed(json!({"jti": "j".repeat(256)})), "malformed").await;
    refused(&app, &key, &signed(json!({"audit_context": "c".repeat(501)})), "malformed").await;
    assert_eq!(exchange(&app, &key, &signed(json!({"jti": "j".repeat(255)})), "mock").await.0, 200);
    assert_eq!(exchange(&app, &key, &signed(json!({"audit_context": "c".repeat(500)})), "mock").await.0, 200);
    app.stop().await;
}

// ---- the crowd ----------------------------------------------------------------

async fn a_crowd_of_users_each_gets_their_own_token(backend: Backend) {
    let app = spawn(backend, &[]).await;
    let mail = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    let calendar = add_client(&app, "calendar-mcp", CAL_AUDIENCE, ClientExchange::default()).await;
    let users: Vec<String> = (0..12).map(|i| format!("user{i}@company.com")).collect();
    futures::future::join_all(users.iter().map(|u| app.authorize("mock", u))).await;
    // Who holds which token, as the bootstrap client reads it.
    let mut expected = std::collections::HashMap::new();
    for u in &users {
        expected.insert(app.token_ok("mock", u).await["access_token"].as_str().unwrap().to_owned(), u.clone());
    }
    let requests: Vec<(String, &str, String)> = (0..120)
        .map(|i| {
            let user = users[i % users.len()].clone();
            let (key, aud) =
                if i % 2 == 0 { (mail.as_str(), MAIL_AUDIENCE) } else { (calendar.as_str(), CAL_AUDIENCE) };
            (user.clone(), key, app.mock.mint_idp_token(&claims(&app, &user, aud)))
        })
        .collect();
    let app = &app;
    let answers = futures::future::join_all(
        requests.iter().map(|(user, key, token)| async move { (user, exchange(app, key, token, "mock").await) }),
    )
    .await;
    for (user, (status, body)) in answers {
        assert_eq!(status, 200, "{user}: {body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(expected.get(token), Some(user), "each exchange answers with its own user's token");
    }
    assert_eq!(app.mock.counters().jwks_fetches, 1);
}

// ---- bad input ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exchange_requests_get_their_oauth_code_and_change_nothing() {
    let app = spawn(Backend::Sqlite, &[]).await;
    let key = add_client(&app, "mail-mcp", MAIL_AUDIENCE, ClientExchange::default()).await;
    let token = app.mock.mint_idp_token(&claims(&app, ALICE, MAIL_AUDIENCE));
    let good = vec![
        ("grant_type", GRANT_TYPE.to_owned()),
        ("subject_token", token.clone()),
        ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
        ("audience", "mock".to_owned()),
    ];
    let without = |name: &str| good.iter().filter(|(k, _)| *k != name).cloned().collect::<Vec<_>>();
    let with = |name: &'static str, value: &str| {
        let mut form = without(name);
        form.push((name, value.to_owned()));
        form
    };
    let mut twice = good.clone();
    twice.push(("audience", "google".to_owned()));
    // Every error body carries what the published schema says it must.
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let required: Vec<String> =
        serde_json::from_value(doc["components"]["schemas"]["OAuthErrorBody"]["required"].clone()).unwrap();
    assert!(required.iter().any(|f| f == "error"), "{required:?}");
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (without("grant_type"), 400, "invalid_request"),
        (with("grant_type", "client_credentials"), 400, "unsupported_grant_type"),
        (without("subject_token"), 400, "invalid_request"),
        (without("subject_token_type"), 400, "invalid_request"),
        (with("subject_token_type", "urn:ietf:params:oauth:token-type:saml2"), 400, "invalid_request"),
        (with("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, "invalid_request"),
        (with("actor_token", "x"), 400, "invalid_request"),
        (without("audience"), 400, "invalid_request"),
        (with("audience", "nope"), 400, "invalid_target"),
        (with("audience", "../../etc"), 400, "invalid_target"),
        (with("scope", &"s ".repeat(200)), 400, "invalid_request"),
        (with("subject_token", "not-a-jwt"), 400, "invalid_grant"),
        (with("subject_token", &"a".repeat(13_000)), 400, "invalid_grant"),
        (with("subject_token", &"a".repeat(20_000)), 413, "invalid_request"),
        (twice, 400, "invalid_request"),
    ];
    for (form, status, code) in cases {
        let response =
            app.client.post(app.url("/oauth/token")).header("x-api-key", &key).form(&form).send().await.unwrap();
        let names: Vec<&str> = form.iter().map(|(k, _)| *k).collect();
        assert_eq!(response.status(), status, "{names:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{names:?}: {body}");
        assert!(body["error_description"].is_string() && body["message"].is_string(), "{body}");
        for field in &required {
            assert!(body.get(field).is_some(), "{names:?}: `{field}` is required by /openapi.json: {body}");
        }
    }
    // JSON is not this endpoint's format.
    let json_body = app
        .client
        .post(app.url("/oauth/token"))
        .header("x-api-key", &key)
        .json(&json!({"grant_type": GRANT_TYPE}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    // No key, or a wrong one: invalid_client, 401, with a challenge.
    for key in [None, Some("wrong-key")] {
        let mut request = app.client.post(app.url("/oauth/token")).form(&good);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{key:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
    assert_eq!(app.count("oauth_sessions").await, 0, "no refused request started a flow");
    assert_eq!(app.count("used_assertions").await, 0);
    app.stop().await;
}
