//! Scale-in protection against moto's Auto Scaling and EC2: groups and
//! instances are made there, a stand-in Drone serves builds running on some
//! of them, the binary runs, and then the groups are shrunk to see which
//! instances survive.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::readback::Series;
use crate::support::*;

/// Clients for moto, and a runtime to drive them from a plain test.
struct Aws {
    runtime: tokio::runtime::Runtime,
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

/// One instance as the test sees it.
#[derive(Debug, Clone)]
struct Worker {
    id: String,
    dns: String,
    protected: bool,
}

impl Aws {
    fn new() -> Aws {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let credentials =
            aws_sdk_autoscaling::config::Credentials::new("test", "test", None, None, "test");
        let region = aws_sdk_autoscaling::config::Region::new("us-east-1");
        let autoscaling = aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::Config::builder()
                .behavior_version_latest()
                .credentials_provider(credentials.clone())
                .region(region.clone())
                .endpoint_url(moto())
                .build(),
        );
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version_latest()
                .credentials_provider(credentials)
                .region(region)
                .endpoint_url(moto())
                .build(),
        );
        Aws { runtime, autoscaling, ec2 }
    }

    /// A group of `size` instances, protected at launch or not.
    fn group(&self, name: &str, size: i32, protected_at_launch: bool) {
        self.runtime.block_on(async {
            self.autoscaling
                .create_launch_configuration()
                .launch_configuration_name(name)
                .image_id("ami-03cf127a")
                .instance_type("t3.micro")
                .send()
                .await
                .unwrap();
            self.autoscaling
                .create_auto_scaling_group()
                .auto_scaling_group_name(name)
                .launch_configuration_name(name)
                .min_size(0)
                .max_size(200)
                .desired_capacity(size)
                .availability_zones("us-east-1a")
                .new_instances_protected_from_scale_in(protected_at_launch)
                .send()
                .await
                .unwrap();
        });
    }

    /// The group's instances, sorted by id, with their private DNS names.
    fn workers(&self, group: &str) -> Vec<Worker> {
        self.runtime.block_on(async {
            let answer = self
                .autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(group)
                .send()
                .await
                .unwrap();
            let mut workers: Vec<Worker> = answer.auto_scaling_groups()[0]
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
                .map(|i| Worker {
                    id: i.instance_id().unwrap().to_string(),
                    dns: String::new(),
                    protected: i.protected_from_scale_in().unwrap(),
                })
                .collect();
            workers.sort_by(|a, b| a.id.cmp(&b.id));
            if workers.is_empty() {
                return workers;
            }
            let ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
            let found =
                self.ec2.describe_instances().set_instance_ids(Some(ids)).send().await.unwrap();
            for instance in found.reservations().iter().flat_map(|r| r.instances()) {
                let worker = workers
                    .iter_mut()
                    .find(|w| Some(w.id.as_str()) == instance.instance_id())
                    .unwrap();
                worker.dns = instance.private_dns_name().unwrap().to_string();
            }
            workers
        })
    }

    fn shrink(&self, group: &str, size: i32) {
        self.runtime.block_on(async {
            self.autoscaling
                .set_desired_capacity()
                .auto_scaling_group_name(group)
                .desired_capacity(size)
                .honor_cooldown(false)
                .send()
                .await
                .unwrap();
        });
    }
}

fn group_name(test: &str) -> String {
    format!("dqc-{test}-{}", std::process::id())
}

/// A queue with a running stage on each of `running` and an accepted one on
/// each of `accepted` (runner names), and one waiting stage.
fn queue(running: &[&str], accepted: &[&str]) -> Value {
    let labels = json!({"class": "standard", "os": "linux"});
    let mut stages = Vec::new();
    let mut id = 100;
    for (status, machines) in [("running", running), ("pending", accepted)] {
        for machine in machines {
            id += 1;
            stages.push(json!({"id": id, "repo_id": 1, "name": format!("p{id}"), "status": status,
                               "machine": machine, "labels": labels, "created": 1_735_732_800}));
        }
    }
    stages.push(json!({"id": id + 1, "repo_id": 2, "status": "pending", "labels": labels,
                       "created": 1_735_732_800}));
    Value::Array(stages)
}

fn serve(queue: &Value) -> StandIn {
    drone(json!([{"body": queue.to_string()}]))
}

