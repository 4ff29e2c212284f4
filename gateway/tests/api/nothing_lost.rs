//! Nothing a user consented to is lost: tokens a provider has issued survive
//! a database failing in the middle; a write meant for a deleted grant never
//! lands on its successor; a flow being completed is never expired under it;
//! a broken client configuration is not blamed on the users; and what a
//! provider sends is bounded before it is believed.

use std::time::Duration;

use mock_provider::{Endpoint, Fault, MockProvider};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::Value;

use crate::helpers::{
    Backend, TestApp, TestDb, eventually, fernet_key, more_providers, spawn_app, spawn_app_with_vars,
};
use crate::on_both_backends;

on_both_backends!(
    a_database_outage_after_the_code_exchange_loses_no_consent,
    a_consent_the_database_cannot_take_says_so_and_fails_with_storage_error,
    refreshed_tokens_the_database_refuses_are_kept_and_written_later,
    a_refresh_of_a_deleted_grant_never_writes_into_its_successor,
    a_refresh_failure_of_a_deleted_grant_never_marks_its_successor,
    a_callback_slower_than_the_session_still_completes,
    a_link_opened_just_before_expiry_can_still_be_completed,
    a_refused_client_keeps_grants_active_and_recovers_by_itself,
    oversized_provider_answers_are_refused,
    a_token_claiming_to_live_for_centuries_is_clamped,
    a_minute_of_ten_thousand_users_is_audited_whole,
);

const ALICE: &str = "alice@company.com";

async fn sql(conn: &DatabaseConnection, statement: &str) {
    conn.execute_unprepared(statement).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn scalar_i64(app: &TestApp, query: &str) -> i64 {
    let conn = app.db.connect().await;
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), query.to_owned()))
        .await
        .unwrap()
        .unwrap();
    let value: i64 = row.try_get_by_index(0).unwrap();
    conn.close().await.unwrap();
    value
}

