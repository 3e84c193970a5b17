//! One poll: read the queue once, count, plan, publish. Every mode (CLI,
//! daemon, Lambda) calls [`Poller::poll`] and nothing else.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aggregate::{QueueCounts, aggregate};
use crate::asg::{ProtectionError, ProtectionReport, Protector};
use crate::cloudwatch::{CloudWatchSink, PublishError, PublishReport};
use crate::config::OutputFormat;
use crate::drone::{DroneClient, SourceError};
use crate::grouping::Grouping;
use crate::metrics::{Plan, Resolution, plan};
use crate::prometheus::Exposition;
use crate::{emf, protection, report};

/// Where the plan goes; any number of these at once.
#[derive(Debug, Clone, Default)]
pub struct Sinks {
    /// `PutMetricData`.
    pub cloudwatch: Option<CloudWatchSink>,
    /// Embedded Metric Format lines on standard output.
    pub emf: bool,
    /// The dry-run table or JSON on standard output.
    pub stdout: Option<OutputFormat>,
    /// JSON indented for people (a dry run) rather than one line per poll
    /// (the `stdout` sink, whose lines a log collector takes one by one).
    pub indent_json: bool,
    /// The values the Prometheus endpoint serves.
    pub prometheus: Option<Arc<Exposition>>,
    /// CloudWatch namespace (for CloudWatch, EMF and the report).
    pub namespace: String,
    /// Storage resolution of CloudWatch and EMF points.
    pub resolution: Resolution,
}

/// Everything one successful poll found and did.
#[derive(Debug, Clone)]
pub struct PollOutcome {
    /// When the queue was read; every data point carries it.
    pub timestamp: SystemTime,
    /// Counts per group.
    pub counts: QueueCounts,
    /// What was (or, in a dry run, would be) published.
    pub plan: Plan,
    /// What was sent with `PutMetricData`; `None` without that sink.
    pub published: Option<PublishReport>,
    /// EMF lines written; `None` without that sink.
    pub emf_lines: Option<usize>,
    /// Time spent reading the queue.
    pub fetch_time: Duration,
    /// Time spent publishing.
    pub publish_time: Duration,
    /// What scale-in protection did, when it is on and succeeded.
    pub protection: Option<ProtectionReport>,
}

/// A poll's two results: the metrics, and scale-in protection beside them
/// (`None` when it is off, or when the queue could not be read, which
/// leaves every instance as it was). Neither keeps the other from
/// happening, and each fails on its own.
#[derive(Debug)]
pub struct Polled {
    /// The metrics.
    pub metrics: Result<PollOutcome, PollError>,
    /// Scale-in protection, if it ran and failed (its report is in the
    /// outcome when it succeeded).
    pub protection_error: Option<ProtectionError>,
}

impl Polled {
    /// Logs whichever failed.
    pub fn log_errors(&self) {
        if let Err(err) = &self.metrics {
            tracing::error!("{err}");
        }
        if let Some(err) = &self.protection_error {
            tracing::error!("{err}");
        }
    }
}

