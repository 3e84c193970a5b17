//! The shared queue fixtures through parsing, counting and planning, against
//! the counts in their EXPECTED.md (and drone_09_large.expected.json).
//!
//! EXPECTED.md groups by type, platform and labels; this product's groups
//! are the label sets alone (the reference tool's dimensions), so the
//! expected figures below add up the EXPECTED.md rows that share labels.

use std::collections::BTreeMap;

use drone_queue_cloudwatch::aggregate::{GroupCounts, GroupKey, aggregate};
use drone_queue_cloudwatch::drone::parse_queue;
use drone_queue_cloudwatch::metrics::plan;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/drone/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(labels: &[(&str, &str)]) -> GroupKey {
    GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn counts(name: &str) -> BTreeMap<GroupKey, GroupCounts> {
    aggregate(&parse_queue(&fixture(name)).expect(name)).groups
}

const fn c(queued: u64, running: u64) -> GroupCounts {
    GroupCounts { queued, running }
}

#[test]
fn empty_queue_has_no_groups() {
    assert_eq!(fixture("drone_01_empty.json"), b"[]\n");
    assert!(counts("drone_01_empty.json").is_empty());
}

#[test]
fn two_groups_standard_and_gpu() {
    let expected = BTreeMap::from([
        (key(&[("class", "standard"), ("os", "linux")]), c(3, 2)),
        (key(&[("class", "gpu"), ("os", "linux")]), c(2, 1)),
    ]);
    assert_eq!(counts("drone_02_two_groups_standard_gpu.json"), expected);
}

#[test]
fn stages_without_labels_form_the_group_without_dimensions() {
    // 9102 is accepted by a runner but still pending: it counts as queued.
    assert_eq!(counts("drone_03_no_labels.json"), BTreeMap::from([(key(&[]), c(4, 1))]));
}

#[test]
fn platforms_share_a_group_when_labels_are_equal() {
    // P-AMD64 1/1 + P-ARM64 2/1 + P-ARMV7 1/0 + P-ARM64V8 1/0.
    assert_eq!(
        counts("drone_04_platform_amd64_vs_arm64.json"),
        BTreeMap::from([(key(&[("pool", "build")]), c(5, 2))])
    );
}

#[test]
fn blocked_stages_are_still_queued() {
    assert_eq!(
        counts("drone_05_limit_blocked.json"),
        BTreeMap::from([(key(&[("class", "standard"), ("os", "linux")]), c(7, 3))])
    );
}

#[test]
fn more_than_thirty_labels_count_but_are_not_published() {
    let parsed = aggregate(&parse_queue(&fixture("drone_07_32_label_keys.json")).unwrap());
    let sizes: Vec<(usize, GroupCounts)> =
        parsed.groups.iter().map(|(k, v)| (k.0.len(), *v)).collect();
    let mut sizes_sorted = sizes.clone();
    sizes_sorted.sort_by_key(|(n, _)| *n);
    assert_eq!(sizes_sorted, [(31, c(1, 0)), (32, c(2, 1))]);
    let plan = plan(&parsed);
    assert!(plan.datums.is_empty());
    assert_eq!(plan.rejected.len(), 2);
}

#[test]
fn label_edge_values_split_into_publishable_and_refused_groups() {
    let parsed = aggregate(&parse_queue(&fixture("drone_08_label_edge_values.json")).unwrap());
    assert_eq!(parsed.groups.len(), 6);
    assert_eq!(parsed.totals(), c(6, 1));
    let plan = plan(&parsed);
    let published: Vec<String> = plan.groups.iter().map(|(g, _)| g.to_string()).collect();
    let long_value =
        parsed.groups.keys().find_map(|g| g.0.get("cache")).expect("E-LONG group").clone();
    assert_eq!(long_value.len(), 300);
    assert_eq!(
        published,
        [
            format!("cache={long_value},class=standard"),
            "class=standard".into(),
            r#"class=standard,sel="a:b,c""#.into()
        ]
    );
    let refused: BTreeMap<String, String> = plan
        .rejected
        .iter()
        .map(|r| (r.group.to_string(), r.problems.iter().map(ToString::to_string).collect()))
        .collect();
    assert_eq!(
        refused,
        BTreeMap::from([
            (
                r#"class=" ""#.to_string(),
                r#"the value of label "class" is only white space"#.to_string()
            ),
            (
                r#"class=standard,gpu="""#.to_string(),
                r#"the value of label "gpu" is empty"#.to_string()
            ),
            (
                r#"class=standard,site="zürich-東京-🚀""#.to_string(),
                r#"the value of label "site" has non-ASCII characters"#.to_string()
            ),
        ])
    );
}

#[test]
fn large_queue_matches_the_independent_counts() {
    #[derive(serde::Deserialize)]
    struct Expected {
        groups: BTreeMap<String, Row>,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        key: String,
        pending: u64,
        running: u64,
    }
    let expected: Expected =
        serde_json::from_slice(&fixture("drone_09_large.expected.json")).unwrap();
    // Key format: "type|platform|[[name, value], ...]"; only the labels
    // decide this product's groups, so rows with equal labels add up.
    let mut by_labels: BTreeMap<GroupKey, GroupCounts> = BTreeMap::new();
    for row in expected.groups.values() {
        let labels_json = row.key.splitn(3, '|').nth(2).unwrap();
        let pairs: Vec<(String, String)> = serde_json::from_str(labels_json).unwrap();
        let entry = by_labels.entry(GroupKey(pairs.into_iter().collect())).or_default();
        entry.queued += row.pending;
        entry.running += row.running;
    }
    assert_eq!(by_labels.len(), 6);
    let actual = counts("drone_09_large_5000_stages_12_groups.json");
    assert_eq!(actual, by_labels);
    let total = actual.values().fold(c(0, 0), |a, b| c(a.queued + b.queued, a.running + b.running));
    assert_eq!(total, c(3512, 1488));
}

#[test]
fn runner_types_group_by_labels() {
    assert_eq!(
        counts("drone_10_runner_types_exec_ssh_kubernetes.json"),
        BTreeMap::from([(key(&[("pool", "bare-metal")]), c(1, 1)), (key(&[]), c(7, 2))])
    );
}

#[test]
fn defensive_rows_are_tolerated_and_odd_statuses_left_out() {
    let parsed = aggregate(&parse_queue(&fixture("drone_11_SYNTHETIC_defensive.json")).unwrap());
    assert_eq!(parsed.groups, BTreeMap::from([(key(&[]), c(2, 1))]));
    let ignored: Vec<(i64, &str)> =
        parsed.ignored.iter().map(|s| (s.id, s.status.as_str())).collect();
    assert_eq!(ignored, [(9804, "waiting_on_dependencies"), (9805, "blocked")]);
}