async fn credential_state(app: &TestApp, email: &str, provider: &str) -> Option<String> {
    let listed: Value =
        app.api(reqwest::Method::GET, &format!("/auth/providers/{email}"), None).await.json().await.unwrap();
    listed["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == provider)
        .map(|p| p["state"].as_str().unwrap().to_owned())
}

/// Follows the connect link to the provider and back, stopping before the
/// callback: returns the callback URL (it carries code and state).
async fn consent_until_callback(app: &TestApp, auth_url: &str) -> String {
    let to_provider = app.continue_connect(auth_url).await;
    assert_eq!(to_provider.status(), 302);
    let authorize = to_provider.headers()["location"].to_str().unwrap().to_owned();
    let back = app.client.get(&authorize).send().await.unwrap();
    assert_eq!(back.status(), 302);
    back.headers()["location"].to_str().unwrap().to_owned()
}

/// Waits until the mock has started serving an injected fault (a `Slow`
/// counts when its wait begins).
async fn fault_in_flight(mock: &MockProvider, served_before: u64) {
    let started = eventually(Duration::from_secs(10), || async { mock.counters().faults_served > served_before }).await;
    assert!(started, "the provider never received the request");
}

async fn a_database_outage_after_the_code_exchange_loses_no_consent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let conn = app.db.connect().await;
    match backend {
        // The first three writes of a credential fail as a PostgreSQL shutting down would (57P03).
        Backend::Postgres => {
            sql(&conn, "CREATE SEQUENCE outage").await;
            sql(
                &conn,
                "CREATE FUNCTION outage() RETURNS trigger AS $$ BEGIN \
                   IF nextval('outage') <= 3 THEN RAISE EXCEPTION 'injected outage' USING ERRCODE = '57P03'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await;
            sql(
                &conn,
                "CREATE TRIGGER outage BEFORE INSERT ON oauth_credentials FOR EACH ROW EXECUTE FUNCTION outage()",
            )
            .await;
        }
        Backend::Sqlite => {}
    }
    // The provider answers the code exchange slowly, so the database can fail
    // after the callback claimed its session and before the tokens are stored.
    app.mock.inject(Endpoint::Token, Fault::Slow(Duration::from_millis(800)), 1);
    let callback = consent_until_callback(&app, &auth_url).await;
    let page = tokio::spawn({
        let client = app.client.clone();
        async move { client.get(callback).send().await.unwrap() }
    });
    fault_in_flight(&app.mock, 0).await;
    if backend == Backend::Sqlite {
        // Another writer holds SQLite's write lock for longer than the busy
        // timeout (5 s): the first attempt to store fails as "locked".
        let holder = sea_orm::sqlx::SqlitePool::connect(&app.db.url).await.unwrap();
        let mut lock = holder.acquire().await.unwrap();
        sea_orm::sqlx::query("BEGIN IMMEDIATE").execute(&mut *lock).await.unwrap();
        tokio::time::sleep(Duration::from_millis(7000)).await;
        sea_orm::sqlx::query("COMMIT").execute(&mut *lock).await.unwrap();
    }
    let page = page.await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    let token = app.token_ok("mock", ALICE).await;
    assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    if backend == Backend::Postgres {
        assert_eq!(
            scalar_i64(&app, "SELECT last_value FROM outage").await,
            4,
            "three failed writes, then one that held"
        );
    }
    app.stop().await;
}

async fn a_consent_the_database_cannot_take_says_so_and_fails_with_storage_error(backend: Backend) {
    let mock = MockProvider::start().await.unwrap();
    let vars = vec![("STORAGE_RETRY_SECONDS".to_owned(), "1".to_owned())];
    let app = spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await;
    let conn = app.db.connect().await;
    match backend {
        Backend::Postgres => {
            sql(
                &conn,
                "CREATE FUNCTION outage() RETURNS trigger AS $$ BEGIN \
                   RAISE EXCEPTION 'injected outage' USING ERRCODE = '57P03'; END $$ LANGUAGE plpgsql",
            )
            .await;
            sql(
                &conn,
                "CREATE TRIGGER outage BEFORE INSERT ON oauth_credentials FOR EACH ROW EXECUTE FUNCTION outage()",
            )
            .await;
        }
        Backend::Sqlite => {
            sql(
                &conn,
                "CREATE TRIGGER outage BEFORE INSERT ON oauth_credentials BEGIN SELECT RAISE(ABORT, 'injected'); END",
            )
            .await;
        }
    }
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 503, "not the user's fault: {}", page.body);
    assert!(page.body.contains("could not be saved"), "{}", page.body);
    let status = app.status_json(&session_id).await;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["reason"], "storage_error", "{status}");
    assert_eq!(app.count("oauth_credentials").await, 0);
    app.stop().await;
}

