//! Drone's scheduler rules (facts §1.5), to tell which pending stages can
//! start now. Pure. The rules look at the whole queue, not one group: a
//! stage's concurrency `limit` counts its siblings of the same repository
//! and pipeline name, and a repository's `throttle` counts every stage of
//! the repository, whatever runner group it belongs to.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::drone::{Stage, StageState};

/// Where a stage stands with the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Standing {
    /// On a runner.
    Running,
    /// Pending, but a runner has accepted it (`machine` is set) and is about
    /// to start it; the scheduler skips it.
    Accepted,
    /// Pending, held back by the pipeline's concurrency `limit`.
    BlockedByLimit,
    /// Pending, held back by the repository's `throttle`.
    BlockedByThrottle,
    /// Pending, and Drone would hand it to a matching free runner now.
    Startable,
}

/// The standing of every stage, in the order given; `None` for a stage whose
/// status is neither pending nor running (it takes no part in the rules).
///
/// Drone checks, in this order: running, accepted, `limit`, `throttle`.
///
/// - `limit`: siblings are stages of the same repository and pipeline name;
///   a pending stage is blocked when the siblings with a lower id (any
///   status) plus the running siblings with a higher id reach the limit. A
///   newer running sibling counts because its build may have started first.
/// - `throttle`: a pending stage is blocked when the repository has at least
///   `throttle` stages with a lower id, in any status and any group.
pub fn classify(stages: &[Stage]) -> Vec<Option<Standing>> {
    let states: Vec<StageState> = stages.iter().map(Stage::state).collect();

    // Only pending stages with a limit or a throttle need their siblings or
    // their repository: most stages have neither, so only those groups are
    // indexed.
    let mut limited: FxHashMap<(i64, &str), Vec<usize>> = FxHashMap::default();
    let mut throttled: FxHashMap<i64, Vec<usize>> = FxHashMap::default();
    for (i, stage) in stages.iter().enumerate() {
        if states[i] == StageState::Pending && stage.limit != 0 {
            limited.entry((stage.repo_id, stage.name.as_str())).or_default();
        }
        if states[i] == StageState::Pending && stage.throttle != 0 {
            throttled.entry(stage.repo_id).or_default();
        }
    }

    // Positions of each stage among its siblings and its repository, in id
    // order, so that every rule is a lookup rather than a scan of the queue.
    let mut siblings = limited;
    let mut repos = throttled;
    for (i, stage) in stages.iter().enumerate().filter(|(i, _)| states[*i] != StageState::Other) {
        if let Some(members) = siblings.get_mut(&(stage.repo_id, stage.name.as_str())) {
            members.push(i);
        }
        if let Some(members) = repos.get_mut(&stage.repo_id) {
            members.push(i);
        }
    }

    // For each stage: siblings with a lower id, and running siblings with a
    // higher id.
    let mut limit_count = vec![0_usize; stages.len()];
    for members in siblings.values_mut() {
        members.sort_unstable_by_key(|&i| stages[i].id);
        let running_total = members.iter().filter(|&&i| states[i] == StageState::Running).count();
        let mut running_before = 0;
        for (position, &i) in members.iter().enumerate() {
            let running = states[i] == StageState::Running;
            limit_count[i] = position + (running_total - running_before - usize::from(running));
            running_before += usize::from(running);
        }
    }
    // For each stage: stages of its repository with a lower id.
    let mut repo_before = vec![0_usize; stages.len()];
    for members in repos.values_mut() {
        members.sort_unstable_by_key(|&i| stages[i].id);
        for (position, &i) in members.iter().enumerate() {
            repo_before[i] = position;
        }
    }

    stages
        .iter()
        .enumerate()
        .map(|(i, stage)| match states[i] {
            StageState::Other => None,
            StageState::Running => Some(Standing::Running),
            StageState::Pending if !stage.machine.is_empty() => Some(Standing::Accepted),
            StageState::Pending if stage.limit != 0 && limit_count[i] as i64 >= stage.limit => {
                Some(Standing::BlockedByLimit)
            }
            StageState::Pending
                if stage.throttle != 0 && repo_before[i] as i64 >= stage.throttle =>
            {
                Some(Standing::BlockedByThrottle)
            }
            StageState::Pending => Some(Standing::Startable),
        })
        .collect()
}

