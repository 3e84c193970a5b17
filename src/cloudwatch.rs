//! The CloudWatch sink: packs a [`Plan`] into as few `PutMetricData` calls
//! as CloudWatch's limits allow and sends them.

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::aggregate::GroupKey;
use crate::metrics::{Datum, Plan, Resolution, Unit};

/// Most data points in one `PutMetricData` request.
pub const MAX_DATUMS_PER_CALL: usize = 1000;
/// Largest request body. CloudWatch allows 1 MB; the estimate below is for
/// the most verbose wire encoding (form-encoded query), so any encoding the
/// SDK picks stays under it.
pub const MAX_REQUEST_BYTES: usize = 1_000_000;
/// Storage resolution of standard (one-minute) metrics.
pub const STANDARD_RESOLUTION: i32 = 60;

/// Size of the request outside the data points.
const ENVELOPE_BYTES: usize = 512;

/// An upper bound of the bytes one data point adds to a request.
///
/// In the query encoding every field is `MetricData.member.N.Field=value&`,
/// names and values are percent-encoded (at most three bytes per byte), and
/// each dimension repeats a long prefix. CBOR, which the SDK uses today, is
/// far smaller, so this over-counts.
pub fn datum_size(datum: &Datum, group: &GroupKey) -> usize {
    const PER_DATUM: usize = 256; // prefixes of name, value, unit, timestamp, resolution
    const PER_DIMENSION: usize = 96; // two prefixes with member indexes
    PER_DATUM
        + 3 * datum.metric.name.len()
        + group.dimensions().map(|(n, v)| PER_DIMENSION + 3 * (n.len() + v.len())).sum::<usize>()
}

/// Splits the plan's data points into consecutive runs that each fit in one
/// request. Greedy packing in order is optimal here: each run is as long as
/// the limits allow.
pub fn batches(plan: &Plan) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = ENVELOPE_BYTES;
    for (i, datum) in plan.datums.iter().enumerate() {
        let size = datum_size(datum, &plan.groups[datum.group].0);
        if i > start && (i - start == MAX_DATUMS_PER_CALL || bytes + size > MAX_REQUEST_BYTES) {
            runs.push(start..i);
            start = i;
            bytes = ENVELOPE_BYTES;
        }
        bytes += size;
    }
    if start < plan.datums.len() {
        runs.push(start..plan.datums.len());
    }
    runs
}

/// What a publish did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// `PutMetricData` calls that succeeded.
    pub calls: usize,
    /// Data points sent.
    pub datums: usize,
}

/// A publish that did not deliver every data point.
#[derive(Debug, thiserror::Error)]
#[error(
    "CloudWatch did not take {failed_calls} of {total_calls} PutMetricData calls, so these \
     groups were not (fully) published: {}; {cause}",
    list_groups(groups)
)]
pub struct PublishError {
    /// Calls that failed.
    pub failed_calls: usize,
    /// Calls tried.
    pub total_calls: usize,
    /// Groups with at least one data point not sent.
    pub groups: Vec<GroupKey>,
    /// The first failure, with a hint.
    pub cause: String,
    /// What did get through.
    pub report: PublishReport,
}

/// Publishes to CloudWatch with the official SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: Client,
    namespace: String,
}

impl CloudWatchSink {
    /// Builds the client from the SDK's standard chain (region, credentials,
    /// `AWS_ENDPOINT_URL`). Throttling and transient errors are retried with
    /// the SDK's exponential backoff; each call is also bounded by the time
    /// left (see [`CloudWatchSink::publish`]).
    ///
    /// # Errors
    ///
    /// The SDK's message when it cannot load its configuration (it panics
    /// on some invalid settings, which is caught here).
    pub async fn from_env(namespace: String) -> Result<CloudWatchSink, String> {
        let shared = crate::aws::load().await?;
        crate::aws::check_profile_endpoint(&shared, "CloudWatch")?;
        let config = aws_sdk_cloudwatch::config::Builder::from(&shared)
            .retry_config(crate::aws::retry(&shared))
            .build();
        Ok(CloudWatchSink { client: Client::from_conf(config), namespace })
    }