async fn refreshed_tokens_the_database_refuses_are_kept_and_written_later(backend: Backend) {
    let app = spawn_app(backend).await;
    // Microsoft-like: every refresh answers a new refresh token and kills the old one.
    app.mock.set_rotate_refresh_tokens(true);
    app.authorize("mock", ALICE).await;
    let first = app.token_ok("mock", ALICE).await["access_token"].as_str().unwrap().to_owned();

    // The database refuses any write of new tokens (not the lease).
    let conn = app.db.connect().await;
    match backend {
        Backend::Postgres => {
            sql(
                &conn,
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                   IF NEW.access_token IS DISTINCT FROM OLD.access_token THEN RAISE EXCEPTION 'injected'; END IF; \
                   RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await;
            sql(
                &conn,
                "CREATE TRIGGER refuse BEFORE UPDATE ON oauth_credentials FOR EACH ROW EXECUTE FUNCTION refuse()",
            )
            .await;
        }
        Backend::Sqlite => {
            sql(
                &conn,
                "CREATE TRIGGER refuse BEFORE UPDATE OF access_token ON oauth_credentials \
                 BEGIN SELECT RAISE(ABORT, 'injected'); END",
            )
            .await;
        }
    }
    // Inside the refresh buffer: the next request refreshes at the provider.
    app.clock.advance(Duration::from_secs(3600 - 100));
    let second = app.token_ok("mock", ALICE).await["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "the refreshed token is served although the database refused it");
    assert!(app.mock.access_token_is_valid(&second));
    assert_eq!(scalar_i64(&app, "SELECT version FROM oauth_credentials").await, 1, "nothing written yet");

    // The database works again: the actor writes what it kept.
    match backend {
        Backend::Postgres => sql(&conn, "DROP TRIGGER refuse ON oauth_credentials").await,
        Backend::Sqlite => sql(&conn, "DROP TRIGGER refuse").await,
    }
    let written = eventually(Duration::from_secs(20), || async {
        scalar_i64(&app, "SELECT version FROM oauth_credentials").await == 2
    })
    .await;
    assert!(written, "the kept tokens were never stored");

    // The next refresh uses the rotated refresh token that was kept: the old one is dead.
    app.clock.advance(Duration::from_secs(3600));
    let third = app.token_ok("mock", ALICE).await["access_token"].as_str().unwrap().to_owned();
    assert!(app.mock.access_token_is_valid(&third));
    assert_ne!(third, second);
    assert_eq!(app.mock.refresh_count_for(ALICE), 2);
    assert_eq!(credential_state(&app, ALICE, "mock").await.as_deref(), Some("active"));
    app.stop().await;
}

/// A refresh is in flight at a slow provider while the credential is deleted
/// and authorized again (a new row, also at version 1); `then` runs while the
/// provider holds the refresh.
async fn reauthorize_during_a_slow_refresh(app: &TestApp, then: impl FnOnce()) {
    app.authorize("mock", ALICE).await;
    app.token_ok("mock", ALICE).await;
    let served_before = app.mock.counters().faults_served;
    app.mock.inject(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    app.clock.advance(Duration::from_secs(3600 - 100));
    let refresh = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/auth/token"));
        async move {
            client
                .post(url)
                .header("x-api-key", crate::helpers::API_KEY)
                .json(&serde_json::json!({"provider": "mock", "user_email": ALICE}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    fault_in_flight(&app.mock, served_before).await;
    then();
    let conn = app.db.connect().await;
    sql(&conn, "DELETE FROM oauth_credentials").await;
    app.authorize("mock", ALICE).await;
    let version = scalar_i64(app, "SELECT version FROM oauth_credentials").await;
    assert_eq!(version, 1, "a re-authorized credential starts again at version 1");
    refresh.await.unwrap();
}

async fn a_refresh_of_a_deleted_grant_never_writes_into_its_successor(backend: Backend) {
    let app = spawn_app(backend).await;
    reauthorize_during_a_slow_refresh(&app, || {}).await;
    let row = scalar_i64(&app, "SELECT version FROM oauth_credentials").await;
    assert_eq!(row, 1, "the stale refresh wrote into the re-authorized credential");
    assert_eq!(scalar_i64(&app, "SELECT COUNT(*) FROM oauth_credentials").await, 1);
    // What is served now is the successor's token, valid at the provider.
    let token = app.token_ok("mock", ALICE).await;
    assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    app.stop().await;
}

async fn a_refresh_failure_of_a_deleted_grant_never_marks_its_successor(backend: Backend) {
    let app = spawn_app(backend).await;
    // The old grant dies at the provider while its refresh is in flight.
    let mock = app.mock.clone();
    reauthorize_during_a_slow_refresh(&app, move || mock.invalidate_refresh_tokens_for(ALICE)).await;
    assert_eq!(credential_state(&app, ALICE, "mock").await.as_deref(), Some("active"));
    assert_eq!(scalar_i64(&app, "SELECT version FROM oauth_credentials").await, 1);
    app.token_ok("mock", ALICE).await;
    app.stop().await;
}

async fn a_callback_slower_than_the_session_still_completes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let callback = consent_until_callback(&app, &auth_url).await;
    // Ten seconds of the fifteen-minute session left when the provider redirects back.
    app.clock.advance(Duration::from_secs(14 * 60 + 50));
    app.mock.inject(Endpoint::Token, Fault::Slow(Duration::from_millis(1500)), 1);
    let page = tokio::spawn({
        let client = app.client.clone();
        async move { client.get(callback).send().await.unwrap() }
    });
    fault_in_flight(&app.mock, 0).await;
    // The session's original end passes while the code is being exchanged, and the sweep runs.
    app.clock.advance(Duration::from_secs(120));
    app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    assert_eq!(app.status_json(&session_id).await["status"], "pending", "a flow being completed is not expired");
    let page = page.await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    app.token_ok("mock", ALICE).await;
    app.stop().await;
}

async fn a_link_opened_just_before_expiry_can_still_be_completed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    app.clock.advance(Duration::from_secs(14 * 60 + 50));
    let callback = consent_until_callback(&app, &auth_url).await;
    // Three minutes at the provider (sign-in, MFA, consent): past the session's original end.
    app.clock.advance(Duration::from_secs(180));
    app.state.workers.sweep_once(app.clock.now()).await.unwrap();
    let page = app.client.get(callback).send().await.unwrap();
    assert_eq!(page.status(), 200, "{}", page.text().await.unwrap());
    assert_eq!(app.status_json(&session_id).await["status"], "completed");
    app.stop().await;
}

async fn a_refused_client_keeps_grants_active_and_recovers_by_itself(backend: Backend) {
    let provider = match backend {
        Backend::Sqlite => "refused-sqlite",
        Backend::Postgres => "refused-pg",
    };
    let mock = MockProvider::start().await.unwrap();
    let vars = more_providers(&mock, &[provider]);
    let app = spawn_app_with_vars(TestDb::new(backend).await, fernet_key(), mock, vars).await;
    for user in [ALICE, "bob@company.com"] {
        app.authorize(provider, user).await;
    }
    // The client secret was rotated at the provider: every call says invalid_client.
    app.mock.inject(Endpoint::Token, Fault::InvalidClient, 100);
    let served_before = app.mock.counters().faults_served;
    app.clock.advance(Duration::from_secs(3600 + 60));
    let answer = app.token(provider, ALICE, None).await;
    assert_eq!(answer.status(), 503, "an expired token cannot be served, and it is not the user's fault");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "provider_unavailable", "{body}");
    assert_eq!(app.mock.counters().faults_served, served_before + 1, "one call, no retries of a client error");

    // Bob's request does not reach the provider while it is held back.
    assert_eq!(app.token(provider, "bob@company.com", None).await.status(), 503);
    let report = app.state.workers.refresh_once(app.clock.now()).await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(app.mock.counters().faults_served, served_before + 1, "held back: {report:?}");
    for user in [ALICE, "bob@company.com"] {
        assert_eq!(credential_state(&app, user, provider).await.as_deref(), Some("active"), "{user}");
    }
    let health: Value = app.get_health().await.json().await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["providers"][provider]["status"], "failing", "{health}");
    assert_eq!(health["providers"][provider]["category"], "invalid_client");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(crate::helpers::metric_sum(&metrics, "provider_failing", &[("provider", provider)]), 1.0);
    let listed = app.state.services.list_providers().await.unwrap();
    assert!(listed.iter().any(|p| p.id == provider && p.failing.as_ref().is_some_and(|f| f.1 == "invalid_client")));

    // The operator fixes the secret; after the probe pause the next call goes through.
    app.mock.clear_faults();
    app.clock.advance(Duration::from_secs(31));
    let token = app.token_ok(provider, ALICE).await;
    assert!(app.mock.access_token_is_valid(token["access_token"].as_str().unwrap()));
    app.token_ok(provider, "bob@company.com").await;
    let health: Value = app.get_health().await.json().await.unwrap();
    assert!(health.get("providers").is_none(), "{health}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(crate::helpers::metric_sum(&metrics, "provider_failing", &[("provider", provider)]), 0.0);
    let listed = app.state.services.list_providers().await.unwrap();
    assert!(listed.iter().any(|p| p.id == provider && p.failing.is_none()));
    app.stop().await;
}

async fn oversized_provider_answers_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    // A megabyte of padding around real tokens: refused, however valid the tokens.
    app.mock.set_response_padding(1024 * 1024);
    let (auth_url, session_id) = app.init_ok("mock", ALICE).await;
    let page = app.browse(&auth_url).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert_eq!(app.status_json(&session_id).await["status"], "failed");
    assert_eq!(app.count("oauth_credentials").await, 0);
    // An answer of honest size (16 KiB of extras) is fine.
    app.mock.set_response_padding(16 * 1024);
    app.authorize("mock", ALICE).await;
    app.token_ok("mock", ALICE).await;
    assert_eq!(app.get_health().await.status(), 200);
    app.stop().await;
}

async fn a_token_claiming_to_live_for_centuries_is_clamped(backend: Backend) {
    let app = spawn_app(backend).await;
    // 10^13 seconds: about 317 000 years, past the end of chrono's calendar.
    app.mock.set_claimed_expires_in(Some(10_000_000_000_000));
    app.authorize("mock", ALICE).await;
    let expires = |token: &Value| {
        chrono::DateTime::parse_from_rfc3339(token["expires_at"].as_str().unwrap()).unwrap().with_timezone(&chrono::Utc)
    };
    let ninety_days = chrono::TimeDelta::days(90);
    let token = app.token_ok("mock", ALICE).await;
    let lifetime = expires(&token) - app.clock.now();
    assert!(lifetime <= ninety_days && lifetime > ninety_days - chrono::TimeDelta::minutes(5), "{lifetime}");
    // After 90 days the token is refreshed (and clamped again), not trusted forever.
    app.clock.advance(Duration::from_secs(90 * 86_400));
    let refreshed = app.token_ok("mock", ALICE).await;
    assert_ne!(refreshed["access_token"], token["access_token"]);
    let lifetime = expires(&refreshed) - app.clock.now();
    assert!(lifetime <= ninety_days && lifetime > ninety_days - chrono::TimeDelta::minutes(5), "{lifetime}");
    app.stop().await;
}

async fn a_minute_of_ten_thousand_users_is_audited_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = app.clock.now();
    // Ten thousand distinct users read a token in the same minute: one summary record each.
    for i in 0..10_000 {
        app.state.services.audit().token_read("mail-server", &format!("user{i}@company.com"), "mock", "memory", now);
    }
    // And one forbidden request in the same minute: a client without the admin right.
    let key = "reader-key-0123456789abcdefghijklmnopqrstuvwxyz";
    let reader = gateway::access::NewClient {
        name: "reader".to_owned(),
        key_digest: gateway::access::clients::hex(&gateway::access::digest(key.as_bytes())),
        actions: vec![gateway::access::Action::Token],
        providers: None,
        domains: None,
        networks: None,
        exchange: Default::default(),
    };
    assert!(app.state.services.add_client(reader).await.unwrap());
    app.state.services.clients().reload().await.unwrap();
    let forbidden = app.client.get(app.url("/admin/audit")).header("x-api-key", key).send().await.unwrap();
    assert_eq!(forbidden.status(), 403);
    app.state.services.audit().flush().await;
    let summaries = scalar_i64(&app, "SELECT COUNT(*) FROM audit_log WHERE action = 'token'").await;
    assert_eq!(summaries, 10_000, "every user's summary is written");
    assert_eq!(scalar_i64(&app, "SELECT COUNT(*) FROM audit_log WHERE outcome = 'forbidden'").await, 1);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(crate::helpers::metric_sum(&metrics, "audit_dropped_total", &[]), 0.0, "nothing dropped");
    app.stop().await;
}

/// A client trickling its request headers one byte a second is cut off after
/// the header-read timeout, while other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_is_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mock = MockProvider::start().await.unwrap();
    let vars = vec![("HTTP_HEADER_READ_TIMEOUT_SECONDS".to_owned(), "2".to_owned())];
    let app = spawn_app_with_vars(TestDb::new(Backend::Sqlite).await, fernet_key(), mock, vars).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: ".to_vec();
    let trickle = async {
        for byte in request.iter().chain(std::iter::repeat(&b'a')) {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    let others = async {
        for _ in 0..5 {
            assert_eq!(app.get_health().await.status(), 200, "others are served meanwhile");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    // Writing stops once the gateway closes the connection; bound the wait well above the timeout.
    let cut = tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(trickle, others) }).await;
    assert!(cut.is_ok(), "the trickling client was not cut off within 10 s");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection is closed");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "the trickled request was never answered");
    app.stop().await;
}
