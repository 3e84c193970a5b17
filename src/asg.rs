//! Scale-in protection, the AWS side: reads the named Auto Scaling groups
//! (and, when runner names need it, their instances in EC2), plans with
//! [`crate::protection`], and sets `ProtectedFromScaleIn` where it must
//! change.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::config::timeout::TimeoutConfig;
use aws_sdk_autoscaling::error::{DisplayErrorContext, SdkError};

use crate::protection::{self, Call, Change, IdleClock, Instance, ProtectionPlan, Reason, Sight};

/// Most groups named in one `DescribeAutoScalingGroups` call.
const GROUPS_PER_DESCRIBE: usize = 100;
/// Most instance ids in one `DescribeInstances` call.
const IDS_PER_DESCRIBE: usize = 200;

/// What the protector is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// The Auto Scaling groups it may touch; no other.
    pub groups: Vec<String>,
    /// How long an instance must be idle before it is unprotected.
    pub idle_grace: Duration,
    /// An EC2 tag whose value is the runner name, if runners are named so.
    pub name_tag: Option<String>,
}

/// What one poll's protection found and did.
#[derive(Debug, Clone, Default)]
pub struct ProtectionReport {
    /// The plan (in a dry run, what would be done).
    pub plan: ProtectionPlan,
    /// `SetInstanceProtection` calls made (planned, in a dry run).
    pub calls: usize,
    /// Describe calls made to read the groups and instances.
    pub reads: usize,
    /// False in a dry run: nothing was changed.
    pub applied: bool,
    /// Instances whose change failed.
    pub failed: BTreeSet<String>,
}

/// Why protection did not (fully) happen. Metrics are published either
/// way; this is reported beside them.
#[derive(Debug, thiserror::Error)]
#[error("scale-in protection: {message}")]
pub struct ProtectionError {
    /// What went wrong and what to do.
    pub message: String,
    /// What was done nevertheless, if anything was read.
    pub report: Option<ProtectionReport>,
}

/// Reads and sets scale-in protection of the named groups.
#[derive(Debug, Clone)]
pub struct Protector {
    autoscaling: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
    config: ProtectionConfig,
    clock: Arc<Mutex<IdleClock>>,
}

