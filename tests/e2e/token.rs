//! The token kept in AWS: read from SSM Parameter Store or Secrets Manager
//! (moto), in the CLI and in Lambda, its errors, and that it never shows.

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_ssm::types::ParameterType;
use serde_json::{Value, json};

use crate::lambda::{invoke_all, lambda_env};
use crate::support::*;

/// Another secret beside the token in a JSON secret; it must never show
/// either.
const OTHER: &str = "db-pa55w0rd-4f9e2c71";

/// A name no other test (or earlier run against the same moto) uses.
fn unique(test: &str) -> String {
    format!("dqc-e2e/{test}/{}", std::process::id())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn ssm() -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .endpoint_url(moto())
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

fn secrets() -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .endpoint_url(moto())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// Stores `value` in the parameter `/name` of `kind`; returns its name and ARN.
fn parameter(test: &str, value: &str, kind: ParameterType) -> (String, String) {
    let name = format!("/{}", unique(test));
    block_on(ssm().put_parameter().name(&name).value(value).r#type(kind).overwrite(true).send())
        .unwrap();
    let arn = block_on(ssm().get_parameter().name(&name).send())
        .unwrap()
        .parameter()
        .and_then(|p| p.arn())
        .unwrap()
        .to_string();
    (name, arn)
}

/// Creates a secret holding `text`; returns its name.
fn secret(test: &str, text: &str) -> String {
    let name = unique(test);
    block_on(secrets().create_secret().name(&name).secret_string(text).send()).unwrap();
    name
}

/// The environment of a publishing run with the token in AWS: SSM and
/// Secrets Manager at `aws` (moto, or a proxy in front of it), CloudWatch at
/// the CloudWatch emulator, and no `DRONE_TOKEN`.
fn kept_env(drone: &StandIn, namespace: &str, aws: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        full_env(drone, namespace).into_iter().filter(|(k, _)| k != "DRONE_TOKEN").collect();
    env.push(("AWS_ENDPOINT_URL_SSM".into(), aws.into()));
    env.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), aws.into()));
    env
}

