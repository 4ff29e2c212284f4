//! Start-up refuses keys that cannot read the database: the canary written at
//! first start, and every stored row's key id, must match a configured key.

use gateway::clock::Clock;
use gateway::core::setup::SetupError;
use gateway::crypto::{Key, Keyring, Place};
use gateway::startup::StartupError;
use sea_orm::{ConnectionTrait, Statement};
use secrecy::SecretString;

use crate::helpers::{Backend, fernet_key, spawn_app, spawn_app_on, try_build};
use crate::migrations::{insert_provider, sql};
use crate::on_both_backends;

on_both_backends!(
    a_key_that_cannot_read_the_database_is_refused,
    a_canary_the_keys_cannot_open_is_refused,
    rows_under_an_unconfigured_key_are_counted_and_refused,
    the_old_key_as_a_rotation_key_keeps_the_database_readable,
);

fn key_id(key: &str) -> String {
    Key::parse(&SecretString::from(key.to_owned()), None).unwrap().id().to_string()
}

async fn a_key_that_cannot_read_the_database_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key_a = app.key.clone();
    let db = app.stop().await;

    let key_b = fernet_key();
    let err = try_build(&db, &key_b, &[], Clock::system()).await.err().expect("start-up must refuse");
    let StartupError::Setup(SetupError::MissingKeys(missing)) = &err else { panic!("unexpected error: {err}") };
    // The canary and the two providers' client secrets were sealed under A.
    assert_eq!(missing.get(&key_id(&key_a)), Some(&4), "{missing:?}");
    let message = err.to_string();
    assert!(message.contains(&key_id(&key_a)), "{message}");
    assert!(message.contains("AUTH_GATEWAY_ROTATION_KEYS"), "{message}");
    assert!(!message.contains(&key_a) && !message.contains(&key_b), "a key leaked: {message}");
}

/// A configured key id whose key material cannot open the canary (the value
/// was replaced, or the key changed under the same id) is refused too.
async fn a_canary_the_keys_cannot_open_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.key.clone();
    let db = app.stop().await;
    let conn = db.connect().await;
    let other = Keyring::new(Key::parse(&SecretString::from(fernet_key()), None).unwrap(), vec![]).unwrap();
    let forged = other.seal(&Place::new("gateway_metadata", "value", "key_canary"), b"forged");
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        sql(&conn, "UPDATE gateway_metadata SET value = $1 WHERE key = 'key_canary'"),
        [forged.token.into()],
    ))
    .await
    .unwrap();
    conn.close().await.unwrap();
    let err = try_build(&db, &key, &[], Clock::system()).await.err().expect("start-up must refuse");
    assert!(matches!(err, StartupError::Setup(SetupError::CanaryUnreadable { .. })), "{err}");
}

async fn rows_under_an_unconfigured_key_are_counted_and_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = app.key.clone();
    let db = app.stop().await;

    // Two values sealed under a key the operator removed too early.
    let conn = db.connect().await;
    insert_provider(&conn, "legacy").await;
    for email in ["alice@company.com", "bob@company.com"] {
        conn.execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql(&conn, "INSERT INTO oauth_credentials (id, profile_id, provider_id, access_token, access_token_key_id, state, consecutive_failures, version, created_at, updated_at) VALUES ($1, $2, 'legacy', 'sealed', 'deadbeefdeadbeef', 'active', 0, 0, $3, $3)"),
            [uuid::Uuid::new_v4().into(), email.into(), gateway::clock::Clock::system().now().into()],
        ))
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let err = try_build(&db, &key, &[], Clock::system()).await.err().expect("start-up must refuse");
    let StartupError::Setup(SetupError::MissingKeys(missing)) = &err else { panic!("unexpected error: {err}") };
    // The provider row written by the helper is under 'k1', also unconfigured.
    assert_eq!(missing.get("deadbeefdeadbeef"), Some(&2));
    assert_eq!(missing.get("k1"), Some(&1));
    let message = err.to_string();
    assert!(message.contains("3 stored values"), "{message}");
    assert!(message.contains("deadbeefdeadbeef (2 values)"), "{message}");
}

async fn the_old_key_as_a_rotation_key_keeps_the_database_readable(backend: Backend) {
    let app = spawn_app(backend).await;
    let key_a = app.key.clone();
    let db = app.stop().await;

    let key_b = fernet_key();
    let app = spawn_app_on(db, key_b, &[("AUTH_GATEWAY_ROTATION_KEYS", &key_a)]).await;
    assert_eq!(app.get_health().await.status(), 200);
    app.stop().await;
}
