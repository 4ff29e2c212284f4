//! `gateway providers add|list|remove`: generic OAuth 2.0 providers kept in
//! the `oauth_providers` table, client secret encrypted. A running gateway
//! picks up a new provider on its first request for it; no restart needed.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::SecretString;
use url::Url;

use crate::config::Settings;
use crate::config::providers::{split_scopes, valid_provider_id};
use crate::core::admin::Admin;
use crate::core::admin::ProviderRemoval;
use crate::events::Event;
use crate::oauth::provider::{ClientAuth, IdentityCheck, ProviderConfig, ProviderKind, ProviderSource};

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ProvidersAction {
    /// Add (or replace) a generic OAuth 2.0 provider.
    Add(AddArgs),
    /// List every provider the database knows, with its credential count.
    List,
    /// Remove a provider added with `add` (refused while credentials use it).
    Remove { id: String },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Provider id: lower-case letters, digits, '-' and '_'.
    id: String,
    #[arg(long)]
    client_id: String,
    /// File holding the client secret, or '-' for standard input. (Never a
    /// command-line argument: those end up in shell history and `ps`.)
    #[arg(long)]
    client_secret_file: PathBuf,
    #[arg(long)]
    auth_url: Url,
    #[arg(long)]
    token_url: Url,
    #[arg(long)]
    revocation_url: Option<Url>,
    #[arg(long)]
    userinfo_url: Option<Url>,
    /// Default scopes, space- or comma-separated.
    #[arg(long, default_value = "")]
    scopes: String,
    /// Extra authorization parameter, `name=value` (repeatable).
    #[arg(long = "auth-param", value_parser = parse_param)]
    auth_params: Vec<(String, String)>,
    /// Do not use PKCE (only for providers that reject it).
    #[arg(long)]
    no_pkce: bool,
    /// `client_secret_basic` or `client_secret_post`.
    #[arg(long, default_value = "client_secret_basic", value_parser = |s: &str| ClientAuth::parse(s).ok_or("use client_secret_basic or client_secret_post"))]
    client_auth: ClientAuth,
    /// `required`, `optional` or `off` (default: required when a userinfo URL or the openid scope lets the provider tell who consented).
    #[arg(long, value_parser = |s: &str| IdentityCheck::parse(s).ok_or("use required, optional or off"))]
    identity_check: Option<IdentityCheck>,
    /// Do not send login_hint.
    #[arg(long)]
    no_login_hint: bool,
    /// The redirect URI registered at the provider (default: <PUBLIC_BASE_URL>/auth/callback/<id>).
    #[arg(long)]
    redirect_uri: Option<Url>,
    /// The `iss` the provider's id_tokens carry (checked when given).
    #[arg(long)]
    issuer: Option<String>,
    /// Count an email the provider reports without `email_verified` as
    /// verified. Only for a provider that verifies every address: otherwise
    /// anyone who can register an unverified address there can obtain that
    /// address's tokens.
    #[arg(long)]
    trust_unverified_email: bool,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or_else(|| "use name=value".to_owned())
}

fn read_secret(path: &PathBuf) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("reading the client secret from standard input")?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the client secret from {}", path.display()))?;
    }
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        bail!("the client secret is empty");
    }
    Ok(SecretString::from(secret.to_owned()))
}

/// Production's rule for configured providers holds for added ones too:
/// every endpoint over TLS. Checked before anything is touched.
fn check_production_urls(settings: &Settings, args: &AddArgs) -> anyhow::Result<()> {
    if settings.environment != crate::config::Environment::Production {
        return Ok(());
    }
    for (name, url) in [
        ("--auth-url", Some(&args.auth_url)),
        ("--token-url", Some(&args.token_url)),
        ("--revocation-url", args.revocation_url.as_ref()),
        ("--userinfo-url", args.userinfo_url.as_ref()),
        ("--redirect-uri", args.redirect_uri.as_ref()),
    ] {
        if url.is_some_and(|u| u.scheme() != "https") {
            bail!("{name} must be https: providers are reached over TLS in production (ENVIRONMENT=production)");
        }
    }
    Ok(())
}

