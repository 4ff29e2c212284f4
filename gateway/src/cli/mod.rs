//! The `gateway` command line. `gateway` alone serves.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod clients;
mod keys;
mod operations;
mod providers;
mod reencrypt;

use crate::config::Settings;
use crate::core::admin::Database;
use crate::startup::{Application, StartOptions};
use crate::{shutdown, telemetry};

#[derive(Debug, Parser)]
#[command(name = "gateway", version, about = "mcp-auth-gateway: OAuth credentials for every MCP server")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        /// Do not apply pending migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Encryption and API keys.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Re-encrypt every value under an old key with the primary key, in
    /// batches, with a progress bar (the same work as the `reencrypt` job).
    Reencrypt(reencrypt::ReencryptArgs),
    /// API clients: one key per MCP server, with rights.
    Clients {
        #[command(subcommand)]
        action: clients::ClientsAction,
    },
    /// Read the audit log (newest first).
    Audit(clients::AuditArgs),
    /// OAuth providers managed in the database (besides the environment's).
    Providers {
        #[command(subcommand)]
        action: providers::ProvidersAction,
    },
    /// Credentials across users (never a token).
    Credentials {
        #[command(subcommand)]
        action: operations::CredentialsAction,
    },
    /// Users: offboarding (through the running gateway's admin API).
    Users {
        #[command(subcommand)]
        action: operations::UsersAction,
    },
    /// Webhook subscriptions and their deliveries.
    Webhooks {
        #[command(subcommand)]
        action: operations::WebhooksAction,
    },
    /// What the gateway exposes on /metrics.
    Metrics {
        #[command(subcommand)]
        action: MetricsAction,
    },
}

