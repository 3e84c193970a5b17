//! The prometheus sink, end to end: a real Prometheus server scrapes the
//! daemon while the stand-in Drone's queue changes and fails.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// A stage of the queue with these labels, waiting for a minute.
fn stage(id: i64, status: &str, pairs: &[(&str, &str)]) -> Value {
    let created = unix_now() - 60;
    json!({"id": id, "repo_id": id, "name": "build", "status": status, "created": created,
           "updated": created, "labels": labels(pairs)})
}

fn body(stages: &[Value]) -> Value {
    json!([{"body": serde_json::to_string(stages).unwrap()}])
}

type Samples = BTreeMap<BTreeMap<String, String>, f64>;

fn samples(pairs: &[(&[(&str, &str)], f64)]) -> Samples {
    pairs.iter().map(|(l, v)| (labels(l), *v)).collect()
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn prometheus_sees_the_queue_follow_changes_and_keep_values_through_a_failed_poll() {
    // The dimensions of a stage, and the labels of its series (with the
    // `group` label that selects exactly one group).
    let std_dims = [("class", "standard"), ("os", "linux")];
    let std = [("group", "class=standard,os=linux"), ("class", "standard"), ("os", "linux")];
    let gpu = [("group", "class=gpu,os=linux"), ("class", "gpu"), ("os", "linux")];
    // `cost-center` is no valid label name: it is escaped.
    let arm = [("class", "arm"), ("cost-center", "ci")];
    let arm_labels =
        [("group", "class=arm,cost-center=ci"), ("class", "arm"), ("_xcost_2Dcenter", "ci")];

    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = dry_run_env(&drone);
    env.extend([
        ("METRICS_SINKS".to_string(), "prometheus".to_string()),
        ("POLL_INTERVAL".into(), "1s".into()),
        ("PROMETHEUS_LISTEN".into(), "127.0.0.1:0".into()),
    ]);
    let mut daemon = Daemon::start(&env);
    let base = daemon.metrics_base();

    // The endpoint itself, as a scraper sees it.
    daemon.wait_log("poll complete", WAIT);
    let page = http(&base, "GET", "/metrics", b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(page.body.contains("# TYPE drone_queued_builds gauge\n"), "{}", page.body);
    assert!(page.body.contains(
        "drone_queued_builds{group=\"class=gpu,os=linux\",class=\"gpu\",os=\"linux\"} 2\n"
    ));
    assert_eq!(http(&base, "GET", "/healthz", b"").status, 200);
    assert_eq!(http(&base, "GET", "/", b"").status, 404);
    let post = http(&base, "POST", "/metrics", b"x");
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    let head = http(&base, "HEAD", "/metrics", b"");
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    let prometheus = Prometheus::start(base.trim_start_matches("http://"));

    // 1. The fixture's two groups.
    prometheus.wait_for("drone_queued_builds", &samples(&[(&std, 3.0), (&gpu, 2.0)]), WAIT);
    prometheus.wait_for("drone_running_builds", &samples(&[(&std, 2.0), (&gpu, 1.0)]), WAIT);
    prometheus.wait_for("drone_queue_poll_success", &samples(&[(&[], 1.0)]), WAIT);

    // 2. gpu leaves the queue, arm arrives, standard shrinks.
    set_script(
        &drone,
        body(&[
            stage(1, "pending", &std_dims),
            stage(2, "pending", &arm),
            stage(3, "pending", &arm),
            stage(4, "pending", &arm),
            stage(5, "pending", &arm),
            stage(6, "running", &arm),
        ]),
    );
    let after_change = samples(&[(&std, 1.0), (&gpu, 0.0), (&arm_labels, 4.0)]);
    prometheus.wait_for("drone_queued_builds", &after_change, WAIT);
    prometheus.wait_for(
        "drone_running_builds",
        &samples(&[(&std, 0.0), (&gpu, 0.0), (&arm_labels, 1.0)]),
        WAIT,
    );
    let oldest = prometheus.query("drone_oldest_queued_seconds");
    assert_eq!(oldest[&labels(&gpu)], 0.0);
    assert!((55.0..=90.0).contains(&oldest[&labels(&arm_labels)]), "{oldest:?}");
    let failures_before = prometheus.query("drone_queue_poll_failures_total")[&labels(&[])];

    // 3. Drone fails: the poll metrics say so, the groups keep their values.
    set_script(&drone, json!([{"status": 500, "body": "{\"message\":\"database is closed\"}"}]));
    prometheus.wait_for("drone_queue_poll_success", &samples(&[(&[], 0.0)]), WAIT);
    let failures = prometheus.query("drone_queue_poll_failures_total")[&labels(&[])];
    assert!(failures > failures_before, "{failures} after {failures_before}");
    assert_eq!(prometheus.query("drone_queued_builds"), after_change);
    // Two more scrapes later, still the same.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(prometheus.query("drone_queued_builds"), after_change);
    assert_eq!(prometheus.query("drone_queue_poll_success"), samples(&[(&[], 0.0)]));

    // 4. Drone is back with the first queue: arm goes to 0.
    set_script(&drone, json!([{ "fixture": fixture("drone_02_two_groups_standard_gpu.json") }]));
    prometheus.wait_for(
        "drone_queued_builds",
        &samples(&[(&std, 3.0), (&gpu, 2.0), (&arm_labels, 0.0)]),
        WAIT,
    );
    prometheus.wait_for("drone_queue_poll_success", &samples(&[(&[], 1.0)]), WAIT);
    // The autoscaler's query of the examples: exactly one group.
    let exact = prometheus.query(r#"sum(drone_queued_builds{group="class=standard,os=linux"})"#);
    assert_eq!(exact.values().copied().collect::<Vec<_>>(), [3.0]);
    let polls = prometheus.query("drone_queue_polls_total")[&labels(&[])];
    let duration = prometheus.query("drone_queue_poll_duration_seconds")[&labels(&[])];
    assert!(polls >= 5.0 && (0.0..1.0).contains(&duration), "{polls} {duration}");

    daemon.signal(libc::SIGTERM);
    let run = daemon.finish();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN));
    assert!(!page.body.contains(TOKEN));
}
