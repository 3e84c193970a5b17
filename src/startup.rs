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
         set AWS_REGION (or a region in the AWS profile{}), or use --dry-run",
        profile_hint()
    )]
    NoRegion,
    /// The region from the AWS profile is not a region name.
    #[error(
        "1 configuration problem:\n  - the AWS profile's region ({0:?}) is not a region name \
         such as us-east-1; fix it in the AWS config file, or set AWS_REGION"
    )]
    BadRegion(String),
    /// The AWS SDK refused its configuration (a profile file, say).
    #[error("{0}")]
    Aws(String),
    /// The HTTP client could not be built.
    #[error("{0}")]
    Drone(#[from] SourceError),
}

/// Names the profile in use, if one was chosen: a profile that does not
/// exist looks to the SDK like one without a region.
fn profile_hint() -> String {
    match std::env::var("AWS_PROFILE") {
        Ok(profile) if !profile.is_empty() => format!(
            "; AWS_PROFILE is {:?}: check that this profile exists",
            crate::drone::printable(&profile, 60)
        ),
        _ => String::new(),
    }
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
        sinks = %config.sinks,
        interval_ms = config.interval.map(|i| i.as_millis() as u64),
        high_resolution = config.resolution == crate::metrics::Resolution::High,
        label_keys = ?config.grouping.label_keys,
        platform = config.grouping.platform,
        pipeline_type = config.grouping.pipeline_type,
        known_groups = config.grouping.known.len(),
        protected_groups = ?config.protection.as_ref().map(|p| &p.groups),
        idle_grace_s = config.protection.as_ref().map(|p| p.idle_grace.as_secs()),
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
        match sink.region() {
            None => return Err(StartupError::NoRegion),
            // The environment's region was checked with the rest of the
            // configuration; one from the profile file is checked here, or
            // the first call would fail only after the queue was read.
            Some(region) if !crate::config::is_region_name(&region) => {
                return Err(StartupError::BadRegion(crate::drone::printable(&region, 60)));
            }
            Some(_) => {}
        }
        Some(sink)
    } else {
        None
    };
    let sinks = Sinks {
        cloudwatch,
        emf: config.sinks.has(SinkKind::Emf),
        stdout: config.sinks.has(SinkKind::Stdout).then_some(config.output),
        indent_json: config.dry_run,
        prometheus: config.sinks.has(SinkKind::Prometheus).then(|| Arc::new(Exposition::new())),
        namespace: config.namespace.clone(),
        resolution: config.resolution,
    };
    let poller = Poller::new(drone, sinks, config.drone_timeout, config.grouping.clone());
    let Some(protection) = &config.protection else { return Ok(poller) };
    let protector =
        crate::asg::Protector::from_env(protection.clone()).await.map_err(StartupError::Aws)?;
    match protector.region() {
        None => return Err(StartupError::NoRegion),
        Some(region) if !crate::config::is_region_name(&region) => {
            return Err(StartupError::BadRegion(crate::drone::printable(&region, 60)));
        }
        Some(_) => {}
    }
    Ok(poller.with_protection(protector, config.dry_run))
}
