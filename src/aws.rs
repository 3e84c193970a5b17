//! What every AWS client here shares: the SDK's configuration, loaded once
//! with its panics turned into errors, and the retry policy.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_types::service_config::ServiceConfigKey;

/// Attempts per call unless `AWS_MAX_ATTEMPTS` says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Loads the SDK's standard chain (region, credentials, endpoints).
///
/// # Errors
///
/// The SDK's message when it cannot load its configuration (it panics on
/// some invalid settings, which is caught here).
pub async fn load() -> Result<SdkConfig, String> {
    tokio::spawn(aws_config::load_from_env()).await.map_err(|failure| {
        format!("the AWS SDK could not load its configuration: {}", panic_text(failure))
    })
}

/// Checks the endpoint the profile file sets for one service (`service_id`
/// as the SDK names it, e.g. `CloudWatch`, `Auto Scaling`, `EC2`). A client
/// looks its endpoint up per service and parses it only at its first call,
/// where a bad one panics after the queue was read; the environment's
/// endpoints were checked with the rest of the configuration.
///
/// # Errors
///
/// A configuration message naming the bad value.
pub fn check_profile_endpoint(shared: &SdkConfig, service_id: &str) -> Result<(), String> {
    let key = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    match key.ok().and_then(|key| shared.service_config().and_then(|c| c.load_config(key))) {
        Some(endpoint) if !crate::config::is_http_url(&endpoint) => Err(format!(
            "1 configuration problem:\n  - the AWS profile's endpoint_url ({:?}) is not an \
             http(s) URL such as http://127.0.0.1:4566; fix or remove it in the AWS config file",
            crate::drone::printable(&endpoint, 100)
        )),
        _ => Ok(()),
    }
}

/// The SDK's default of 3 attempts gives up early on the throttling that
/// comes with many callers in one region; 5 is the default here, and an
/// explicit `AWS_MAX_ATTEMPTS` or `AWS_RETRY_MODE` still wins.
pub fn retry(shared: &SdkConfig) -> RetryConfig {
    let chosen = std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
        || std::env::var_os("AWS_RETRY_MODE").is_some();
    let retry = match shared.retry_config() {
        Some(retry) if chosen => retry.clone(),
        _ => RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS),
    };
    retry.with_initial_backoff(Duration::from_millis(200)).with_max_backoff(Duration::from_secs(5))
}

/// The message of a task that panicked (or was cancelled).
pub fn panic_text(failure: tokio::task::JoinError) -> String {
    match failure.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "unknown panic".into()),
        Err(failure) => failure.to_string(),
    }
}