pub async fn run(settings: &Settings, action: ProvidersAction) -> anyhow::Result<()> {
    if let ProvidersAction::Add(args) = &action {
        check_production_urls(settings, args)?;
    }
    let admin = Admin::open(settings, true, crate::clock::Clock::system()).await?;
    let store = admin.database();
    let result = match action {
        ProvidersAction::Add(args) => {
            if !valid_provider_id(&args.id) {
                bail!(
                    "{:?} is not a valid provider id: use lower-case letters, digits, '-' and '_' (at most 50)",
                    args.id
                );
            }
            if settings.providers.iter().any(|p| p.id == args.id)
                || ["google", "microsoft", "meta"].contains(&args.id.as_str())
            {
                bail!("{} is configured by environment variables; change its variables instead", args.id);
            }
            for (name, url) in [
                ("--auth-url", Some(&args.auth_url)),
                ("--token-url", Some(&args.token_url)),
                ("--revocation-url", args.revocation_url.as_ref()),
                ("--userinfo-url", args.userinfo_url.as_ref()),
            ] {
                if let Some(url) = url
                    && !matches!(url.scheme(), "https" | "http")
                {
                    bail!("{name} must be an http(s) URL");
                }
            }
            let default_scopes = split_scopes(&args.scopes);
            let can_tell = args.userinfo_url.is_some() || default_scopes.iter().any(|s| s == "openid");
            let provider = ProviderConfig {
                id: args.id.clone(),
                kind: ProviderKind::Generic,
                client_id: args.client_id,
                client_secret: read_secret(&args.client_secret_file)?,
                auth_url: args.auth_url,
                token_url: args.token_url,
                revocation_url: args.revocation_url,
                userinfo_url: args.userinfo_url,
                default_scopes,
                auth_params: args.auth_params,
                pkce: !args.no_pkce,
                client_auth: args.client_auth,
                identity_check: args.identity_check.unwrap_or(if can_tell {
                    IdentityCheck::Required
                } else {
                    IdentityCheck::Off
                }),
                login_hint: !args.no_login_hint,
                redirect_uri: args.redirect_uri,
                source: ProviderSource::Database,
                issuers: args.issuer.into_iter().collect(),
                trust_unverified_email: args.trust_unverified_email,
                tenant_rule: None,
            };
            admin.save_provider(&provider).await?;
            // Running replicas reload at once on PostgreSQL, within seconds on SQLite.
            store.announce(Event::Providers).await;
            println!("provider {} saved (identity check: {})", provider.id, provider.identity_check.as_str());
            Ok(())
        }
        ProvidersAction::List => {
            println!("{:<20} {:<10} {:<6} {:>11}  {:<44}  client id", "id", "kind", "source", "credentials", "status");
            for row in store.list_providers().await? {
                let status = match &row.failing {
                    None => "ok".to_owned(),
                    Some((since, category)) => {
                        format!("FAILING since {} ({category})", since.format("%Y-%m-%d %H:%M:%SZ"))
                    }
                };
                println!(
                    "{:<20} {:<10} {:<6} {:>11}  {:<44}  {}",
                    row.id, row.kind, row.source, row.credentials, status, row.client_id
                );
            }
            Ok(())
        }
        ProvidersAction::Remove { id } => {
            if settings.providers.iter().any(|p| p.id == id) {
                bail!("{id} is configured by environment variables; remove its variables instead");
            }
            match admin.remove_provider(&id).await? {
                ProviderRemoval::Removed => {
                    store.announce(Event::Providers).await;
                    println!("provider {id} removed");
                    Ok(())
                }
                ProviderRemoval::NotFound => Err(anyhow::anyhow!("no provider {id}")),
                ProviderRemoval::FromEnvironment => {
                    Err(anyhow::anyhow!("{id} is configured by environment variables; remove its variables instead"))
                }
                ProviderRemoval::InUse(n) => {
                    Err(anyhow::anyhow!("{n} credential(s) still use {id}; revoke them first (DELETE /auth/revoke)"))
                }
            }
        }
    };
    admin.close().await;
    result
}
