//! The 5,000-stage fixture: parse and aggregate time in process; and, with
//! the CloudWatch emulator (`scripts/bench.sh` starts it), the whole run's
//! wall time, peak memory and `PutMetricData` calls, beside the reference
//! tool's pattern of one call per stage.
//!
//! A benchmark, not a test: it prints figures and asserts only that the
//! runs succeeded.

#[path = "../tests/e2e/readback.rs"]
mod readback;
#[path = "../tests/e2e/support.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use drone_queue_cloudwatch::aggregate::aggregate;
use drone_queue_cloudwatch::config::Token;
use drone_queue_cloudwatch::drone::{DroneClient, parse_queue};
use drone_queue_cloudwatch::grouping::Grouping;
use drone_queue_cloudwatch::metrics::plan;
use drone_queue_cloudwatch::routing::classify;

const FIXTURE: &str = "drone_09_large_5000_stages_12_groups.json";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Peak resident memory of the largest child waited for so far, in KiB.
fn children_peak_kib() -> i64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss
    }
}

fn main() {
    let body = std::fs::read(support::fixture(FIXTURE)).unwrap();
    println!("fixture: {FIXTURE} ({} bytes)", body.len());

    // Parse + aggregate + plan, in process, with the default grouping and
    // with the routing dimensions (platform, type).
    let routed = Grouping { platform: true, pipeline_type: true, ..Grouping::default() };
    for (label, grouping, groups) in
        [("labels", Grouping::default(), 6), ("platform,type", routed, 12)]
    {
        for _ in 0..5 {
            black_box(plan(&aggregate(&parse_queue(&body).unwrap(), &grouping), 0));
        }
        let mut parse = Vec::new();
        let mut total = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let stages = black_box(parse_queue(&body).unwrap());
            let parsed = t.elapsed();
            let p = black_box(plan(&aggregate(&stages, &grouping), 0));
            total.push(t.elapsed());
            parse.push(parsed);
            assert_eq!(p.groups.len(), groups);
        }
        let stages = parse_queue(&body).unwrap();
        let mut rules = Vec::new();
        let mut counting = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            black_box(classify(black_box(&stages)));
            rules.push(t.elapsed());
            let t = Instant::now();
            black_box(aggregate(black_box(&stages), &grouping));
            counting.push(t.elapsed());
        }
        println!("[{label}] parse:                median {} (50 runs)", ms(median(parse)));
        println!("[{label}] scheduler rules:      median {} (50 runs)", ms(median(rules)));
        println!("[{label}] aggregate (w/ rules): median {} (50 runs)", ms(median(counting)));
        println!("[{label}] parse+aggregate+plan: median {} (50 runs)", ms(median(total)));
    }

    if std::env::var_os("DQC_TEST_CLOUDWATCH_ENDPOINT").is_none() {
        println!(
            "(set DQC_TEST_CLOUDWATCH_ENDPOINT, or run scripts/bench.sh, for the whole-run figures)"
        );
        return;
    }

    // The whole run: the release binary against the stand-in and emulator.
    let drone = support::drone_serving(FIXTURE);
    let mut walls = Vec::new();
    let mut calls = String::new();
    for i in 0..5 {
        let ns = support::namespace(&format!("bench-{i}"));
        let t = Instant::now();
        let run = support::run(&support::full_env(&drone, &ns), &[]);
        walls.push(t.elapsed());
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        calls = run
            .stderr
            .split_whitespace()
            .find(|w| w.starts_with("calls="))
            .unwrap_or("calls=?")
            .to_string();
    }
    println!(
        "whole run (binary):    median {} (5 runs), peak RSS {} KiB, PutMetricData {calls}",
        ms(median(walls)),
        children_peak_kib()
    );

    // The reference tool's pattern: one PutMetricData call per stage.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let ns = support::namespace("bench-reference");
        let client = readback::client(&support::emulator());
        let server = reqwest::Url::parse(&drone.url()).unwrap();
        let source = DroneClient::new(&server, Token::new(support::TOKEN)).unwrap();
        let t = Instant::now();
        let stages = source.fetch(Duration::from_secs(30)).await.unwrap();
        let mut n = 0;
        for stage in &stages {
            let metric = match stage.status.as_str() {
                "pending" => "QueuedBuilds",
                "running" => "RunningBuilds",
                _ => continue,
            };
            let dims =
                stage.labels.iter().map(|(k, v)| Dimension::builder().name(k).value(v).build());
            let datum = MetricDatum::builder()
                .metric_name(metric)
                .set_dimensions(Some(dims.collect()))
                .value(1.0)
                .unit(StandardUnit::Count)
                .build();
            client.put_metric_data().namespace(&ns).metric_data(datum).send().await.unwrap();
            n += 1;
        }
        println!(
            "reference pattern:     {} for {n} PutMetricData calls (one per stage)",
            ms(t.elapsed())
        );
    });
}
