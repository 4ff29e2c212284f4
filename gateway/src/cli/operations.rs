//! `gateway credentials list`, `gateway users offboard` and `gateway
//! webhooks add|list|remove|test|deliveries`: operating the gateway.
//!
//! Listing and webhook subscriptions work on the database directly, like
//! the other commands. Offboarding calls the running gateway's admin API
//! instead: revoking needs the providers, and dropping cached tokens needs
//! the gateway itself (on SQLite nothing else can reach its memory).

use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::Settings;
use crate::core::admin::{Admin, Database};
use crate::core::credentials::CredentialState;
use crate::core::credentials::listing::ConnectionFilter;
use crate::core::webhooks::EventType;
use crate::core::webhooks::signing::Secret;

#[derive(Debug, Subcommand)]
pub enum CredentialsAction {
    /// Credentials across users, never a token.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    provider: Option<String>,
    /// active or needs_reauth.
    #[arg(long)]
    state: Option<String>,
    /// Users of this email domain.
    #[arg(long)]
    domain: Option<String>,
    /// Access tokens expiring within this (e.g. 1h, 7d) or before this RFC 3339 time.
    #[arg(long)]
    expiring_before: Option<String>,
    /// Not used for this long (e.g. 30d), or since this RFC 3339 time (or never).
    #[arg(long)]
    not_used_since: Option<String>,
    /// Not refreshed for this long, or since this RFC 3339 time (or never).
    #[arg(long)]
    not_refreshed_since: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: u64,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Revoke every grant of a user (or a domain's users) at its provider and delete them.
    Offboard(OffboardArgs),
}

#[derive(Debug, Args)]
pub struct OffboardArgs {
    /// The user's email address.
    #[arg(required_unless_present = "domain", conflicts_with = "domain")]
    email: Option<String>,
    /// Every user of this email domain.
    #[arg(long)]
    domain: Option<String>,
    /// List what would be removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The running gateway (default: PUBLIC_BASE_URL, else http://HOST:PORT).
    #[arg(long)]
    url: Option<url::Url>,
    /// A file holding an API key with the admin right (default: AUTH_GATEWAY_API_KEY, else $DATA_DIR/api-key).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksAction {
    /// Subscribe a URL; prints the signing secret when it is generated (shown once).
    Add {
        url: url::Url,
        /// Event types, comma-separated (default: all but credential.refreshed).
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// A file holding a whsec_ secret (default: a new one, printed once).
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// Subscriptions.
    List,
    /// Remove a subscription (its pending deliveries end dead-lettered).
    Remove { id: uuid::Uuid },
    /// Send a signed webhook.test ping now and print the receiver's answer.
    Test { id: uuid::Uuid },
    /// Put dead-lettered deliveries back in the queue, for a fresh round of attempts.
    Redeliver {
        /// Only this subscription's (default: every dead delivery).
        #[arg(long)]
        webhook: Option<uuid::Uuid>,
    },
    /// Deliveries, newest first.
    Deliveries {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
}

/// A time given as `30d` ago / ahead, or RFC 3339.
fn when(raw: &str, ahead: bool, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let (n, unit) = raw.trim().split_at(raw.trim().len().saturating_sub(1));
    let n: i64 =
        n.parse().with_context(|| format!("{raw:?} is not a duration like 30m, 24h, 7d or an RFC 3339 time"))?;
    let delta = match unit {
        "m" => TimeDelta::minutes(n),
        "h" => TimeDelta::hours(n),
        "d" => TimeDelta::days(n),
        _ => bail!("{raw:?} is not a duration like 30m, 24h, 7d or an RFC 3339 time"),
    };
    Ok(if ahead { now + delta } else { now - delta })
}

pub async fn credentials(settings: &Settings, action: CredentialsAction) -> anyhow::Result<()> {
    let CredentialsAction::List(args) = action;
    let now = Clock::system().now();
    let state = match args.state.as_deref() {
        None => None,
        Some("active") => Some(CredentialState::Active),
        Some("needs_reauth") => Some(CredentialState::NeedsReauth),
        Some(other) => bail!("{other:?} is not a state: use active or needs_reauth"),
    };
    let filter = ConnectionFilter {
        provider: args.provider,
        state,
        domain: args.domain.map(|d| d.trim().to_ascii_lowercase()),
        expiring_before: args.expiring_before.as_deref().map(|r| when(r, true, now)).transpose()?,
        unused_since: args.not_used_since.as_deref().map(|r| when(r, false, now)).transpose()?,
        unrefreshed_since: args.not_refreshed_since.as_deref().map(|r| when(r, false, now)).transpose()?,
        ..ConnectionFilter::default()
    };
    let db = Database::open(settings).await?;
    let mut after = None;
    let mut printed = 0;
    if !args.json {
        let header = ["provider", "user", "state", "expires", "last used", "last verified", "last error"];
        println!(
            "{:<12} {:<32} {:<13} {:<22} {:<22} {:<22} {}",
            header[0], header[1], header[2], header[3], header[4], header[5], header[6]
        );
    }
    let time =
        |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    while printed < args.limit {
        let page = db.list_connections(&filter, after, (args.limit - printed).min(500)).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for c in &page {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "provider": c.provider, "user_email": c.user_email, "scopes": c.scopes,
                        "state": c.state.as_str(), "last_error_category": c.last_error_category,
                        "last_error_at": c.last_error_at, "authorized_at": c.authorized_at,
                        "last_refreshed_at": c.last_refreshed_at, "last_used_at": c.last_used_at,
                        "last_verified_at": c.last_verified_at, "expires_at": c.expires_at,
                    })
                );
            } else {
                println!(
                    "{:<12} {:<32} {:<13} {:<22} {:<22} {:<22} {}",
                    c.provider,
                    c.user_email,
                    c.state.as_str(),
                    time(c.expires_at),
                    time(c.last_used_at),
                    time(c.last_verified_at),
                    c.last_error_category.as_deref().unwrap_or("-")
                );
            }
        }
        printed += page.len() as u64;
    }
    db.close().await;
    Ok(())
}

