//! `gateway clients add|update|list|disable|enable|rotate` and `gateway audit`.
//! Keys are printed once, when issued; only their SHA-256 digests are stored.
//! Running gateways pick changes up within seconds (at once on PostgreSQL).

use std::time::Duration;

use anyhow::bail;
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;

use crate::access::clients::hex;
use crate::access::{Action, NewClient, digest};
use crate::clock::Clock;
use crate::config::Settings;
use crate::config::providers::valid_provider_id;
use crate::core::access::audit::{AuditFilter, AuditRecord};
use crate::core::admin::Database;
use crate::events::Event;

#[derive(Debug, Subcommand)]
pub enum ClientsAction {
    /// Add an API client and print its key (shown once).
    Add(AddArgs),
    /// Change how a client takes part in token exchange (POST /oauth/token).
    Update(UpdateArgs),
    /// List API clients and their rights.
    List,
    /// Refuse every request of a client.
    Disable { name: String },
    /// Accept a disabled client's requests again.
    Enable { name: String },
    /// Issue a new key; the old one keeps working for the grace period.
    Rotate {
        name: String,
        /// How long the old key stays valid, e.g. 24h, 30m, 7d (default 24h).
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: Duration,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A unique name, e.g. gmail-mcp.
    name: String,
    /// Actions allowed, comma-separated: init, status, token, revoke, admin.
    #[arg(long, default_value = "init,status,token", value_delimiter = ',', value_parser = |s: &str| Action::parse(s.trim()).ok_or("use init, status, token, revoke or admin"))]
    actions: Vec<Action>,
    /// Providers allowed, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    providers: Option<Vec<String>>,
    /// Email domains of the users it may act for, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    domains: Option<Vec<String>>,
    /// Source networks it may call from, CIDR, comma-separated (default: any).
    #[arg(long, value_delimiter = ',')]
    networks: Option<Vec<String>>,
    #[command(flatten)]
    exchange: ExchangeArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    name: String,
    #[command(flatten)]
    exchange: ExchangeArgs,
    /// Forget every registered audience.
    #[arg(long, conflicts_with = "audience")]
    clear_audiences: bool,
    /// Allow /auth/token with a named user again.
    #[arg(long, conflicts_with = "require_exchange")]
    allow_named_users: bool,
    /// Remove the workers' assertion key.
    #[arg(long, conflicts_with = "assertion_key_file")]
    remove_assertion_key: bool,
}

/// Token exchange settings, shared by `add` and `update`.
#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// An `aud` its MCP server's access tokens carry (repeat, or comma-separate).
    #[arg(long, value_delimiter = ',')]
    audience: Option<Vec<String>>,
    /// Refuse /auth/token with a named user: the client must exchange the user's token.
    #[arg(long)]
    require_exchange: bool,
    /// A file holding the public JWK its headless workers sign assertions with.
    #[arg(long)]
    assertion_key_file: Option<std::path::PathBuf>,
}

impl ExchangeArgs {
    /// The audiences, trimmed, and the assertion key, read and checked.
    fn read(&self) -> anyhow::Result<(Option<Vec<String>>, Option<String>)> {
        let audiences = self
            .audience
            .as_ref()
            .map(|list| list.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect::<Vec<_>>());
        if let Some(list) = &audiences {
            if list.is_empty() {
                bail!("--audience needs a value (the aud of the MCP server's tokens)");
            }
            if let Some(long) = list.iter().find(|a| a.len() > 500) {
                bail!("the audience {}… is longer than 500 characters", &long[..40.min(long.len())]);
            }
        }
        let key = match &self.assertion_key_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {}", path.display(), e.kind()))?;
                let key = crate::core::exchange::AssertionKey::parse(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Some(key.to_json())
            }
        };
        Ok((audiences, key))
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only records about this user.
    #[arg(long)]
    user: Option<String>,
    /// Only records of this API client.
    #[arg(long)]
    client: Option<String>,
    /// Only records since this long ago (e.g. 24h, 7d) or this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only records before this RFC 3339 time.
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// At most this many records, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration like 30m, 24h or 7d"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!("{s:?} is not a duration like 30m, 24h or 7d")),
    }
}

