//! Several gateways on one PostgreSQL database (PostgreSQL only: SQLite is
//! the single-process embedded mode). Refresh claims, re-encryption batches,
//! and a re-encryption killed with SIGKILL again and again.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::future::join_all;
use gateway::clock::Clock;
use gateway::config::{Settings, Source};
use gateway::core::admin::Admin;
use gateway::credentials::CredentialKey;
use gateway::crypto::Key;
use gateway::email::Email;
use gateway::seeding::{SeedCredential, seed_credentials, stored_tokens};
use mock_provider::MockProvider;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::{
    Backend, TestApp, TestDb, eventually, fernet_key, postgres_available, provider_vars, spawn_app_with,
};

async fn replicas(n: usize, key: &str, extra: &[(&str, &str)]) -> Vec<TestApp> {
    let db = TestDb::new(Backend::Postgres).await;
    let url = db.url.clone();
    let mock = MockProvider::start().await.unwrap();
    let mut apps = vec![spawn_app_with(db, key.to_owned(), mock.clone(), extra).await];
    for _ in 1..n {
        apps.push(spawn_app_with(TestDb::attach(Backend::Postgres, &url), key.to_owned(), mock.clone(), extra).await);
    }
    apps
}

async fn stop_all(apps: Vec<TestApp>) {
    // The first owns the database: stop it last.
    for app in apps.into_iter().rev() {
        app.stop().await;
    }
}

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@company.com")).collect()
}

