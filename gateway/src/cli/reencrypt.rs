//! `gateway reencrypt [--dry-run] [--batch-size N]`: the `reencrypt` job from
//! the command line, with a progress bar.

use std::sync::atomic::AtomicBool;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use workers::JobError;
use workers::reencrypt::{Batch, Cursor, ReencryptConfig, run_once};

use crate::clock::Clock;
use crate::config::Settings;
use crate::core::admin::Admin;
use crate::core::keys::Position;

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
    let (admin, checked) = Admin::open_unchecked(settings, Clock::system()).await?;
    if let Err(err) = checked {
        if !args.dry_run {
            return Err(err.into());
        }
        println!("warning: {err}");
    }
    let report = admin.key_report().await?;
    let (primary, pending) = (&report.primary_key_id, report.pending_values);
    println!("primary key id {primary}; {pending} values under other keys");

    let bar = ProgressBar::new(pending);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} values  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let batch = |cursor: Cursor, limit| {
        let admin = &admin;
        async move {
            let position = Position { table: cursor.table, after: cursor.after };
            admin.reencrypt_batch(&position, limit, args.dry_run).await.map(Batch::from).map_err(JobError::from)
        }
    };
    // Unthrottled: the operator chose to run it now.
    let config = ReencryptConfig { batch_size: args.batch_size.max(1), max_rows_per_second: None };
    let report = run_once(batch, &config, &AtomicBool::new(false), |r| bar.set_position(r.reencrypted)).await?;
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
    admin.close().await;
    if report.undecryptable.is_empty() { Ok(()) } else { anyhow::bail!("some values cannot be decrypted") }
}