fn with(mut env: Vec<(String, String)>, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The queue requests the stand-in Drone saw, and whether each carried the
/// right token.
fn queue_auth(drone: &StandIn) -> Vec<bool> {
    drone
        .events()
        .into_iter()
        .filter(|e| e["n"].is_number())
        .map(|e| e["auth_ok"].as_bool().unwrap())
        .collect()
}

/// A recording proxy in front of moto, answering some requests with the
/// errors of `answers` (see tests/standin/aws_proxy.py).
fn aws_proxy(answers: Value) -> StandIn {
    let file = scratch("aws-proxy").join("answers.json");
    std::fs::write(&file, serde_json::to_vec(&answers).unwrap()).unwrap();
    StandIn::start(
        "aws_proxy.py",
        &["--upstream".into(), moto(), "--answers".into(), file.display().to_string()],
    )
}

/// The operations a proxy relayed or answered, in order.
fn targets(proxy: &StandIn) -> Vec<String> {
    proxy.events().iter().map(|e| e["target"].as_str().unwrap_or("").to_string()).collect()
}

/// Checks a publishing run that worked with the token from AWS.
fn assert_published(run: &Run, drone: &StandIn, namespace: &str) {
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(queue_auth(drone), [true]);
    let (counts, _) = split_waits(sums(&stored(namespace), 1.0));
    let std = [("class", "standard"), ("os", "linux")];
    assert_eq!(counts[&series("QueuedBuilds", &std)], 3.0, "{counts:?}");
    assert!(!run.output().contains(TOKEN), "{}", run.output());
}

#[test]
fn a_secure_string_parameter_holds_the_token() {
    // Stored with the newline of a file it was pasted from.
    let (name, _) = parameter("secure", &format!("{TOKEN}\n"), ParameterType::SecureString);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("token-ssm");
    let run =
        run(&with(kept_env(&drone, &ns, &moto()), &[("DRONE_TOKEN_SSM_PARAMETER", &name)]), &[]);
    assert_published(&run, &drone, &ns);
    assert!(run.stderr.contains(&format!("token_from=SSM parameter {name}")), "{}", run.stderr);
    assert!(run.stderr.contains("the Drone token was read"), "{}", run.stderr);
    assert!(!run.stderr.contains("WARN"), "{}", run.stderr);
}

#[test]
fn a_plain_string_parameter_works_but_draws_a_warning() {
    let (_, arn) = parameter("plain", TOKEN, ParameterType::String);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("token-ssm-plain");
    // By ARN, and with the flag rather than the variable.
    let run = run(&kept_env(&drone, &ns, &moto()), &["--drone-token-ssm-parameter", &arn]);
    assert_published(&run, &drone, &ns);
    let warning = run.stderr.lines().find(|l| l.contains("WARN")).unwrap_or_default();
    assert!(
        warning.contains(&format!("SSM parameter {arn} is a plain String parameter")),
        "{warning}"
    );
    assert!(warning.contains("store the token as a SecureString"), "{warning}");
}

#[test]
fn a_secret_holds_the_token_as_its_text() {
    let id = secret("text", &format!(" {TOKEN} "));
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("token-secret");
    let run = run(&with(kept_env(&drone, &ns, &moto()), &[("DRONE_TOKEN_SECRET_ID", &id)]), &[]);
    assert_published(&run, &drone, &ns);
    assert!(
        run.stderr.contains(&format!("token_from=Secrets Manager secret {id}")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_secret_holds_the_token_under_a_json_key() {
    let id =
        secret("json", &json!({"username": "ci", "token": TOKEN, "password": OTHER}).to_string());
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("token-secret-key");
    let env = with(
        kept_env(&drone, &ns, &moto()),
        &[("DRONE_TOKEN_SECRET_ID", &id), ("DRONE_TOKEN_SECRET_KEY", "token")],
    );
    let run = run(&env, &[]);
    assert_published(&run, &drone, &ns);
    assert!(!run.output().contains(OTHER));
}

#[test]
fn a_dry_run_reads_the_token_from_aws_too_and_needs_a_region_for_it() {
    let (name, _) = parameter("dry-run", TOKEN, ParameterType::SecureString);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let mut env = with(dry_run_env(&drone), &[("DRONE_TOKEN_SSM_PARAMETER", &name)]);
    env.retain(|(k, _)| k != "DRONE_TOKEN");
    let without_aws = run(&env, &["--dry-run"]);
    assert_eq!(without_aws.code, Some(2), "{}", without_aws.stderr);
    assert!(
        without_aws.stderr.contains("AWS_REGION: no AWS region is configured; set AWS_REGION")
            && !without_aws.stderr.contains("--dry-run"),
        "{}",
        without_aws.stderr
    );
    assert!(queue_auth(&drone).is_empty());

    let env = with(
        env,
        &[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_ENDPOINT_URL_SSM", &moto()),
        ],
    );
    let dry = run(&env, &["--dry-run", "--output", "json"]);
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert_eq!(queue_auth(&drone), [true]);
    let printed: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(printed["summary"]["queued"], 5, "{printed}");
    assert!(!dry.output().contains(TOKEN));
}

/// Runs with the token source `pairs` against moto (or `aws`) and checks
/// the exit `code`, that the Drone server was never asked, and that the
/// message has every one of `needles`; returns standard error.
fn refused(pairs: &[(&str, &str)], aws: Option<&str>, code: i32, needles: &[&str]) -> String {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace("token-refused");
    let run = run(&with(kept_env(&drone, &ns, aws.unwrap_or(&moto())), pairs), &[]);
    assert_eq!(run.code, Some(code), "{}", run.stderr);
    for needle in needles {
        assert!(run.stderr.contains(needle), "no {needle:?} in:\n{}", run.stderr);
    }
    assert!(queue_auth(&drone).is_empty(), "the queue was read");
    assert!(!run.stderr.contains("panic"), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN) && !run.output().contains(OTHER), "{}", run.output());
    run.stderr
}

#[test]
fn a_missing_parameter_or_secret_is_named_with_the_region() {
    let name = format!("/{}", unique("missing"));
    refused(
        &[("DRONE_TOKEN_SSM_PARAMETER", &name)],
        None,
        2,
        &[
            "1 configuration problem:",
            &format!(
                "DRONE_TOKEN_SSM_PARAMETER (--drone-token-ssm-parameter): SSM parameter {name} does not exist in us-east-1; create it as a SecureString"
            ),
        ],
    );
    let id = unique("missing");
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &id)],
        None,
        2,
        &[&format!(
            "DRONE_TOKEN_SECRET_ID (--drone-token-secret-id): Secrets Manager secret {id} does not exist in us-east-1"
        )],
    );
}

