//! The command-line entry point: one poll, then an exit status; or, with
//! an interval, the daemon.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Config, EXIT_CONFIG};
use crate::daemon;
use crate::startup::{self, StartupError};

/// Exit status of a poll that failed (queue unreadable or publish refused).
pub const EXIT_POLL_FAILED: u8 = 1;

/// Time allowed for publishing after the queue was read.
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);

/// Runs one poll (whose sinks print the dry run, if asked for), or the
/// daemon when `config` has an interval.
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

    if let Some(interval) = config.interval {
        let endpoint = poller.exposition().map(|e| (config.prometheus_listen, e));
        return daemon::run(poller, interval, endpoint).await;
    }

    let deadline = Instant::now() + config.drone_timeout + PUBLISH_BUDGET;
    let result = {
        let span = tracing::info_span!("poll");
        let _guard = span.enter();
        poller.poll(deadline).await
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::from(EXIT_POLL_FAILED)
        }
    }
}
