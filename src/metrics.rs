//! What is published: the metric vocabulary, defined once, and the plan of
//! data points for one poll. Pure; the sinks only encode the plan.

use serde::Serialize;

use crate::aggregate::{GroupCounts, GroupKey, QueueCounts};
use crate::dimensions::{self, DimensionProblem};

/// Unit of a metric, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// A number of things.
    Count,
    /// A duration.
    Seconds,
}

impl Unit {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// How finely CloudWatch stores the points (`StorageResolution`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Resolution {
    /// One-minute points; the default, and what alarms of a minute or more
    /// need.
    #[default]
    Standard,
    /// One-second points (`CLOUDWATCH_HIGH_RESOLUTION`), for polls more
    /// often than once a minute; alarms on them may use 10 s or 30 s periods.
    High,
}

impl Resolution {
    /// The `StorageResolution` value CloudWatch and EMF expect.
    pub fn seconds(self) -> i32 {
        match self {
            Resolution::Standard => 60,
            Resolution::High => 1,
        }
    }
}

/// One per-group metric.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// CloudWatch metric name; existing alarms depend on it.
    pub name: &'static str,
    /// Unit sent with every data point.
    pub unit: Unit,
    /// One sentence on what it counts, for Prometheus' `HELP` line.
    pub help: &'static str,
    /// Reads the value from a group's counts at a time (Unix seconds).
    value: fn(&GroupCounts, i64) -> u64,
}

// Metrics are told apart by name; comparing the reader functions would
// compare code addresses.
impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.name == other.name
    }
}

/// Pending stages of the group: the reference tool's metric.
pub const QUEUED_BUILDS: Metric = Metric {
    name: "QueuedBuilds",
    unit: Unit::Count,
    help: "Pending stages of the runner group.",
    value: |c, _| c.queued,
};
/// Running stages of the group: the reference tool's metric.
pub const RUNNING_BUILDS: Metric = Metric {
    name: "RunningBuilds",
    unit: Unit::Count,
    help: "Running stages of the runner group.",
    value: |c, _| c.running,
};
/// Pending stages Drone would hand to a free matching runner now.
pub const STARTABLE_BUILDS: Metric = Metric {
    name: "StartableBuilds",
    unit: Unit::Count,
    help: "Pending stages Drone would hand to a free runner of the group now.",
    value: |c, _| c.startable,
};
/// Pending stages held back by a concurrency `limit` or a `throttle`.
pub const BLOCKED_BUILDS: Metric = Metric {
    name: "BlockedBuilds",
    unit: Unit::Count,
    help: "Pending stages of the group held back by a concurrency limit or a throttle.",
    value: |c, _| c.blocked(),
};
/// How long the oldest startable stage of the group has waited.
pub const OLDEST_QUEUED_SECONDS: Metric = Metric {
    name: "OldestQueuedSeconds",
    unit: Unit::Seconds,
    help: "How long the oldest startable stage of the group has waited.",
    value: GroupCounts::oldest_wait,
};

/// Runners busy with a stage of the group: how many workers the group
/// needs now at the least, and how many a scale-in must spare.
pub const BUSY_WORKERS: Metric = Metric {
    name: "BusyWorkers",
    unit: Unit::Count,
    help: "Distinct runners with a running or accepted stage of the group.",
    value: |c, _| c.busy_workers,
};

/// Every per-group metric, in publishing order.
pub const METRICS: [Metric; 6] = [
    QUEUED_BUILDS,
    RUNNING_BUILDS,
    STARTABLE_BUILDS,
    BLOCKED_BUILDS,
    OLDEST_QUEUED_SECONDS,
    BUSY_WORKERS,
];

/// One data point: a metric of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datum {
    /// Index into [`Plan::groups`].
    pub group: usize,
    /// Which metric.
    pub metric: Metric,
    /// The value.
    pub value: f64,
}

/// A group left out because CloudWatch would refuse its dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedGroup {
    /// The group.
    pub group: GroupKey,
    /// Its counts, so that the warning says what is missing.
    pub counts: GroupCounts,
    /// Every reason.
    pub problems: Vec<DimensionProblem>,
}

/// What one poll publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The groups that are published, with their counts.
    pub groups: Vec<(GroupKey, GroupCounts)>,
    /// Data points, grouped by group, in a stable order.
    pub datums: Vec<Datum>,
    /// Groups left out, with the reasons.
    pub rejected: Vec<RejectedGroup>,
}