#[test]
fn access_denied_names_the_action_and_the_resource() {
    let denied = |target: &str, action: &str| {
        aws_proxy(json!([{
            "target": target, "times": 1, "status": 400, "type": "AccessDeniedException",
            "message": format!("User: arn:aws:sts::123456789012:assumed-role/poller/x is not authorized to perform: {action}")
        }]))
    };
    let proxy = denied("AmazonSSM.GetParameter", "ssm:GetParameter");
    let name = format!("/{}", unique("denied"));
    refused(
        &[("DRONE_TOKEN_SSM_PARAMETER", &name)],
        Some(&proxy.url()),
        2,
        &[
            "cannot be read: access denied (User: arn:aws:sts::123456789012:assumed-role/poller/x is not authorized to perform: ssm:GetParameter)",
            &format!(
                "allow ssm:GetParameter on arn:aws:ssm:us-east-1:ACCOUNT_ID:parameter{name} to this role or user"
            ),
        ],
    );
    assert_eq!(targets(&proxy), ["AmazonSSM.GetParameter"]);

    let proxy = denied("secretsmanager.GetSecretValue", "secretsmanager:GetSecretValue");
    let id = unique("denied");
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &id)],
        Some(&proxy.url()),
        2,
        &[&format!(
            "allow secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-1:ACCOUNT_ID:secret:{id}-?????? to this role or user"
        )],
    );
    assert_eq!(targets(&proxy), ["secretsmanager.GetSecretValue"]);
}

#[test]
fn a_secret_of_the_wrong_shape_is_refused_without_repeating_it() {
    let binary = unique("binary");
    block_on(secrets().create_secret().name(&binary).secret_binary(Blob::new(TOKEN)).send())
        .unwrap();
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &binary)],
        None,
        2,
        &["holds binary data (SecretBinary) rather than text"],
    );

    let not_json = secret("not-json", &format!("token={TOKEN} password={OTHER}"));
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &not_json), ("DRONE_TOKEN_SECRET_KEY", "token")],
        None,
        2,
        &[&format!(
            "DRONE_TOKEN_SECRET_ID (--drone-token-secret-id): Secrets Manager secret {not_json} is not JSON (a syntax error at line 1, column 2), so it has no key \"token\""
        )],
    );

    let object =
        secret("object", &json!({"password": OTHER, "drone": TOKEN, "port": 5432}).to_string());
    let missing = refused(
        &[("DRONE_TOKEN_SECRET_ID", &object), ("DRONE_TOKEN_SECRET_KEY", "token")],
        None,
        2,
        &[&format!(
            "DRONE_TOKEN_SECRET_KEY (--drone-token-secret-key): Secrets Manager secret {object} has no key \"token\"; check DRONE_TOKEN_SECRET_KEY"
        )],
    );
    // Not even the names of the keys it does have.
    assert!(!missing.contains("password") && !missing.contains("drone\""), "{missing}");
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &object), ("DRONE_TOKEN_SECRET_KEY", "port")],
        None,
        2,
        &["has the key \"port\", but its value is a number rather than a string"],
    );
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &object)],
        None,
        2,
        &["is a JSON object rather than the token itself; set DRONE_TOKEN_SECRET_KEY"],
    );
}