    /// The region the client sends to, if one is configured.
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(ToString::to_string)
    }

    /// Sends every data point of the plan with `timestamp` and
    /// `resolution`, finishing before `deadline`. Calls are independent: one refused call does not
    /// stop the others, and the error lists the groups that were not sent.
    ///
    /// # Errors
    ///
    /// A [`PublishError`] when any call failed.
    pub async fn publish(
        &self,
        plan: &Plan,
        timestamp: SystemTime,
        resolution: Resolution,
        deadline: Instant,
    ) -> Result<PublishReport, PublishError> {
        let runs = batches(plan);
        let timestamp = DateTime::from(timestamp);
        let mut report = PublishReport::default();
        let mut failed_groups: Vec<GroupKey> = Vec::new();
        let mut failed_calls = 0;
        let mut first_cause = None;

        for (call, run) in runs.iter().enumerate() {
            let data: Vec<MetricDatum> = plan.datums[run.clone()]
                .iter()
                .map(|d| encode(d, plan, timestamp, resolution))
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            let result = if left.is_zero() {
                Err("no time left before the deadline".to_string())
            } else {
                let call = self
                    .client
                    .put_metric_data()
                    .namespace(&self.namespace)
                    .set_metric_data(Some(data))
                    .customize()
                    .config_override(
                        aws_sdk_cloudwatch::config::Builder::default().timeout_config(
                            TimeoutConfig::builder().operation_timeout(left).build(),
                        ),
                    )
                    .send();
                // The SDK panics on some settings it only reads when sending;
                // as a task, such a panic fails this call instead of the
                // process (or the Lambda invocation, with a useless message).
                match tokio::spawn(call).await {
                    Ok(sent) => sent.map(drop).map_err(|e| describe_error(&e, left)),
                    Err(failure) => {
                        Err(format!("the AWS SDK failed: {}", crate::aws::panic_text(failure)))
                    }
                }
            };
            match result {
                Ok(_) => {
                    report.calls += 1;
                    report.datums += run.len();
                    tracing::debug!(call = call + 1, datums = run.len(), "PutMetricData sent");
                }
                Err(cause) => {
                    failed_calls += 1;
                    first_cause.get_or_insert(cause);
                    for datum in &plan.datums[run.clone()] {
                        let group = &plan.groups[datum.group].0;
                        if failed_groups.last() != Some(group) {
                            failed_groups.push(group.clone());
                        }
                    }
                }
            }
        }

        if failed_calls == 0 {
            return Ok(report);
        }
        failed_groups.dedup();
        Err(PublishError {
            failed_calls,
            total_calls: runs.len(),
            groups: failed_groups,
            cause: first_cause.unwrap_or_default(),
            report,
        })
    }
}

fn encode(datum: &Datum, plan: &Plan, timestamp: DateTime, resolution: Resolution) -> MetricDatum {
    let dimensions = plan.groups[datum.group]
        .0
        .dimensions()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    MetricDatum::builder()
        .metric_name(datum.metric.name)
        .set_dimensions(Some(dimensions))
        .value(datum.value)
        .unit(match datum.metric.unit {
            Unit::Count => StandardUnit::Count,
            Unit::Seconds => StandardUnit::Seconds,
        })
        .storage_resolution(resolution.seconds())
        .timestamp(timestamp)
        .build()
}

/// The groups, cut to a length a log line (or a Lambda error) can carry.
fn list_groups(groups: &[GroupKey]) -> String {
    const SHOWN: usize = 20;
    let mut text = crate::drone::printable(
        &groups.iter().take(SHOWN).map(ToString::to_string).collect::<Vec<_>>().join("; "),
        4000,
    );
    if groups.len() > SHOWN {
        text.push_str(&format!(" and {} more", groups.len() - SHOWN));
    }
    text
}

