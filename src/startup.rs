//! Start-up shared by every mode: the first log line and the clients,
//! built once (once per Lambda container).

use std::sync::Arc;

use crate::cloudwatch::CloudWatchSink;
use crate::config::Config;
use crate::drone::{DroneClient, SourceError};
use crate::poll::{Poller, Sinks};
use crate::prometheus::Exposition;
use crate::sinks::SinkKind;

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
        drone_server = %config.drone_server,
        namespace = %config.namespace,
        dry_run = config.dry_run,
        sinks = %config.sinks,
        interval_ms = config.interval.map(|i| i.as_millis() as u64),
        high_resolution = config.resolution == crate::metrics::Resolution::High,
        label_keys = ?config.grouping.label_keys,
        platform = config.grouping.platform,
        pipeline_type = config.grouping.pipeline_type,
        known_groups = config.grouping.known.len(),
        "drone-queue-cloudwatch starting"
    );
}

/// Builds the poller: the Drone client, and the CloudWatch client only for
/// the cloudwatch sink (a dry run, EMF and Prometheus need no AWS
/// configuration at all).
///
/// # Errors
///
/// [`StartupError`] when a client cannot be built.
pub async fn poller(config: &Config) -> Result<Poller, StartupError> {
    let drone = DroneClient::new(&config.drone_server, config.drone_token.clone())?;
    let cloudwatch = if config.sinks.has(SinkKind::CloudWatch) {
        let sink =
            CloudWatchSink::from_env(config.namespace.clone()).await.map_err(StartupError::Aws)?;
        if sink.region().is_none() {
            return Err(StartupError::NoRegion);
        }
        Some(sink)
    } else {
        None
    };
    let sinks = Sinks {
        cloudwatch,
        emf: config.sinks.has(SinkKind::Emf),
        stdout: config.sinks.has(SinkKind::Stdout).then_some(config.output),
        prometheus: config.sinks.has(SinkKind::Prometheus).then(|| Arc::new(Exposition::new())),
        namespace: config.namespace.clone(),
        resolution: config.resolution,
    };
    Ok(Poller::new(drone, sinks, config.drone_timeout, config.grouping.clone()))
}
