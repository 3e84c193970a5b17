//! The pure core: from the stages of one queue read to counts per runner
//! group. No I/O here.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::drone::{Stage, StageState};

/// A runner group: the dimensions its metrics carry. For Drone this is the
/// stage's exact label set, because Drone hands a stage only to a runner
/// whose labels are exactly the same (facts §1.5). No labels at all is a
/// group of its own, published without dimensions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupKey(pub BTreeMap<String, String>);

impl GroupKey {
    /// The dimensions as (name, value) pairs, sorted by name.
    pub fn dimensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True for the group of stages without labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// Lets a group be looked up by a stage's labels without building a key.
impl Borrow<BTreeMap<String, String>> for GroupKey {
    fn borrow(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    /// `class=gpu,os=linux`; names or values that are empty or hold spaces,
    /// separators, quotes or unusual characters are quoted and escaped, so
    /// that a log line always shows exactly which labels are meant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(no labels)");
        }
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}={}", Quoted(name), Quoted(value))?;
        }
        Ok(())
    }
}

struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self.0.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c));
        if plain { f.write_str(self.0) } else { write!(f, "{:?}", self.0) }
    }
}

/// Counts of one group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GroupCounts {
    /// Pending stages: `QueuedBuilds`.
    pub queued: u64,
    /// Running stages: `RunningBuilds`.
    pub running: u64,
}

/// A stage left out of the counts because of its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredStage {
    /// Stage id.
    pub id: i64,
    /// The status it had.
    pub status: String,
}

/// Everything one queue read says, per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Every group with at least one pending or running stage.
    pub groups: BTreeMap<GroupKey, GroupCounts>,
    /// Stages with a status that is neither pending nor running.
    pub ignored: Vec<IgnoredStage>,
}

impl QueueCounts {
    /// Sum over all groups.
    pub fn totals(&self) -> GroupCounts {
        self.groups.values().fold(GroupCounts::default(), |acc, c| GroupCounts {
            queued: acc.queued + c.queued,
            running: acc.running + c.running,
        })
    }
}

/// Counts pending and running stages per exact label set.
pub fn aggregate(stages: &[Stage]) -> QueueCounts {
    let mut counts = QueueCounts::default();
    for stage in stages {
        let state = stage.state();
        if state == StageState::Other {
            counts.ignored.push(IgnoredStage { id: stage.id, status: stage.status.clone() });
            continue;
        }
        // Look up before inserting, so that the labels are cloned once per
        // group rather than once per stage.
        let entry = match counts.groups.get_mut(&stage.labels) {
            Some(entry) => entry,
            None => counts.groups.entry(GroupKey(stage.labels.clone())).or_default(),
        };
        match state {
            StageState::Pending => entry.queued += 1,
            StageState::Running => entry.running += 1,
            StageState::Other => unreachable!("filtered above"),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(id: i64, status: &str, labels: &[(&str, &str)]) -> Stage {
        Stage {
            id,
            status: status.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Stage::default()
        }
    }

    fn key(labels: &[(&str, &str)]) -> GroupKey {
        GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn pending_and_running_are_counted_per_exact_label_set() {
        let gpu = [("class", "gpu"), ("os", "linux")];
        let std = [("class", "standard"), ("os", "linux")];
        let stages = [
            stage(1, "running", &std),
            stage(2, "pending", &std),
            stage(3, "pending", &gpu),
            stage(4, "pending", &std),
            stage(5, "running", &[]),
            // A subset of labels is a different group: Drone would not
            // send it to a runner with both labels.
            stage(6, "pending", &[("class", "standard")]),
        ];
        let counts = aggregate(&stages);
        let expected: BTreeMap<GroupKey, GroupCounts> = [
            (key(&std), GroupCounts { queued: 2, running: 1 }),
            (key(&gpu), GroupCounts { queued: 1, running: 0 }),
            (key(&[]), GroupCounts { queued: 0, running: 1 }),
            (key(&[("class", "standard")]), GroupCounts { queued: 1, running: 0 }),
        ]
        .into();
        assert_eq!(counts.groups, expected);
        assert_eq!(counts.totals(), GroupCounts { queued: 4, running: 2 });
        assert!(counts.ignored.is_empty());
    }

    #[test]
    fn an_empty_value_is_a_label_of_its_own() {
        let counts = aggregate(&[
            stage(1, "pending", &[("class", "standard"), ("gpu", "")]),
            stage(2, "pending", &[("class", "standard")]),
        ]);
        assert_eq!(counts.groups.len(), 2);
    }

    #[test]
    fn other_statuses_are_left_out_and_listed() {
        let counts = aggregate(&[
            stage(1, "pending", &[]),
            stage(2, "blocked", &[]),
            stage(3, "waiting_on_dependencies", &[]),
        ]);
        assert_eq!(counts.totals(), GroupCounts { queued: 1, running: 0 });
        let ignored: Vec<_> = counts.ignored.iter().map(|s| (s.id, s.status.as_str())).collect();
        assert_eq!(ignored, [(2, "blocked"), (3, "waiting_on_dependencies")]);
    }

    #[test]
    fn group_names_show_odd_labels_unambiguously() {
        assert_eq!(key(&[]).to_string(), "(no labels)");
        assert_eq!(key(&[("class", "gpu"), ("os", "linux")]).to_string(), "class=gpu,os=linux");
        assert_eq!(key(&[("gpu", ""), ("a b", "x,y")]).to_string(), r#""a b"="x,y",gpu="""#);
        assert_eq!(key(&[("k", "line\nbreak")]).to_string(), r#"k="line\nbreak""#);
    }
}
