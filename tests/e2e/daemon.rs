//! The daemon (`POLL_INTERVAL`): cadence, back-off, recovery and shutdown.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The daemon writing EMF lines (no AWS needed), polling every second.
fn daemon_env(drone: &StandIn) -> Vec<(String, String)> {
    let mut env = dry_run_env(drone);
    env.push(("METRICS_SINKS".into(), "emf".into()));
    env.push(("POLL_INTERVAL".into(), "1s".into()));
    env
}

fn emf_lines(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.starts_with("{\"_aws\":")).count()
}

#[test]
fn keeps_its_cadence_through_failures_and_a_hang_backs_off_and_recovers() {
    let ok = json!({"fixture": fixture("drone_02_two_groups_standard_gpu.json")});
    let drone = drone(json!([
        ok,
        {"status": 500, "body": "{\"message\":\"sql: database is closed\"}"},
        {"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "delay": 5},
        {"status": 500, "body": "{}"},
        ok,
    ]));
    let mut daemon = Daemon::start(&daemon_env(&drone));
    let requests: Vec<Value> = drone
        .wait_for(7, Duration::from_secs(30), |v| v["n"].is_number())
        .into_iter()
        .filter(|v| v["n"].is_number())
        .collect();
    daemon.wait_log("poll{n=7}", Duration::from_secs(5));
    daemon.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let run = daemon.finish();
    assert!(stopped.elapsed() < Duration::from_secs(1), "exit took {:?}", stopped.elapsed());
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    // Every request on the grid of ticks: 1 s apart after a success, then
    // 2 and 4 ticks after the second and third failure in a row.
    let times: Vec<f64> = requests.iter().map(|r| r["t"].as_f64().unwrap()).collect();
    let offsets: Vec<f64> = times.iter().map(|t| t - times[0]).collect();
    let ticks: Vec<i64> = offsets.iter().map(|o| o.round() as i64).collect();
    assert_eq!(ticks, [0, 1, 2, 4, 8, 9, 10], "{offsets:?}");
    for (offset, tick) in offsets.iter().zip(&ticks) {
        assert!((offset - *tick as f64).abs() < 0.2, "drifted: {offsets:?}");
    }

    // Four successful polls (ticks 0, 8, 9, 10), two groups each; nothing
    // from the failures.
    assert_eq!(emf_lines(&run.stdout), 4 * 2, "{}", run.stdout);
    let log = &run.stderr;
    assert!(log.contains("500 Internal Server Error"), "{log}");
    assert!(log.contains("did not answer within"), "{log}");
    assert!(log.contains("consecutive_failures=3 next_poll_in_ms=4000"), "{log}");
    assert!(log.contains("the poll succeeded again failures=3"), "{log}");
    assert!(log.contains("SIGTERM received: stopping"), "{log}");
    assert_eq!(log.matches("poll complete").count(), 4, "{log}");
    assert!(!run.output().contains(TOKEN));
}

#[test]
fn a_signal_mid_poll_stops_at_once_and_publishes_nothing() {
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        // The first (and only) poll hangs for 30 s, well inside its time.
        let drone = drone(json!([
            {"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "delay": 30}
        ]));
        let mut env = dry_run_env(&drone);
        env.extend([
            ("DRONE_TIMEOUT".to_string(), "40s".to_string()),
            ("POLL_INTERVAL".into(), "60s".into()),
            ("METRICS_SINKS".into(), "emf,prometheus".into()),
            ("PROMETHEUS_LISTEN".into(), "127.0.0.1:0".into()),
        ]);
        let mut daemon = Daemon::start(&env);
        let base = daemon.metrics_base();
        drone.wait_for(1, Duration::from_secs(10), |v| v["n"] == 0);
        // Not healthy yet: no poll has ended.
        assert_eq!(http(&base, "GET", "/healthz", b"").status, 503);
        daemon.signal(signal);
        let sent = Instant::now();
        let code = daemon.wait_exit(Duration::from_secs(5));
        assert!(sent.elapsed() < Duration::from_secs(1), "{name}: exit took {:?}", sent.elapsed());
        let run = daemon.finish();
        assert_eq!(code, Some(Some(0)), "{name}: {}", run.stderr);
        assert_eq!(run.stdout, "", "{name}");
        assert!(run.stderr.contains(&format!("{name} received: stopping")), "{}", run.stderr);
        assert!(!run.stderr.contains("poll complete"), "{}", run.stderr);
    }
}

#[test]
fn mode_and_sink_mistakes_are_configuration_errors() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    // Variables set, and what the message must say.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case<'_>] = &[
        (
            &[("METRICS_SINKS", "prometheus")],
            &[
                "METRICS_SINKS (--sinks): prometheus serves its endpoint only while",
                "POLL_INTERVAL",
            ],
        ),
        (&[("POLL_INTERVAL", "0s")], &["POLL_INTERVAL (--interval): \"0s\" is out of range"]),
        (&[("POLL_INTERVAL", "500ms")], &["from 1s to 24h"]),
        (
            &[("METRICS_SINKS", "cloudwatch,datadog,emf,emf")],
            &["2 configuration problems", "\"datadog\" is not a sink", "emf is listed twice"],
        ),
        (&[("METRICS_SINKS", "")], &["METRICS_SINKS (--sinks): is empty"]),
        (
            &[("METRICS_SINKS", "prometheus"), ("POLL_INTERVAL", "1s"), ("PROMETHEUS_LISTEN", "x")],
            &["PROMETHEUS_LISTEN (--prometheus-listen): \"x\" is not an IP address and port"],
        ),
        (&[("CLOUDWATCH_HIGH_RESOLUTION", "sometimes")], &["CLOUDWATCH_HIGH_RESOLUTION"]),
    ];
    for (vars, needles) in cases {
        let mut env = dry_run_env(&drone);
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let run = run(&env, &[]);
        assert_eq!(run.code, Some(2), "{vars:?}: {}", run.stderr);
        for needle in *needles {
            assert!(run.stderr.contains(needle), "{vars:?}: missing {needle:?} in\n{}", run.stderr);
        }
    }
    assert!(drone.events().iter().all(|e| !e["n"].is_number()), "the queue was read");
}