async fn open(settings: &Settings) -> anyhow::Result<Database> {
    Ok(Database::open(settings).await?)
}

/// Records a client change in the audit log and tells running gateways.
async fn changed(store: &Database, action: &str, name: &str, detail: String) -> anyhow::Result<()> {
    let mut record: AuditRecord = crate::access::audit::record("cli", action, "ok", Clock::system().now());
    record.detail = Some(format!("client {name}: {detail}"));
    store.append_audit(&[record]).await?;
    store.announce(Event::Clients).await;
    Ok(())
}

pub async fn run(settings: &Settings, action: ClientsAction) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let now = Clock::system().now();
    let result = match action {
        ClientsAction::Add(args) => add(&store, args, now).await,
        ClientsAction::Update(args) => update(&store, args, now).await,
        ClientsAction::List => {
            for c in store.list_clients().await? {
                let all = |l: &Option<Vec<String>>| l.as_ref().map_or_else(|| "any".to_owned(), |l| l.join(","));
                let actions: Vec<&str> = c.actions.iter().map(|a| a.as_str()).collect();
                let exchange = format!(
                    "  audiences={}{}{}",
                    if c.exchange.audiences.is_empty() { "none".to_owned() } else { c.exchange.audiences.join(",") },
                    if c.exchange.require_exchange { "  exchange-only" } else { "" },
                    if c.exchange.assertion_key.is_some() { "  assertion-key" } else { "" },
                );
                let grace = c
                    .previous_key_valid_until
                    .filter(|u| *u > now)
                    .map(|u| format!("  old key valid until {u}"))
                    .unwrap_or_default();
                println!(
                    "{}  {}  actions={}  providers={}  domains={}  networks={}{exchange}{grace}",
                    c.name,
                    if c.enabled { "enabled " } else { "DISABLED" },
                    actions.join(","),
                    all(&c.providers),
                    all(&c.domains),
                    all(&c.networks)
                );
            }
            Ok(())
        }
        ClientsAction::Disable { name } | ClientsAction::Enable { name }
            if store.find_client(&name).await?.is_none() =>
        {
            bail!("no API client {name}")
        }
        ClientsAction::Disable { name } => {
            store.set_client_enabled(&name, false, now).await?;
            changed(&store, "client_disable", &name, "disabled".into()).await?;
            println!("API client {name} disabled");
            Ok(())
        }
        ClientsAction::Enable { name } => {
            store.set_client_enabled(&name, true, now).await?;
            changed(&store, "client_enable", &name, "enabled".into()).await?;
            println!("API client {name} enabled");
            Ok(())
        }
        ClientsAction::Rotate { name, grace } => {
            let key = crate::crypto::key::generate_api_key();
            let until = now + TimeDelta::from_std(grace).unwrap_or(TimeDelta::days(1));
            if !store.rotate_client_key(&name, hex(&digest(key.expose_secret().as_bytes())), until, now).await? {
                bail!("no API client {name}");
            }
            changed(&store, "client_rotate", &name, format!("new key; the old one is valid until {until}")).await?;
            println!("{}", key.expose_secret());
            eprintln!("# The new key of {name} (shown once). The old key stays valid until {until}.");
            Ok(())
        }
    };
    store.close().await;
    result
}