impl Protector {
    /// Builds the Auto Scaling and EC2 clients from the SDK's chain.
    ///
    /// # Errors
    ///
    /// The SDK's message when it cannot load its configuration, or a bad
    /// endpoint in the profile file.
    pub async fn from_env(config: ProtectionConfig) -> Result<Protector, String> {
        let shared = crate::aws::load().await?;
        crate::aws::check_profile_endpoint(&shared, "Auto Scaling")?;
        crate::aws::check_profile_endpoint(&shared, "EC2")?;
        let retry = crate::aws::retry(&shared);
        let autoscaling = aws_sdk_autoscaling::Client::from_conf(
            aws_sdk_autoscaling::config::Builder::from(&shared).retry_config(retry.clone()).build(),
        );
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&shared).retry_config(retry).build(),
        );
        Ok(Protector { autoscaling, ec2, config, clock: Arc::default() })
    }

    /// The region the clients send to, if one is configured.
    pub fn region(&self) -> Option<String> {
        self.autoscaling.config().region().map(ToString::to_string)
    }

    /// One poll's protection: protects the instances of `busy` runners and
    /// unprotects those idle past the grace period, before `deadline`. In a
    /// dry run the groups are read and nothing is changed.
    ///
    /// Runners named by instance id need nothing from EC2, so their
    /// instances are protected first: a slow or failing EC2 cannot leave
    /// them exposed. EC2 then gets at most half of the time left.
    ///
    /// # Errors
    ///
    /// A [`ProtectionError`] when a group could not be read (nothing is
    /// changed then), a named group does not exist, or a change failed.
    pub async fn run(
        &self,
        busy: &BTreeSet<String>,
        deadline: Instant,
        dry_run: bool,
    ) -> Result<ProtectionReport, ProtectionError> {
        let mut report = ProtectionReport { applied: !dry_run, ..ProtectionReport::default() };
        let (mut instances, missing) = match self.describe_groups(deadline, &mut report).await {
            Ok(found) => found,
            Err(cause) => {
                return Err(ProtectionError {
                    message: format!(
                        "could not read the Auto Scaling groups {}, so no protection was \
                         changed: {cause}",
                        self.config.groups.join(", ")
                    ),
                    report: None,
                });
            }
        };
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!(
                "SCALE_IN_PROTECTION_GROUPS names Auto Scaling groups that were not found in \
                 this account and region: {}; check the names (they are case-sensitive), \
                 AWS_REGION, and that the Auto Scaling endpoint is AWS's",
                missing.join(", ")
            ));
        }

        let mut early = Vec::new();
        let mut sight = Sight::Full;
        if protection::needs_ec2(busy, &instances, self.config.name_tag.is_some())
            && !instances.is_empty()
        {
            let first = protection::plan(
                busy,
                &instances,
                &mut IdleClock::default(),
                Instant::now(),
                self.config.idle_grace,
                Sight::IdsOnly,
            );
            early = first.changes;
            if !dry_run {
                self.apply(&early, &mut instances, deadline, &mut report, &mut problems).await;
            }
            let half = Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
            if let Err(cause) = self.describe_instances(&mut instances, half, &mut report).await {
                sight = Sight::IdsOnly;
                problems.push(format!(
                    "could not read the instances' host names from EC2, so only runners named \
                     by instance id were matched and no instance was unprotected: {cause}"
                ));
            }
        }

        let mut plan = {
            let mut clock = self.clock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            protection::plan(
                busy,
                &instances,
                &mut clock,
                Instant::now(),
                self.config.idle_grace,
                sight,
            )
        };
        log_findings(&plan, sight);
        let rest = plan.changes.clone();
        if dry_run {
            report.calls = protection::calls(&plan.changes).len();
        } else {
            self.apply(&rest, &mut instances, deadline, &mut report, &mut problems).await;
            // The early changes are done (or failed) already; the later plan
            // has each instance at most once more, and that attempt is the
            // one to report.
            let later: BTreeSet<&str> = rest.iter().map(|c| c.instance.as_str()).collect();
            let mut changes: Vec<Change> =
                early.into_iter().filter(|c| !later.contains(c.instance.as_str())).collect();
            changes.extend(rest);
            changes.sort_by(|a, b| (&a.group, &a.instance).cmp(&(&b.group, &b.instance)));
            plan.changes = changes;
        }
        report.plan = plan;
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(ProtectionError { message: problems.join("; "), report: Some(report) })
        }
    }

    /// Makes `changes`, fewest calls first; a call that fails is tried again
    /// instance by instance, so that one instance that left its group in
    /// the meantime does not leave the other 49 as they were. Each call gets
    /// a fair share of the time left, so one that hangs cannot starve the
    /// rest. Instances changed are updated in `instances`.
    async fn apply(
        &self,
        changes: &[Change],
        instances: &mut [Instance],
        deadline: Instant,
        report: &mut ProtectionReport,
        problems: &mut Vec<String>,
    ) {
        let calls = protection::calls(changes);
        for (i, call) in calls.iter().enumerate() {
            let share =
                deadline.saturating_duration_since(Instant::now()) / (calls.len() - i) as u32;
            let done = match self.set_protection(call, Instant::now() + share).await {
                Ok(()) => {
                    report.calls += 1;
                    call.instances.clone()
                }
                Err(cause) if call.instances.len() == 1 || cause.timed_out => {
                    problems.push(failed(call, &cause.text));
                    report.failed.extend(call.instances.iter().cloned());
                    Vec::new()
                }
                Err(cause) => {
                    let mut done = Vec::new();
                    let n = call.instances.len();
                    for (j, id) in call.instances.iter().enumerate() {
                        let single = Call { instances: vec![id.clone()], ..call.clone() };
                        let share =
                            deadline.saturating_duration_since(Instant::now()) / (n - j) as u32;
                        match self.set_protection(&single, Instant::now() + share).await {
                            Ok(()) => {
                                report.calls += 1;
                                done.push(id.clone());
                            }
                            Err(one) => {
                                problems.push(failed(&single, &one.text));
                                report.failed.insert(id.clone());
                            }
                        }
                    }
                    tracing::debug!(group = %call.group, "a batch failed ({}); tried one by one", cause.text);
                    done
                }
            };
            for id in &done {
                if let Some(instance) = instances.iter_mut().find(|x| &x.id == id) {
                    instance.protected = call.protect;
                }
            }
            log_changes(call, &done, changes);
        }
    }

    /// The in-service and other instances of the named groups, and the
    /// names that matched no group.
    async fn describe_groups(
        &self,
        deadline: Instant,
        report: &mut ProtectionReport,
    ) -> Result<(Vec<Instance>, Vec<String>), String> {
        let mut instances = Vec::new();
        let mut found = BTreeSet::new();
        for names in self.config.groups.chunks(GROUPS_PER_DESCRIBE) {
            let mut token: Option<String> = None;
            loop {
                let left = time_left(deadline)?;
                let call = self
                    .autoscaling
                    .describe_auto_scaling_groups()
                    .set_auto_scaling_group_names(Some(names.to_vec()))
                    .max_records(GROUPS_PER_DESCRIBE as i32)
                    .set_next_token(token.take())
                    .customize()
                    .config_override(
                        aws_sdk_autoscaling::config::Builder::default()
                            .timeout_config(operation_timeout(left)),
                    )
                    .send();
                let page = spawn(call, left, "autoscaling:DescribeAutoScalingGroups").await?;
                report.reads += 1;
                for group in page.auto_scaling_groups() {
                    let name = group.auto_scaling_group_name().unwrap_or_default();
                    // Asked for by name, but the answer decides: only the
                    // named groups are ever touched.
                    if !names.iter().any(|n| n == name) {
                        continue;
                    }
                    found.insert(name.to_string());
                    for instance in group.instances() {
                        let Some(id) = instance.instance_id() else { continue };
                        instances.push(Instance {
                            id: id.to_string(),
                            group: name.to_string(),
                            lifecycle_state: instance
                                .lifecycle_state()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                            protected: instance.protected_from_scale_in().unwrap_or(false),
                            ..Instance::default()
                        });
                    }
                }
                match page.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_string()),
                    _ => break,
                }
            }
        }
        let missing =
            self.config.groups.iter().filter(|g| !found.contains(g.as_str())).cloned().collect();
        Ok((instances, missing))
    }

    /// Fills in host names, IPs and the name tag from EC2.
    async fn describe_instances(
        &self,
        instances: &mut [Instance],
        deadline: Instant,
        report: &mut ProtectionReport,
    ) -> Result<(), String> {
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        for chunk in ids.chunks(IDS_PER_DESCRIBE) {
            let mut token: Option<String> = None;
            loop {
                let left = time_left(deadline)?;
                let call = self
                    .ec2
                    .describe_instances()
                    .set_instance_ids(Some(chunk.to_vec()))
                    .set_next_token(token.take())
                    .customize()
                    .config_override(
                        aws_sdk_ec2::config::Builder::default()
                            .timeout_config(operation_timeout(left)),
                    )
                    .send();
                let page = spawn(call, left, "ec2:DescribeInstances").await?;
                report.reads += 1;
                for found in page.reservations().iter().flat_map(|r| r.instances()) {
                    let Some(instance) =
                        instances.iter_mut().find(|i| Some(i.id.as_str()) == found.instance_id())
                    else {
                        continue;
                    };
                    instance.private_dns_name = found.private_dns_name().map(str::to_string);
                    instance.private_ip = found.private_ip_address().map(str::to_string);
                    if let Some(key) = &self.config.name_tag {
                        instance.name_tag = found
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some(key.as_str()))
                            .and_then(|t| t.value())
                            .map(str::to_string);
                    }
                }
                match page.next_token() {
                    Some(next) if !next.is_empty() => token = Some(next.to_string()),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    async fn set_protection(&self, call: &Call, deadline: Instant) -> Result<(), CallError> {
        let left = time_left(deadline).map_err(|text| CallError { text, timed_out: true })?;
        let request = self
            .autoscaling
            .set_instance_protection()
            .auto_scaling_group_name(&call.group)
            .set_instance_ids(Some(call.instances.clone()))
            .protected_from_scale_in(call.protect)
            .customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::default()
                    .timeout_config(operation_timeout(left)),
            )
            .send();
        match tokio::spawn(request).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(CallError {
                timed_out: matches!(err, SdkError::TimeoutError(_)),
                text: describe_error(&err, left, "autoscaling:SetInstanceProtection"),
            }),
            Err(failure) => Err(CallError {
                text: format!("the AWS SDK failed: {}", crate::aws::panic_text(failure)),
                timed_out: false,
            }),
        }
    }
}

