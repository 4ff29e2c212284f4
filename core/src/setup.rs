//! Getting ready to serve, the steps every entry point shares (the server's
//! start-up and the command line): resolve secrets (generating development
//! ones), derive keys, connect (patiently), migrate, and check that the
//! configured keys can read what is stored. Each step refuses to go on with
//! the fix in its error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::{ConfigErrors, Environment, Settings, vars};
use crate::crypto::{self, CryptoError, Key, KeyError, Keyring};
use crate::store::keys::{Canary, CanaryError};
use crate::store::{Store, StoreError};

/// How long start-up keeps retrying an unreachable database.
const DB_CONNECT_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("{variable}: {source}. Fix: set it to a key from `gateway keys generate`.")]
    Key { variable: String, source: KeyError },
    #[error("the encryption keys are misconfigured: {0}")]
    Crypto(#[from] CryptoError),
    #[error("could not write the development secret {path}: {source}")]
    DevSecret { path: PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the configured encryption keys cannot read this database: the key canary was sealed by key id \
         {stored_key_id}, which matches no configured key. Fix: configure that key again \
         (AUTH_GATEWAY_ENCRYPTION_KEY or AUTH_GATEWAY_ROTATION_KEYS); if it is lost, stored tokens cannot be recovered"
    )]
    CanaryUnreadable { stored_key_id: String },
    #[error("{}", missing_keys_message(.0))]
    MissingKeys(BTreeMap<String, u64>),
    #[error("the key derivation task failed")]
    KeyDerivation(#[source] tokio::task::JoinError),
}

fn missing_keys_message(missing: &BTreeMap<String, u64>) -> String {
    let total: u64 = missing.values().sum();
    let list: Vec<String> = missing.iter().map(|(id, n)| format!("{id} ({n} values)")).collect();
    format!(
        "{total} stored values are sealed under key ids that no configured key matches: {}. \
         Fix: put the removed key back in AUTH_GATEWAY_ROTATION_KEYS, run `gateway reencrypt`, \
         and remove it only once `gateway keys status` shows 0 values under it",
        list.join(", ")
    )
}

impl From<CanaryError> for SetupError {
    fn from(err: CanaryError) -> Self {
        match err {
            CanaryError::Unreadable { stored_key_id } => Self::CanaryUnreadable { stored_key_id },
            CanaryError::Store(e) => Self::Store(e),
        }
    }
}

/// Builds the keyring, generating a development key file when none is set.
pub async fn keyring(settings: &Settings) -> Result<Keyring, SetupError> {
    let primary = match &settings.keys.primary {
        Some(key) => key.clone(),
        None => dev_secret(settings, "encryption.key", vars::ENCRYPTION_KEY, crypto::key::generate_fernet_key)?,
    };
    let keys = settings.keys.clone();
    // PBKDF2 with 600 000 iterations is deliberately slow: keep it off the runtime's threads.
    let derived = tokio::task::spawn_blocking(move || {
        let salt = keys.salt.as_ref();
        let primary = Key::parse(&primary, salt)
            .map_err(|source| SetupError::Key { variable: vars::ENCRYPTION_KEY.to_owned(), source })?;
        let rotation = keys
            .rotation
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Key::parse(k, salt).map_err(|source| SetupError::Key {
                    variable: format!("{} (entry {})", vars::ROTATION_KEYS, i + 1),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, SetupError>(Keyring::new(primary, rotation)?)
    })
    .await
    .map_err(SetupError::KeyDerivation)??;
    Ok(derived)
}

/// The primary key as configured, or the development key file when the
/// variable is not set (never generated here). `None`: neither exists yet.
pub fn current_primary(settings: &Settings) -> Result<Option<SecretString>, SetupError> {
    if let Some(key) = &settings.keys.primary {
        return Ok(Some(key.clone()));
    }
    let path = settings.data_dir.join("encryption.key");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(SecretString::from(text.trim().to_owned()))),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SetupError::DevSecret { path, source }),
    }
}

/// The API key's SHA-256 digest; the key itself is dropped here.
pub fn api_key_digest(settings: &Settings) -> Result<[u8; 32], SetupError> {
    let key = match &settings.api_key {
        Some(key) => key.clone(),
        None => dev_secret(settings, "api-key", vars::API_KEY, crypto::key::generate_api_key)?,
    };
    Ok(crate::access::digest(key.expose_secret().as_bytes()))
}

/// Reads `<data_dir>/<file>`, creating it (mode 0600) with `generate()` on
/// first use. Development only: configuration refuses to get here otherwise.
fn dev_secret(
    settings: &Settings,
    file: &str,
    variable: &str,
    generate: fn() -> SecretString,
) -> Result<SecretString, SetupError> {
    debug_assert_eq!(settings.environment, Environment::Development);
    let path = settings.data_dir.join(file);
    let wrap = |source| SetupError::DevSecret { path: path.clone(), source };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let trimmed = existing.trim();
        if !trimmed.is_empty() {
            tracing::warn!(path = %path.display(), "{variable} is not set: using the development secret in this file");
            return Ok(SecretString::from(trimmed.to_owned()));
        }
    }
    std::fs::create_dir_all(&settings.data_dir).map_err(wrap)?;
    let secret = generate();
    write_private(&path, secret.expose_secret()).map_err(wrap)?;
    tracing::warn!(
        path = %path.display(),
        "{variable} is not set: GENERATED a development secret into this file (mode 0600). \
         Keep it: what it protects is unreadable without it. Set {variable} in production."
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Connects, retrying an unreachable database for a while (a database
/// container may start after the gateway).
pub async fn connect(settings: &Settings) -> Result<Store, SetupError> {
    let deadline = tokio::time::Instant::now() + DB_CONNECT_PATIENCE;
    let mut wait = Duration::from_millis(250);
    loop {
        match Store::connect(&settings.database).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(err)) if tokio::time::Instant::now() + wait < deadline => {
                tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "database unreachable, retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(4));
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// Refuses to go on when stored values need a key that is not configured.
pub async fn check_keys(store: &Store, keyring: &Keyring, clock: &Clock) -> Result<(), SetupError> {
    // Key ids first: they say how many values each missing key seals.
    let missing = store.key_usage().await?.unknown_to(keyring);
    if !missing.is_empty() {
        return Err(SetupError::MissingKeys(missing));
    }
    // Then the canary: a configured key id whose key cannot open it means the
    // key material changed under the same id (or the row was tampered with).
    match store.check_canary(keyring, clock.now()).await? {
        Canary::Created => tracing::info!(primary_key_id = %keyring.primary_id(), "key canary written"),
        Canary::Readable { key_id } => tracing::debug!(%key_id, "key canary readable"),
    }
    Ok(())
}
