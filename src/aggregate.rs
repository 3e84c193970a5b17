//! The pure core: from the stages of one queue read to counts per runner
//! group. No I/O here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::drone::Stage;
use crate::grouping::{Grouping, Route};
use crate::routing::{Standing, classify, pending_since};

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
    /// Pending stages Drone would start now: `StartableBuilds`.
    pub startable: u64,
    /// Pending stages a runner accepted but has not started.
    pub accepted: u64,
    /// Pending stages held back by the pipeline's concurrency limit.
    pub blocked_by_limit: u64,
    /// Pending stages held back by the repository's throttle.
    pub blocked_by_throttle: u64,
    /// When the longest-waiting startable stage became pending (Unix
    /// seconds); `None` when nothing startable waits.
    pub oldest_startable_since: Option<i64>,
    /// Distinct runners (`machine`) with a running or accepted stage of the
    /// group: `BusyWorkers`.
    pub busy_workers: u64,
}

impl GroupCounts {
    /// Pending stages held back by `limit` or `throttle`: `BlockedBuilds`.
    pub fn blocked(&self) -> u64 {
        self.blocked_by_limit + self.blocked_by_throttle
    }

    /// Seconds the longest-waiting startable stage has waited at `now`
    /// (0 when none waits, or when the clocks disagree).
    pub fn oldest_wait(&self, now: i64) -> u64 {
        self.oldest_startable_since.map_or(0, |since| u64::try_from(now - since).unwrap_or(0))
    }

    fn add(&mut self, standing: Standing, pending_since: i64) {
        match standing {
            Standing::Running => self.running += 1,
            Standing::Accepted => self.accepted += 1,
            Standing::BlockedByLimit => self.blocked_by_limit += 1,
            Standing::BlockedByThrottle => self.blocked_by_throttle += 1,
            Standing::Startable => {
                self.startable += 1;
                // A stage without its times (a server that leaves them out)
                // says nothing about waiting; taking 0 as its start would
                // publish a wait of decades.
                if pending_since > 0 {
                    self.oldest_startable_since = Some(
                        self.oldest_startable_since.map_or(pending_since, |t| t.min(pending_since)),
                    );
                }
            }
        }
        if standing != Standing::Running {
            self.queued += 1;
        }
    }

