//! The command-line mode, end to end.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

fn env_without(env: &[(String, String)], name: &str) -> Vec<(String, String)> {
    env.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn queue_requests(drone: &StandIn) -> Vec<Value> {
    drone.events().into_iter().filter(|e| e["n"].is_number()).collect()
}

#[test]
fn publishes_every_metric_per_group_with_one_queue_read() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("two-groups");
    let before = unix_now();
    let run = run(&full_env(&drone, &ns), &[]);
    let after = unix_now();
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let std = [("class", "standard"), ("os", "linux")];
    let gpu = [("class", "gpu"), ("os", "linux")];
    let sums = sums(&stored(&ns), 1.0);
    // Runners ci-standard-01 and -02 run standard stages, ci-gpu-01 a GPU one.
    assert_eq!(busy(&sums), BTreeMap::from([(labels(&std), 2.0), (labels(&gpu), 1.0)]));
    let (counts, waits) = split_waits(sums);
    let expected: BTreeMap<_, _> = [four(&std, 3.0, 2.0, 3.0, 0.0), four(&gpu, 2.0, 1.0, 2.0, 0.0)]
        .concat()
        .into_iter()
        .collect();
    assert_eq!(counts, expected);
    // The oldest startable stages: 9004 (created 1735732828) and 9006 (...842).
    for (labels, since) in [(&std, 1_735_732_828), (&gpu, 1_735_732_842)] {
        let wait = waits[&series("OldestQueuedSeconds", labels)] as i64;
        assert!((before - since..=after - since).contains(&wait), "{labels:?}: {wait}");
    }

    // One request for the whole queue, with the token as a bearer token.
    let requests = queue_requests(&drone);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["auth_ok"], json!(true));
    assert!(run.stderr.contains("poll complete"), "{}", run.stderr);
    assert!(run.stderr.contains("groups=2") && run.stderr.contains("calls=1"), "{}", run.stderr);
    assert!(run.stderr.contains("datums=12"), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN));
}

#[test]
fn a_group_without_labels_is_published_without_dimensions() {
    let drone = drone_serving("drone_03_no_labels.json");
    let ns = namespace("no-labels");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // 9102 is pending but accepted by a runner: queued, not startable, and
    // its runner is as busy as that of the running 9101.
    let sums = sums(&stored(&ns), 1.0);
    assert_eq!(busy(&sums), BTreeMap::from([(labels(&[]), 2.0)]));
    let (counts, waits) = split_waits(sums);
    assert_eq!(counts, four(&[], 4.0, 1.0, 3.0, 0.0).into_iter().collect());
    assert_eq!(waits.len(), 1);
}

#[test]
fn groups_with_labels_cloudwatch_refuses_are_left_out_and_named() {
    let drone = drone_serving("drone_08_label_edge_values.json");
    let ns = namespace("edge-labels");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let long = format!("cache-key-{}", "");
    let stored = stored(&ns);
    let published: Vec<BTreeMap<String, String>> = stored
        .keys()
        .filter(|s| s.metric == "QueuedBuilds")
        .map(|s| s.dimensions.clone())
        .collect();
    assert_eq!(published.len(), 3, "{published:?}");
    assert!(
        published
            .iter()
            .any(|d| d.get("cache").is_some_and(|v| v.len() == 300 && v.starts_with(&long)))
    );
    assert!(published.iter().any(|d| d.get("sel").map(String::as_str) == Some("a:b,c")));
    assert!(published.iter().any(|d| d.len() == 1 && d["class"] == "standard"));
    let (counts, waits) = split_waits(sums(&stored, 1.0));
    assert_eq!(waits.len(), 3);
    for (series, value) in counts {
        let expected = if ["QueuedBuilds", "StartableBuilds"].contains(&series.metric.as_str()) {
            1.0
        } else {
            0.0
        };
        assert_eq!(value, expected, "{series:?}");
    }

    // Each refused group is named, with its reason.
    for needle in [
        r#"group=class=standard,gpu="""#,
        r#"the value of label "gpu" is empty"#,
        r#"the value of label "site" has non-ASCII characters"#,
        r#"the value of label "class" is only white space"#,
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    assert_eq!(run.stderr.matches("group left out").count(), 3, "{}", run.stderr);
}

#[test]
fn an_empty_queue_publishes_nothing_and_says_so() {
    let drone = drone_serving("drone_01_empty.json");
    let ns = namespace("empty");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("the queue is empty: nothing to publish"), "{}", run.stderr);
    assert!(run.stderr.contains("calls=0"), "{}", run.stderr);
    assert!(stored(&ns).is_empty());
}

