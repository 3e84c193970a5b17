//! The emf sink: Embedded Metric Format lines on standard output, checked
//! against the format's rules and the queue's counts; in Lambda without
//! any `PutMetricData` call.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::lambda::lambda_env;
use crate::support::*;

/// Units CloudWatch knows (facts §3.1), as EMF spells them.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One group's values read back from an EMF line.
#[derive(Debug, PartialEq)]
struct Group {
    dimensions: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    resolutions: Vec<i64>,
}

/// Checks a line against the specification and returns what it publishes.
fn check_line(line: &str, namespace: &str, time: std::ops::RangeInclusive<i64>) -> Group {
    let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let root = doc.as_object().expect("a JSON object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    let timestamp = aws["Timestamp"].as_i64().expect("Timestamp is an integer");
    assert!(time.contains(&timestamp), "Timestamp {timestamp} not in {time:?}");
    let directives = aws["CloudWatchMetrics"].as_array().unwrap();
    assert!(!directives.is_empty());
    let mut group =
        Group { dimensions: BTreeMap::new(), metrics: BTreeMap::new(), resolutions: Vec::new() };
    for directive in directives {
        assert_eq!(directive["Namespace"], namespace);
        let sets = directive["Dimensions"].as_array().unwrap();
        assert!(!sets.is_empty(), "at least one dimension set");
        for set in sets {
            let keys = set.as_array().unwrap();
            assert!(keys.len() <= 30, "{} dimension keys", keys.len());
            for key in keys {
                let key = key.as_str().unwrap();
                let value = root[key].as_str().unwrap_or_else(|| panic!("{key} is no string"));
                assert!(value.len() <= 1024);
                group.dimensions.insert(key.to_string(), value.to_string());
            }
        }
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{} metrics", metrics.len());
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(UNITS.contains(&metric["Unit"].as_str().unwrap()), "{metric}");
            let resolution = metric.get("StorageResolution").map_or(60, |r| r.as_i64().unwrap());
            assert!(resolution == 1 || resolution == 60, "{metric}");
            group.resolutions.push(resolution);
            let value = root[name].as_f64().unwrap_or_else(|| panic!("{name} is no number"));
            assert!(group.metrics.insert(name.to_string(), value).is_none(), "{name} twice");
        }
    }
    // Nothing but metadata, dimensions and metrics at the root.
    assert_eq!(root.len(), 1 + group.dimensions.len() + group.metrics.len(), "{line}");
    group
}

fn emf(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.starts_with('{')).collect()
}

/// The counts of the two-group fixture, as EMF lines should carry them
/// (without `OldestQueuedSeconds`, which depends on the time).
fn two_groups() -> BTreeMap<BTreeMap<String, String>, BTreeMap<String, f64>> {
    let counts = |q: f64, r: f64| {
        [
            ("QueuedBuilds", q),
            ("RunningBuilds", r),
            ("StartableBuilds", q),
            ("BlockedBuilds", 0.0),
            // Each running stage has a runner of its own.
            ("BusyWorkers", r),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
    };
    BTreeMap::from([
        (labels(&[("class", "standard"), ("os", "linux")]), counts(3.0, 2.0)),
        (labels(&[("class", "gpu"), ("os", "linux")]), counts(2.0, 1.0)),
    ])
}

fn without_wait(groups: Vec<Group>) -> BTreeMap<BTreeMap<String, String>, BTreeMap<String, f64>> {
    groups
        .into_iter()
        .map(|mut g| {
            assert!(g.metrics.remove("OldestQueuedSeconds").is_some_and(|w| w > 0.0));
            (g.dimensions, g.metrics)
        })
        .collect()
}

#[test]
fn emf_alone_needs_no_aws_and_carries_the_counts() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = dry_run_env(&drone);
    env.push(("METRICS_SINKS".into(), "emf".into()));
    let before = unix_now() * 1000;
    let run = run(&env, &[]);
    let after = unix_now() * 1000 + 1000;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines = emf(&run.stdout);
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(run.stdout.lines().count(), 2, "only EMF on stdout: {}", run.stdout);
    let groups: Vec<Group> = lines.iter().map(|l| check_line(l, "Drone", before..=after)).collect();
    assert!(groups.iter().all(|g| g.resolutions == [60; 6]));
    assert_eq!(without_wait(groups), two_groups());
    assert!(run.stderr.contains("calls=0"), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN));
}