/// Why a poll failed. In each case the message says what was (not)
/// published.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The queue could not be read; nothing was published.
    #[error("could not read the Drone queue, so nothing was published: {0}")]
    Source(#[from] SourceError),
    /// Some or all data points were not published.
    #[error("{0}")]
    Publish(#[from] PublishError),
    /// Standard output refused the EMF lines or the report.
    #[error("could not write the {what} to standard output, so it was not published: {source}")]
    Output {
        /// What was being written.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Reads the queue and publishes it; built once, used for every poll.
#[derive(Debug, Clone)]
pub struct Poller {
    drone: DroneClient,
    sinks: Sinks,
    drone_timeout: Duration,
    grouping: Grouping,
    protector: Option<Protector>,
    dry_run: bool,
}

impl Poller {
    /// A poller reading from `drone` and writing to `sinks`.
    pub fn new(
        drone: DroneClient,
        sinks: Sinks,
        drone_timeout: Duration,
        grouping: Grouping,
    ) -> Poller {
        Poller { drone, sinks, drone_timeout, grouping, protector: None, dry_run: false }
    }

    /// Adds scale-in protection to every poll; in a dry run it only plans.
    pub fn with_protection(mut self, protector: Protector, dry_run: bool) -> Poller {
        self.protector = Some(protector);
        self.dry_run = dry_run;
        self
    }

    /// The values of the Prometheus sink, if it is on.
    pub fn exposition(&self) -> Option<Arc<Exposition>> {
        self.sinks.prometheus.clone()
    }

    /// One poll, finished before `deadline`: the metrics and, when it is
    /// on, scale-in protection, side by side.
    ///
    /// The metrics fail with [`PollError::Source`] when the queue could not
    /// be read (nothing is published then, and no protection changes),
    /// [`PollError::Publish`] when CloudWatch did not take every data
    /// point, [`PollError::Output`] when standard output failed. The sinks
    /// are independent: one failing does not keep the plan from the others.
    pub async fn poll(&self, deadline: Instant) -> Polled {
        let mut protection_error = None;
        let metrics = self.poll_metrics(deadline, &mut protection_error).await;
        Polled { metrics, protection_error }
    }

    /// A third of the time left is kept for publishing, so that a slow
    /// Drone cannot eat the time CloudWatch needs.
    async fn poll_metrics(
        &self,
        deadline: Instant,
        protection_error: &mut Option<ProtectionError>,
    ) -> Result<PollOutcome, PollError> {
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        let fetch_budget = self.drone_timeout.min(left - left / 3).max(Duration::from_millis(1));

        let stages = self.drone.fetch(fetch_budget).await.map_err(|e| match e {
            // Cut short by the deadline, not by DRONE_TIMEOUT: say so, or
            // the advice to raise DRONE_TIMEOUT would be wrong.
            SourceError::Timeout { url, timeout } if timeout < self.drone_timeout => {
                SourceError::OutOfTime { url, timeout }
            }
            other => other,
        })?;
        let timestamp = SystemTime::now();
        let fetch_time = started.elapsed();

        let counts = aggregate(&stages, &self.grouping);
        let busy = self.protector.as_ref().map(|_| protection::busy_runners(&stages));
        drop(stages);
        let now = timestamp.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let plan = plan(&counts, now);
        log_findings(&counts, &plan, &self.grouping);

        // The queue was read, so the values are right, whatever CloudWatch
        // does with them below.
        if let Some(exposition) = &self.sinks.prometheus {
            exposition.update_groups(&plan, Instant::now());
        }
        // Each sink gets the plan whatever another one did; the first
        // failure is reported once all have had their turn. Protection runs
        // at the same time: a build must not wait for CloudWatch's retries.
        let protect = async {
            match (&self.protector, &busy) {
                (Some(protector), Some(busy)) => {
                    Some(protector.run(busy, deadline, self.dry_run).await)
                }
                _ => None,
            }
        };
        let publish = async {
            let started = Instant::now();
            let emf =
                if self.sinks.emf { Some(self.write_emf(&plan, timestamp).await) } else { None };
            let cloudwatch = match &self.sinks.cloudwatch {
                None => None,
                Some(_) if plan.datums.is_empty() => Some(Ok(PublishReport::default())),
                Some(sink) => {
                    Some(sink.publish(&plan, timestamp, self.sinks.resolution, deadline).await)
                }
            };
            (emf, cloudwatch, started.elapsed())
        };
        // Protection's time is its own: the publishing time says how long
        // the sinks took.
        let ((emf, cloudwatch, publish_time), protected) = tokio::join!(publish, protect);
        let protection = match protected {
            None => None,
            Some(Ok(report)) => Some(report),
            Some(Err(mut err)) => {
                let report = err.report.take();
                *protection_error = Some(err);
                report
            }
        };
        let published =
            cloudwatch.as_ref().map(|r| r.as_ref().map_or_else(|e| e.report, |report| *report));
        let emf_lines = emf.as_ref().and_then(|r| r.as_ref().ok().copied());
        let outcome = PollOutcome {
            timestamp,
            counts,
            plan,
            published,
            emf_lines,
            fetch_time,
            publish_time,
            protection,
        };
        let printed = self.sinks.stdout.map(|format| match format {
            OutputFormat::Table => report::table(&outcome, &self.sinks.namespace),
            OutputFormat::Json if self.sinks.indent_json => {
                report::json(&outcome, &self.sinks.namespace) + "\n"
            }
            OutputFormat::Json => report::json_line(&outcome, &self.sinks.namespace) + "\n",
        });
        let printed = match printed {
            Some(text) => Some(
                write_stdout(text.into_bytes())
                    .await
                    .map_err(|source| PollError::Output { what: "report", source }),
            ),
            None => None,
        };
        if let Some(Err(err)) = cloudwatch {
            return Err(err.into());
        }
        if let Some(Err(err)) = emf {
            return Err(err);
        }
        if let Some(Err(err)) = printed {
            return Err(err);
        }

        let totals = outcome.counts.totals();
        tracing::info!(
            groups = outcome.plan.groups.len(),
            queued = totals.queued,
            running = totals.running,
            startable = totals.startable,
            blocked = totals.blocked(),
            rejected_groups = outcome.plan.rejected.len(),
            datums = outcome.plan.datums.len(),
            calls = published.map_or(0, |p| p.calls),
            fetch_ms = fetch_time.as_millis() as u64,
            publish_ms = publish_time.as_millis() as u64,
            "poll complete"
        );
        Ok(outcome)
    }

    /// Writes the plan as EMF lines; returns how many.
    async fn write_emf(&self, plan: &Plan, timestamp: SystemTime) -> Result<usize, PollError> {
        let ms = timestamp.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let doc = emf::documents(plan, &self.sinks.namespace, ms, self.sinks.resolution);
        for (group, why) in &doc.skipped {
            tracing::warn!(group = %group, "group left out of the EMF lines: {why}");
        }
        let mut text = String::new();
        for line in &doc.lines {
            text.push_str(line);
            text.push('\n');
        }
        write_stdout(text.into_bytes())
            .await
            .map_err(|source| PollError::Output { what: "EMF lines", source })?;
        Ok(doc.lines.len())
    }
}

/// Set while a write to standard output is under way.
static WRITING: AtomicBool = AtomicBool::new(false);

/// Writes in one piece, so that log lines or another poll's output never
/// land inside a JSON line. The write runs off the async thread: a reader
/// that stops reading (a full pipe) must not freeze the daemon's
/// endpoint, its signals and its next polls. While such a write is stuck,
/// later ones fail at once rather than pile up behind it.
async fn write_stdout(bytes: Vec<u8>) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    if WRITING.swap(true, Ordering::AcqRel) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "an earlier write has not finished: nothing is reading standard output",
        ));
    }
    let written = tokio::task::spawn_blocking(move || {
        let mut out = std::io::stdout().lock();
        let result = out.write_all(&bytes).and_then(|()| out.flush());
        WRITING.store(false, Ordering::Release);
        result
    })
    .await;
    written.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

