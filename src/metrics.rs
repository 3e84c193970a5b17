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
}

impl Unit {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
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
    /// Reads the value from a group's counts.
    value: fn(&GroupCounts) -> u64,
}

// Metrics are told apart by name; comparing the reader functions would
// compare code addresses.
impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.name == other.name
    }
}

/// Pending stages of the group: the reference tool's metric.
pub const QUEUED_BUILDS: Metric =
    Metric { name: "QueuedBuilds", unit: Unit::Count, value: |c| c.queued };
/// Running stages of the group: the reference tool's metric.
pub const RUNNING_BUILDS: Metric =
    Metric { name: "RunningBuilds", unit: Unit::Count, value: |c| c.running };

/// Every per-group metric, in publishing order.
pub const METRICS: [Metric; 2] = [QUEUED_BUILDS, RUNNING_BUILDS];

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

/// Turns counts into data points: every metric for every group that has a
/// stage, zeros included, so that metric math over `QueuedBuilds` and
/// `RunningBuilds` always finds both. Groups whose labels CloudWatch would
/// refuse are set aside with their reasons.
pub fn plan(counts: &QueueCounts) -> Plan {
    let mut plan = Plan::default();
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
            let value = (metric.value)(group_counts) as f64;
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

    #[test]
    fn every_group_gets_both_metrics_zeros_included() {
        let counts = QueueCounts {
            groups: BTreeMap::from([
                (key(&[("class", "gpu")]), GroupCounts { queued: 0, running: 2 }),
                (key(&[]), GroupCounts { queued: 3, running: 0 }),
            ]),
            ignored: vec![],
        };
        let plan = plan(&counts);
        let points: Vec<(String, &str, f64)> = plan
            .datums
            .iter()
            .map(|d| (plan.groups[d.group].0.to_string(), d.metric.name, d.value))
            .collect();
        assert_eq!(
            points,
            [
                ("(no labels)".to_string(), "QueuedBuilds", 3.0),
                ("(no labels)".to_string(), "RunningBuilds", 0.0),
                ("class=gpu".to_string(), "QueuedBuilds", 0.0),
                ("class=gpu".to_string(), "RunningBuilds", 2.0),
            ]
        );
        assert!(plan.datums.iter().all(|d| d.metric.unit == Unit::Count));
        assert!(plan.rejected.is_empty());
    }

    #[test]
    fn an_invalid_group_is_set_aside_and_the_others_stay() {
        let counts = QueueCounts {
            groups: BTreeMap::from([
                (key(&[("class", "standard"), ("gpu", "")]), GroupCounts { queued: 1, running: 0 }),
                (key(&[("class", "standard")]), GroupCounts { queued: 4, running: 1 }),
            ]),
            ignored: vec![],
        };
        let plan = plan(&counts);
        assert_eq!(
            plan.groups,
            [(key(&[("class", "standard")]), GroupCounts { queued: 4, running: 1 })]
        );
        assert_eq!(plan.datums.len(), 2);
        assert_eq!(plan.rejected.len(), 1);
        assert_eq!(plan.rejected[0].group, key(&[("class", "standard"), ("gpu", "")]));
        assert_eq!(
            plan.rejected[0].problems[0].to_string(),
            r#"the value of label "gpu" is empty"#
        );
    }

    #[test]
    fn an_empty_queue_plans_nothing() {
        let plan = plan(&QueueCounts::default());
        assert!(plan.datums.is_empty() && plan.groups.is_empty() && plan.rejected.is_empty());
    }
}
