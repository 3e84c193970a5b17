//! Start-up shared by every mode: the first log line and the clients,
//! built once (once per Lambda container).

use crate::cloudwatch::CloudWatchSink;
use crate::config::Config;
use crate::drone::{DroneClient, SourceError};
use crate::poll::{Poller, Sink};

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The AWS SDK's chain found no region.
    #[error(
        "1 configuration problem:\n  - AWS_REGION: no AWS region is configured; \
         set AWS_REGION (or a region in the AWS profile), or use --dry-run"
    )]
    NoRegion,
    /// The AWS SDK refused its configuration (a profile file, say).
    #[error("{0}")]
    Aws(String),
    /// The HTTP client could not be built.
    #[error("{0}")]
    Drone(#[from] SourceError),
}

/// Logs what runs and what it polls.
pub fn log_start(mode: &str, config: &Config) {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        target = env!("BUILD_TARGET"),
        mode,
        drone_server = %config.drone_token.redact(config.drone_server.as_str()),
        namespace = %config.namespace,
        dry_run = config.dry_run,
        label_keys = ?config.grouping.label_keys,
        platform = config.grouping.platform,
        pipeline_type = config.grouping.pipeline_type,
        known_groups = config.grouping.known.len(),
        "drone-queue-cloudwatch starting"
    );
}

/// Builds the poller: the Drone client, and the CloudWatch client unless
/// this is a dry run (which needs no AWS configuration at all).
///
/// # Errors
///
/// [`StartupError`] when a client cannot be built.
pub async fn poller(config: &Config) -> Result<Poller, StartupError> {
    let drone = DroneClient::new(&config.drone_server, config.drone_token.clone())?;
    let sink = if config.dry_run {
        Sink::DryRun
    } else {
        let sink =
            CloudWatchSink::from_env(config.namespace.clone()).await.map_err(StartupError::Aws)?;
        if sink.region().is_none() {
            return Err(StartupError::NoRegion);
        }
        Sink::CloudWatch(sink)
    };
    Ok(Poller::new(drone, sink, config.drone_timeout, config.grouping.clone()))
}
