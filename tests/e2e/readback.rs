//! Reads back what a CloudWatch emulator stored, with the official SDK, so
//! that tests (and the bundled example) compare what was really published.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};

/// One metric series: a name and a dimension set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
}

/// What one series holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Sum of all points.
    pub sum: f64,
    /// Number of points.
    pub samples: f64,
    /// Units seen.
    pub units: Vec<String>,
    /// Start of each one-minute bucket holding points (Unix seconds).
    pub minutes: Vec<i64>,
}

/// A client for the emulator at `endpoint`, with throw-away credentials.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_cloudwatch::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "readback"))
        .build();
    Client::from_conf(config)
}

type Buckets = BTreeMap<i64, (f64, f64, Vec<String>)>;

/// Every series of `namespace` with its stored points.
///
/// The emulator answers a query without dimensions with the sum over every
/// series of that name (real CloudWatch returns only the series without
/// dimensions), so the dimensionless series is derived: its buckets minus
/// those of the series with dimensions.
pub async fn stored(endpoint: &str, namespace: &str) -> BTreeMap<Series, Stored> {
    let client = client(endpoint);
    let mut series = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_metrics()
            .namespace(namespace)
            .set_next_token(token)
            .send()
            .await
            .expect("ListMetrics");
        for metric in page.metrics() {
            let dimensions = metric
                .dimensions()
                .iter()
                .map(|d| (d.name().unwrap_or("").to_string(), d.value().unwrap_or("").to_string()))
                .collect();
            series.push(Series {
                metric: metric.metric_name().unwrap_or("").to_string(),
                dimensions,
            });
        }
        token = page.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    series.sort();
    series.dedup();

    let now = SystemTime::now();
    let mut buckets: BTreeMap<Series, Buckets> = BTreeMap::new();
    for s in &series {
        let dims: Vec<Dimension> = s
            .dimensions
            .iter()
            .map(|(n, v)| Dimension::builder().name(n).value(v).build())
            .collect();
        let answer = client
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name(&s.metric)
            .set_dimensions(Some(dims))
            .start_time(DateTime::from(now - Duration::from_secs(3 * 3600)))
            .end_time(DateTime::from(now + Duration::from_secs(3 * 3600)))
            .period(60)
            .statistics(Statistic::Sum)
            .statistics(Statistic::SampleCount)
            .send()
            .await
            .expect("GetMetricStatistics");
        let mut b = Buckets::new();
        for point in answer.datapoints() {
            let minute = point.timestamp().map_or(0, DateTime::secs);
            let unit = point.unit().map_or("None", |u| u.as_str()).to_string();
            b.insert(
                minute,
                (point.sum().unwrap_or(0.0), point.sample_count().unwrap_or(0.0), vec![unit]),
            );
        }
        buckets.insert(s.clone(), b);
    }

    // Derive the dimensionless series (see above).
    let names: std::collections::BTreeSet<String> =
        buckets.keys().map(|s| s.metric.clone()).collect();
    for name in names {
        let bare = Series { metric: name.clone(), dimensions: BTreeMap::new() };
        let Some(mut total) = buckets.get(&bare).cloned() else { continue };
        for (s, b) in &buckets {
            if s.metric == name && !s.dimensions.is_empty() {
                for (minute, (sum, samples, _)) in b {
                    if let Some(t) = total.get_mut(minute) {
                        t.0 -= sum;
                        t.1 -= samples;
                    }
                }
            }
        }
        total.retain(|_, (_, samples, _)| *samples > 0.0);
        buckets.insert(bare, total);
    }

    buckets
        .into_iter()
        .filter(|(_, b)| !b.is_empty())
        .map(|(s, b)| {
            let stored = Stored {
                sum: b.values().map(|v| v.0).sum(),
                samples: b.values().map(|v| v.1).sum(),
                units: b.values().flat_map(|v| v.2.clone()).collect(),
                minutes: b.keys().copied().collect(),
            };
            (s, stored)
        })
        .collect()
}