/// The admin key the offboarding call presents.
fn api_key(settings: &Settings, file: Option<&PathBuf>) -> anyhow::Result<SecretString> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    if let Some(key) = &settings.api_key {
        return Ok(key.clone());
    }
    let generated = settings.data_dir.join("api-key");
    match std::fs::read_to_string(&generated) {
        Ok(text) => Ok(SecretString::from(text.trim().to_owned())),
        Err(_) => bail!("no API key: set AUTH_GATEWAY_API_KEY or give --api-key-file"),
    }
}

pub async fn users(settings: &Settings, action: UsersAction) -> anyhow::Result<()> {
    let UsersAction::Offboard(args) = action;
    let base = match args.url {
        Some(url) => url,
        None => match &settings.http.public_base_url {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{}:{}/", settings.http.host, settings.http.port))?,
        },
    };
    let path = match (&args.email, &args.domain) {
        (Some(email), _) => format!("admin/users/{}", crate::email::Email::parse(email)?),
        (None, Some(domain)) => format!("admin/domains/{}", domain.trim().to_ascii_lowercase()),
        (None, None) => bail!("give an email address or --domain"),
    };
    let mut url = base.join(&path)?;
    if args.dry_run {
        url.set_query(Some("dry_run=true"));
    }
    let key = api_key(settings, args.api_key_file.as_ref())?;
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(300)).build()?;
    loop {
        let response = client
            .delete(url.clone())
            .header("x-api-key", key.expose_secret())
            .send()
            .await
            .with_context(|| format!("the gateway at {base} cannot be reached"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("the gateway answered {status}: {}", body["message"].as_str().unwrap_or("no message"));
        }
        for c in body["credentials"].as_array().into_iter().flatten() {
            println!(
                "{:<32} {:<12} {}",
                c["user_email"].as_str().unwrap_or_default(),
                c["provider"].as_str().unwrap_or_default(),
                c["outcome"].as_str().unwrap_or_default()
            );
        }
        if body["sessions_cancelled"].as_u64().unwrap_or(0) > 0 {
            eprintln!("# {} pending sign-in(s) cancelled", body["sessions_cancelled"]);
        }
        // A dry run lists one batch; a real run goes on until the domain is empty.
        if args.dry_run || body["more"] != serde_json::Value::Bool(true) {
            break;
        }
    }
    Ok(())
}

