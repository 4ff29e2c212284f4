//! Key rotation end to end, as the runbook (docs/runbooks.md) does it: tokens under key
//! A; restart with B primary and A for rotation; tokens still served;
//! re-encrypt; every value under B; restart with B alone; still served. And a
//! dry run that finds what no key can open, leaving it untouched.

use std::time::Duration;

use gateway::clock::Clock;
use gateway::core::setup::SetupError;
use gateway::crypto::Key;
use gateway::startup::StartupError;
use mock_provider::MockProvider;
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDb, eventually, fernet_key, spawn_app_with, try_build};
use crate::on_both_backends;

on_both_backends!(rotating_the_key_loses_no_token, removing_the_old_key_before_reencryption_is_refused);

const USERS: [&str; 3] = ["alice@company.com", "bob@company.com", "carol@company.com"];

fn key_id(key: &str) -> String {
    Key::parse(&SecretString::from(key.to_owned()), None).unwrap().id().to_string()
}

async fn tokens(app: &TestApp) -> Vec<String> {
    let mut out = Vec::new();
    for user in USERS {
        out.push(app.token_ok("mock", user).await["access_token"].as_str().unwrap().to_owned());
    }
    out
}

async fn admin_keys(app: &TestApp) -> Value {
    app.api(reqwest::Method::GET, "/admin/keys", None).await.json().await.unwrap()
}

async fn rotating_the_key_loses_no_token(backend: Backend) {
    let mock = MockProvider::start().await.unwrap();
    let key_a = fernet_key();
    let app = spawn_app_with(TestDb::new(backend).await, key_a.clone(), mock.clone(), &[]).await;
    for user in USERS {
        app.authorize("mock", user).await;
    }
    let before = tokens(&app).await;
    let db = app.stop().await;

    // B primary, A for rotation: reads keep working at once.
    let key_b = fernet_key();
    let app = spawn_app_with(db, key_b.clone(), mock.clone(), &[("AUTH_GATEWAY_ROTATION_KEYS", &key_a)]).await;
    assert_eq!(tokens(&app).await, before);
    let keys = admin_keys(&app).await;
    assert_eq!(keys["primary_key_id"], key_id(&key_b));
    let old = keys["keys"].as_array().unwrap().iter().find(|k| k["key_id"] == key_id(&key_a)).unwrap();
    assert_eq!(old["configured"], true);
    assert_eq!(old["primary"], false);
    assert_eq!(old["by_column"]["oauth_credentials.access_token"], 3);
    assert_eq!(keys["pending_values"], 7, "3 access + 3 refresh tokens + the canary: {keys}");

    let started = app.api(reqwest::Method::POST, "/admin/keys/reencrypt", None).await;
    assert_eq!(started.status(), 202);
    let done = eventually(Duration::from_secs(20), || async {
        let keys = admin_keys(&app).await;
        keys["pending_values"] == 0 && keys["reencryption"]["state"] == "done"
    })
    .await;
    assert!(done, "re-encryption did not finish: {}", admin_keys(&app).await);
    let keys = admin_keys(&app).await;
    assert_eq!(keys["reencryption"]["reencrypted"], 7);
    assert!(keys["reencryption"]["undecryptable"].as_array().unwrap().is_empty());
    assert_eq!(tokens(&app).await, before, "served the same tokens during and after");
    let db = app.stop().await;

    // B alone: start-up finds no value that needs A, and tokens are served.
    let app = spawn_app_with(db, key_b, mock, &[]).await;
    assert_eq!(tokens(&app).await, before);
    app.stop().await;
}

async fn removing_the_old_key_before_reencryption_is_refused(backend: Backend) {
    let mock = MockProvider::start().await.unwrap();
    let key_a = fernet_key();
    let app = spawn_app_with(TestDb::new(backend).await, key_a.clone(), mock.clone(), &[]).await;
    for user in USERS {
        app.authorize("mock", user).await;
    }
    let db = app.stop().await;
    let key_b = fernet_key();
    let app = spawn_app_with(db, key_b.clone(), mock, &[("AUTH_GATEWAY_ROTATION_KEYS", &key_a)]).await;
    let db = app.stop().await;

    let err = try_build(&db, &key_b, &[], Clock::system()).await.err().expect("start-up must refuse");
    let StartupError::Setup(SetupError::MissingKeys(missing)) = &err else { panic!("unexpected: {err}") };
    assert_eq!(missing.get(&key_id(&key_a)), Some(&7));
    assert!(err.to_string().contains("7 stored values"), "{err}");
}

/// `gateway reencrypt --dry-run` reports a value no configured key opens and
/// changes nothing; the real run re-encrypts the rest and leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencrypt_cli_reports_undecryptable_values_and_never_touches_them() {
    let mock = MockProvider::start().await.unwrap();
    let key_a = fernet_key();
    let app = spawn_app_with(TestDb::new(Backend::Sqlite).await, key_a.clone(), mock.clone(), &[]).await;
    app.authorize("mock", "alice@company.com").await;
    app.authorize("mock", "bob@company.com").await;
    let db = app.stop().await;

    // Bob's access token is replaced by garbage that still claims key A.
    let conn = db.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        "UPDATE oauth_credentials SET access_token = 'gAAAAABnot-a-real-token' WHERE profile_id = 'bob@company.com'"
            .to_owned(),
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();

    let key_b = fernet_key();
    let run = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.env_clear()
            .env("DATABASE_URL", &db.url)
            .env("AUTH_GATEWAY_ENCRYPTION_KEY", &key_b)
            .env("AUTH_GATEWAY_ROTATION_KEYS", &key_a)
            .arg("reencrypt");
        if dry {
            cmd.arg("--dry-run");
        }
        cmd.output().unwrap()
    };
    let dry = run(true);
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(!dry.status.success(), "a value that cannot be decrypted fails the run: {out}");
    assert!(out.contains("would re-encrypt") && out.contains("oauth_credentials.access_token row"), "{out}");
    assert!(out.contains("1 values no configured key can decrypt"), "{out}");

    let real = run(false);
    let out = format!("{}{}", String::from_utf8_lossy(&real.stdout), String::from_utf8_lossy(&real.stderr));
    // Alice's two tokens, Bob's refresh token, the canary, three providers' client secrets.
    assert!(out.contains("re-encrypted 7 values"), "{out}");
    let conn = db.connect().await;
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT access_token, access_token_key_id FROM oauth_credentials WHERE profile_id = 'bob@company.com'"
                .to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "access_token").unwrap(), "gAAAAABnot-a-real-token", "left untouched");
    assert_eq!(row.try_get::<String>("", "access_token_key_id").unwrap(), key_id(&key_a));
    conn.close().await.unwrap();
}
