//! `gateway reencrypt [--dry-run] [--batch-size N]`: the `reencrypt` job from
//! the command line, with a progress bar.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use workers::jobs::reencrypt::{ReencryptConfig, run_once};

use crate::config::Settings;
use crate::jobs::Reencryption;
use crate::startup;

#[derive(Debug, Args)]
pub struct ReencryptArgs {
    /// Open every value under an old key and report what would change and
    /// what no configured key can decrypt; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Rows per batch (each batch is one short transaction).
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
}

pub async fn run(settings: &Settings, args: ReencryptArgs) -> anyhow::Result<()> {
    let keyring = Arc::new(startup::keyring(settings).await?);
    let store = startup::connect(settings).await?;
    store.migrate_up().await?;
    if let Err(err) = startup::check_keys(&store, &keyring, &crate::clock::Clock::system()).await {
        if !args.dry_run {
            return Err(err.into());
        }
        println!("warning: {err}");
    }
    let usage = store.key_usage().await?;
    let primary = keyring.primary_id().to_string();
    let pending: u64 = usage.rows.keys().filter(|id| **id != primary).map(|id| usage.total(id)).sum();
    println!("primary key id {primary}; {pending} values under other keys");

    let bar = ProgressBar::new(pending);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} values  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let walk = Reencryption { store: store.clone(), keyring, dry_run: args.dry_run };
    // Unthrottled: the operator chose to run it now.
    let config = ReencryptConfig { batch_size: args.batch_size.max(1), max_rows_per_second: None };
    let report = run_once(&walk, &config, &AtomicBool::new(false), |r| bar.set_position(r.reencrypted)).await?;
    bar.finish_and_clear();
    let verb = if args.dry_run { "would re-encrypt" } else { "re-encrypted" };
    println!(
        "{verb} {} values ({} rows examined, {} changed meanwhile)",
        report.reencrypted, report.examined, report.conflicts
    );
    if report.undecryptable.is_empty() {
        println!("every value decrypts with the configured keys");
    } else {
        println!("{} values no configured key can decrypt (left untouched):", report.undecryptable.len());
        for u in &report.undecryptable {
            println!("  {}.{} row {}", u.table, u.column, u.row);
        }
    }
    store.close().await;
    if report.undecryptable.is_empty() { Ok(()) } else { anyhow::bail!("some values cannot be decrypted") }
}