#[test]
fn odd_statuses_are_logged_and_not_counted() {
    let drone = drone_serving("drone_11_SYNTHETIC_defensive.json");
    let ns = namespace("defensive");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (counts, _) = split_waits(sums(&stored(&ns), 1.0));
    assert_eq!(counts, four(&[], 2.0, 1.0, 2.0, 0.0).into_iter().collect());
    assert!(
        run.stderr.contains(r#"9804 ("waiting_on_dependencies"), 9805 ("blocked")"#),
        "{}",
        run.stderr
    );
}

#[test]
fn configuration_problems_are_reported_together_before_any_request() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let env = vec![
        ("DRONE_SERVER".to_string(), "drone.example.com".to_string()),
        ("CLOUDWATCH_METRICS_NAMESPACE".to_string(), ":bad".to_string()),
    ];
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for needle in [
        "3 configuration problems",
        "DRONE_SERVER (--drone-server)",
        "DRONE_TOKEN (--drone-token): not set",
        "CLOUDWATCH_METRICS_NAMESPACE (--namespace)",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }

    // With a reachable server but no token, the server is not contacted.
    let env = vec![
        ("DRONE_SERVER".to_string(), drone.url()),
        ("CLOUDWATCH_METRICS_NAMESPACE".to_string(), "Drone".to_string()),
    ];
    let run = crate::support::run(&env, &[]);
    assert_eq!(run.code, Some(2));
    assert!(queue_requests(&drone).is_empty());
}

#[test]
fn flags_work_like_the_variables() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("flags");
    let url = drone.url();
    let run = run(
        &aws_env(&emulator()),
        &["--drone-server", &url, "--drone-token", TOKEN, "--namespace", &ns],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(stored(&ns).len(), 12);
}

#[test]
fn a_missing_region_is_a_configuration_error() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let env = env_without(&full_env(&drone, &namespace("no-region")), "AWS_REGION");
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("AWS_REGION"), "{}", run.stderr);
    assert!(queue_requests(&drone).is_empty());
}

