//! Properties of the counts over random queues.

use std::collections::BTreeMap;

use drone_queue_cloudwatch::aggregate::{GroupCounts, GroupKey, aggregate};
use drone_queue_cloudwatch::drone::Stage;
use drone_queue_cloudwatch::grouping::Grouping;
use drone_queue_cloudwatch::prometheus::label_name;
use proptest::prelude::*;

/// A stage with fields drawn from small sets, so that siblings, repository
/// throttles and shared label sets are common.
fn stage() -> impl Strategy<Value = Stage> {
    (
        1..4_i64,
        prop::sample::select(vec!["build", "test", "deploy"]),
        prop::bool::weighted(0.6),
        prop::option::of(prop::sample::select(vec!["runner-1", "runner-2"])),
        0..3_i64,
        0..4_i64,
        prop::collection::btree_map(
            prop::sample::select(vec!["class", "os", "team"]),
            prop::sample::select(vec!["a", "b", ""]),
            0..3,
        ),
        prop::sample::select(vec!["amd64", "arm64"]),
    )
        .prop_map(|(repo, name, pending, machine, limit, throttle, labels, arch)| Stage {
            repo_id: repo,
            name: name.into(),
            status: if pending { "pending" } else { "running" }.into(),
            machine: machine.unwrap_or_default().into(),
            limit,
            throttle,
            labels: labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            os: "linux".into(),
            arch: arch.into(),
            ..Stage::default()
        })
}

fn queue() -> impl Strategy<Value = Vec<Stage>> {
    prop::collection::vec(stage(), 0..60).prop_shuffle().prop_map(|mut stages| {
        for (i, stage) in stages.iter_mut().enumerate() {
            stage.id = 100 + i as i64 * 7 % 61; // unique, not in queue order
        }
        stages
    })
}

proptest! {
    #[test]
    fn queued_is_startable_plus_blocked_plus_accepted(stages in queue()) {
        for grouping in [Grouping::default(), Grouping { platform: true, pipeline_type: true, ..Grouping::default() }] {
            for (group, c) in aggregate(&stages, &grouping).groups {
                prop_assert_eq!(c.queued, c.startable + c.blocked() + c.accepted, "{}", group);
            }
        }
    }

    #[test]
    fn totals_over_groups_equal_totals_over_stages(stages in queue()) {
        let totals = aggregate(&stages, &Grouping::default()).totals();
        let pending = stages.iter().filter(|s| s.status == "pending").count() as u64;
        let running = stages.len() as u64 - pending;
        let accepted = stages.iter().filter(|s| s.status == "pending" && !s.machine.is_empty()).count() as u64;
        prop_assert_eq!((totals.queued, totals.running, totals.accepted), (pending, running, accepted));
    }

    #[test]
    fn fewer_label_keys_never_lose_a_stage(stages in queue(), keep in prop::sample::subsequence(vec!["class", "os", "team"], 0..=3)) {
        let full = aggregate(&stages, &Grouping::default());
        let narrowed_grouping = Grouping {
            label_keys: Some(keep.iter().map(|k| k.to_string()).collect()),
            ..Grouping::default()
        };
        let narrowed = aggregate(&stages, &narrowed_grouping);
        // Busy runners are distinct per group, so a runner named in two
        // merged groups counts once: compared apart, below.
        let stage_counts = |c: GroupCounts| GroupCounts { busy_workers: 0, ..c };
        prop_assert_eq!(stage_counts(full.totals()), stage_counts(narrowed.totals()));
        // Each narrowed group is exactly the sum of the full groups it takes
        // in; its busy runners are at least those of the busiest of them and
        // at most their sum.
        let mut merged: BTreeMap<GroupKey, (u64, u64, u64, u64)> = BTreeMap::new();
        let mut busy: BTreeMap<GroupKey, (u64, u64)> = BTreeMap::new();
        for (group, c) in &full.groups {
            let key = GroupKey(group.0.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect());
            let e = merged.entry(key.clone()).or_default();
            *e = (e.0 + c.queued, e.1 + c.running, e.2 + c.startable, e.3 + c.blocked());
            let b = busy.entry(key).or_default();
            *b = (b.0.max(c.busy_workers), b.1 + c.busy_workers);
        }
        let actual: BTreeMap<GroupKey, (u64, u64, u64, u64)> =
            narrowed.groups.iter().map(|(k, c)| (k.clone(), (c.queued, c.running, c.startable, c.blocked()))).collect();
        prop_assert_eq!(actual, merged);
        for (key, c) in &narrowed.groups {
            let (most, sum) = busy[key];
            prop_assert!((most..=sum).contains(&c.busy_workers), "{key}: {} not in {most}..={sum}", c.busy_workers);
        }
    }
}

/// Reads a Prometheus label name back into the dimension name, following
/// the documented scheme; `None` for a name the scheme never writes.
fn decode_label(label: &str) -> Option<String> {
    let Some(escaped) = label.strip_prefix("_x") else {
        return label.starts_with(|c: char| c.is_ascii_alphabetic()).then(|| label.to_string());
    };
    let bytes = escaped.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'_' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'_') {
            out.push(b'_');
            i += 2;
        } else {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        }
    }
    String::from_utf8(out).ok()
}

/// Dimension names from an alphabet full of the characters the scheme
/// treats specially, so that near-collisions are common.
fn dimension_name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "Z", "x", "0", "2", "D", "_", "-", ".", ":", "é", " ", "job", "le",
        ]),
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn label_names_are_valid_and_read_back_to_the_dimension(name in dimension_name()) {
        let label = label_name(&name);
        let mut chars = label.chars();
        let first = chars.next().unwrap();
        prop_assert!(first.is_ascii_alphabetic() || first == '_', "{label}");
        prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{label}");
        prop_assert!(!label.starts_with("__"), "{label}");
        prop_assert_eq!(decode_label(&label), Some(name));
    }

    #[test]
    fn two_dimensions_never_share_a_label_name(a in dimension_name(), b in dimension_name()) {
        prop_assert_eq!(a == b, label_name(&a) == label_name(&b));
    }
}