fn describe_error<E, R>(err: &SdkError<E, R>, budget: Duration) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    // The SDK's text can carry the whole request body; a log line needs
    // only its start.
    let detail = crate::drone::printable(&DisplayErrorContext(err).to_string(), 600);
    let throttled = detail.contains("Throttling") || detail.contains("Rate exceeded");
    let hint = match err {
        SdkError::ServiceError(_) if throttled => {
            "CloudWatch kept throttling the calls after every retry; the PutMetricData quota \
             is shared by every caller in the account and region"
                .into()
        }
        SdkError::TimeoutError(_) => {
            format!(
                "no answer within the {} ms left; check the network path to CloudWatch",
                budget.as_millis()
            )
        }
        SdkError::DispatchFailure(_) if detail.contains("no credentials") => {
            "no AWS credentials were found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE, or give the function or machine a role"
                .into()
        }
        SdkError::DispatchFailure(_) => {
            "could not reach CloudWatch; check the region, AWS_ENDPOINT_URL and the network".into()
        }
        SdkError::ConstructionFailure(_) => {
            "the request could not be built; check that AWS credentials and a region \
             (AWS_REGION) are configured"
                .into()
        }
        _ => "check the AWS credentials and that they allow cloudwatch:PutMetricData \
              on this namespace"
            .into(),
    };
    format!("{hint} ({detail})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{GroupCounts, QueueCounts};
    use crate::metrics::plan;
    use std::collections::BTreeMap;

    fn plan_with(groups: Vec<GroupKey>) -> Plan {
        let one = GroupCounts { queued: 1, running: 1, startable: 1, ..GroupCounts::default() };
        let counts = QueueCounts {
            groups: groups.into_iter().map(|g| (g, one)).collect(),
            ..QueueCounts::default()
        };
        plan(&counts, 0)
    }

    fn numbered(n: usize) -> Vec<GroupKey> {
        (0..n).map(|i| GroupKey(BTreeMap::from([("pool".into(), format!("p{i:04}"))]))).collect()
    }

    fn check_limits(plan: &Plan, runs: &[Range<usize>]) {
        let mut next = 0;
        for run in runs {
            assert_eq!(run.start, next, "runs must cover the plan in order");
            assert!(run.len() <= MAX_DATUMS_PER_CALL);
            let bytes: usize = plan.datums[run.clone()]
                .iter()
                .map(|d| datum_size(d, &plan.groups[d.group].0))
                .sum::<usize>()
                + ENVELOPE_BYTES;
            assert!(bytes <= MAX_REQUEST_BYTES, "{bytes} bytes in one call");
            next = run.end;
        }
        assert_eq!(next, plan.datums.len());
    }

    #[test]
    fn few_groups_fit_in_one_call() {
        let plan = plan_with(numbered(12));
        assert_eq!(batches(&plan), vec![0..72]);
    }

    #[test]
    fn datum_count_splits_at_one_thousand() {
        // 300 groups x 6 metrics = 1,800 data points: two calls, the first full.
        let plan = plan_with(numbered(300));
        let runs = batches(&plan);
        assert_eq!(runs, [0..1000, 1000..1800]);
        check_limits(&plan, &runs);
    }

    #[test]
    fn large_dimensions_split_by_size() {
        // 30 dimensions with 1,024-character values: about 95 KB per point.
        let groups: Vec<GroupKey> = (0..20)
            .map(|g| {
                GroupKey(
                    (0..30)
                        .map(|d| (format!("key{d:02}"), format!("{g}{}", "v".repeat(1000))))
                        .collect(),
                )
            })
            .collect();
        let plan = plan_with(groups);
        let runs = batches(&plan);
        check_limits(&plan, &runs);
        let per_point = datum_size(&plan.datums[0], &plan.groups[0].0);
        let fit = (MAX_REQUEST_BYTES - ENVELOPE_BYTES) / per_point;
        assert!(runs.iter().all(|r| r.len() <= fit));
        // As few calls as the size allows.
        assert_eq!(runs.len(), plan.datums.len().div_ceil(fit));
    }

    #[test]
    fn an_empty_plan_needs_no_call() {
        assert!(batches(&Plan::default()).is_empty());
    }

    #[test]
    fn encoded_points_carry_count_resolution_and_the_poll_time() {
        let plan = plan_with(numbered(1));
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let datum = encode(&plan.datums[1], &plan, DateTime::from(when), Resolution::Standard);
        assert_eq!(datum.metric_name(), Some("RunningBuilds"));
        assert_eq!(datum.value(), Some(1.0));
        assert_eq!(datum.unit(), Some(&StandardUnit::Count));
        assert_eq!(datum.storage_resolution(), Some(60));
        assert_eq!(datum.timestamp(), Some(&DateTime::from_secs(1_767_225_600)));
        let dims: Vec<(&str, &str)> = datum
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap_or(""), d.value().unwrap_or("")))
            .collect();
        assert_eq!(dims, [("pool", "p0000")]);
        let high = encode(&plan.datums[1], &plan, DateTime::from(when), Resolution::High);
        assert_eq!(high.storage_resolution(), Some(1));
        assert_eq!(STANDARD_RESOLUTION, Resolution::Standard.seconds());
    }
}
