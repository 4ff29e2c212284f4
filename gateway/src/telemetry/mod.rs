//! Logs, spans and metrics.
//!
//! Logs are JSON in production and readable text in development. Spans are
//! created with `#[instrument(skip_all, ...)]` so no argument, and so no
//! token, lands in a span.

pub mod handles;
pub mod prometheus;

/// The metric catalogue (the core's: it records most of them).
pub use crate::core::telemetry::metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Returns an error if one is already set
/// (tests may call this more than once).
pub fn init(settings: &LogSettings) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_with_writer(settings, std::io::stdout)
}

pub fn init_with_writer<W>(settings: &LogSettings, writer: W) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&settings.filter)?;
    // Colour only for a human at a terminal; piped logs stay plain text.
    let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    }
}
