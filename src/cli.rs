//! The command-line entry point: one poll, then an exit status.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Config, EXIT_CONFIG, OutputFormat};
use crate::report;
use crate::startup::{self, StartupError};

/// Exit status of a poll that failed (queue unreadable or publish refused).
pub const EXIT_POLL_FAILED: u8 = 1;

/// Time allowed for publishing after the queue was read.
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);

/// Runs one poll and prints the dry run, if asked for.
pub async fn run(config: Config) -> ExitCode {
    let poller = match startup::poller(&config).await {
        Ok(poller) => poller,
        Err(err @ (StartupError::NoRegion | StartupError::BadRegion(_) | StartupError::Aws(_))) => {
            eprintln!("drone-queue-cloudwatch: {err}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::from(EXIT_POLL_FAILED);
        }
    };

    let deadline = Instant::now() + config.drone_timeout + PUBLISH_BUDGET;
    let result = {
        let span = tracing::info_span!("poll");
        let _guard = span.enter();
        poller.poll(deadline).await
    };
    match result {
        Ok(outcome) => {
            if config.dry_run {
                let text = match config.output {
                    OutputFormat::Table => report::table(&outcome, &config.namespace),
                    OutputFormat::Json => report::json(&outcome, &config.namespace) + "\n",
                };
                print!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::from(EXIT_POLL_FAILED)
        }
    }
}