async fn add(store: &Database, args: AddArgs, now: DateTime<Utc>) -> anyhow::Result<()> {
    if args.name.is_empty() || args.name.len() > 100 || args.name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the name must be 1 to 100 characters without spaces");
    }
    if args.name == crate::access::clients::BOOTSTRAP {
        bail!("\"bootstrap\" is the name of AUTH_GATEWAY_API_KEY's client");
    }
    for p in args.providers.iter().flatten() {
        if !valid_provider_id(p) {
            bail!("{p:?} is not a provider id");
        }
    }
    for n in args.networks.iter().flatten() {
        if n.parse::<ipnet::IpNet>().is_err() {
            bail!("{n:?} is not a CIDR block (e.g. 10.0.0.0/8)");
        }
    }
    let (audiences, assertion_key) = args.exchange.read()?;
    let domains = args.domains.map(|d| d.into_iter().map(|d| d.trim().to_ascii_lowercase()).collect::<Vec<_>>());
    let key = crate::crypto::key::generate_api_key();
    let new = NewClient {
        name: args.name.clone(),
        key_digest: hex(&digest(key.expose_secret().as_bytes())),
        actions: args.actions.clone(),
        providers: args.providers,
        domains,
        networks: args.networks,
        exchange: crate::access::ClientExchange {
            audiences: audiences.unwrap_or_default(),
            require_exchange: args.exchange.require_exchange,
            assertion_key,
        },
    };
    if !store.add_client(new, now).await? {
        bail!("an API client named {} already exists", args.name);
    }
    let actions: Vec<&str> = args.actions.iter().map(|a| a.as_str()).collect();
    changed(store, "client_add", &args.name, format!("actions {}", actions.join(","))).await?;
    println!("{}", key.expose_secret());
    eprintln!("# The key of {} (shown once; only its SHA-256 digest is stored). Send it as X-API-Key.", args.name);
    Ok(())
}

async fn update(store: &Database, args: UpdateArgs, now: DateTime<Utc>) -> anyhow::Result<()> {
    let (audiences, key) = args.exchange.read()?;
    let update = crate::access::ExchangeUpdate {
        audiences: if args.clear_audiences { Some(Vec::new()) } else { audiences },
        require_exchange: if args.exchange.require_exchange {
            Some(true)
        } else if args.allow_named_users {
            Some(false)
        } else {
            None
        },
        assertion_key: if args.remove_assertion_key { Some(None) } else { key.map(Some) },
    };
    let mut said = Vec::new();
    if let Some(list) = &update.audiences {
        said.push(if list.is_empty() { "no audience".to_owned() } else { format!("audiences {}", list.join(",")) });
    }
    match update.require_exchange {
        Some(true) => said.push("token exchange required".to_owned()),
        Some(false) => said.push("named users allowed".to_owned()),
        None => {}
    }
    match &update.assertion_key {
        Some(Some(_)) => said.push("assertion key registered".to_owned()),
        Some(None) => said.push("assertion key removed".to_owned()),
        None => {}
    }
    if said.is_empty() {
        bail!("nothing to change: give --audience, --require-exchange, --assertion-key-file or their opposites");
    }
    if !store.update_client_exchange(&args.name, update, now).await? {
        bail!("no API client {}", args.name);
    }
    changed(store, "client_update", &args.name, said.join("; ")).await?;
    println!("API client {} updated: {}", args.name, said.join("; "));
    Ok(())
}

pub async fn audit(settings: &Settings, args: AuditArgs) -> anyhow::Result<()> {
    let store = open(settings).await?;
    let since = match args.since.as_deref() {
        None => None,
        Some(s) => Some(match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(_) => {
                Clock::system().now()
                    - TimeDelta::from_std(parse_duration(s).map_err(anyhow::Error::msg)?).unwrap_or_default()
            }
        }),
    };
    let user = args.user.as_deref().map(crate::email::Email::parse).transpose()?;
    let filter = AuditFilter {
        user_email: user.map(|e| e.to_string()),
        client: args.client,
        since,
        until: args.until,
        limit: args.limit,
        allowed_providers: None,
        allowed_domains: None,
    };
    for r in store.read_audit(&filter).await? {
        println!(
            "{}  {:<16} {:<22} {:<28} {:<12} {:<22} {}{}",
            r.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            r.client,
            r.action,
            r.user_email.unwrap_or_default(),
            r.provider.unwrap_or_default(),
            r.outcome,
            r.request_id.map(|id| format!("request {id} ")).unwrap_or_default(),
            r.detail.unwrap_or_default()
        );
    }
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("soon").is_err());
    }
}
