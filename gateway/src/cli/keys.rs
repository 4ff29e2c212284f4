//! `gateway keys generate|status|rotate`.

use anyhow::bail;
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::clock::Clock;
use crate::core::admin::Admin;
use crate::crypto::Key;
use crate::crypto::key::{generate_api_key, generate_fernet_key};

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
            let (admin, _) = Admin::open_unchecked(&settings, Clock::system()).await?;
            let report = admin.key_report().await?;
            println!("primary key id: {}", report.primary_key_id);
            for key in report.keys.iter().filter(|k| k.configured) {
                let role = if key.primary { "primary " } else { "rotation" };
                println!("  {}  {role}        {} values", key.key_id, key.values);
            }
            for key in report.keys.iter().filter(|k| !k.configured) {
                println!("  {}  NOT CONFIGURED  {} values", key.key_id, key.values);
            }
            admin.close().await;
            Ok(())
        }
        KeysAction::Rotate => {
            let settings = super::load_with_logs()?;
            // The configured key, or the development key file (`$DATA_DIR/encryption.key`).
            let Some(current) = crate::core::setup::current_primary(&settings)? else {
                bail!(
                    "there is no primary key to rotate: AUTH_GATEWAY_ENCRYPTION_KEY is not set and {} does not exist yet (start the gateway once, or set the variable)",
                    settings.data_dir.join("encryption.key").display()
                );
            };
            if settings.keys.primary.is_none() {
                eprintln!(
                    "# The current key is the development key file {}; after the rotation the key lives in the variables below.",
                    settings.data_dir.join("encryption.key").display()
                );
            }
            let current_id = crate::core::setup::keyring(&settings).await?.primary_id().clone();
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