#[test]
fn an_empty_or_short_token_is_refused_like_drone_token() {
    let (blank, _) = parameter("blank", " \n", ParameterType::SecureString);
    refused(
        &[("DRONE_TOKEN_SSM_PARAMETER", &blank)],
        None,
        2,
        &[&format!("the token in SSM parameter {blank} is empty")],
    );
    let empty = secret("empty-key", &json!({"token": "", "password": OTHER}).to_string());
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &empty), ("DRONE_TOKEN_SECRET_KEY", "token")],
        None,
        2,
        &[&format!("the token in key \"token\" of Secrets Manager secret {empty} is empty")],
    );
    let (short, _) = parameter("short", "tok-123", ParameterType::SecureString);
    refused(
        &[("DRONE_TOKEN_SSM_PARAMETER", &short)],
        None,
        2,
        &["is 7 characters long, too short for a Drone API token"],
    );
}

#[test]
fn an_unreachable_or_failing_service_is_a_failed_run_not_a_configuration_error() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let name = format!("/{}", unique("unreachable"));
    refused(
        &[("DRONE_TOKEN_SSM_PARAMETER", &name)],
        Some(&closed),
        1,
        &[&format!(
            "could not read the Drone token from SSM parameter {name}: could not reach SSM; check the network, the region, and AWS_ENDPOINT_URL_SSM"
        )],
    );

    let proxy = aws_proxy(json!([{
        "target": "secretsmanager.GetSecretValue", "times": 9, "status": 500,
        "type": "InternalServiceError", "message": "try again"
    }]));
    let id = unique("failing");
    refused(
        &[("DRONE_TOKEN_SECRET_ID", &id), ("AWS_MAX_ATTEMPTS", "2")],
        Some(&proxy.url()),
        1,
        &["Secrets Manager failed after every retry (HTTP 500, InternalServiceError: try again)"],
    );
    // Retried as the SDK's other calls are.
    assert_eq!(targets(&proxy), ["secretsmanager.GetSecretValue"; 2]);
}

#[test]
fn the_token_comes_from_exactly_one_place() {
    let drone = drone_serving("drone_01_empty.json");
    let ns = namespace("token-sources");
    let none = run(&kept_env(&drone, &ns, &moto()), &[]);
    assert_eq!(none.code, Some(2), "{}", none.stderr);
    assert!(
        none.stderr.contains(
            "DRONE_TOKEN (--drone-token): not set; set it to the API token of a Drone admin"
        ) && none.stderr.contains("set DRONE_TOKEN_SSM_PARAMETER or DRONE_TOKEN_SECRET_ID instead"),
        "{}",
        none.stderr
    );

    let mut env = with(
        full_env(&drone, &ns),
        &[("DRONE_TOKEN_SSM_PARAMETER", "/x"), ("DRONE_TOKEN_SECRET_KEY", "token")],
    );
    env.retain(|(k, _)| k != "CLOUDWATCH_METRICS_NAMESPACE");
    let several = run(&env, &["--drone-token-secret-id", "y"]);
    assert_eq!(several.code, Some(2), "{}", several.stderr);
    assert!(
        several.stderr.starts_with("drone-queue-cloudwatch: 2 configuration problems:"),
        "{}",
        several.stderr
    );
    assert!(
        several.stderr.contains(
            "DRONE_TOKEN_SECRET_ID (--drone-token-secret-id): is set together with DRONE_TOKEN \
             and DRONE_TOKEN_SSM_PARAMETER; the token comes from one place only"
        ),
        "{}",
        several.stderr
    );
    // Reported with the rest, before any call: the key is fine beside the id.
    assert!(!several.stderr.contains("DRONE_TOKEN_SECRET_KEY"), "{}", several.stderr);
    assert!(several.stderr.contains("CLOUDWATCH_METRICS_NAMESPACE"), "{}", several.stderr);
    assert!(!several.stderr.contains(TOKEN) && queue_auth(&drone).is_empty());
}