fn event_types(names: Option<Vec<String>>) -> anyhow::Result<Vec<EventType>> {
    match names {
        None => Ok(EventType::default_set()),
        Some(names) => names
            .iter()
            .map(|n| {
                EventType::parse(n.trim()).with_context(|| {
                    let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
                    format!("{n:?} is not an event type: use {}", known.join(", "))
                })
            })
            .collect(),
    }
}

pub async fn webhooks(settings: &Settings, action: WebhooksAction) -> anyhow::Result<()> {
    let now = Clock::system().now();
    match action {
        WebhooksAction::Add { url, events, secret_file } => {
            let production = settings.environment == crate::config::Environment::Production;
            if url.scheme() != "https" && (production || url.scheme() != "http") {
                bail!("webhook URLs must be https (http only outside production)");
            }
            let events = event_types(events)?;
            let (secret, generated) = match secret_file {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                    let secret = Secret::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    (secret.to_text(), false)
                }
                None => (Secret::generate().to_text(), true),
            };
            let (admin, _) = Admin::open_unchecked(settings, Clock::system()).await?;
            let id = admin.add_webhook(url.as_str(), &events, &secret, now).await?;
            admin.close().await;
            println!("{id}");
            if generated {
                println!("{}", secret.expose_secret());
                eprintln!(
                    "# The subscription's signing secret (shown once; stored sealed). Receivers verify webhook-signature with it."
                );
            }
            Ok(())
        }
        WebhooksAction::List => {
            let db = Database::open(settings).await?;
            for w in db.list_webhooks().await? {
                println!(
                    "{}  {}  {}  {}",
                    w.id,
                    if w.enabled { "enabled" } else { "disabled" },
                    w.url,
                    w.events.join(",")
                );
            }
            db.close().await;
            Ok(())
        }
        WebhooksAction::Remove { id } => {
            let db = Database::open(settings).await?;
            let removed = db.remove_webhook(id).await?;
            db.close().await;
            if !removed {
                bail!("no webhook {id}");
            }
            println!("webhook {id} removed");
            Ok(())
        }
        WebhooksAction::Test { id } => {
            let (admin, _) = Admin::open_unchecked(settings, Clock::system()).await?;
            let url = admin.database().list_webhooks().await?.into_iter().find(|w| w.id == id).map(|w| w.url);
            let secret = admin.webhook_secret(id).await?;
            admin.close().await;
            let (Some(url), Some(secret)) = (url, secret) else { bail!("no webhook {id}") };
            let secret = Secret::parse(secret.expose_secret()).map_err(anyhow::Error::msg)?;
            let event = crate::core::webhooks::Event {
                kind: EventType::WebhookTest,
                data: serde_json::json!({"webhook_id": id.to_string()}),
            };
            let body = event.payload(now);
            let message = format!("test_{}", uuid::Uuid::now_v7());
            let client = crate::core::webhooks::delivery::http_client(&settings.webhooks)?;
            let answer = client
                .post(url.as_str())
                .header("webhook-id", &message)
                .header("webhook-timestamp", now.timestamp().to_string())
                .header("webhook-signature", secret.sign(&message, now.timestamp(), &body))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    println!("{url} answered {}", r.status());
                    Ok(())
                }
                Ok(r) => bail!("{url} answered {}", r.status()),
                Err(err) if err.is_timeout() => bail!("{url} did not answer in time"),
                Err(_) => bail!("{url} cannot be reached"),
            }
        }
        WebhooksAction::Redeliver { webhook } => {
            let db = Database::open(settings).await?;
            let n = db.redeliver_dead(webhook, now).await?;
            db.close().await;
            println!("{n} dead deliver(y/ies) queued again");
            Ok(())
        }
        WebhooksAction::Deliveries { status, limit } => {
            if let Some(s) = status.as_deref()
                && !["pending", "delivered", "dead"].contains(&s)
            {
                bail!("{s:?} is not a status: use pending, delivered or dead");
            }
            let db = Database::open(settings).await?;
            for d in db.list_deliveries(status.as_deref(), limit).await? {
                println!(
                    "{}  {:<28} {:<9} attempts={} last={} {}  webhook {}",
                    d.created_at.format("%Y-%m-%d %H:%M:%S"),
                    d.event_type,
                    d.status,
                    d.attempts,
                    d.last_status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                    d.last_error.unwrap_or_default(),
                    d.webhook_id
                );
            }
            db.close().await;
            Ok(())
        }
    }
}
