//! Routing-aware metrics through the binary: `StartableBuilds`,
//! `BlockedBuilds`, `OldestQueuedSeconds` and the grouping options, read
//! back from the emulator and compared with the fixtures' expected counts.

use std::collections::BTreeMap;

use serde_json::json;

use crate::readback::Series;
use crate::support::*;

fn routed_env(drone: &StandIn, ns: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = full_env(drone, ns);
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// A group as EXPECTED.md writes it: type, platform, labels.
fn rkey(kind: &str, platform: &str, labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut dims: Vec<(String, String)> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    dims.push(("type".into(), kind.into()));
    dims.push(("platform".into(), platform.into()));
    dims
}

fn counts_of(dims: &[(String, String)], q: f64, r: f64, s: f64, b: f64) -> Vec<(Series, f64)> {
    let labels: Vec<(&str, &str)> = dims.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    four(&labels, q, r, s, b)
}

fn publish(fixture_name: &str, extra: &[(&str, &str)], test: &str) -> BTreeMap<Series, f64> {
    let drone = drone_serving(fixture_name);
    let ns = namespace(test);
    let run = run(&routed_env(&drone, &ns, extra), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("WARN"), "{}", run.stderr);
    sums(&stored(&ns), 1.0)
}

#[test]
fn limit_blocked_stages_are_queued_but_not_startable() {
    let (counts, waits) = split_waits(publish(
        "drone_05_limit_blocked.json",
        &[("METRICS_EXTRA_DIMENSIONS", "platform,type")],
        "routed-05",
    ));
    let group = rkey("docker", "linux/amd64", &[("class", "standard"), ("os", "linux")]);
    assert_eq!(counts, counts_of(&group, 7.0, 3.0, 3.0, 4.0).into_iter().collect());
    // 9303 (created 1735734921) is the oldest stage that can start.
    let labels: Vec<(&str, &str)> = group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let wait = waits[&series("OldestQueuedSeconds", &labels)] as i64;
    assert!(
        (unix_now() - 60 - 1_735_734_921..=unix_now() - 1_735_734_921).contains(&wait),
        "{wait}"
    );
}

#[test]
fn runner_types_and_platforms_are_groups_of_their_own() {
    let (counts, _) = split_waits(publish(
        "drone_10_runner_types_exec_ssh_kubernetes.json",
        &[("METRICS_EXTRA_DIMENSIONS", "platform,type")],
        "routed-10",
    ));
    let expected: BTreeMap<Series, f64> = [
        counts_of(&rkey("exec", "linux/amd64", &[("pool", "bare-metal")]), 1.0, 1.0, 1.0, 0.0),
        counts_of(&rkey("exec", "darwin/arm64", &[]), 1.0, 1.0, 1.0, 0.0),
        counts_of(&rkey("ssh", "linux/amd64", &[]), 2.0, 0.0, 2.0, 0.0),
        counts_of(&rkey("kubernetes", "linux/amd64", &[]), 1.0, 1.0, 1.0, 0.0),
        counts_of(&rkey("kubernetes", "linux/arm64", &[]), 1.0, 0.0, 1.0, 0.0),
        counts_of(&rkey("docker", "linux/amd64", &[]), 1.0, 0.0, 1.0, 0.0),
        counts_of(&rkey("docker", "windows/amd64@1809", &[]), 1.0, 0.0, 1.0, 0.0),
    ]
    .concat()
    .into_iter()
    .collect();
    assert_eq!(counts, expected);
}

#[test]
fn the_large_fixture_publishes_the_independent_counts() {
    #[derive(serde::Deserialize)]
    struct Expected {
        groups: BTreeMap<String, Row>,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        key: String,
        pending: f64,
        running: f64,
        startable: f64,
        blocked_limit: f64,
        blocked_throttle: f64,
    }
    let expected: Expected =
        serde_json::from_slice(&std::fs::read(fixture("drone_09_large.expected.json")).unwrap())
            .unwrap();
    let mut want = BTreeMap::new();
    for row in expected.groups.values() {
        let mut parts = row.key.splitn(3, '|');
        let (kind, platform) = (parts.next().unwrap(), parts.next().unwrap());
        let pairs: Vec<(String, String)> = serde_json::from_str(parts.next().unwrap()).unwrap();
        let labels: Vec<(&str, &str)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let blocked = row.blocked_limit + row.blocked_throttle;
        want.extend(counts_of(
            &rkey(kind, platform, &labels),
            row.pending,
            row.running,
            row.startable,
            blocked,
        ));
    }
    let (counts, waits) = split_waits(publish(
        "drone_09_large_5000_stages_12_groups.json",
        &[("METRICS_EXTRA_DIMENSIONS", "platform,type")],
        "routed-09",
    ));
    assert_eq!(want.len(), 48);
    assert_eq!(counts, want);
    assert_eq!(waits.len(), 12);
}

#[test]
fn label_keys_count_stages_together_that_differ_in_other_keys() {
    let (counts, _) = split_waits(publish(
        "drone_10_runner_types_exec_ssh_kubernetes.json",
        &[("METRICS_LABEL_KEYS", "pool"), ("METRICS_EXTRA_DIMENSIONS", "type")],
        "label-keys",
    ));
    let expected: BTreeMap<Series, f64> = [
        four(&[("pool", "bare-metal"), ("type", "exec")], 1.0, 1.0, 1.0, 0.0),
        four(&[("type", "exec")], 1.0, 1.0, 1.0, 0.0),
        four(&[("type", "ssh")], 2.0, 0.0, 2.0, 0.0),
        four(&[("type", "kubernetes")], 2.0, 1.0, 2.0, 0.0),
        four(&[("type", "docker")], 2.0, 0.0, 2.0, 0.0),
    ]
    .concat()
    .into_iter()
    .collect();
    assert_eq!(counts, expected);
}

#[test]
fn known_groups_publish_zeros_when_the_queue_is_empty() {
    let sums = publish(
        "drone_01_empty.json",
        &[("METRICS_KNOWN_GROUPS", "class=gpu,os=linux;class=standard,os=linux")],
        "known-groups",
    );
    assert_eq!(sums.len(), 12);
    assert!(sums.values().all(|v| *v == 0.0), "{sums:?}");
    assert!(
        sums.contains_key(&series("OldestQueuedSeconds", &[("class", "gpu"), ("os", "linux")]))
    );
}

#[test]
fn a_label_named_like_an_extra_dimension_is_reported_not_merged() {
    let stages = json!([
        {"id": 1, "status": "pending", "os": "linux", "arch": "amd64", "labels": {"platform": "linux/arm64"}},
        {"id": 2, "status": "pending", "os": "linux", "arch": "arm64"}
    ]);
    let drone = drone(json!([{"body": stages.to_string()}]));
    let ns = namespace("collision");
    let run = run(&routed_env(&drone, &ns, &[("METRICS_EXTRA_DIMENSIONS", "platform")]), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains(r#"its own label "platform" has the name of a dimension"#),
        "{}",
        run.stderr
    );
    let (counts, _) = split_waits(sums(&stored(&ns), 1.0));
    // Only the real arm64 stage is in the arm64 series.
    assert_eq!(
        counts,
        four(&[("platform", "linux/arm64")], 1.0, 0.0, 1.0, 0.0).into_iter().collect()
    );
}