/// A `SetInstanceProtection` call that failed.
struct CallError {
    text: String,
    /// No answer in time: trying again one by one would only wait more.
    timed_out: bool,
}

fn failed(call: &Call, cause: &str) -> String {
    format!(
        "could not {} {} in {}: {cause}",
        if call.protect { "protect" } else { "unprotect" },
        call.instances.join(", "),
        call.group
    )
}

/// A runner name as logs and reports show it: escaped, and cut short (it
/// comes from the queue, and may hold anything).
pub fn shown(name: &str) -> String {
    crate::drone::printable(name, 120)
}

fn shown_all(names: &[String]) -> String {
    names.iter().map(|n| shown(n)).collect::<Vec<_>>().join(", ")
}

fn operation_timeout(left: Duration) -> TimeoutConfig {
    TimeoutConfig::builder().operation_timeout(left).build()
}

fn time_left(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() { Err("no time left before the deadline".into()) } else { Ok(left) }
}

/// Runs one SDK call as a task (an SDK panic fails the call, not the
/// process) and words its error with the IAM action it needed.
async fn spawn<T, E, R>(
    call: impl Future<Output = Result<T, SdkError<E, R>>> + Send + 'static,
    budget: Duration,
    action: &str,
) -> Result<T, String>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match tokio::spawn(call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(describe_error(&err, budget, action)),
        Err(failure) => Err(format!("the AWS SDK failed: {}", crate::aws::panic_text(failure))),
    }
}

