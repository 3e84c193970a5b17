//! Log set-up: plain text for people, JSON lines for CloudWatch Logs.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// What is logged unless `RUST_LOG` says otherwise: this program's
/// decisions, and only warnings from the libraries under it.
const DEFAULT_FILTER: &str = "warn,drone_queue_cloudwatch=info";

/// Installs the global subscriber, writing to standard error (standard
/// output is kept for what the program prints on purpose).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
        }
    }
}