/// Turns counts into data points at `now` (Unix seconds, the poll's time):
/// every metric for every group that has a stage (or is known), zeros
/// included, so that metric math over them always finds each one. Groups
/// whose labels CloudWatch would refuse, or whose labels collide with an
/// extra dimension, are set aside with their reasons.
pub fn plan(counts: &QueueCounts, now: i64) -> Plan {
    let mut plan = Plan::default();
    for (group, (group_counts, names)) in &counts.conflicting {
        let mut problems: Vec<DimensionProblem> =
            names.iter().map(|&name| DimensionProblem::Collision { name }).collect();
        problems.extend(dimensions::check(group));
        plan.rejected.push(RejectedGroup { group: group.clone(), counts: *group_counts, problems });
    }
    for (group, group_counts) in &counts.groups {
        let problems = dimensions::check(group);
        if !problems.is_empty() {
            plan.rejected.push(RejectedGroup {
                group: group.clone(),
                counts: *group_counts,
                problems,
            });
            continue;
        }
        let index = plan.groups.len();
        plan.groups.push((group.clone(), *group_counts));
        for metric in METRICS {
            // Counts stay far below 2^53, so the conversion is exact.
            let value = (metric.value)(group_counts, now) as f64;
            plan.datums.push(Datum { group: index, metric, value });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn key(labels: &[(&str, &str)]) -> GroupKey {
        GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn group(queued: u64, running: u64) -> GroupCounts {
        GroupCounts { queued, running, startable: queued, ..GroupCounts::default() }
    }

    fn points(plan: &Plan) -> Vec<(String, &'static str, f64)> {
        plan.datums
            .iter()
            .map(|d| (plan.groups[d.group].0.to_string(), d.metric.name, d.value))
            .collect()
    }

    #[test]
    fn every_group_gets_every_metric_zeros_included() {
        let counts = QueueCounts {
            groups: BTreeMap::from([
                (key(&[("class", "gpu")]), group(0, 2)),
                (
                    key(&[]),
                    GroupCounts {
                        queued: 5,
                        startable: 2,
                        accepted: 1,
                        blocked_by_limit: 1,
                        blocked_by_throttle: 1,
                        oldest_startable_since: Some(1_000),
                        busy_workers: 1,
                        ..GroupCounts::default()
                    },
                ),
            ]),
            ..QueueCounts::default()
        };
        let plan = plan(&counts, 1_090);
        let none = "(no labels)".to_string();
        let gpu = "class=gpu".to_string();
        assert_eq!(
            points(&plan),
            [
                (none.clone(), "QueuedBuilds", 5.0),
                (none.clone(), "RunningBuilds", 0.0),
                (none.clone(), "StartableBuilds", 2.0),
                (none.clone(), "BlockedBuilds", 2.0),
                (none.clone(), "OldestQueuedSeconds", 90.0),
                (none, "BusyWorkers", 1.0),
                (gpu.clone(), "QueuedBuilds", 0.0),
                (gpu.clone(), "RunningBuilds", 2.0),
                (gpu.clone(), "StartableBuilds", 0.0),
                (gpu.clone(), "BlockedBuilds", 0.0),
                (gpu.clone(), "OldestQueuedSeconds", 0.0),
                (gpu, "BusyWorkers", 0.0),
            ]
        );
        let units: Vec<Unit> = plan.datums[..6].iter().map(|d| d.metric.unit).collect();
        assert_eq!(
            units,
            [Unit::Count, Unit::Count, Unit::Count, Unit::Count, Unit::Seconds, Unit::Count]
        );
        assert!(plan.rejected.is_empty());
    }

    #[test]
    fn an_invalid_group_is_set_aside_and_the_others_stay() {
        let counts = QueueCounts {
            groups: BTreeMap::from([
                (key(&[("class", "standard"), ("gpu", "")]), group(1, 0)),
                (key(&[("class", "standard")]), group(4, 1)),
                (key(&[("platform", "x")]), group(1, 0)),
            ]),
            conflicting: BTreeMap::from([(
                key(&[("platform", "x")]),
                (group(2, 0), vec!["platform"]),
            )]),
            ..QueueCounts::default()
        };
        let plan = plan(&counts, 0);
        // The real platform=x group is published; the conflicting one is not.
        assert_eq!(
            plan.groups,
            [
                (key(&[("class", "standard")]), group(4, 1)),
                (key(&[("platform", "x")]), group(1, 0))
            ]
        );
        assert_eq!(plan.datums.len(), 2 * METRICS.len());
        let rejected: Vec<(String, String)> = plan
            .rejected
            .iter()
            .map(|r| (r.group.to_string(), r.problems.iter().map(ToString::to_string).collect()))
            .collect();
        assert_eq!(rejected[0].0, "platform=x");
        assert!(
            rejected[0].1.starts_with(r#"its own label "platform" has the name of a dimension"#)
        );
        assert_eq!(plan.rejected[0].counts, group(2, 0));
        assert_eq!(
            rejected[1],
            ("class=standard,gpu=\"\"".into(), r#"the value of label "gpu" is empty"#.into())
        );
    }

    #[test]
    fn an_empty_queue_plans_nothing() {
        let plan = plan(&QueueCounts::default(), 0);
        assert!(plan.datums.is_empty() && plan.groups.is_empty() && plan.rejected.is_empty());
    }
}