/// Each way the queue read can fail: exit status 1, a message naming the
/// URL and the cause, and nothing published.
#[test]
fn every_drone_failure_has_its_own_message_and_publishes_nothing() {
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "unauthorized",
            json!([{"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "auth": "admin"}]),
            &["401 Unauthorized", "does not know the token", "DRONE_TOKEN"],
        ),
        (
            "forbidden",
            json!([{"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "auth": "user"}]),
            &["403 Forbidden", "not an admin"],
        ),
        (
            "oss",
            json!([{"status": 501, "body": "{\"message\":\"Not Implemented\"}\n"}]),
            &["501 Not Implemented", "oss"],
        ),
        (
            "server-error",
            json!([{"status": 500, "body": "{\"message\":\"sql: database is closed\"}\n"}]),
            &["answered 500 Internal Server Error: sql: database is closed"],
        ),
        (
            "bad-gateway-html",
            json!([{"status": 502, "content_type": "text/html", "body": "<html>502 Bad Gateway</html>"}]),
            &["answered 502 Bad Gateway: body starts with \"<html>502 Bad Gateway</html>\""],
        ),
        (
            "login-page",
            json!([{"content_type": "text/html", "body": "<!DOCTYPE html><html><title>Sign in</title></html>"}]),
            &["is not JSON", "content type text/html", "<!DOCTYPE html>", "proxy or login page"],
        ),
        (
            "wrong-shape",
            json!([{"body": "{\"stages\": []}"}]),
            &[
                "JSON but not a Drone queue",
                "expected an array of stages, got an object with keys [\"stages\"]",
            ],
        ),
        (
            "bad-stage",
            json!([{"body": "[{\"id\": 5, \"status\": \"pending\", \"labels\": [\"a\"]}]"}]),
            &["stage #0 (id 5): invalid type: sequence, expected a map"],
        ),
        ("truncated", json!([{"body": "[{\"id\": 5, \"status\": \"pen"}]), &["is not JSON", "EOF"]),
        (
            "hung",
            json!([{"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "delay": 30}]),
            &["did not answer within 1s", "DRONE_TIMEOUT"],
        ),
        ("dropped", json!([{"close": true}]), &["the request to", "failed"]),
        ("not-modified", json!([{"status": 304, "body": ""}]), &["answered 304 Not Modified"]),
        (
            "rate-limited",
            json!([{"status": 429, "body": "slow down"}]),
            &["answered 429 Too Many Requests", "poll less often"],
        ),
    ];
    for (name, steps, needles) in cases {
        let drone = drone(steps);
        let ns = namespace(name);
        let mut env = full_env(&drone, &ns);
        env.push((
            "DRONE_TOKEN".into(),
            if name == "unauthorized" { "wrong-token".into() } else { TOKEN.into() },
        ));
        env.push(("DRONE_TIMEOUT".into(), "1s".into()));
        let started = std::time::Instant::now();
        let run = run(&env, &[]);
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert!(started.elapsed().as_secs() < 10, "{name} took {:?}", started.elapsed());
        let url = format!("{}/api/queue", drone.url());
        assert!(run.stderr.contains(&url), "{name}: no URL in\n{}", run.stderr);
        assert!(
            run.stderr.contains("could not read the Drone queue, so nothing was published"),
            "{name}: {}",
            run.stderr
        );
        for needle in needles {
            assert!(run.stderr.contains(needle), "{name}: missing {needle:?} in\n{}", run.stderr);
        }
        assert!(!run.output().contains(TOKEN), "{name}: the token leaked");
        assert!(stored(&ns).is_empty(), "{name}: something was published");
    }
}

#[test]
fn a_wrong_path_prefix_is_a_404_with_advice() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("not-found");
    let mut env = full_env(&drone, &ns);
    env.push(("DRONE_SERVER".into(), format!("{}/drone", drone.url())));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("404 Not Found"), "{}", run.stderr);
    assert!(run.stderr.contains("/drone/api/queue"), "{}", run.stderr);
    assert!(run.stderr.contains("without /api"), "{}", run.stderr);
    assert!(stored(&ns).is_empty());
}

#[test]
fn an_unreachable_server_is_named() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let drone = drone_serving("drone_01_empty.json");
    let ns = namespace("unreachable");
    let mut env = full_env(&drone, &ns);
    env.push(("DRONE_SERVER".into(), format!("http://127.0.0.1:{port}")));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(&format!(
            "could not connect to the Drone server at http://127.0.0.1:{port}/api/queue"
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn dry_run_prints_a_table_and_needs_no_aws() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let env = dry_run_env(&drone);
    let run = run(&env, &["--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with(r#"Would publish to namespace "Drone" at "#), "{}", run.stdout);
    assert!(lines[0].ends_with(": 12 data points in 1 PutMetricData call."), "{}", run.stdout);
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            "QueuedBuilds",
            "RunningBuilds",
            "StartableBuilds",
            "BlockedBuilds",
            "OldestQueuedSeconds",
            "BusyWorkers",
            "HELD",
            "BACK",
            "GROUP"
        ]
    );
    let rows: Vec<Vec<&str>> = lines[3..].iter().map(|l| l.split_whitespace().collect()).collect();
    // The waits depend on the clock: everything but them.
    let without_wait: Vec<Vec<&str>> = rows.iter().map(|r| [&r[..4], &r[5..]].concat()).collect();
    assert_eq!(
        without_wait,
        [
            vec!["2", "1", "2", "0", "1", "-", "class=gpu,os=linux"],
            vec!["3", "2", "3", "0", "2", "-", "class=standard,os=linux"]
        ]
    );
}

#[test]
fn dry_run_shows_why_stages_are_held_back() {
    let drone = drone_serving("drone_05_limit_blocked.json");
    let env = dry_run_env(&drone);
    let run = run(&env, &["--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let row: Vec<&str> = run.stdout.lines().nth(3).unwrap().split_whitespace().collect();
    assert_eq!(
        [&row[..4], &row[5..]].concat(),
        ["7", "3", "3", "4", "3", "limit", "4", "class=standard,os=linux"]
    );
}

#[test]
fn dry_run_json_has_every_group_and_the_refused_ones() {
    let drone = drone_serving("drone_08_label_edge_values.json");
    let env = dry_run_env(&drone);
    let run = run(&env, &["--dry-run", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(doc["namespace"], "Drone");
    assert_eq!(
        doc["summary"],
        json!({"groups": 3, "datums": 18, "calls": 1, "queued": 6, "running": 1, "startable": 6, "blocked": 0, "rejected_groups": 3, "ignored_stages": 0})
    );
    let groups = doc["groups"].as_array().unwrap();
    let mut plain = groups[1].clone();
    assert!(plain["metrics"]["OldestQueuedSeconds"].as_f64().unwrap() > 60.0);
    plain["metrics"].as_object_mut().unwrap().remove("OldestQueuedSeconds");
    assert_eq!(
        plain,
        json!({"dimensions": {"class": "standard"},
               "metrics": {"QueuedBuilds": 1.0, "RunningBuilds": 0.0, "StartableBuilds": 1.0, "BlockedBuilds": 0.0, "BusyWorkers": 0.0},
               "held_back": {"limit": 0, "throttle": 0, "accepted": 0}})
    );
    let rejected = doc["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[2]["dimensions"], json!({"class": "standard", "site": "zürich-東京-🚀"}));
    assert_eq!(rejected[2]["running"], 1);
}

#[test]
fn many_groups_go_out_in_as_few_calls_as_the_limit_allows() {
    // 300 groups x 5 metrics = 1,500 data points: two calls of at most 1,000.
    let stages: Vec<Value> = (0..300)
        .map(|i| json!({"id": i + 1, "status": if i % 3 == 0 { "running" } else { "pending" }, "labels": {"pool": format!("p{i:03}")}}))
        .collect();
    let drone = drone(json!([{"body": serde_json::to_string(&stages).unwrap()}]));
    let ns = namespace("many-groups");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("datums=1800") && run.stderr.contains("calls=2"), "{}", run.stderr);
    let sums = sums(&stored(&ns), 1.0);
    assert_eq!(sums.len(), 1800);
    for i in 0..300 {
        let pool = format!("p{i:03}");
        let (queued, running) = if i % 3 == 0 { (0.0, 1.0) } else { (1.0, 0.0) };
        let labels = [("pool", pool.as_str())];
        for (series, value) in four(&labels, queued, running, queued, 0.0) {
            assert_eq!(sums[&series], value, "{series:?}");
        }
        // The generated stages name no runner.
        assert_eq!(sums[&series("BusyWorkers", &labels)], 0.0);
    }
}

#[test]
fn throttling_is_retried_with_backoff() {
    let proxy = throttle_proxy(2);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("throttled");
    let mut env = full_env(&drone, &ns);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let posts = proxy.events();
    let throttled: Vec<bool> = posts.iter().map(|p| p["throttled"].as_bool().unwrap()).collect();
    assert_eq!(throttled, [true, true, false], "{posts:?}");
    assert_eq!(stored(&ns).len(), 12);
}

#[test]
fn a_refused_publish_fails_the_run_and_names_the_groups() {
    let proxy = throttle_proxy(1000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("refused");
    let mut env = full_env(&drone, &ns);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("CloudWatch did not take 1 of 1 PutMetricData calls, so these groups were not (fully) published: class=gpu,os=linux; class=standard,os=linux"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Throttling"), "{}", run.stderr);
    // The SDK tried five times, backing off in between.
    assert_eq!(proxy.events().len(), 5);
    assert!(stored(&ns).is_empty());
}

#[test]
fn the_token_never_shows_even_at_trace_level() {
    let drone = drone(
        json!([{"status": 500, "body": format!("{{\"message\":\"bad header Bearer {TOKEN}\"}}")}]),
    );
    let ns = namespace("trace");
    let mut env = full_env(&drone, &ns);
    env.push(("RUST_LOG".into(), "trace".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("bad header Bearer [redacted]"), "{}", run.stderr);
    assert!(run.stderr.lines().count() > 20, "trace logging is on");
    assert!(!run.output().contains(TOKEN));

    let ok_drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = full_env(&ok_drone, &namespace("trace-ok"));
    env.push(("RUST_LOG".into(), "trace".into()));
    let run = crate::support::run(&env, &[]);
    assert_eq!(run.code, Some(0));
    assert!(!run.output().contains(TOKEN));

    let help = crate::support::run(&[("DRONE_TOKEN".into(), TOKEN.into())], &["--help"]);
    assert_eq!(help.code, Some(0));
    assert!(help.stdout.contains("DRONE_TOKEN"), "{}", help.stdout);
    assert!(!help.output().contains(TOKEN));
}

#[test]
fn the_first_log_line_names_version_and_target() {
    let drone = drone_serving("drone_01_empty.json");
    let run = run(&full_env(&drone, &namespace("start")), &["--dry-run"]);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert!(first.contains("drone-queue-cloudwatch starting"), "{}", run.stderr);
    assert!(
        first.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            || first.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{first}"
    );
    assert!(first.contains("target=") && first.contains("drone_server="), "{first}");
}

#[test]
fn groups_with_and_without_labels_are_published_side_by_side() {
    let stages = json!([
        {"id": 1, "status": "pending", "created": 1_700_000_000},
        {"id": 2, "status": "running", "labels": {"os": "linux"}}
    ]);
    let drone = drone(json!([{"body": stages.to_string()}]));
    let ns = namespace("mixed");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (counts, waits) = split_waits(sums(&stored(&ns), 1.0));
    let expected: BTreeMap<_, _> =
        [four(&[], 1.0, 0.0, 1.0, 0.0), four(&[("os", "linux")], 0.0, 1.0, 0.0, 0.0)]
            .concat()
            .into_iter()
            .collect();
    assert_eq!(counts, expected);
    assert!(waits[&series("OldestQueuedSeconds", &[])] > 1000.0);
    assert_eq!(waits[&series("OldestQueuedSeconds", &[("os", "linux")])], 0.0);
}

#[test]
fn a_redirect_is_not_followed_and_is_named() {
    let drone = drone(json!([{"status": 302, "body": "", "auth": "any"}]));
    // The stand-in sends no Location; the message still says what happened.
    let ns = namespace("redirect");
    let run = run(&full_env(&drone, &ns), &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("redirected (302 Found)"), "{}", run.stderr);
    assert!(
        run.stderr.contains("set DRONE_SERVER to the server's real base URL"),
        "{}",
        run.stderr
    );
    assert!(stored(&ns).is_empty());
}

#[test]
fn broken_aws_settings_are_configuration_errors_not_panics() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = full_env(&drone, &namespace("aws-settings"));
    env.push(("AWS_ENDPOINT_URL".into(), String::new()));
    env.push(("AWS_MAX_ATTEMPTS".into(), "abc".into()));
    env.push(("LOG_FORMAT".into(), "yaml".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for needle in [
        "3 configuration problems",
        "AWS_ENDPOINT_URL (read by the AWS SDK): is set but is not an http(s) URL",
        "AWS_MAX_ATTEMPTS",
        "LOG_FORMAT",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(queue_requests(&drone).is_empty());
}

#[test]
fn a_label_key_no_stage_has_is_pointed_out() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = full_env(&drone, &namespace("label-key-typo"));
    env.push(("METRICS_LABEL_KEYS".into(), "Class".into()));
    let run = run(&env, &["--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(r#"METRICS_LABEL_KEYS names ["Class"], which no stage in the queue has"#),
        "{}",
        run.stderr
    );
}

#[test]
fn the_token_never_shows_in_any_echo_of_it() {
    // Each answer quotes the token somewhere a message would repeat: a
    // header, a malformed stage's value or id, an object's key, a value
    // written with JSON escapes.
    let escaped: String = TOKEN.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    let answers = [
        json!({"body": "<html>login</html>", "content_type": format!("text/html; x={TOKEN}")}),
        json!({"body": format!(r#"[{{"id": 1, "status": "pending", "labels": "{TOKEN}"}}]"#)}),
        json!({"body": format!(r#"[{{"id": "{TOKEN}{TOKEN}{TOKEN}", "status": 7}}]"#)}),
        json!({"body": format!(r#"{{"{TOKEN}": 1}}"#)}),
        json!({"body": format!(r#"[{{"id": 1, "status": "pending", "limit": "{escaped}"}}]"#)}),
        json!({"status": 502, "body": format!(r#"{{"message": "Bearer {escaped}"}}"#)}),
    ];
    for answer in answers {
        let drone = drone(json!([answer]));
        let run = run(&dry_run_env(&drone), &["--dry-run"]);
        assert_eq!(run.code, Some(1), "{answer}: {}", run.stderr);
        assert!(run.stderr.contains("[redacted]"), "{answer}: {}", run.stderr);
        assert!(!run.output().contains(TOKEN), "{answer}: {}", run.output());
        // Not even a cut-off part of it.
        assert!(!run.output().contains(&TOKEN[..10]), "{answer}: {}", run.output());
    }
}

#[test]
fn the_token_never_shows_in_argument_errors() {
    let drone = drone_serving("drone_01_empty.json");
    // The token given twice by mistake: once in the environment and once
    // as a stray argument; and once as a flag followed by a stray copy.
    let env = dry_run_env(&drone);
    let stray = run(&env, &[TOKEN]);
    let flagged =
        run(&env_without(&env, "DRONE_TOKEN"), &["--drone-token", TOKEN, &format!("x{TOKEN}")]);
    for run in [stray, flagged] {
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(run.stderr.contains("unexpected argument"), "{}", run.stderr);
        assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
        assert!(!run.output().contains(TOKEN), "{}", run.output());
    }
}

#[test]
fn aws_max_attempts_sets_the_number_of_tries() {
    let proxy = throttle_proxy(1000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("max-attempts");
    let mut env = full_env(&drone, &ns);
    env.push(("AWS_ENDPOINT_URL".into(), proxy.url()));
    env.push(("AWS_MAX_ATTEMPTS".into(), "2".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(proxy.events().len(), 2);
}

#[test]
fn values_that_are_not_utf8_are_named_with_every_other_problem() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"http://127.0.0.1:1/\xff");
    let mut cmd = std::process::Command::new(BIN);
    base_env(&mut cmd);
    let out = cmd
        .env("DRONE_SERVER", not_utf8)
        .env("DRONE_TOKEN", TOKEN)
        .env("LOG_FORMAT", not_utf8)
        .env("DRONE_TIMEOUT", "soon")
        .env("AWS_ENDPOINT_URL", not_utf8)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "5 configuration problems",
        "DRONE_SERVER: the value is not valid UTF-8",
        "LOG_FORMAT: the value is not valid UTF-8",
        "AWS_ENDPOINT_URL (read by the AWS SDK): the value is not valid UTF-8",
        "DRONE_TIMEOUT (--drone-timeout)",
        "CLOUDWATCH_METRICS_NAMESPACE (--namespace",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    assert!(!stderr.contains("DRONE_SERVER (--drone-server): not set"), "{stderr}");
}

#[test]
fn a_bad_endpoint_in_the_aws_profile_stops_the_run_before_the_queue_is_read() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let config = scratch("bad-endpoint-profile").join("config");
    std::fs::write(&config, "[default]\nendpoint_url =\n").unwrap();
    let mut env = env_without(&full_env(&drone, &namespace("bad-profile")), "AWS_ENDPOINT_URL");
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("the AWS profile's endpoint_url"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(queue_requests(&drone).is_empty());
}

#[test]
fn a_token_inside_the_stages_is_neither_logged_printed_nor_published() {
    let stages = json!([
        {"id": 1, "status": format!("Bearer {TOKEN}")},
        {"id": 2, "status": "pending", "labels": {"class": TOKEN}},
        {"id": 3, "status": "running", "labels": {"class": "gpu"}, "machine": TOKEN}
    ]);
    let drone = drone(json!([{"body": stages.to_string()}]));
    let ns = namespace("token-in-stages");
    let mut env = full_env(&drone, &ns);
    env.push(("RUST_LOG".into(), "debug".into()));
    let run = run(&env, &["--dry-run", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN), "{}", run.output());
    assert!(run.stdout.contains(r#""class": "[redacted]""#), "{}", run.stdout);
    assert!(run.stderr.contains("hold the Drone token"), "{}", run.stderr);

    let published = crate::support::run(&full_env(&drone, &ns), &[]);
    assert_eq!(published.code, Some(0), "{}", published.stderr);
    let stored = stored(&ns);
    let classes: Vec<&str> =
        stored.keys().filter_map(|s| s.dimensions.get("class").map(String::as_str)).collect();
    assert!(classes.contains(&"[redacted]") && classes.contains(&"gpu"), "{classes:?}");
    assert!(!format!("{stored:?}").contains(TOKEN));
}

#[test]
fn configuration_messages_never_repeat_the_token() {
    let drone = drone_serving("drone_01_empty.json");
    let mut env = dry_run_env(&drone);
    env.retain(|(k, _)| k != "CLOUDWATCH_METRICS_NAMESPACE");
    env.push(("CLOUDWATCH_METRICS_NAMESPACE".into(), format!("Drone/{TOKEN}")));
    env.push(("DRONE_TIMEOUT".into(), format!("x {TOKEN}")));
    let run = run(&env, &["--output", TOKEN]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    for needle in [
        "CLOUDWATCH_METRICS_NAMESPACE (--namespace): contains the Drone token",
        "DRONE_TIMEOUT (--drone-timeout): \"x [redacted]\"",
        "--output: \"[redacted]\"",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in\n{}", run.stderr);
    }
    assert!(!run.output().contains(TOKEN), "{}", run.output());
}

#[test]
fn a_panic_in_the_aws_sdk_is_one_log_line_and_a_configuration_error() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let config = scratch("bad-retry-profile").join("config");
    std::fs::write(&config, "[default]\nretry_mode = bogus\n").unwrap();
    let mut env = full_env(&drone, &namespace("bad-retry"));
    env.push(("AWS_CONFIG_FILE".into(), config.display().to_string()));
    env.push(("LOG_FORMAT".into(), "json".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("could not load its configuration"), "{}", run.stderr);
    assert!(!run.stderr.contains("thread 'main' panicked"), "{}", run.stderr);
    for line in run.stderr.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(queue_requests(&drone).is_empty());
}

#[test]
fn a_queue_of_only_odd_statuses_is_not_called_empty() {
    let stages = json!([{"id": 1, "status": "killed"}, {"id": 2, "status": "success"}]);
    let drone = drone(json!([{"body": stages.to_string()}]));
    let run = run(&dry_run_env(&drone), &["--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("no stage in the queue is pending or running"), "{}", run.stdout);
    assert!(!run.output().contains("the queue is empty"), "{}", run.output());
}