    fn merge(&mut self, other: &GroupCounts) {
        self.queued += other.queued;
        self.running += other.running;
        self.startable += other.startable;
        self.accepted += other.accepted;
        self.blocked_by_limit += other.blocked_by_limit;
        self.blocked_by_throttle += other.blocked_by_throttle;
        // Only used for totals: a group's own busy runners are counted as a
        // set (see `aggregate`).
        self.busy_workers += other.busy_workers;
        self.oldest_startable_since =
            match (self.oldest_startable_since, other.oldest_startable_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
    }
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
    /// Every group with at least one pending or running stage, and every
    /// known group.
    pub groups: BTreeMap<GroupKey, GroupCounts>,
    /// Groups whose own labels use the name of an extra dimension, kept
    /// apart: their key can equal that of a real group (a stage labelled
    /// `platform: linux/arm64` on amd64, beside real arm64 stages), which
    /// must not absorb them.
    pub conflicting: BTreeMap<GroupKey, (GroupCounts, Vec<&'static str>)>,
    /// Stages with a status that is neither pending nor running.
    pub ignored: Vec<IgnoredStage>,
    /// Every label key of the counted stages, so that a mistyped
    /// `METRICS_LABEL_KEYS` can be pointed out.
    pub label_keys: BTreeSet<String>,
}

impl QueueCounts {
    /// Sum over all groups, conflicting ones included. `busy_workers` is
    /// the sum too: a runner name that two groups share (runners given the
    /// same `DRONE_RUNNER_NAME`) counts once per group.
    pub fn totals(&self) -> GroupCounts {
        let mut totals = GroupCounts::default();
        for counts in self.groups.values().chain(self.conflicting.values().map(|(c, _)| c)) {
            totals.merge(counts);
        }
        totals
    }
}

/// A route's counts and the runners busy with its stages.
type RouteCounts<'a> = (Route<'a>, GroupCounts, BTreeSet<&'a str>);

/// Counts the stages per group, after working out each one's standing with
/// the scheduler over the whole queue (see [`classify`]).
pub fn aggregate(stages: &[Stage], grouping: &Grouping) -> QueueCounts {
    let standings = classify(stages);
    let mut counts = QueueCounts::default();

    // Stages by route: by label set first (a queue has few, and a B-tree
    // compares them cheaply), then, only when the grouping uses them, by
    // platform and type within the set (a short list).
    let by_platform = grouping.platform || grouping.pipeline_type;
    let mut by_labels: BTreeMap<&BTreeMap<String, String>, Vec<RouteCounts<'_>>> = BTreeMap::new();
    for (stage, standing) in stages.iter().zip(standings) {
        let Some(standing) = standing else {
            counts.ignored.push(IgnoredStage { id: stage.id, status: stage.status.clone() });
            continue;
        };
        let route = Route::from(stage);
        let routes = by_labels.entry(&stage.labels).or_default();
        let found = if by_platform {
            routes.iter().position(|(r, _, _)| r.same_platform_and_type(&route))
        } else {
            (!routes.is_empty()).then_some(0)
        };
        let slot = found.unwrap_or_else(|| {
            routes.push((route, GroupCounts::default(), BTreeSet::new()));
            routes.len() - 1
        });
        routes[slot].1.add(standing, pending_since(stage));
        // Trimmed as scale-in protection reads it; a blank name is none.
        let machine = stage.machine.trim();
        if matches!(standing, Standing::Running | Standing::Accepted) && !machine.is_empty() {
            routes[slot].2.insert(machine);
        }
    }

    // Few routes, so building each one's key is cheap. Routes that end up
    // in one group (label keys left out) may share runners: the runners are
    // counted once per group, over the union.
    let mut busy: BTreeMap<(bool, GroupKey), BTreeSet<&str>> = BTreeMap::new();
    for (route, route_counts, machines) in by_labels.into_values().flatten() {
        counts.label_keys.extend(route.labels.keys().cloned());
        let keyed = grouping.key(&route);
        let conflicting = !keyed.conflicts.is_empty();
        busy.entry((conflicting, keyed.key.clone())).or_default().extend(machines);
        if conflicting {
            let entry = counts
                .conflicting
                .entry(keyed.key)
                .or_insert_with(|| (GroupCounts::default(), keyed.conflicts));
            entry.0.merge(&route_counts);
        } else {
            counts.groups.entry(keyed.key).or_default().merge(&route_counts);
        }
    }
    for ((conflicting, key), machines) in busy {
        let slot = if conflicting {
            counts.conflicting.get_mut(&key).map(|(c, _)| c)
        } else {
            counts.groups.get_mut(&key)
        };
        if let Some(group) = slot {
            group.busy_workers = machines.len() as u64;
        }
    }
    for known in &grouping.known {
        counts.groups.entry(known.clone()).or_default();
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

    /// (queued, running) per group.
    fn queued_running(counts: &QueueCounts) -> BTreeMap<GroupKey, (u64, u64)> {
        counts.groups.iter().map(|(k, c)| (k.clone(), (c.queued, c.running))).collect()
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
        let counts = aggregate(&stages, &Grouping::default());
        let expected = BTreeMap::from([
            (key(&std), (2, 1)),
            (key(&gpu), (1, 0)),
            (key(&[]), (0, 1)),
            (key(&[("class", "standard")]), (1, 0)),
        ]);
        assert_eq!(queued_running(&counts), expected);
        assert_eq!((counts.totals().queued, counts.totals().running), (4, 2));
        assert!(counts.ignored.is_empty());
    }

    #[test]
    fn busy_workers_are_distinct_runners_with_a_running_or_accepted_stage() {
        let std = [("class", "standard"), ("os", "linux")];
        let std_arm = [("class", "standard"), ("os", "arm")];
        let gpu = [("class", "gpu"), ("os", "linux")];
        let mut stages = vec![
            stage(1, "running", &std),
            stage(2, "running", &std),
            stage(3, "pending", &std),
            stage(4, "pending", &std),
            stage(5, "running", &gpu),
            stage(6, "running", &std_arm),
            stage(7, "success", &gpu),
        ];
        stages[0].machine = "i-0a".into();
        stages[1].machine = " i-0a".into(); // a runner with capacity 2
        stages[2].machine = "i-0b".into(); // accepted, not started
        stages[3].machine = "  ".into(); // waiting: no runner yet
        stages[4].machine = "gpu-1".into();
        stages[5].machine = "i-0b".into();
        stages[6].machine = "gpu-2".into(); // finished: not busy
        let busy = |grouping: &Grouping| -> BTreeMap<GroupKey, u64> {
            let counts = aggregate(&stages, grouping);
            counts.groups.iter().map(|(k, c)| (k.clone(), c.busy_workers)).collect()
        };
        assert_eq!(
            busy(&Grouping::default()),
            BTreeMap::from([(key(&std), 2), (key(&gpu), 1), (key(&std_arm), 1)])
        );
        // Label keys left out merge groups; a runner in both is counted once.
        let by_class =
            Grouping { label_keys: Some(["class".to_string()].into()), ..Grouping::default() };
        assert_eq!(
            busy(&by_class),
            BTreeMap::from([(key(&[("class", "standard")]), 2), (key(&[("class", "gpu")]), 1)])
        );
    }

    #[test]
    fn standings_and_the_oldest_wait_are_counted_per_group() {
        let mut stages = vec![
            stage(1, "running", &[]),
            stage(2, "pending", &[]),
            stage(3, "pending", &[]),
            stage(4, "pending", &[]),
            stage(5, "pending", &[]),
        ];
        stages[1].machine = "runner-1".into(); // accepted
        stages[2].created = 1_000; // startable since 1000
        stages[3].created = 900;
        stages[3].updated = 1_100;
        stages[3].has_dependencies = true; // startable since 1100
        for s in &mut stages {
            s.repo_id = 1;
            s.name = format!("p{}", s.id);
        }
        stages[4].throttle = 3; // three older stages of the repository
        let counts = aggregate(&stages, &Grouping::default());
        let group = counts.groups[&key(&[])];
        assert_eq!(
            group,
            GroupCounts {
                queued: 4,
                running: 1,
                startable: 2,
                accepted: 1,
                blocked_by_limit: 0,
                blocked_by_throttle: 1,
                oldest_startable_since: Some(1_000),
                // The accepted stage's runner; the running stage names none.
                busy_workers: 1,
            }
        );
        assert_eq!(group.blocked(), 1);
        assert_eq!(group.oldest_wait(1_060), 60);
        assert_eq!(group.oldest_wait(900), 0, "a clock behind Drone's is no negative wait");
        assert_eq!(GroupCounts::default().oldest_wait(1_060), 0);

        // Without its times a stage still counts, but sets no wait.
        let counts = aggregate(&[stage(9, "pending", &[])], &Grouping::default());
        let group = counts.groups[&key(&[])];
        assert_eq!((group.startable, group.oldest_startable_since), (1, None));
    }

    #[test]
    fn grouping_options_merge_and_split_groups() {
        let mut arm = stage(1, "pending", &[("class", "standard"), ("team", "a")]);
        arm.os = "linux".into();
        arm.arch = "arm64".into();
        let mut amd = stage(2, "pending", &[("class", "standard"), ("team", "b")]);
        amd.os = "linux".into();
        amd.arch = "amd64".into();
        let stages = [arm, amd];

        let narrowed =
            Grouping { label_keys: Some(["class".to_string()].into()), ..Grouping::default() };
        let counts = aggregate(&stages, &narrowed);
        assert_eq!(
            queued_running(&counts),
            BTreeMap::from([(key(&[("class", "standard")]), (2, 0))])
        );

        let by_platform = Grouping { platform: true, ..narrowed };
        let counts = aggregate(&stages, &by_platform);
        assert_eq!(
            queued_running(&counts),
            BTreeMap::from([
                (key(&[("class", "standard"), ("platform", "linux/amd64")]), (1, 0)),
                (key(&[("class", "standard"), ("platform", "linux/arm64")]), (1, 0)),
            ])
        );
    }

    #[test]
    fn known_groups_are_always_there() {
        let grouping = Grouping { known: vec![key(&[("class", "gpu")])], ..Grouping::default() };
        let counts = aggregate(&[], &grouping);
        assert_eq!(
            counts.groups,
            BTreeMap::from([(key(&[("class", "gpu")]), GroupCounts::default())])
        );
    }

    #[test]
    fn an_empty_value_is_a_label_of_its_own() {
        let counts = aggregate(
            &[
                stage(1, "pending", &[("class", "standard"), ("gpu", "")]),
                stage(2, "pending", &[("class", "standard")]),
            ],
            &Grouping::default(),
        );
        assert_eq!(counts.groups.len(), 2);
    }

    #[test]
    fn other_statuses_are_left_out_and_listed() {
        let counts = aggregate(
            &[
                stage(1, "pending", &[]),
                stage(2, "blocked", &[]),
                stage(3, "waiting_on_dependencies", &[]),
            ],
            &Grouping::default(),
        );
        assert_eq!((counts.totals().queued, counts.totals().running), (1, 0));
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
