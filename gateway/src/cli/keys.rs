//! `gateway keys generate|status|rotate`.

use anyhow::bail;
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::crypto::Key;
use crate::crypto::key::{generate_api_key, generate_fernet_key};
use crate::startup;

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new key: a Fernet encryption key, or with --api-key an API key.
    Generate {
        #[arg(long)]
        api_key: bool,
    },
    /// Show which key ids seal how many stored values.
    Status,
    /// Print the configuration for a key rotation: a new primary key, and the
    /// current keys moved to AUTH_GATEWAY_ROTATION_KEYS.
    Rotate,
}

pub async fn run(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Generate { api_key } => {
            let key = if api_key { generate_api_key() } else { generate_fernet_key() };
            println!("{}", key.expose_secret());
            Ok(())
        }
        KeysAction::Status => {
            let settings = super::load_with_logs()?;
            let keyring = startup::keyring(&settings).await?;
            let store = startup::connect(&settings).await?;
            let usage = store.key_usage().await?;
            println!("primary key id: {}", keyring.primary_id());
            for id in keyring.key_ids() {
                let role = if id == keyring.primary_id() { "primary " } else { "rotation" };
                println!("  {id}  {role}        {} values", usage.total(id.as_str()));
            }
            for (id, n) in usage.unknown_to(&keyring) {
                println!("  {id}  NOT CONFIGURED  {n} values");
            }
            store.close().await;
            Ok(())
        }
        KeysAction::Rotate => {
            let settings = super::load_with_logs()?;
            let Some(current) = settings.keys.primary.clone() else {
                bail!(
                    "AUTH_GATEWAY_ENCRYPTION_KEY is not set: there is no primary key to rotate (the development key file is rotated by setting the variable)"
                );
            };
            let current_id = startup::keyring(&settings).await?.primary_id().clone();
            let new = generate_fernet_key();
            let new_id = Key::parse(&new, None)?.id().clone();
            let mut rotation = vec![current.expose_secret().to_owned()];
            rotation.extend(settings.keys.rotation.iter().map(|k| k.expose_secret().to_owned()));
            println!(
                "# Key rotation: new primary key id {new_id}; the current primary ({current_id}) becomes a rotation key."
            );
            println!("# 1. Restart every replica with these two lines (reads keep working at once).");
            println!("AUTH_GATEWAY_ENCRYPTION_KEY={}", new.expose_secret());
            println!("AUTH_GATEWAY_ROTATION_KEYS={}", rotation.join(","));
            println!(
                "# 2. Re-encryption then runs by itself (JOB_REENCRYPT_*), or: POST /admin/keys/reencrypt, or `gateway reencrypt`."
            );
            println!(
                "# 3. When `gateway keys status` (or GET /admin/keys) shows 0 values under {current_id}, remove it from"
            );
            println!("#    AUTH_GATEWAY_ROTATION_KEYS and restart; start-up confirms no stored value still needs it.");
            Ok(())
        }
    }
}
