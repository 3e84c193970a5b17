//! The command-line entry point: one poll, then an exit status; or, with
//! an interval, the daemon.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Config, EXIT_CONFIG};
use crate::daemon;
use crate::startup;

/// Exit status of a poll that failed (queue unreadable or publish refused).
pub const EXIT_POLL_FAILED: u8 = 1;
/// Exit status bit of a scale-in protection that failed; added to
/// [`EXIT_POLL_FAILED`] when both failed (5), so a script tells them apart.
pub const EXIT_PROTECTION_FAILED: u8 = 4;

/// Time allowed for publishing after the queue was read.
const PUBLISH_BUDGET: Duration = Duration::from_secs(30);

/// Runs one poll (whose sinks print the dry run, if asked for), or the
/// daemon when `config` has an interval.
pub async fn run(config: Config) -> ExitCode {
    let signals = match config.interval.map(|_| daemon::Signals::install()).transpose() {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!("could not listen for SIGTERM and SIGINT: {err}");
            return ExitCode::from(EXIT_POLL_FAILED);
        }
    };
    // Not an error: it works, it only costs more than it gives.
    if config.resolution == crate::metrics::Resolution::High
        && config.interval.is_none_or(|i| i >= Duration::from_secs(60))
    {
        tracing::warn!(
            "CLOUDWATCH_HIGH_RESOLUTION=true with at most one poll a minute stores nothing \
             a standard-resolution point would not, at a higher price; it pays off with \
             POLL_INTERVAL under 60s"
        );
    }
    if let (Some(protection), Some(interval)) = (&config.protection, config.interval)
        && protection.idle_grace < interval
    {
        tracing::warn!(
            "SCALE_IN_PROTECTION_IDLE_GRACE ({} s) is shorter than POLL_INTERVAL ({} s): an \
             instance is released after a single idle poll, and a build a runner takes before \
             the next poll is exposed until then; make the grace period a few intervals long",
            protection.idle_grace.as_secs_f64(),
            interval.as_secs_f64()
        );
    }
    let mut signals = signals;
    let mut backoff = config.interval.map(daemon::Backoff::new);
    let poller = loop {
        match startup::poller(&config, config.mode()).await {
            Ok(poller) => break poller,
            Err(err) if err.is_configuration() => {
                eprintln!("drone-queue-cloudwatch: {err}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
            Err(err) => {
                // The daemon outlives a failure that may pass (the network
                // not up yet at boot, a throttled read of the token), as it
                // does a failed poll; a single run reports it and ends.
                let (Some(interval), Some(backoff), Some(signals)) =
                    (config.interval, backoff.as_mut(), signals.as_mut())
                else {
                    tracing::error!("{err}");
                    return ExitCode::from(EXIT_POLL_FAILED);
                };
                let wait = interval * backoff.failed();
                tracing::error!(
                    consecutive_failures = backoff.failures(),
                    next_try_in_ms = wait.as_millis() as u64,
                    "could not start: {err}"
                );
                if let Some(name) = signals.sleep(wait).await {
                    tracing::info!("{name} received: stopping");
                    return ExitCode::SUCCESS;
                }
            }
        }
    };

    if let (Some(interval), Some(signals)) = (config.interval, signals) {
        let endpoint = poller.exposition().map(|e| (config.prometheus_listen, e));
        return daemon::run(poller, interval, endpoint, signals).await;
    }

    let deadline = Instant::now() + config.drone_timeout + PUBLISH_BUDGET;
    let result = {
        let span = tracing::info_span!("poll");
        let _guard = span.enter();
        poller.poll(deadline).await
    };
    result.log_errors();
    let mut code = 0;
    if result.metrics.is_err() {
        code |= EXIT_POLL_FAILED;
    }
    if result.protection_error.is_some() {
        code |= EXIT_PROTECTION_FAILED;
    }
    ExitCode::from(code)
}