#[test]
fn emf_and_cloudwatch_together_at_high_resolution() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("emf-and-cloudwatch");
    let mut env = full_env(&drone, &ns);
    env.push(("METRICS_SINKS".into(), "cloudwatch,emf,stdout".into()));
    env.push(("CLOUDWATCH_HIGH_RESOLUTION".into(), "true".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let groups: Vec<Group> =
        emf(&run.stdout).iter().map(|l| check_line(l, &ns, 0..=i64::MAX)).collect();
    assert!(groups.iter().all(|g| g.resolutions == [1; 6]), "{groups:?}");
    assert_eq!(without_wait(groups), two_groups());
    // The stdout sink's table follows, saying what was published.
    assert!(run.stdout.contains("Published to namespace"), "{}", run.stdout);
    assert_eq!(stored(&ns).len(), 12);
}

#[test]
fn emf_alone_in_lambda_makes_no_put_metric_data_call() {
    let api = lambda_api(&json!([{}, {}]), 10_000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("lambda-emf");
    // Every AWS setting points at a proxy that reports each request.
    let proxy = throttle_proxy(0);
    let mut env = full_env(&drone, &ns);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
    env.push(("METRICS_SINKS".into(), "emf".into()));
    let mut function = spawn(&lambda_env(&api, env));
    let stdout = drain(function.stdout.take().unwrap());
    let stderr = drain(function.stderr.take().unwrap());
    let lines = api.wait_for(1, Duration::from_secs(60), |v| v["kind"] == "done");
    let _ = function.kill();
    let _ = function.wait();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());

    let answers: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "response").collect();
    assert_eq!(answers.len(), 2, "{lines:?}\n{stderr}");
    for answer in answers {
        assert_eq!(answer["body"]["calls"], 0);
        assert_eq!(answer["body"]["emf_lines"], 2);
        assert_eq!(answer["body"]["datums"], 12);
    }
    // Two lines per invocation, each pair the whole queue.
    let lines = emf(&stdout);
    assert_eq!(lines.len(), 4, "{stdout}");
    for invocation in lines.chunks(2) {
        let groups = invocation.iter().map(|l| check_line(l, &ns, 0..=i64::MAX)).collect();
        assert_eq!(without_wait(groups), two_groups());
    }

    assert_eq!(proxy.events(), Vec::<Value>::new(), "a request reached the AWS endpoint");
    assert!(stored(&ns).is_empty());
    assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
}

#[test]
fn emf_lines_are_written_when_cloudwatch_refuses_and_the_run_still_fails() {
    let proxy = throttle_proxy(1000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("emf-despite-cloudwatch");
    let mut env = full_env(&drone, &ns);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
    env.push(("METRICS_SINKS".into(), "emf,cloudwatch".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("CloudWatch did not take 1 of 1 PutMetricData calls"));
    let groups = emf(&run.stdout).iter().map(|l| check_line(l, &ns, 0..=i64::MAX)).collect();
    assert_eq!(without_wait(groups), two_groups());
    assert!(!run.stderr.contains("poll complete"), "{}", run.stderr);
}

#[test]
fn beside_emf_the_report_says_what_emf_did_and_json_reports_are_one_line_each() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = dry_run_env(&drone);
    env.push(("METRICS_SINKS".into(), "emf,stdout".into()));
    env.push(("CLOUDWATCH_HIGH_RESOLUTION".into(), "true".into()));
    let table = run(&env, &[]);
    assert_eq!(table.code, Some(0), "{}", table.stderr);
    assert!(
        table.stdout.contains("Wrote 12 data points for namespace \"Drone\""),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("as 2 EMF lines."), "{}", table.stdout);
    assert!(!table.stdout.contains("PutMetricData"), "{}", table.stdout);
    // One poll, no interval: one-second storage buys nothing.
    assert!(table.stderr.contains("it pays off with POLL_INTERVAL under 60s"), "{}", table.stderr);

    let json = run(&env, &["--output", "json"]);
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    let lines: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 3, "{}", json.stdout);
    let report = lines.iter().find(|l| l.get("summary").is_some()).expect("the report line");
    assert_eq!(report["summary"]["emf_lines"], 2, "{report}");
}