/// Publishes to the CloudWatch emulator, protects through moto.
fn env(drone: &StandIn, ns: &str, groups: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = full_env(drone, ns);
    env.push(("AWS_ENDPOINT_URL_AUTO_SCALING".into(), moto()));
    env.push(("AWS_ENDPOINT_URL_EC2".into(), moto()));
    env.push(("SCALE_IN_PROTECTION_GROUPS".into(), groups.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn ids(workers: &[Worker]) -> BTreeSet<String> {
    workers.iter().map(|w| w.id.clone()).collect()
}

fn protected(workers: &[Worker]) -> BTreeSet<String> {
    workers.iter().filter(|w| w.protected).map(|w| w.id.clone()).collect()
}

#[test]
fn busy_instances_survive_a_scale_in_and_idle_ones_go() {
    let aws = Aws::new();
    let workers_group = group_name("workers");
    let other_group = group_name("other");
    aws.group(&workers_group, 5, false);
    aws.group(&other_group, 2, false);
    let workers = aws.workers(&workers_group);
    let other = aws.workers(&other_group);
    assert_eq!((workers.len(), other.len()), (5, 2));

    // A build on worker 0 (runner named by instance id), one accepted by
    // worker 1 (runner named by its short host name), one on worker 2
    // (named by its full private DNS name), one on a runner that is gone,
    // and one on an instance of a group that is not to be touched.
    let short = workers[1].dns.split('.').next().unwrap().to_string();
    let drone =
        serve(&queue(&[&workers[0].id, &workers[2].dns, "ghost-runner", &other[0].id], &[&short]));
    let ns = namespace("protection");
    let run = run(&env(&drone, &ns, &workers_group, &[]), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let busy: BTreeSet<String> =
        [&workers[0].id, &workers[1].id, &workers[2].id].into_iter().cloned().collect();
    let after = aws.workers(&workers_group);
    assert_eq!(protected(&after), busy, "{}", run.stderr);
    assert!(protected(&aws.workers(&other_group)).is_empty(), "a group not named was touched");
    // Each change is logged with its instance, group and runner.
    for (worker, runner) in [(&workers[0], &workers[0].id), (&workers[1], &short)] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("protected from scale-in") && l.contains(&worker.id))
            .unwrap_or_else(|| panic!("no log line for {}: {}", worker.id, run.stderr));
        assert!(line.contains(&workers_group) && line.contains(runner.as_str()), "{line}");
    }
    // Runners that match nothing are named in one warning.
    let warning = run.stderr.lines().find(|l| l.contains("matches no instance")).unwrap();
    assert!(warning.contains("ghost-runner") && warning.contains(&other[0].id), "{warning}");
    // BusyWorkers counts the distinct runners of the group's builds.
    let sums = sums(&stored(&ns), 1.0);
    assert_eq!(busy_of(&sums), 5.0);

    // The group shrinks to three: only the idle instances may go.
    aws.shrink(&workers_group, 3);
    assert_eq!(ids(&aws.workers(&workers_group)), busy);
    // Shrinking the other group spares nobody there: nothing protected it.
    aws.shrink(&other_group, 0);
    assert!(aws.workers(&other_group).is_empty());
}

fn busy_of(sums: &BTreeMap<Series, f64>) -> f64 {
    sums[&series("BusyWorkers", &[("class", "standard"), ("os", "linux")])]
}

#[test]
fn instances_protected_at_launch_are_released_after_the_grace_period() {
    let aws = Aws::new();
    let group = group_name("grace");
    aws.group(&group, 4, true);
    let workers = aws.workers(&group);
    assert_eq!(protected(&workers).len(), 4);
    let drone = serve(&queue(&[&workers[3].id], &[]));
    let ns = namespace("grace");

    // Within the grace period nothing is released...
    let first = run(&env(&drone, &ns, &group, &[("SCALE_IN_PROTECTION_IDLE_GRACE", "1h")]), &[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert_eq!(protected(&aws.workers(&group)).len(), 4);
    // ...and with none, idle instances are released at once.
    let second = run(&env(&drone, &ns, &group, &[("SCALE_IN_PROTECTION_IDLE_GRACE", "0s")]), &[]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[3..]));
    assert_eq!(
        second.stderr.matches("unprotected from scale-in: idle for the grace period").count(),
        3,
        "{}",
        second.stderr
    );
    aws.shrink(&group, 1);
    assert_eq!(ids(&aws.workers(&group)), ids(&workers[3..]));
}

#[test]
fn a_dry_run_plans_the_changes_and_makes_none() {
    let aws = Aws::new();
    let group = group_name("dry-run");
    aws.group(&group, 2, false);
    let workers = aws.workers(&group);
    let drone = serve(&queue(&[&workers[1].id], &[]));
    let mut env = env(&drone, "Drone", &group, &[]);
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    let run = run(&env, &["--dry-run", "--output", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        doc["protection"],
        json!({"applied": false, "in_grace": 0, "unmatched_runners": [],
               "changes": [{"instance": workers[1].id, "group": group, "protect": true,
                            "runners": [workers[1].id]}]})
    );
    assert_eq!(
        doc["summary"]["protection"],
        json!({"instances": 2, "busy": 1, "protected": 1, "unprotected": 0, "failed": 0,
               "unmatched_runners": 0, "calls": 1})
    );
    assert!(protected(&aws.workers(&group)).is_empty(), "a dry run changed protection");
    // The table says the same for people.
    let table = crate::support::run(&env, &["--dry-run"]);
    assert!(
        table.stdout.contains(&format!(
            "  would protect    {}  {group}  (busy: runner {})",
            workers[1].id, workers[1].id
        )),
        "{}",
        table.stdout
    );
}

#[test]
fn a_group_that_does_not_exist_fails_protection_but_not_the_metrics() {
    let aws = Aws::new();
    let group = group_name("exists");
    aws.group(&group, 2, false);
    let workers = aws.workers(&group);
    let drone = serve(&queue(&[&workers[0].id], &[]));
    let ns = namespace("missing-group");
    let missing = group_name("missing");
    let run = run(&env(&drone, &ns, &format!("{group},{missing}"), &[]), &[]);
    // Exit status bit 4: protection failed; the metrics went out.
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("were not found in this account and region: {missing}")));
    assert_eq!(busy_of(&sums(&stored(&ns), 1.0)), 1.0);
    // The group that exists was still protected.
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..1]));
}

