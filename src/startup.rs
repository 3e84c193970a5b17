//! Start-up shared by every mode: the first log line, the token (when it is
//! kept in AWS) and the clients, read and built once (once per Lambda
//! container).

use std::sync::Arc;

use crate::cloudwatch::CloudWatchSink;
use crate::config::{Config, ConfigError, Token, TokenSource};
use crate::drone::{DroneClient, SourceError};
use crate::poll::{Poller, Sinks};
use crate::prometheus::Exposition;
use crate::secret::{self, TokenError};
use crate::sinks::SinkKind;

/// Why the clients could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The AWS SDK's chain found no region.
    #[error(
        "1 configuration problem:\n  - AWS_REGION: no AWS region is configured; \
         set AWS_REGION (or a region in the AWS profile{}){}",
        profile_hint(),
        if *.dry_run_helps { ", or use --dry-run" } else { "" }
    )]
    NoRegion {
        /// Whether a dry run would do without AWS: not when the token is
        /// kept there.
        dry_run_helps: bool,
    },
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
    /// The token could not be read from Parameter Store or Secrets Manager.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// A setting holds the token read from AWS.
    #[error("{0}")]
    Config(ConfigError),
}

impl StartupError {
    /// Whether the configuration (or the permissions, or what is stored)
    /// must change, rather than a failure that may pass.
    pub fn is_configuration(&self) -> bool {
        match self {
            StartupError::NoRegion { .. }
            | StartupError::BadRegion(_)
            | StartupError::Aws(_)
            | StartupError::Config(_) => true,
            StartupError::Token(err) => !err.is_transient(),
            StartupError::Drone(_) => false,
        }
    }
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
        drone_server = %config
            .drone_token
            .given()
            .map_or_else(|| config.drone_server.to_string(), |t| t.redact(config.drone_server.as_str())),
        token_from = %config.drone_token,
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

/// Builds the poller: reads the token if it is kept in AWS, then builds
/// the Drone client, and the CloudWatch client only for the cloudwatch sink
/// (a dry run, EMF and Prometheus need no AWS configuration at all, unless
/// the token is kept there).
///
/// # Errors
///
/// [`StartupError`] when the token cannot be read or a client cannot be
/// built.
pub async fn poller(config: &Config, mode: &str) -> Result<Poller, StartupError> {
    let token = match &config.drone_token {
        TokenSource::Given(token) => token.clone(),
        kept => {
            let token = read_token(kept).await?;
            // What the configuration check did for DRONE_TOKEN, now that the
            // token is known: no value that is published or logged may
            // carry it. The start line waited for this.
            let problems = config.values_holding(&token);
            if !problems.is_empty() {
                return Err(StartupError::Config(ConfigError(problems)));
            }
            log_start(mode, config);
            token
        }
    };
    let drone = DroneClient::new(&config.drone_server, token)?;
    let cloudwatch = if config.sinks.has(SinkKind::CloudWatch) {
        let sink =
            CloudWatchSink::from_env(config.namespace.clone()).await.map_err(StartupError::Aws)?;
        match sink.region() {
            None => return Err(StartupError::NoRegion { dry_run_helps: true }),
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
        None => return Err(StartupError::NoRegion { dry_run_helps: true }),
        Some(region) if !crate::config::is_region_name(&region) => {
            return Err(StartupError::BadRegion(crate::drone::printable(&region, 60)));
        }
        Some(_) => {}
    }
    Ok(poller.with_protection(protector, config.dry_run))
}

/// Reads the token kept in AWS, with the SDK's configuration (which a dry
/// run needs too, since there is no other way to the token).
async fn read_token(source: &TokenSource) -> Result<Token, StartupError> {
    let shared = crate::aws::load().await.map_err(StartupError::Aws)?;
    match shared.region().map(ToString::to_string) {
        None => return Err(StartupError::NoRegion { dry_run_helps: false }),
        Some(region) if !crate::config::is_region_name(&region) => {
            return Err(StartupError::BadRegion(crate::drone::printable(&region, 60)));
        }
        Some(_) => {}
    }
    if let Some(service) = secret::service_id(source) {
        crate::aws::check_profile_endpoint(&shared, service).map_err(StartupError::Aws)?;
    }
    Ok(secret::read(source, &shared).await?)
}

// TODO(#6): a token changed in AWS reaches a warm container or a running
// daemon only after a restart (the 401 message says so); reading it again on
// a 401 needs a Drone client whose token can change under a running poll.

/// The poller of a Lambda container, built at init.
///
/// When the token could not be read then, each invocation tries again
/// until it can, and keeps it from then on: what fixes the failure (the
/// parameter created, the role allowed to read it, the network back) does
/// not start a new container.
pub struct LambdaPoller {
    config: Result<Config, String>,
    built: tokio::sync::OnceCell<Poller>,
}

/// Why an invocation cannot poll: an `errorType` and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// `ConfigurationError`, or `TokenUnavailable` when the token could not
    /// be read.
    pub error_type: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl LambdaPoller {
    /// Builds the poller from `config`, reading the token once.
    pub async fn init(config: Result<Config, String>) -> LambdaPoller {
        let poller = LambdaPoller { config, built: tokio::sync::OnceCell::new() };
        // `get` logs a failure; each invocation then tries again.
        let _ = poller.get().await;
        poller
    }

    /// The poller; building it again (and reading the token) if that
    /// failed before.
    ///
    /// # Errors
    ///
    /// [`NotReady`] with the configuration error or the start-up failure.
    pub async fn get(&self) -> Result<&Poller, NotReady> {
        let config = self
            .config
            .as_ref()
            .map_err(|err| NotReady { error_type: "ConfigurationError", message: err.clone() })?;
        self.built.get_or_try_init(|| poller(config, "lambda")).await.map_err(|err| {
            tracing::error!("{err}");
            NotReady {
                error_type: match err {
                    StartupError::Token(_) => "TokenUnavailable",
                    _ => "ConfigurationError",
                },
                message: err.to_string(),
            }
        })
    }
}
