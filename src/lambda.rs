//! The Lambda entry point: one poll per invocation, whatever the event.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use tracing::Instrument;

use crate::poll::PollError;
use crate::report::Summary;
use crate::startup::LambdaPoller;

/// Time kept back before the invocation's deadline, so that the answer
/// (success or error) reaches Lambda before it stops the function.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// Checks the variables Lambda sets and the runtime crate insists on (it
/// panics without them), so that a stray `AWS_LAMBDA_RUNTIME_API` outside
/// Lambda gets a message rather than a crash.
///
/// # Errors
///
/// A message naming each variable that is missing or wrong.
pub fn check_environment(env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let mut missing = Vec::new();
    if env("AWS_LAMBDA_RUNTIME_API").is_none_or(|v| v.trim().is_empty()) {
        missing.push("AWS_LAMBDA_RUNTIME_API (empty)");
    }
    for variable in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION"] {
        if env(variable).is_none() {
            missing.push(variable);
        }
    }
    if env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|v| v.parse::<i32>().ok()).is_none() {
        missing.push("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "AWS_LAMBDA_RUNTIME_API is set, so this would serve the Lambda runtime, but {} \
         missing or invalid; outside Lambda, unset AWS_LAMBDA_RUNTIME_API to poll once",
        missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
    ))
}

/// Serves the Lambda Runtime API until the runtime stops the process.
///
/// With a configuration error the runtime is still served, and every
/// invocation fails with the error's text: that puts the cause in the
/// invocation result and the logs, where a crashed runtime would show only
/// an exit status. So does a token that could not be read, which each
/// invocation tries to read again.
///
/// # Errors
///
/// When the Runtime API cannot be reached.
pub async fn serve(poller: LambdaPoller) -> Result<(), lambda_runtime::Error> {
    let poller = &poller;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let span = tracing::info_span!("poll", request_id = %event.context.request_id);
        async {
            let poller = poller.get().await.map_err(|why| Diagnostic {
                error_type: why.error_type.into(),
                error_message: why.message,
            })?;
            let deadline = deadline_instant(event.context.deadline);
            let polled = poller.poll(deadline).await;
            polled.log_errors();
            match (polled.metrics, polled.protection_error) {
                (Ok(outcome), None) => Ok(Summary::of(&outcome)),
                // The metrics are published; the invocation still fails, so
                // that the function's Errors metric and alarms see it.
                (Ok(_), Some(protection)) => Err(Diagnostic {
                    error_type: "ScaleInProtectionFailed".into(),
                    error_message: format!("the metrics were published, but {protection}"),
                }),
                (Err(err), protection) => {
                    let mut diagnostic = diagnostic(&err);
                    if let Some(protection) = protection {
                        diagnostic.error_message.push_str(&format!("; also, {protection}"));
                    }
                    Err(diagnostic)
                }
            }
        }
        .instrument(span)
        .await
    }))
    .await
}

fn diagnostic(err: &PollError) -> Diagnostic {
    let error_type = match err {
        PollError::Source(_) => "DroneQueueUnreadable",
        PollError::Publish(_) => "PublishFailed",
        PollError::Output { .. } => "OutputFailed",
    };
    Diagnostic { error_type: error_type.into(), error_message: err.to_string() }
}

/// Converts the runtime's deadline (milliseconds since the epoch) into an
/// instant, less the margin.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let left = Duration::from_millis(
        u64::try_from(u128::from(deadline_ms).saturating_sub(now_ms)).unwrap_or(0),
    );
    Instant::now() + left.saturating_sub(DEADLINE_MARGIN)
}