#[test]
fn a_port_in_use_stops_the_daemon_before_any_poll() {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut env = daemon_env(&drone);
    env.push(("METRICS_SINKS".into(), "prometheus".into()));
    env.push(("PROMETHEUS_LISTEN".into(), address.clone()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "could not listen on {address} for the Prometheus endpoint (PROMETHEUS_LISTEN)"
        )),
        "{}",
        run.stderr
    );
    assert!(drone.events().iter().all(|e| !e["n"].is_number()), "the queue was read");
}

#[test]
fn standard_output_that_nobody_reads_does_not_freeze_the_daemon() {
    // 300 groups: some 120 KB of EMF lines per poll, more than a pipe holds.
    let stages: Vec<Value> = (0..300)
        .map(|i| json!({"id": i + 1, "status": "pending", "labels": {"class": format!("g{i}")}}))
        .collect();
    let drone = drone(json!([{"body": Value::Array(stages).to_string()}]));
    let mut env = daemon_env(&drone);
    env.retain(|(k, _)| k != "METRICS_SINKS");
    env.extend([
        ("METRICS_SINKS".to_string(), "emf,prometheus".to_string()),
        ("PROMETHEUS_LISTEN".into(), "127.0.0.1:0".into()),
    ]);
    let mut daemon = Daemon::start_unread(&env);
    let base = daemon.metrics_base();
    // The second poll finds the first one's write still stuck, fails at
    // once, and the daemon carries on.
    let failed = daemon.wait_log("nothing is reading standard output", Duration::from_secs(10));
    assert!(failed.contains("could not write the EMF lines"), "{failed}");
    let health = http(&base, "GET", "/healthz", b"");
    assert_eq!(health.status, 200);
    let metrics = http(&base, "GET", "/metrics", b"");
    assert!(metrics.body.contains("drone_queue_poll_failures_total"), "{}", metrics.body);
    daemon.signal(libc::SIGTERM);
    let stopped = Instant::now();
    assert_eq!(daemon.wait_exit(Duration::from_secs(1)), Some(Some(0)));
    assert!(stopped.elapsed() < Duration::from_secs(1));
}