/// A Lambda function reading its token from the parameter `name` through
/// `proxy`, over `events` invocations.
fn lambda_with_parameter(
    test: &str,
    proxy: &StandIn,
    name: &str,
    events: usize,
) -> (Vec<Value>, String, StandIn, String) {
    let api = lambda_api(&json!(vec![json!({}); events]), 10_000);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace(test);
    let env = with(kept_env(&drone, &ns, &proxy.url()), &[("DRONE_TOKEN_SSM_PARAMETER", name)]);
    let function = spawn(&lambda_env(&api, env));
    let (answers, logs) = invoke_all(&api, function, events);
    (answers, logs, drone, ns)
}

#[test]
fn lambda_reads_the_token_once_per_container_at_init() {
    let (_, arn) = parameter("lambda", TOKEN, ParameterType::SecureString);
    let proxy = aws_proxy(json!([]));
    let (answers, logs, drone, ns) = lambda_with_parameter("token-lambda", &proxy, &arn, 3);
    for answer in &answers {
        assert_eq!(answer["kind"], "response", "{answer}");
        assert_eq!(answer["body"]["queued"], 5, "{answer}");
    }
    assert_eq!(targets(&proxy), ["AmazonSSM.GetParameter"]);
    assert_eq!(queue_auth(&drone), [true, true, true]);
    assert_eq!(
        stored(&ns)[&series("QueuedBuilds", &[("class", "gpu"), ("os", "linux")])].samples,
        3.0
    );
    // Read before the first invocation: the line carries no request id.
    let read: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "the Drone token was read")
        .collect();
    assert_eq!(read.len(), 1, "{logs}");
    assert!(read[0].get("span").is_none(), "{}", read[0]);
    assert!(!logs.contains(TOKEN));
}

#[test]
fn lambda_fails_each_invocation_until_the_token_can_be_read_then_keeps_it() {
    let (name, _) = parameter("lambda-denied", TOKEN, ParameterType::SecureString);
    // Denied at init and at the first invocation; then the role is fixed.
    let proxy = aws_proxy(json!([{
        "target": "AmazonSSM.GetParameter", "times": 2, "status": 400,
        "type": "AccessDeniedException", "message": "not authorized to perform: ssm:GetParameter"
    }]));
    let (answers, logs, drone, _) = lambda_with_parameter("token-lambda-denied", &proxy, &name, 3);
    assert_eq!(answers[0]["kind"], "error", "{}", answers[0]);
    assert_eq!(answers[0]["body"]["errorType"], "TokenUnavailable");
    let message = answers[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(
        message.contains(&format!("SSM parameter {name} cannot be read: access denied")),
        "{message}"
    );
    assert!(
        message.contains("allow ssm:GetParameter on arn:aws:ssm:us-east-1:ACCOUNT_ID:parameter/"),
        "{message}"
    );
    for answer in &answers[1..] {
        assert_eq!(answer["kind"], "response", "{answer}");
    }
    assert_eq!(targets(&proxy), ["AmazonSSM.GetParameter"; 3]);
    assert_eq!(queue_auth(&drone), [true, true]);
    // The failures are logged, at init and in the invocation that failed.
    let failures = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "drone_queue_cloudwatch::startup")
        .filter(|l| l["message"].as_str().unwrap().contains("cannot be read: access denied"))
        .count();
    assert_eq!(failures, 2, "{logs}");
}

#[test]
fn lambda_reports_a_token_configuration_error_on_every_invocation() {
    let api = lambda_api(&json!([{}, {}]), 10_000);
    let drone = drone_serving("drone_01_empty.json");
    let ns = namespace("token-lambda-config");
    let env = with(full_env(&drone, &ns), &[("DRONE_TOKEN_SECRET_ID", "ci/drone")]);
    let function = spawn(&lambda_env(&api, env));
    let (answers, logs) = invoke_all(&api, function, 2);
    for answer in &answers {
        assert_eq!(answer["body"]["errorType"], "ConfigurationError", "{answer}");
        let message = answer["body"]["errorMessage"].as_str().unwrap();
        assert!(
            message.contains(
                "DRONE_TOKEN_SECRET_ID (--drone-token-secret-id): is set together with DRONE_TOKEN"
            ),
            "{message}"
        );
    }
    assert!(!logs.contains(TOKEN) && !answers.iter().any(|a| a.to_string().contains(TOKEN)));
}