async fn authorize_all(app: &TestApp, users: &[String]) {
    for chunk in users.chunks(25) {
        join_all(chunk.iter().map(|u| app.authorize("mock", u))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_refresh_each_credential_exactly_once() {
    if !postgres_available() {
        return;
    }
    let apps = replicas(3, &fernet_key(), &[]).await;
    let users = users(500);
    authorize_all(&apps[0], &users).await;
    for app in &apps {
        app.clock.advance(Duration::from_secs(3300));
    }
    // All three workers run at once, until nothing is left to claim.
    loop {
        let reports = join_all(apps.iter().map(|a| a.state.workers.refresh_once(a.clock.now()))).await;
        let claimed: usize = reports.iter().map(|r| r.as_ref().unwrap().claimed).sum();
        if claimed == 0 {
            break;
        }
    }
    let counts = apps[0].mock.refresh_counts();
    assert_eq!(counts.len(), 500, "every credential was refreshed");
    assert!(counts.values().all(|n| *n == 1), "each exactly once: {:?}", counts.values().filter(|n| **n != 1).count());
    stop_all(apps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_reencrypt_each_value_once() {
    if !postgres_available() {
        return;
    }
    let key_a = fernet_key();
    let apps = replicas(1, &key_a, &[]).await;
    authorize_all(&apps[0], &users(200)).await;
    let db = apps.into_iter().next().unwrap().stop().await;

    let key_b = fernet_key();
    let mock = MockProvider::start().await.unwrap();
    let url = db.url.clone();
    let extra = [
        ("AUTH_GATEWAY_ROTATION_KEYS", key_a.as_str()),
        ("REENCRYPT_BATCH_SIZE", "50"),
        ("REENCRYPT_MAX_ROWS_PER_SECOND", "0"),
    ];
    let first = spawn_app_with(db, key_b.clone(), mock.clone(), &extra).await;
    let second = spawn_app_with(TestDb::attach(Backend::Postgres, &url), key_b, mock, &extra).await;
    let keys: serde_json::Value = first.api(reqwest::Method::GET, "/admin/keys", None).await.json().await.unwrap();
    let pending = keys["pending_values"].as_u64().unwrap();
    assert_eq!(pending, 401, "200 access + 200 refresh tokens + the canary");

    use workers::reencrypt::Run;
    let (a, b) = tokio::join!(first.state.workers.rotation().send(Run), second.state.workers.rotation().send(Run));
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a.reencrypted + b.reencrypted, pending, "every value once: {} + {}", a.reencrypted, b.reencrypted);
    assert_eq!(a.conflicts + b.conflicts, 0);
    let keys: serde_json::Value = first.api(reqwest::Method::GET, "/admin/keys", None).await.json().await.unwrap();
    assert_eq!(keys["pending_values"], 0);
    second.stop().await;
    first.stop().await;
}

/// Re-encryption of 20 000 credentials by a real gateway process, killed
/// with SIGKILL at random moments and restarted each time: at the end every
/// value is under the new key and every token is what was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reencryption_survives_kill_9() {
    if !postgres_available() {
        return;
    }
    const ROWS: usize = 20_000;
    let mock = MockProvider::start().await.unwrap();
    let key_a = fernet_key();
    // A first start creates the schema, the canary and the provider rows.
    let app = spawn_app_with(TestDb::new(Backend::Postgres).await, key_a.clone(), mock.clone(), &[]).await;
    let db = app.stop().await;
    let admin = |keys: Vec<(&'static str, String)>| {
        let mut pairs = vec![("DATABASE_URL", db.url.clone())];
        pairs.extend(keys);
        let settings = Settings::from_source(&Source::from_pairs(pairs)).unwrap();
        async move { Admin::open_unchecked(&settings, Clock::system()).await.unwrap().0 }
    };
    let seed_store = admin(vec![("AUTH_GATEWAY_ENCRYPTION_KEY", key_a.clone())]).await;
    let rows: Vec<SeedCredential> = (0..ROWS)
        .map(|i| SeedCredential {
            key: CredentialKey {
                email: Email::parse(&format!("seed{i}@company.com")).unwrap(),
                provider: "mock".into(),
            },
            access_token: format!("access-{i}"),
            refresh_token: format!("refresh-{i}"),
            expires_at: gateway::clock::Clock::system().now() + chrono::TimeDelta::days(30),
        })
        .collect();
    seed_credentials(&seed_store, &rows, Clock::system().now()).await.unwrap();
    seed_store.close().await;

    let key_b = fernet_key();
    let mut env = provider_vars(&mock);
    env.extend([
        ("DATABASE_URL".to_owned(), db.url.clone()),
        ("AUTH_GATEWAY_ENCRYPTION_KEY".to_owned(), key_b.clone()),
        ("AUTH_GATEWAY_ROTATION_KEYS".to_owned(), key_a.clone()),
        ("AUTH_GATEWAY_API_KEY".to_owned(), crate::helpers::API_KEY.to_owned()),
        ("PORT".to_owned(), "0".to_owned()),
        ("JOB_REENCRYPT_SCHEDULE".to_owned(), "* * * * * *".to_owned()),
        ("REENCRYPT_BATCH_SIZE".to_owned(), "200".to_owned()),
        ("REENCRYPT_MAX_ROWS_PER_SECOND".to_owned(), "0".to_owned()),
        ("LOG_LEVEL".to_owned(), "warn".to_owned()),
    ]);
    let start = || -> Child {
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .envs(env.clone())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Key B alone: what is still under A shows up as pending.
    let store = admin(vec![("AUTH_GATEWAY_ENCRYPTION_KEY", key_b.clone())]).await;
    let key_b_id = Key::parse(&SecretString::from(key_b.clone()), None).unwrap().id().to_string();
    let mut kills = 0;
    for _ in 0..5 {
        let mut child = start();
        let wait = rand::thread_rng().gen_range(800..2_500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let left = old_values(&store, &key_b_id).await;
    assert!(left > 0, "the kills must land while work remains (left {left}); slow the job down if this fails");

    let mut child = start();
    let finished = eventually(Duration::from_secs(180), || async { old_values(&store, &key_b_id).await == 0 }).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(finished, "re-encryption did not finish after {kills} kills");

    // Every token decrypts under B alone and is what was stored.
    for i in (0..ROWS).step_by(97).chain([ROWS - 1]) {
        let key =
            CredentialKey { email: Email::parse(&format!("seed{i}@company.com")).unwrap(), provider: "mock".into() };
        let (access, refresh) = stored_tokens(&store, &key).await.unwrap().unwrap();
        assert_eq!(access.expose_secret(), &format!("access-{i}"));
        assert_eq!(refresh.unwrap().expose_secret(), &format!("refresh-{i}"));
    }
    let report = store.key_report().await.unwrap();
    let sealing: Vec<&str> = report.keys.iter().filter(|k| k.values > 0).map(|k| k.key_id.as_str()).collect();
    assert_eq!(sealing, vec![key_b_id.as_str()], "only the new key seals anything");
    let under_b = report.keys.iter().find(|k| k.key_id == key_b_id).unwrap().values;
    assert_eq!(under_b as usize, 2 * ROWS + 1 + 3, "tokens, the canary, three client secrets");
    store.close().await;
}

/// Values still under keys other than the admin's primary (`primary`).
async fn old_values(store: &Admin, primary: &str) -> u64 {
    let report = store.key_report().await.unwrap();
    assert_eq!(report.primary_key_id, primary);
    report.pending_values
}