fn describe_error<E, R>(err: &SdkError<E, R>, budget: Duration, action: &str) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = crate::drone::printable(&DisplayErrorContext(err).to_string(), 600);
    let hint = match err {
        SdkError::TimeoutError(_) => {
            format!("no answer within the {} ms left", budget.as_millis())
        }
        SdkError::DispatchFailure(_) => {
            "could not reach the AWS endpoint; check the network and AWS_ENDPOINT_URL".into()
        }
        SdkError::ServiceError(_)
            if detail.contains("AccessDenied") || detail.contains("UnauthorizedOperation") =>
        {
            format!("the role lacks {action}; see the README's IAM statements for protection")
        }
        _ => format!("{action} failed"),
    };
    format!("{hint} ({detail})")
}

/// Warnings a person has to act on.
fn log_findings(plan: &ProtectionPlan, sight: Sight) {
    if !plan.unmatched.is_empty() && sight == Sight::IdsOnly {
        tracing::warn!(
            runners = plan.unmatched.len(),
            "busy runners not named by instance id could not be matched while EC2 cannot be \
             read: {}",
            shown_all(&plan.unmatched)
        );
    } else if !plan.unmatched.is_empty() {
        tracing::warn!(
            runners = plan.unmatched.len(),
            "busy runners whose name matches no instance of the protected groups: {}; their \
             instances cannot be spared from a scale-in. Set DRONE_RUNNER_NAME to the instance \
             id in the runner's user data (see the README), or these are runners outside \
             SCALE_IN_PROTECTION_GROUPS",
            shown_all(&plan.unmatched)
        );
    }
    for instance in &plan.unprotectable {
        tracing::warn!(
            instance = %instance.instance,
            group = %instance.group,
            runners = %shown_all(&instance.runners),
            lifecycle_state = %instance.lifecycle_state,
            "a busy instance is {} and cannot be protected from scale-in",
            instance.lifecycle_state
        );
    }
}

/// One log line per instance changed (`done`), with the runner and the
/// reason.
fn log_changes(call: &Call, done: &[String], changes: &[Change]) {
    for change in changes.iter().filter(|c| c.group == call.group && c.protect == call.protect) {
        if !done.contains(&change.instance) {
            continue;
        }
        match &change.reason {
            Reason::Busy { runners } => tracing::info!(
                instance = %change.instance,
                group = %change.group,
                runners = %shown_all(runners),
                "protected from scale-in: a build runs on it"
            ),
            Reason::Idle { for_at_least } => tracing::info!(
                instance = %change.instance,
                group = %change.group,
                idle_s = for_at_least.as_secs(),
                "unprotected from scale-in: idle for the grace period"
            ),
        }
    }
}
