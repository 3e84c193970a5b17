//! The Lambda mode: the real `lambda_runtime` crate under a Runtime API
//! emulator.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// The variables Lambda sets for a function (the runtime crate requires
/// them), plus the Runtime API address.
pub fn lambda_env(api: &StandIn, mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    for (k, v) in [
        ("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port)),
        ("AWS_LAMBDA_FUNCTION_NAME", "drone-queue-cloudwatch".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test".into()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/drone-queue-cloudwatch".into()),
    ] {
        env.push((k.into(), v));
    }
    env
}

/// Waits for every invocation's answer, then stops the function and
/// returns the answers and what the function logged.
pub fn invoke_all(api: &StandIn, mut function: Child, n: usize) -> (Vec<Value>, String) {
    let stderr = drain(function.stderr.take().unwrap());
    let _stdout = drain(function.stdout.take().unwrap());
    let lines = api.wait_for(1, Duration::from_secs(60), |v| v["kind"] == "done");
    // The process must still be serving: a failed poll is not a crash.
    assert!(function.try_wait().unwrap().is_none(), "the function exited");
    let _ = function.kill();
    let _ = function.wait();
    let answers: Vec<Value> =
        lines.into_iter().filter(|v| v["kind"] == "response" || v["kind"] == "error").collect();
    assert_eq!(answers.len(), n, "{answers:#?}");
    (answers, stderr.join().unwrap())
}

#[test]
fn every_kind_of_event_runs_one_poll_and_answers_a_summary() {
    let events = json!([
        {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
         "source": "aws.events", "account": "123456789012", "time": "2015-10-08T16:53:06Z",
         "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/my-scheduled-rule"],
         "detail": {}},
        {"detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": "{}"},
        "a constant input",
        {}
    ]);
    let api = lambda_api(&events, 10_000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("lambda");
    let function = spawn(&lambda_env(&api, full_env(&drone, &ns)));
    let (answers, logs) = invoke_all(&api, function, 4);

    let summary = json!({"groups": 2, "datums": 12, "calls": 1, "queued": 5, "running": 3,
                         "startable": 5, "blocked": 0, "rejected_groups": 0, "ignored_stages": 0});
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["kind"], "response", "{answer}");
        assert_eq!(answer["request_id"], format!("req-{}", i + 1));
        assert_eq!(answer["body"], summary);
    }

    // Four polls of the same queue: four points per series.
    let stored = stored(&ns);
    assert_eq!(stored.len(), 12);
    let std = [("class", "standard"), ("os", "linux")];
    let gpu = [("class", "gpu"), ("os", "linux")];
    for (series, per_poll) in [
        (series("QueuedBuilds", &std), 3.0),
        (series("RunningBuilds", &std), 2.0),
        (series("QueuedBuilds", &gpu), 2.0),
        (series("RunningBuilds", &gpu), 1.0),
    ] {
        let s = &stored[&series];
        assert_eq!((s.samples, s.sum), (4.0, 4.0 * per_poll), "{series:?}");
    }

    // JSON logs, one poll line per invocation, tagged with the request id.
    let polls: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v| v["message"] == "poll complete")
        .collect();
    assert_eq!(polls.len(), 4, "{logs}");
    assert_eq!(polls[0]["span"]["request_id"], "req-1");
    assert_eq!((polls[3]["queued"].as_u64(), polls[3]["running"].as_u64()), (Some(5), Some(3)));
    assert!(!logs.contains(TOKEN));
}

#[test]
fn a_failed_poll_is_an_invocation_error_and_the_runtime_goes_on() {
    let events = json!([{}, {}]);
    let api = lambda_api(&events, 10_000);
    // First read refused, second fine.
    let drone = drone(json!([
        {"status": 403, "body": "{\"message\":\"Forbidden\"}\n", "auth": "any"},
        {"fixture": fixture("drone_03_no_labels.json")}
    ]));
    let ns = namespace("lambda-fail");
    let function = spawn(&lambda_env(&api, full_env(&drone, &ns)));
    let (answers, logs) = invoke_all(&api, function, 2);

    assert_eq!(answers[0]["kind"], "error");
    assert_eq!(answers[0]["body"]["errorType"], "DroneQueueUnreadable");
    let message = answers[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("could not read the Drone queue, so nothing was published"),
        "{message}"
    );
    assert!(message.contains("403 Forbidden") && message.contains(&drone.url()), "{message}");
    assert_eq!(answers[1]["kind"], "response");
    assert_eq!(answers[1]["body"]["queued"], 4);
    // Only the second poll published.
    let stored = stored(&ns);
    assert_eq!(stored[&series("QueuedBuilds", &[])].samples, 1.0);
    assert!(!logs.contains(TOKEN) && !answers.iter().any(|a| a.to_string().contains(TOKEN)));
}

#[test]
fn a_hung_drone_fails_the_invocation_before_its_deadline() {
    let api = lambda_api(&json!([{}]), 3_000);
    let drone =
        drone(json!([{"fixture": fixture("drone_02_two_groups_standard_gpu.json"), "delay": 30}]));
    let ns = namespace("lambda-hung");
    let started = Instant::now();
    let function = spawn(&lambda_env(&api, full_env(&drone, &ns)));
    let (answers, _) = invoke_all(&api, function, 1);
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
    assert_eq!(answers[0]["kind"], "error");
    let message = answers[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("did not answer within"), "{message}");
    assert!(stored(&ns).is_empty());
}

#[test]
fn an_argument_the_parser_refuses_still_reaches_the_invocations() {
    let api = lambda_api(&json!([{}]), 10_000);
    let drone = drone_serving("drone_01_empty.json");
    let mut env = full_env(&drone, &namespace("lambda-bad-log"));
    env.push(("LOG_FORMAT".into(), "yaml".into()));
    let function = spawn(&lambda_env(&api, env));
    let (answers, _) = invoke_all(&api, function, 1);
    assert_eq!(answers[0]["body"]["errorType"], "ConfigurationError");
    assert!(answers[0]["body"]["errorMessage"].as_str().unwrap().contains("LOG_FORMAT"));
}

#[test]
fn a_configuration_error_fails_each_invocation_with_its_text() {
    let api = lambda_api(&json!([{}, {}]), 10_000);
    let env = vec![("DRONE_SERVER".to_string(), "not a url".to_string())];
    let function = spawn(&lambda_env(&api, env));
    let (answers, _) = invoke_all(&api, function, 2);
    for answer in answers {
        assert_eq!(answer["kind"], "error");
        assert_eq!(answer["body"]["errorType"], "ConfigurationError");
        let message = answer["body"]["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("DRONE_SERVER") && message.contains("DRONE_TOKEN: ")
                || message.contains("DRONE_TOKEN (--drone-token)"),
            "{message}"
        );
        assert!(message.contains("CLOUDWATCH_METRICS_NAMESPACE"), "{message}");
    }
}

#[test]
fn a_stray_runtime_api_variable_outside_lambda_is_a_message_not_a_crash() {
    let drone = drone_serving("drone_01_empty.json");
    let mut env = dry_run_env(&drone);
    env.push(("AWS_LAMBDA_RUNTIME_API".into(), String::new()));
    env.push(("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "lots".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "but AWS_LAMBDA_RUNTIME_API (empty), AWS_LAMBDA_FUNCTION_NAME, \
             AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE are missing or invalid"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panic"), "{}", run.stderr);
}