/// When a pending stage started to wait: its creation, or, for a stage that
/// first waited for other stages (`depends_on`), its last update, which is
/// when those finished and it became pending. Without an update time (a
/// server that leaves it out), or with one before the creation (a clock
/// step), the creation time is the best known bound.
pub fn pending_since(stage: &Stage) -> i64 {
    if stage.has_dependencies { stage.updated.max(stage.created) } else { stage.created }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Standing::*;

    /// A stage: id, repo, pipeline name, status, limit, throttle, machine.
    fn s(
        id: i64,
        repo: i64,
        name: &str,
        status: &str,
        limit: i64,
        throttle: i64,
        machine: &str,
    ) -> Stage {
        Stage {
            id,
            repo_id: repo,
            name: name.into(),
            status: status.into(),
            limit,
            throttle,
            machine: machine.into(),
            ..Stage::default()
        }
    }

    #[test]
    fn waiting_starts_when_dependencies_finish() {
        let mut stage = Stage { created: 100, updated: 250, ..Stage::default() };
        assert_eq!(pending_since(&stage), 100);
        stage.has_dependencies = true;
        assert_eq!(pending_since(&stage), 250);
        stage.updated = 0;
        assert_eq!(pending_since(&stage), 100);
        stage.updated = 50;
        assert_eq!(pending_since(&stage), 100);
    }

    #[test]
    fn the_rules_one_case_each() {
        struct Case {
            name: &'static str,
            queue: Vec<Stage>,
            expected: Vec<Option<Standing>>,
        }
        let cases = [
            Case {
                name: "no rules: pending is startable, running is running",
                queue: vec![s(1, 1, "a", "pending", 0, 0, ""), s(2, 1, "a", "running", 0, 0, "m")],
                expected: vec![Some(Startable), Some(Running)],
            },
            Case {
                name: "accepted by a runner but not started",
                queue: vec![s(1, 1, "a", "pending", 0, 0, "runner-b")],
                expected: vec![Some(Accepted)],
            },
            Case {
                name: "limit 1 behind an older running sibling",
                queue: vec![
                    s(1, 1, "deploy", "running", 1, 0, "m"),
                    s(2, 1, "deploy", "pending", 1, 0, ""),
                ],
                expected: vec![Some(Running), Some(BlockedByLimit)],
            },
            Case {
                name: "limit 1 behind an older pending sibling (FIFO)",
                queue: vec![
                    s(1, 1, "deploy", "pending", 1, 0, ""),
                    s(2, 1, "deploy", "pending", 1, 0, ""),
                ],
                expected: vec![Some(Startable), Some(BlockedByLimit)],
            },
            Case {
                name: "an older pending stage blocked by a newer running sibling",
                queue: vec![
                    s(1, 1, "deploy", "pending", 1, 0, ""),
                    s(3, 1, "deploy", "running", 1, 0, "m"),
                ],
                expected: vec![Some(BlockedByLimit), Some(Running)],
            },
            Case {
                name: "limit 2 leaves room for one more",
                queue: vec![
                    s(1, 1, "it", "running", 2, 0, "m"),
                    s(2, 1, "it", "pending", 2, 0, ""),
                    s(3, 1, "it", "pending", 2, 0, ""),
                ],
                expected: vec![Some(Running), Some(Startable), Some(BlockedByLimit)],
            },
            Case {
                name: "limit counts only the same repository and name",
                queue: vec![
                    s(1, 1, "deploy", "running", 1, 0, "m"),
                    s(2, 2, "deploy", "pending", 1, 0, ""),
                    s(3, 1, "test", "pending", 1, 0, ""),
                ],
                expected: vec![Some(Running), Some(Startable), Some(Startable)],
            },
            Case {
                name: "throttle counts lower ids of the repository, any name",
                queue: vec![
                    s(1, 7, "build", "running", 0, 2, "m"),
                    s(2, 7, "test", "pending", 0, 2, ""),
                    s(3, 7, "lint", "pending", 0, 2, ""),
                    s(4, 8, "lint", "pending", 0, 2, ""),
                ],
                expected: vec![
                    Some(Running),
                    Some(Startable),
                    Some(BlockedByThrottle),
                    Some(Startable),
                ],
            },
            Case {
                name: "throttle ignores stages with a higher id",
                queue: vec![s(5, 7, "a", "pending", 0, 1, ""), s(6, 7, "b", "running", 0, 1, "m")],
                expected: vec![Some(Startable), Some(Running)],
            },
            Case {
                name: "limit is checked before throttle",
                queue: vec![
                    s(1, 7, "deploy", "pending", 1, 1, ""),
                    s(2, 7, "deploy", "pending", 1, 1, ""),
                ],
                expected: vec![Some(Startable), Some(BlockedByLimit)],
            },
            Case {
                // Drone treats only 0 as "no rule": a count is never below a
                // negative number, so such a stage never starts.
                name: "a negative limit or throttle blocks a lone stage",
                queue: vec![s(1, 7, "a", "pending", -1, 0, ""), s(2, 8, "b", "pending", 0, -1, "")],
                expected: vec![Some(BlockedByLimit), Some(BlockedByThrottle)],
            },
            Case {
                name: "accepted is checked before the limits",
                queue: vec![
                    s(1, 7, "deploy", "running", 1, 1, "m"),
                    s(2, 7, "deploy", "pending", 1, 1, "r"),
                ],
                expected: vec![Some(Running), Some(Accepted)],
            },
            Case {
                name: "other statuses take no part",
                queue: vec![
                    s(1, 7, "deploy", "blocked", 1, 1, ""),
                    s(2, 7, "deploy", "pending", 1, 1, ""),
                ],
                expected: vec![None, Some(Startable)],
            },
            Case {
                name: "queue order does not matter, ids do",
                queue: vec![
                    s(9, 7, "deploy", "pending", 1, 0, ""),
                    s(4, 7, "deploy", "pending", 1, 0, ""),
                ],
                expected: vec![Some(BlockedByLimit), Some(Startable)],
            },
        ];
        for case in cases {
            assert_eq!(classify(&case.queue), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn throttle_reaches_across_runner_groups() {
        // A GPU stage is held back by standard stages of the same repository.
        let mut standard = s(1, 3, "build", "running", 0, 1, "std-1");
        standard.labels = [("class".to_string(), "standard".to_string())].into();
        let mut gpu = s(2, 3, "train", "pending", 0, 1, "");
        gpu.labels = [("class".to_string(), "gpu".to_string())].into();
        assert_eq!(classify(&[standard, gpu]), [Some(Running), Some(BlockedByThrottle)]);
    }

    #[test]
    fn waiting_starts_when_the_stage_became_pending() {
        let mut plain = s(1, 1, "a", "pending", 0, 0, "");
        plain.created = 100;
        plain.updated = 150;
        assert_eq!(pending_since(&plain), 100);
        plain.has_dependencies = true;
        assert_eq!(pending_since(&plain), 150);
    }
}