/// Warnings a person has to act on: groups CloudWatch would refuse and
/// stages with an unexpected status. An empty queue is said once, because
/// it is also why nothing is published.
fn log_findings(counts: &QueueCounts, plan: &Plan, grouping: &Grouping) {
    if counts.groups.is_empty() && counts.ignored.is_empty() {
        tracing::info!("the queue is empty: nothing to publish");
    }
    // A mistyped key would silently merge every group into one.
    if let Some(keys) = &grouping.label_keys {
        let unseen: Vec<&String> =
            keys.iter().filter(|k| !counts.label_keys.contains(*k)).collect();
        if !unseen.is_empty() && !counts.label_keys.is_empty() {
            tracing::warn!(
                "METRICS_LABEL_KEYS names {unseen:?}, which no stage in the queue has (the queue's \
                 label keys are {:?}); check the spelling, keys are case-sensitive",
                counts.label_keys
            );
        }
    }
    for rejected in &plan.rejected {
        let reasons: Vec<String> = rejected.problems.iter().map(ToString::to_string).collect();
        tracing::warn!(
            group = %rejected.group,
            queued = rejected.counts.queued,
            running = rejected.counts.running,
            "group left out: CloudWatch would refuse its labels as dimensions: {}; \
             change the pipeline's node labels (or the runner's) to printable ASCII names and \
             values, at most 30 of them",
            reasons.join("; ")
        );
    }
    if !counts.ignored.is_empty() {
        let shown: Vec<String> =
            counts.ignored.iter().take(20).map(|s| format!("{} ({:?})", s.id, s.status)).collect();
        tracing::warn!(
            stages = counts.ignored.len(),
            "stages with a status other than pending or running were not counted: {}{}",
            shown.join(", "),
            if counts.ignored.len() > shown.len() { ", ..." } else { "" }
        );
    }
}
