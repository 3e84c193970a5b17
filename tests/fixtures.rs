//! The shared queue fixtures through parsing, counting and planning, against
//! the counts in their EXPECTED.md (and drone_09_large.expected.json).
//!
//! EXPECTED.md groups by type, platform and labels, which is this product's
//! grouping with `METRICS_EXTRA_DIMENSIONS=platform,type`; the default
//! groups are the label sets alone (the reference tool's dimensions), so the
//! first tests add up the EXPECTED.md rows that share labels.

use std::collections::BTreeMap;

use drone_queue_cloudwatch::aggregate::{GroupKey, QueueCounts, aggregate};
use drone_queue_cloudwatch::drone::parse_queue;
use drone_queue_cloudwatch::grouping::Grouping;
use drone_queue_cloudwatch::metrics::plan;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/drone/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(labels: &[(&str, &str)]) -> GroupKey {
    GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn aggregated(name: &str, grouping: &Grouping) -> QueueCounts {
    aggregate(&parse_queue(&fixture(name)).expect(name), grouping)
}

/// (queued, running) per group, with the default grouping.
fn counts(name: &str) -> BTreeMap<GroupKey, (u64, u64)> {
    aggregated(name, &Grouping::default())
        .groups
        .into_iter()
        .map(|(k, v)| (k, (v.queued, v.running)))
        .collect()
}

const fn c(queued: u64, running: u64) -> (u64, u64) {
    (queued, running)
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
    let parsed = aggregated("drone_07_32_label_keys.json", &Grouping::default());
    let sizes: Vec<(usize, (u64, u64))> =
        parsed.groups.iter().map(|(k, v)| (k.0.len(), (v.queued, v.running))).collect();
    let mut sizes_sorted = sizes.clone();
    sizes_sorted.sort_by_key(|(n, _)| *n);
    assert_eq!(sizes_sorted, [(31, c(1, 0)), (32, c(2, 1))]);
    let plan = plan(&parsed, 0);
    assert!(plan.datums.is_empty());
    assert_eq!(plan.rejected.len(), 2);
}

#[test]
fn label_edge_values_split_into_publishable_and_refused_groups() {
    let parsed = aggregated("drone_08_label_edge_values.json", &Grouping::default());
    assert_eq!(parsed.groups.len(), 6);
    assert_eq!((parsed.totals().queued, parsed.totals().running), c(6, 1));
    let plan = plan(&parsed, 0);
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
    let mut by_labels: BTreeMap<GroupKey, (u64, u64)> = BTreeMap::new();
    for row in expected.groups.values() {
        let labels_json = row.key.splitn(3, '|').nth(2).unwrap();
        let pairs: Vec<(String, String)> = serde_json::from_str(labels_json).unwrap();
        let entry = by_labels.entry(GroupKey(pairs.into_iter().collect())).or_default();
        entry.0 += row.pending;
        entry.1 += row.running;
    }
    assert_eq!(by_labels.len(), 6);
    let actual = counts("drone_09_large_5000_stages_12_groups.json");
    assert_eq!(actual, by_labels);
    let total = actual.values().fold(c(0, 0), |a, b| c(a.0 + b.0, a.1 + b.1));
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
    let parsed = aggregated("drone_11_SYNTHETIC_defensive.json", &Grouping::default());
    let groups: Vec<(GroupKey, (u64, u64))> =
        parsed.groups.iter().map(|(k, v)| (k.clone(), (v.queued, v.running))).collect();
    assert_eq!(groups, [(key(&[]), c(2, 1))]);
    let ignored: Vec<(i64, &str)> =
        parsed.ignored.iter().map(|s| (s.id, s.status.as_str())).collect();
    assert_eq!(ignored, [(9804, "waiting_on_dependencies"), (9805, "blocked")]);
}

// With METRICS_EXTRA_DIMENSIONS=platform,type the groups are EXPECTED.md's.

fn routed() -> Grouping {
    Grouping { platform: true, pipeline_type: true, ..Grouping::default() }
}

/// A group as EXPECTED.md writes it: type, platform, labels.
fn rkey(kind: &str, platform: &str, labels: &[(&str, &str)]) -> GroupKey {
    let mut key = key(labels);
    key.0.insert("type".into(), kind.into());
    key.0.insert("platform".into(), platform.into());
    key
}

/// (queued, running, startable, accepted, blocked by limit, blocked by throttle)
type Row = (u64, u64, u64, u64, u64, u64);

fn rows(name: &str) -> BTreeMap<GroupKey, Row> {
    aggregated(name, &routed())
        .groups
        .into_iter()
        .map(|(k, c)| {
            (
                k,
                (
                    c.queued,
                    c.running,
                    c.startable,
                    c.accepted,
                    c.blocked_by_limit,
                    c.blocked_by_throttle,
                ),
            )
        })
        .collect()
}

#[test]
fn routed_small_fixtures_match_expected_md() {
    let std = [("class", "standard"), ("os", "linux")];
    let gpu = [("class", "gpu"), ("os", "linux")];
    let pool = [("pool", "build")];
    let cases: Vec<(&str, Vec<(GroupKey, Row)>)> = vec![
        ("drone_01_empty.json", vec![]),
        (
            "drone_02_two_groups_standard_gpu.json",
            vec![
                (rkey("docker", "linux/amd64", &std), (3, 2, 3, 0, 0, 0)),
                (rkey("docker", "linux/amd64", &gpu), (2, 1, 2, 0, 0, 0)),
            ],
        ),
        ("drone_03_no_labels.json", vec![(rkey("docker", "linux/amd64", &[]), (4, 1, 3, 1, 0, 0))]),
        (
            "drone_04_platform_amd64_vs_arm64.json",
            vec![
                (rkey("docker", "linux/amd64", &pool), (1, 1, 1, 0, 0, 0)),
                (rkey("docker", "linux/arm64", &pool), (2, 1, 2, 0, 0, 0)),
                (rkey("docker", "linux/arm/v7", &pool), (1, 0, 1, 0, 0, 0)),
                (rkey("docker", "linux/arm64/v8", &pool), (1, 0, 1, 0, 0, 0)),
            ],
        ),
        (
            "drone_05_limit_blocked.json",
            vec![(rkey("docker", "linux/amd64", &std), (7, 3, 3, 0, 4, 0))],
        ),
        (
            "drone_10_runner_types_exec_ssh_kubernetes.json",
            vec![
                (rkey("exec", "linux/amd64", &[("pool", "bare-metal")]), (1, 1, 1, 0, 0, 0)),
                (rkey("exec", "darwin/arm64", &[]), (1, 1, 1, 0, 0, 0)),
                (rkey("ssh", "linux/amd64", &[]), (2, 0, 2, 0, 0, 0)),
                (rkey("kubernetes", "linux/amd64", &[]), (1, 1, 1, 0, 0, 0)),
                (rkey("kubernetes", "linux/arm64", &[]), (1, 0, 1, 0, 0, 0)),
                (rkey("docker", "linux/amd64", &[]), (1, 0, 1, 0, 0, 0)),
                (rkey("docker", "windows/amd64@1809", &[]), (1, 0, 1, 0, 0, 0)),
            ],
        ),
        (
            "drone_11_SYNTHETIC_defensive.json",
            vec![(rkey("docker", "linux/amd64", &[]), (2, 1, 2, 0, 0, 0))],
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(rows(name), expected.into_iter().collect::<BTreeMap<_, _>>(), "{name}");
    }
}

#[test]
fn routed_large_fixture_matches_the_independent_counts() {
    #[derive(serde::Deserialize)]
    struct Expected {
        groups: BTreeMap<String, Full>,
    }
    #[derive(serde::Deserialize)]
    struct Full {
        key: String,
        pending: u64,
        running: u64,
        startable: u64,
        assigned: u64,
        blocked_limit: u64,
        blocked_throttle: u64,
    }
    let expected: Expected =
        serde_json::from_slice(&fixture("drone_09_large.expected.json")).unwrap();
    let expected: BTreeMap<GroupKey, Row> = expected
        .groups
        .values()
        .map(|g| {
            let mut parts = g.key.splitn(3, '|');
            let (kind, platform) = (parts.next().unwrap(), parts.next().unwrap());
            let pairs: Vec<(String, String)> = serde_json::from_str(parts.next().unwrap()).unwrap();
            let labels: Vec<(&str, &str)> =
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            (
                rkey(kind, platform, &labels),
                (
                    g.pending,
                    g.running,
                    g.startable,
                    g.assigned,
                    g.blocked_limit,
                    g.blocked_throttle,
                ),
            )
        })
        .collect();
    assert_eq!(expected.len(), 12);
    assert_eq!(rows("drone_09_large_5000_stages_12_groups.json"), expected);
}

#[test]
fn the_oldest_wait_is_that_of_the_oldest_startable_stage() {
    // 9102 (accepted, pending since ...514) is older but cannot start;
    // 9103 (...521) is the oldest that can.
    let counts = aggregated("drone_03_no_labels.json", &Grouping::default());
    assert_eq!(counts.groups[&key(&[])].oldest_startable_since, Some(1_735_733_521));
    // 9302 (...914) is blocked by its limit; 9303 (...921) is startable.
    let counts = aggregated("drone_05_limit_blocked.json", &Grouping::default());
    let group = &counts.groups[&key(&[("class", "standard"), ("os", "linux")])];
    assert_eq!(group.oldest_startable_since, Some(1_735_734_921));
    assert_eq!(group.oldest_wait(1_735_734_921 + 75), 75);
}

#[test]
fn a_label_key_filter_merges_groups_without_losing_stages() {
    let grouping =
        Grouping { label_keys: Some(["class".to_string()].into()), ..Grouping::default() };
    let narrowed = aggregated("drone_09_large_5000_stages_12_groups.json", &grouping);
    let full = aggregated("drone_09_large_5000_stages_12_groups.json", &Grouping::default());
    assert_eq!(narrowed.totals(), full.totals());
    let groups: Vec<String> = narrowed.groups.keys().map(ToString::to_string).collect();
    assert_eq!(groups, ["(no labels)", "class=gpu", "class=highmem", "class=standard"]);
}
