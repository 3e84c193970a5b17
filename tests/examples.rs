//! The examples under examples/kubernetes and examples/grafana parse, and
//! name only metrics and variables the program really has, so that a
//! renamed metric cannot leave them behind.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use drone_queue_cloudwatch::config::VARIABLES;
use drone_queue_cloudwatch::prometheus::Exposition;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every metric family the endpoint serves.
fn families() -> BTreeSet<String> {
    Exposition::new()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The `drone_...` names a PromQL expression uses.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("drone_") {
        let tail = &rest[start..];
        let end =
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The documents of a YAML file, read by PyYAML in the test script's venv
/// (ministack depends on it).
fn yaml(file: &str) -> Vec<Value> {
    let python = repo().join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"])
        .arg(repo().join(file))
        .output()
        .unwrap_or_else(|e| panic!("{} ({e}): run ./scripts/test.sh, which creates it", python.display()));
    assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_grafana_dashboard_queries_only_served_metrics() {
    let text = std::fs::read_to_string(repo().join("examples/grafana/drone-queue.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let families = families();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for name in metrics_in(target["expr"].as_str().unwrap()) {
                assert!(families.contains(&name), "{name} is not served: {families:?}");
                used.insert(name);
            }
        }
    }
    // Every per-group metric has its panel.
    for family in families.iter().filter(|f| !f.starts_with("drone_queue_")) {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

#[test]
fn the_kubernetes_examples_fit_the_program() {
    let families = families();
    let scaled = yaml("examples/kubernetes/keda-scaledobject.yaml");
    assert_eq!(scaled.len(), 2);
    for object in &scaled {
        assert_eq!(object["kind"], "ScaledObject");
        let trigger = &object["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "prometheus");
        let names = metrics_in(trigger["metadata"]["query"].as_str().unwrap());
        assert!(!names.is_empty());
        assert!(names.iter().all(|n| families.contains(n)), "{names:?}");
    }

    let poller = yaml("examples/kubernetes/poller.yaml");
    let kinds: Vec<&str> = poller.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let container = &poller[0]["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    for variable in env {
        let name = variable["name"].as_str().unwrap();
        assert!(VARIABLES.contains(&name), "{name} is not read by the program");
    }
    let value = |name: &str| env.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(value("DRONE_TOKEN")["valueFrom"]["secretKeyRef"]["key"], "DRONE_TOKEN");
    assert!(value("DRONE_TOKEN").get("value").is_none(), "the token belongs in the Secret");
    assert_eq!(value("METRICS_SINKS")["value"], "prometheus");
    assert_eq!(value("PROMETHEUS_LISTEN")["value"], "0.0.0.0:9464");
    assert_eq!(container["ports"][0]["containerPort"], 9464);
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(poller[1]["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"]);
}
