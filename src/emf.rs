//! The EMF sink: a [`Plan`] as CloudWatch Embedded Metric Format documents,
//! one JSON line each, which CloudWatch Logs turns into metrics (facts
//! §3.3). In Lambda this needs no `PutMetricData` call and no
//! `cloudwatch:PutMetricData` permission. Pure: the caller writes the lines.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aggregate::GroupKey;
use crate::dimensions::MAX_DIMENSIONS;
use crate::metrics::{Datum, Plan, Resolution};

/// Most metric definitions in one directive.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Most keys in one dimension set; the same as `PutMetricData`'s limit.
pub const MAX_DIMENSION_KEYS: usize = MAX_DIMENSIONS;
/// The root member holding the metadata; no dimension may be called so.
const METADATA_KEY: &str = "_aws";

/// The documents of one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Documents {
    /// One JSON object per line, without the newline.
    pub lines: Vec<String>,
    /// Groups that cannot be written, with the reason.
    pub skipped: Vec<(GroupKey, String)>,
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "_aws")]
    metadata: Metadata<'a>,
    /// Dimension values (strings) and metric values (numbers), at the root
    /// as the format requires.
    #[serde(flatten)]
    members: BTreeMap<&'a str, Member<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata<'a> {
    timestamp: u64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [Vec<&'a str>; 1],
    metrics: Vec<Definition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    name: &'static str,
    unit: &'static str,
    /// Left out for standard resolution, which is the format's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage_resolution: Option<i32>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Member<'a> {
    Dimension(&'a str),
    Value(serde_json::Number),
}

/// The plan as EMF documents at `timestamp_ms` (milliseconds since the
/// epoch): one line per group, whose dimension set is the group's labels.
/// A group whose label is named like a metric or `_aws` would overwrite
/// that member, so it is skipped with the reason.
pub fn documents(
    plan: &Plan,
    namespace: &str,
    timestamp_ms: u64,
    resolution: Resolution,
) -> Documents {
    documents_with_limit(plan, namespace, timestamp_ms, resolution, MAX_METRICS_PER_DIRECTIVE)
}

/// [`documents`], with at most `max_metrics` metrics per line (a group with
/// more takes several lines), so that the split can be tested with the few
/// metrics the product has.
fn documents_with_limit(
    plan: &Plan,
    namespace: &str,
    timestamp_ms: u64,
    resolution: Resolution,
    max_metrics: usize,
) -> Documents {
    let mut out = Documents::default();
    for datums in plan.datums.chunk_by(|a, b| a.group == b.group) {
        let group = &plan.groups[datums[0].group].0;
        if let Some(why) = problem(group, datums) {
            out.skipped.push((group.clone(), why));
            continue;
        }
        for chunk in datums.chunks(max_metrics.max(1)) {
            out.lines.push(line(group, chunk, namespace, timestamp_ms, resolution));
        }
    }
    out
}

/// Why a group's labels cannot be members of its document, if they cannot.
fn problem(group: &GroupKey, datums: &[Datum]) -> Option<String> {
    if group.0.len() > MAX_DIMENSION_KEYS {
        return Some(format!(
            "it has {} labels and EMF allows at most {MAX_DIMENSION_KEYS} dimension keys",
            group.0.len()
        ));
    }
    let clash = group
        .dimensions()
        .map(|(name, _)| name)
        .find(|name| *name == METADATA_KEY || datums.iter().any(|d| d.metric.name == *name))?;
    Some(format!(
        "its label {clash:?} has the name of a member the format needs for itself; rename the \
         label, or leave it out with METRICS_LABEL_KEYS"
    ))
}

fn line(
    group: &GroupKey,
    datums: &[Datum],
    namespace: &str,
    timestamp_ms: u64,
    resolution: Resolution,
) -> String {
    let storage_resolution = match resolution {
        Resolution::Standard => None,
        Resolution::High => Some(resolution.seconds()),
    };
    let metrics = datums
        .iter()
        .map(|d| Definition {
            name: d.metric.name,
            unit: d.metric.unit.as_str(),
            storage_resolution,
        })
        .collect();
    let mut members: BTreeMap<&str, Member<'_>> =
        group.dimensions().map(|(name, value)| (name, Member::Dimension(value))).collect();
    for datum in datums {
        members.insert(datum.metric.name, Member::Value(number(datum.value)));
    }
    let document = Document {
        metadata: Metadata {
            timestamp: timestamp_ms,
            cloud_watch_metrics: [Directive {
                namespace,
                dimensions: [group.dimensions().map(|(name, _)| name).collect()],
                metrics,
            }],
        },
        members,
    };
    // Serialising strings, integers and finite numbers cannot fail.
    serde_json::to_string(&document).unwrap_or_default()
}

/// Whole values as integers (`3`, not `3.0`); the format takes either.
fn number(value: f64) -> serde_json::Number {
    if value.fract() == 0.0 && (0.0..9.0e15).contains(&value) {
        serde_json::Number::from(value as u64)
    } else {
        // Values are counts and durations: finite. Zero stands in for the
        // impossible rest rather than writing invalid JSON.
        serde_json::Number::from_f64(value).unwrap_or_else(|| 0.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{GroupCounts, QueueCounts};
    use crate::metrics::{METRICS, plan};
    use serde_json::{Value, json};

    fn key(labels: &[(&str, &str)]) -> GroupKey {
        GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn plan_of(groups: Vec<(GroupKey, u64)>) -> Plan {
        let counts = QueueCounts {
            groups: groups
                .into_iter()
                .map(|(g, queued)| {
                    let counts = GroupCounts {
                        queued,
                        running: 1,
                        startable: queued,
                        busy_workers: 1,
                        ..Default::default()
                    };
                    (g, counts)
                })
                .collect(),
            ..QueueCounts::default()
        };
        plan(&counts, 0)
    }

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "{line}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn one_line_per_group_with_its_labels_as_the_dimension_set() {
        let plan = plan_of(vec![(key(&[("class", "gpu"), ("os", "linux")]), 2), (key(&[]), 4)]);
        let doc = documents(&plan, "Drone", 1_767_225_600_123, Resolution::Standard);
        assert!(doc.skipped.is_empty());
        let lines: Vec<Value> = doc.lines.iter().map(|l| parse(l)).collect();
        // Groups come in the plan's order: no labels first.
        assert_eq!(
            lines[0],
            json!({
                "_aws": {"Timestamp": 1_767_225_600_123_u64, "CloudWatchMetrics": [{
                    "Namespace": "Drone",
                    "Dimensions": [[]],
                    "Metrics": [
                        {"Name": "QueuedBuilds", "Unit": "Count"},
                        {"Name": "RunningBuilds", "Unit": "Count"},
                        {"Name": "StartableBuilds", "Unit": "Count"},
                        {"Name": "BlockedBuilds", "Unit": "Count"},
                        {"Name": "OldestQueuedSeconds", "Unit": "Seconds"},
                        {"Name": "BusyWorkers", "Unit": "Count"},
                    ]}]},
                "QueuedBuilds": 4, "RunningBuilds": 1, "StartableBuilds": 4, "BlockedBuilds": 0,
                "OldestQueuedSeconds": 0, "BusyWorkers": 1
            })
        );
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["class", "os"]])
        );
        assert_eq!(
            (lines[1]["class"].as_str(), lines[1]["os"].as_str()),
            (Some("gpu"), Some("linux"))
        );
        assert_eq!(lines[1]["QueuedBuilds"], 2);
        // Integers, not 2.0.
        assert!(doc.lines[1].contains("\"QueuedBuilds\":2,"), "{}", doc.lines[1]);
        assert!(doc.lines[1].starts_with("{\"_aws\":"), "{}", doc.lines[1]);
    }

    #[test]
    fn high_resolution_is_stated_on_every_metric() {
        let plan = plan_of(vec![(key(&[("class", "gpu")]), 1)]);
        let doc = documents(&plan, "Drone", 0, Resolution::High);
        let line = parse(&doc.lines[0]);
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), METRICS.len());
        assert!(metrics.iter().all(|m| m["StorageResolution"] == 1), "{metrics:?}");
    }

    #[test]
    fn a_group_with_more_metrics_than_a_directive_takes_several_lines() {
        let plan = plan_of(vec![(key(&[("class", "gpu")]), 3), (key(&[("class", "x")]), 1)]);
        let doc = documents_with_limit(&plan, "N", 0, Resolution::Standard, 2);
        // 6 metrics per group, 2 per line: 3 lines each.
        assert_eq!(doc.lines.len(), 6);
        let mut seen: BTreeMap<(String, String), Value> = BTreeMap::new();
        for line in doc.lines.iter().map(|l| parse(l)) {
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            let metrics = directive["Metrics"].as_array().unwrap();
            assert!(!metrics.is_empty() && metrics.len() <= 2);
            // Every metric defined has its value in the same line, and the
            // line holds no other value.
            let numbers = line.as_object().unwrap().values().filter(|v| v.is_number()).count();
            assert_eq!(numbers, metrics.len());
            for m in metrics {
                let name = m["Name"].as_str().unwrap().to_string();
                let class = line["class"].as_str().unwrap().to_string();
                assert!(seen.insert((class, name.clone()), line[&name].clone()).is_none());
            }
        }
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[&("x".into(), "BusyWorkers".into())], 1);
        assert_eq!(seen[&("gpu".into(), "QueuedBuilds".into())], 3);
        assert_eq!(seen[&("x".into(), "RunningBuilds".into())], 1);
    }

    #[test]
    fn labels_that_would_overwrite_a_member_are_left_out() {
        let plan = plan_of(vec![
            (key(&[("QueuedBuilds", "a")]), 1),
            (key(&[("_aws", "b")]), 1),
            (key(&[("class", "c")]), 1),
        ]);
        let doc = documents(&plan, "N", 0, Resolution::Standard);
        assert_eq!(doc.lines.len(), 1);
        assert_eq!(parse(&doc.lines[0])["class"], "c");
        let skipped: Vec<String> = doc.skipped.iter().map(|(g, _)| g.to_string()).collect();
        assert_eq!(skipped, ["QueuedBuilds=a", "_aws=b"]);
        assert!(doc.skipped[0].1.contains("\"QueuedBuilds\""));
    }

    #[test]
    fn the_largest_group_cloudwatch_takes_stays_well_under_the_event_size() {
        let labels: Vec<(String, String)> =
            (0..MAX_DIMENSION_KEYS).map(|i| (format!("{i:0>255}"), "v".repeat(1024))).collect();
        let group = GroupKey(labels.into_iter().collect());
        let plan = plan_of(vec![(group, 1)]);
        let doc = documents(&plan, &"n".repeat(255), u64::MAX, Resolution::High);
        assert_eq!(doc.lines.len(), 1);
        assert!(doc.lines[0].len() < 64 * 1024, "{} bytes", doc.lines[0].len());
        let line = parse(&doc.lines[0]);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0].as_array().unwrap().len(),
            MAX_DIMENSION_KEYS
        );
    }

    #[test]
    fn an_empty_plan_writes_nothing() {
        assert_eq!(documents(&Plan::default(), "N", 0, Resolution::Standard), Documents::default());
    }
}