/// Checks a run at trace level, with the SDK told to log even the bodies
/// it marks as sensitive: the token and the secret's other values never
/// show, while the SDK's trace lines (and answers) do.
fn assert_silent_at_trace(test: &str, pairs: &[(&str, &str)]) {
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let ns = namespace(test);
    let env = with(
        kept_env(&drone, &ns, &moto()),
        &[[("RUST_LOG", "trace"), ("LOG_SENSITIVE_BODIES", "true")].as_slice(), pairs].concat(),
    );
    let run = run(&env, &[]);
    assert_published(&run, &drone, &ns);
    let output = run.output();
    assert!(!output.contains(OTHER), "{output}");
    // The SDK did log at trace level, answers included: PutMetricData's.
    assert!(output.contains("aws_smithy_runtime::client::orchestrator"), "{output}");
    assert!(output.contains("read HTTP response body"), "{output}");
    // Nothing was held back after the read.
    assert!(
        output.contains("transmitting request") && output.contains("PutMetricData"),
        "{output}"
    );
}

#[test]
fn the_token_never_shows_even_at_trace_level() {
    let (name, _) = parameter("trace", TOKEN, ParameterType::SecureString);
    assert_silent_at_trace("token-trace-ssm", &[("DRONE_TOKEN_SSM_PARAMETER", &name)]);
    let id = secret("trace", &json!({"token": TOKEN, "password": OTHER}).to_string());
    assert_silent_at_trace(
        "token-trace-secret",
        &[("DRONE_TOKEN_SECRET_ID", &id), ("DRONE_TOKEN_SECRET_KEY", "token")],
    );
}

#[test]
fn a_setting_that_holds_the_token_read_from_aws_is_refused_before_anything_is_logged() {
    let (name, _) = parameter("pasted", TOKEN, ParameterType::SecureString);
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    // The token pasted into the namespace: it would be published.
    let env = with(kept_env(&drone, TOKEN, &moto()), &[("DRONE_TOKEN_SSM_PARAMETER", &name)]);
    for args in [&[][..], &["--dry-run"][..]] {
        let run = run(&env, args);
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(
            run.stderr.contains(
                "CLOUDWATCH_METRICS_NAMESPACE (--namespace): contains the Drone token read from AWS"
            ),
            "{}",
            run.stderr
        );
        assert!(!run.output().contains(TOKEN), "{}", run.output());
        assert!(!run.stderr.contains("starting"), "the start line came first: {}", run.stderr);
    }
    assert!(queue_auth(&drone).is_empty(), "the queue was read");
    assert!(stored(TOKEN).is_empty(), "something was published under the token");
}

#[test]
fn the_daemon_waits_out_a_token_read_that_may_pass_and_then_polls() {
    let (name, _) = parameter("daemon-retry", TOKEN, ParameterType::SecureString);
    let proxy = aws_proxy(json!([{
        "target": "AmazonSSM.GetParameter", "times": 2, "status": 500,
        "type": "InternalServerError", "message": "try again"
    }]));
    let drone = drone_serving("drone_02_two_groups_standard_gpu.json");
    let env = with(
        kept_env(&drone, "Drone", &proxy.url()),
        &[
            ("DRONE_TOKEN_SSM_PARAMETER", &name),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("METRICS_SINKS", "emf"),
            ("POLL_INTERVAL", "1s"),
        ],
    );
    let mut daemon = Daemon::start(&env);
    daemon.wait_log("poll complete", std::time::Duration::from_secs(20));
    daemon.signal(libc::SIGTERM);
    let run = daemon.finish();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Two failed reads, 1 and 2 ticks apart, then the one that worked.
    assert_eq!(targets(&proxy), ["AmazonSSM.GetParameter"; 3]);
    assert!(run.stderr.contains("consecutive_failures=2 next_try_in_ms=2000"), "{}", run.stderr);
    assert!(!run.output().contains(TOKEN));
}