#[test]
fn an_unreachable_auto_scaling_endpoint_fails_protection_alone() {
    let drone = serve(&queue(&["i-0123456789abcdef0"], &[]));
    let ns = namespace("no-autoscaling");
    let port = free_port();
    let mut env = env(&drone, &ns, "workers", &[]);
    env.push(("AWS_ENDPOINT_URL_AUTO_SCALING".into(), format!("http://127.0.0.1:{port}")));
    env.push(("AWS_MAX_ATTEMPTS".into(), "1".into()));
    let run = run(&env, &[]);
    assert_eq!(run.code, Some(4), "{}", run.stderr);
    assert!(
        run.stderr.contains("could not read the Auto Scaling groups workers"),
        "{}",
        run.stderr
    );
    assert_eq!(busy_of(&sums(&stored(&ns), 1.0)), 1.0);
}

#[test]
fn steady_state_makes_one_read_and_no_change_per_poll() {
    let aws = Aws::new();
    let group = group_name("steady");
    aws.group(&group, 100, false);
    let workers = aws.workers(&group);
    assert_eq!(workers.len(), 100);
    let busy: Vec<&str> = workers[..50].iter().map(|w| w.id.as_str()).collect();
    let drone = serve(&queue(&busy, &[]));
    let proxy = recording_proxy();
    let mut env = env(&drone, "Drone", &group, &[]);
    env.push(("AWS_ENDPOINT_URL_AUTO_SCALING".into(), proxy.url()));
    env.push(("AWS_ENDPOINT_URL_EC2".into(), proxy.url()));
    env.push(("METRICS_SINKS".into(), "emf".into()));

    let actions = |events: &[Value]| -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        for e in events {
            *count.entry(e["action"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
        count
    };
    let first = run(&env, &[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let after_first = proxy.events();
    assert_eq!(
        actions(&after_first),
        BTreeMap::from([
            ("DescribeAutoScalingGroups".to_string(), 1),
            ("SetInstanceProtection".to_string(), 1)
        ])
    );
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..50]));
    // Steady: 50 busy and protected, 50 idle and unprotected.
    for _ in 0..2 {
        let again = run(&env, &[]);
        assert_eq!(again.code, Some(0), "{}", again.stderr);
    }
    // The proxy hands each event over once: these are the later polls'.
    assert_eq!(
        actions(&proxy.events()),
        BTreeMap::from([("DescribeAutoScalingGroups".to_string(), 2)]),
        "one read per poll and no change"
    );

    // Runners named by host name take one EC2 read more, and still no
    // change.
    let hosts: Vec<&str> = workers[..50].iter().map(|w| w.dns.as_str()).collect();
    set_script(&drone, json!([{"body": queue(&hosts, &[]).to_string()}]));
    let by_host = run(&env, &[]);
    assert_eq!(by_host.code, Some(0), "{}", by_host.stderr);
    assert_eq!(
        actions(&proxy.events()),
        BTreeMap::from([
            ("DescribeAutoScalingGroups".to_string(), 1),
            ("DescribeInstances".to_string(), 1)
        ])
    );
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..50]));
}