#[derive(Debug, Subcommand)]
enum MetricsAction {
    /// Print the metric catalogue: every metric's name, type, labels, help and
    /// histogram buckets (scripts and checks read it instead of the source).
    Catalogue {
        #[arg(long, value_enum, default_value_t = CatalogueFormat::Text)]
        format: CatalogueFormat,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum CatalogueFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Roll back migrations: the last --steps N, or --all (every table, every
    /// credential: asks for a typed confirmation unless --yes; refused in
    /// production unless --force).
    Down {
        /// How many to roll back.
        #[arg(long, conflicts_with = "all")]
        steps: Option<u32>,
        /// Roll back every migration: drops every table and every stored credential.
        #[arg(long)]
        all: bool,
        /// Do not ask (scripts).
        #[arg(long)]
        yes: bool,
        /// Allow --all with ENVIRONMENT=production.
        #[arg(long)]
        force: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration; exit non-zero on any problem.
    Check,
    /// Print every variable the settings code reads, with its kind, default
    /// and range, found by running that code (the documentation is checked
    /// against it). `<ID>` stands for a provider's or issuer's id.
    Reference {
        #[arg(long, value_enum, default_value_t = CatalogueFormat::Text)]
        format: CatalogueFormat,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve { no_migrate: false }) {
        Command::Keys { action } => keys::run(action).await,
        Command::Reencrypt(args) => {
            let settings = load_with_logs()?;
            reencrypt::run(&settings, args).await
        }
        Command::Config { action: ConfigAction::Reference { format } } => print_reference(format),
        Command::Config { action: ConfigAction::Check } => {
            let settings = Settings::from_env()?;
            // Deriving the keys proves the key inputs are usable, not just well-formed.
            if settings.keys.primary.is_some() {
                crate::core::setup::keyring(&settings).await?;
            }
            let public = settings
                .http
                .public_base_url
                .as_ref()
                .map_or_else(|| "derived from HOST and PORT".to_owned(), ToString::to_string);
            for warning in settings.warnings() {
                eprintln!("warning: {warning}");
            }
            println!(
                "configuration OK: environment={}, database={:?}, public URL {public}",
                settings.environment.as_str(),
                settings.database.backend,
            );
            Ok(())
        }
        Command::Migrate { action } => {
            let settings = load_with_logs()?;
            let db = Database::connect(&settings).await?;
            match action.unwrap_or(MigrateAction::Up) {
                MigrateAction::Up => {
                    db.migrate_up().await?;
                    println!("migrations applied");
                }
                MigrateAction::Down { steps, all, yes, force } => {
                    let result = migrate_down(&settings, &db, steps, all, yes, force).await;
                    if result.is_err() {
                        db.close().await;
                        return result;
                    }
                }
                MigrateAction::Status => print_status(&db).await?,
            }
            db.close().await;
            Ok(())
        }
        Command::Clients { action } => {
            let settings = load_with_logs()?;
            clients::run(&settings, action).await
        }
        Command::Audit(args) => {
            let settings = load_with_logs()?;
            clients::audit(&settings, args).await
        }
        Command::Providers { action } => {
            let settings = load_with_logs()?;
            providers::run(&settings, action).await
        }
        Command::Credentials { action } => operations::credentials(&load_with_logs()?, action).await,
        Command::Users { action } => operations::users(&load_with_logs()?, action).await,
        Command::Webhooks { action } => operations::webhooks(&load_with_logs()?, action).await,
        Command::Metrics { action: MetricsAction::Catalogue { format } } => {
            print_catalogue(format)?;
            Ok(())
        }
        Command::Serve { no_migrate } => {
            let settings = load_for_serving()?;
            let signal = shutdown::install()?;
            let app =
                Application::build(settings, StartOptions { migrate: !no_migrate, ..StartOptions::default() }).await?;
            app.run_until(async {
                let which = signal.await;
                tracing::info!(signal = which, "shutting down: draining in-flight requests");
            })
            .await?;
            tracing::info!("gateway stopped");
            Ok(())
        }
    }
}

/// Settings, with logs on standard error: a command's standard output is
/// its result (a key, a listing), which scripts read.
pub(crate) fn load_with_logs() -> anyhow::Result<Settings> {
    let settings = Settings::from_env()?;
    // A second init (never in the binary) is harmless.
    let _ = telemetry::init_with_writer(&settings.log, std::io::stderr);
    Ok(settings)
}

/// Settings, with logs on standard output (the server's, as containers expect).
fn load_for_serving() -> anyhow::Result<Settings> {
    let settings = Settings::from_env()?;
    let _ = telemetry::init(&settings.log);
    Ok(settings)
}

fn print_catalogue(format: CatalogueFormat) -> anyhow::Result<()> {
    use crate::telemetry::metrics::{CATALOGUE, Kind, buckets_for};
    let kind = |k: Kind| match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    };
    match format {
        CatalogueFormat::Json => {
            let entries: Vec<serde_json::Value> = CATALOGUE
                .iter()
                .map(|m| {
                    let mut entry = serde_json::json!({
                        "name": m.name, "type": kind(m.kind), "labels": m.labels, "help": m.help,
                    });
                    if matches!(m.kind, Kind::Histogram) {
                        entry["unit"] = "seconds".into();
                        entry["buckets"] = buckets_for(m.name).into();
                    }
                    entry
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&entries)?);
        }
        CatalogueFormat::Text => {
            for m in CATALOGUE {
                println!("{:<42} {:<9} {:<36} {}", m.name, kind(m.kind), m.labels.join(","), m.help);
            }
        }
    }
    Ok(())
}

fn print_reference(format: CatalogueFormat) -> anyhow::Result<()> {
    let all = crate::core::config::reference();
    match format {
        CatalogueFormat::Json => println!("{}", serde_json::to_string_pretty(&all)?),
        CatalogueFormat::Text => {
            for v in &all {
                let range = match (v.min, v.max) {
                    (Some(min), Some(max)) => format!("{min}-{max} {}", v.unit.as_deref().unwrap_or_default()),
                    _ => String::new(),
                };
                let kind = serde_json::to_value(v.kind)?;
                let default = v.default.as_deref().unwrap_or("-");
                println!(
                    "{:<44} {:<7} {:<36} {}",
                    v.name,
                    kind.as_str().unwrap_or_default(),
                    default,
                    range.trim_end()
                );
            }
        }
    }
    Ok(())
}

/// `gateway migrate down`: says what goes, and makes dropping everything a
/// deliberate act.
async fn migrate_down(
    settings: &Settings,
    db: &Database,
    steps: Option<u32>,
    all: bool,
    yes: bool,
    force: bool,
) -> anyhow::Result<()> {
    let applied: Vec<String> =
        db.migration_status().await?.into_iter().filter(|(_, applied)| *applied).map(|(name, _)| name).collect();
    let count = match (steps, all) {
        (Some(n), false) => usize::try_from(n).unwrap_or(usize::MAX).min(applied.len()),
        (None, true) => applied.len(),
        _ => anyhow::bail!(
            "give --steps N to roll back the last N migrations, or --all to drop every table (and every stored credential)"
        ),
    };
    let credentials = db.count_credentials().await?;
    let undone: Vec<&String> = applied.iter().rev().take(count).collect();
    eprintln!("# Rolling back {} migration(s):", undone.len());
    for name in &undone {
        eprintln!("#   {name}");
    }
    if all {
        if settings.environment == crate::config::Environment::Production && !force {
            anyhow::bail!(
                "refusing to drop every table with ENVIRONMENT=production: {credentials} stored credential(s) would be lost; add --force if this is really meant"
            );
        }
        eprintln!("# This DROPS EVERY TABLE: {credentials} stored credential(s), sessions, clients and the audit log.");
        if !yes {
            eprintln!("# Type \"drop everything\" to go on:");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if answer.trim() != "drop everything" {
                anyhow::bail!("not confirmed: nothing was changed");
            }
        }
    }
    db.migrate_down(Some(u32::try_from(count).unwrap_or(u32::MAX))).await?;
    println!("{count} migration(s) rolled back");
    Ok(())
}

async fn print_status(db: &Database) -> anyhow::Result<()> {
    for (name, applied) in db.migration_status().await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}