#[test]
fn in_lambda_a_protection_failure_is_its_own_invocation_error_after_publishing() {
    let aws = Aws::new();
    let group = group_name("lambda");
    aws.group(&group, 2, false);
    let workers = aws.workers(&group);
    let drone = serve(&queue(&[&workers[0].id], &[]));
    let ns = namespace("lambda-protection");
    let missing = group_name("lambda-missing");
    let api = lambda_api(&json!([{}, {}]), 10_000);
    let env = env(&drone, &ns, &format!("{group},{missing}"), &[]);
    let function = spawn(&crate::lambda::lambda_env(&api, env));
    let (answers, logs) = crate::lambda::invoke_all(&api, function, 2);
    for answer in &answers {
        assert_eq!(answer["kind"], "error", "{answer}");
        assert_eq!(answer["body"]["errorType"], "ScaleInProtectionFailed");
        let message = answer["body"]["errorMessage"].as_str().unwrap();
        assert!(message.starts_with("the metrics were published, but scale-in protection:"));
        assert!(message.contains(&missing), "{message}");
    }
    // Both polls published, and the group that exists was protected once.
    assert_eq!(
        stored(&ns)[&series("BusyWorkers", &[("class", "standard"), ("os", "linux")])].samples,
        2.0
    );
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..1]));
    assert_eq!(logs.matches("protected from scale-in: a build runs on it").count(), 1, "{logs}");
}

#[test]
fn the_daemon_remembers_idle_instances_across_polls_and_releases_them_after_the_grace() {
    let aws = Aws::new();
    let group = group_name("daemon");
    aws.group(&group, 3, true);
    let workers = aws.workers(&group);
    let drone = serve(&queue(&[&workers[0].dns], &[]));
    let mut env = env(&drone, "Drone", &group, &[("SCALE_IN_PROTECTION_IDLE_GRACE", "2s")]);
    env.push(("METRICS_SINKS".into(), "emf".into()));
    env.push(("POLL_INTERVAL".into(), "1s".into()));
    let mut daemon = Daemon::start(&env);
    daemon.wait_log("poll{n=5}", Duration::from_secs(15));
    daemon.signal(libc::SIGTERM);
    let run = daemon.finish();
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..1]));
    // Seen idle from the first poll on, released two ticks later, once.
    let released: Vec<&str> =
        run.stderr.lines().filter(|l| l.contains("unprotected from scale-in")).collect();
    assert_eq!(released.len(), 2, "{}", run.stderr);
    for line in released {
        assert!(line.contains("poll{n=3}") || line.contains("poll{n=4}"), "{line}");
    }
}

#[test]
fn a_hanging_ec2_cannot_keep_a_runner_named_by_id_unprotected() {
    let aws = Aws::new();
    let group = group_name("ec2-hangs");
    aws.group(&group, 3, false);
    let workers = aws.workers(&group);
    // One runner named by instance id, one by host name (which needs EC2).
    let drone = serve(&queue(&[&workers[0].id, &workers[1].dns], &[]));
    // Takes connections and never answers.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ns = namespace("ec2-hangs");
    let mut env = env(&drone, &ns, &group, &[]);
    env.push(("AWS_ENDPOINT_URL_EC2".into(), format!("http://{}", hang.local_addr().unwrap())));
    let api = lambda_api(&json!([{}]), 4_000);
    let function = spawn(&crate::lambda::lambda_env(&api, env));
    let (answers, _) = crate::lambda::invoke_all(&api, function, 1);
    assert_eq!(answers[0]["body"]["errorType"], "ScaleInProtectionFailed", "{}", answers[0]);
    let message = answers[0]["body"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("could not read the instances' host names from EC2"), "{message}");
    // The runner named by id was protected before EC2 was asked; nothing
    // was released; the metrics went out.
    assert_eq!(protected(&aws.workers(&group)), ids(&workers[..1]));
    assert_eq!(busy_of(&sums(&stored(&ns), 1.0)), 2.0);
    drop(hang);
}
