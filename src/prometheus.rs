//! The Prometheus sink's content: metric and label names, the values the
//! endpoint serves, and the text exposition format (version 0.0.4). Pure
//! apart from a lock; [`crate::endpoint`] serves it over HTTP.
//!
//! A group that leaves the queue is reported as 0, not dropped: autoscalers
//! such as KEDA or the HPA read a missing series as "no data" and keep the
//! last replica count, while 0 lets them scale in. A group absent for
//! longer than [`VANISHED_RETENTION`] is dropped, so that label sets which
//! come and go do not grow the page for ever. A failed poll changes no
//! group; it shows in the poll metrics only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aggregate::GroupKey;
use crate::metrics::{METRICS, Metric, Plan};

/// How long a group that left the queue keeps being reported as 0.
pub const VANISHED_RETENTION: Duration = Duration::from_secs(3600);

/// Prefix of every per-group metric.
const PREFIX: &str = "drone_";

/// The Prometheus name of a per-group metric: `drone_` and the snake case of
/// the CloudWatch name (`QueuedBuilds` is `drone_queued_builds`).
pub fn metric_name(metric: &Metric) -> String {
    let mut name = String::from(PREFIX);
    for (i, c) in metric.name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// The Prometheus label name of a dimension.
///
/// A name that is already a valid label name and starts with a letter
/// (`class`, `os`, `instance_type`) is kept as it is. Any other name is
/// written as `_x` followed by its bytes, where letters and digits stand
/// for themselves, `_` becomes `__` and every other byte becomes `_` and
/// two upper-case hex digits: `cost-center` is `_xcost_2Dcenter`, `_tier`
/// is `_x__tier`. Kept names start with a letter and written ones with
/// `_x`, and each half can be read back, so two dimensions never share a
/// label name; and no result starts with `__`, which Prometheus reserves.
pub fn label_name(dimension: &str) -> String {
    let plain = dimension.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && dimension.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED_LABELS.contains(&dimension);
    if plain {
        return dimension.to_string();
    }
    let mut name = String::from("_x");
    for b in dimension.bytes() {
        match b {
            b'_' => name.push_str("__"),
            b if b.is_ascii_alphanumeric() => name.push(b as char),
            b => {
                let _ = write!(name, "_{b:02X}");
            }
        }
    }
    name
}

/// Label names Prometheus gives a meaning of its own: the server renames a
/// scraped `job` or `instance` to `exported_job` or `exported_instance`
/// (which would collide with a dimension of that name), and `le` and
/// `quantile` belong to histograms and summaries. They are written in the
/// `_x` form like any name that cannot be kept.
/// `group` is the label this program adds itself (see [`label_set`]).
const RESERVED_LABELS: [&str; 5] = ["group", "job", "instance", "le", "quantile"];

/// A label value in the text format: `\`, `"` and newline escaped.
fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `{group="...",name="value",...}` for a group, or nothing for the group
/// without labels.
///
/// The `group` label holds the whole label set as the logs write it
/// (`class=gpu,os=linux`). A selector on the dimensions alone also matches
/// every group with more labels (`{class="gpu"}` takes in
/// `{class="gpu",zone="eu"}`, whose stages a `class=gpu` runner never
/// gets); `{group="class=gpu,os=linux"}` matches exactly one group, which
/// is what an autoscaler for one kind of runner needs.
fn label_set(group: &GroupKey) -> String {
    if group.is_empty() {
        return String::new();
    }
    let mut out = String::from("{group=\"");
    escape_value(&group.to_string(), &mut out);
    out.push('"');
    for (name, value) in group.dimensions() {
        out.push(',');
        out.push_str(&label_name(name));
        out.push_str("=\"");
        escape_value(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

/// A sample value as Prometheus reads it.
fn sample(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        value.to_string()
    }
}

#[derive(Debug)]
struct Tracked {
    /// `{...}`, computed once.
    labels: String,
    /// One value per entry of [`METRICS`].
    values: [f64; METRICS.len()],
    /// When a poll last found the group.
    seen: Instant,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<GroupKey, Tracked>,
    polls: u64,
    failures: u64,
    /// Whether the last poll succeeded; `None` before the first.
    last_success: Option<bool>,
    last_duration: Option<Duration>,
    last_success_time: Option<SystemTime>,
}

/// What the endpoint serves, shared by the poll loop and the server.
#[derive(Debug, Default)]
pub struct Exposition {
    state: Mutex<State>,
}

impl Exposition {
    /// Nothing polled yet.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the numbers half
        // written in a way that matters more than serving nothing.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the groups of a plan from a queue that was read at `now`: their
    /// values replace the old ones, groups not in the plan go to 0, and
    /// groups absent for longer than [`VANISHED_RETENTION`] are dropped.
    pub fn update_groups(&self, plan: &Plan, now: Instant) {
        let mut state = self.lock();
        for tracked in state.groups.values_mut() {
            tracked.values = [0.0; METRICS.len()];
        }
        for datum in &plan.datums {
            let group = &plan.groups[datum.group].0;
            let Some(slot) = METRICS.iter().position(|m| *m == datum.metric) else { continue };
            let tracked = state.groups.entry(group.clone()).or_insert_with(|| Tracked {
                labels: label_set(group),
                values: [0.0; METRICS.len()],
                seen: now,
            });
            tracked.values[slot] = datum.value;
            tracked.seen = now;
        }
        state.groups.retain(|_, t| now.saturating_duration_since(t.seen) <= VANISHED_RETENTION);
    }

    /// Records the end of a poll that took `duration`, at `now`.
    pub fn record_poll(&self, success: bool, duration: Duration, now: SystemTime) {
        let mut state = self.lock();
        state.polls += 1;
        if !success {
            state.failures += 1;
        } else {
            state.last_success_time = Some(now);
        }
        state.last_success = Some(success);
        state.last_duration = Some(duration);
    }

    /// True once a poll has ended, successful or not.
    pub fn has_polled(&self) -> bool {
        self.lock().polls > 0
    }

    /// The page for `GET /metrics`.
    pub fn render(&self) -> String {
        let state = self.lock();
        let mut out = String::with_capacity(1024 + state.groups.len() * METRICS.len() * 64);
        for (slot, metric) in METRICS.iter().enumerate() {
            let name = metric_name(metric);
            header(&mut out, &name, metric.help, "gauge");
            for tracked in state.groups.values() {
                let _ = writeln!(out, "{name}{} {}", tracked.labels, sample(tracked.values[slot]));
            }
        }
        header(
            &mut out,
            "drone_queue_poll_success",
            "1 if the last poll read the queue and delivered it to every sink, 0 if not.",
            "gauge",
        );
        if let Some(success) = state.last_success {
            let _ = writeln!(out, "drone_queue_poll_success {}", u8::from(success));
        }
        header(&mut out, "drone_queue_polls_total", "Polls since the start.", "counter");
        let _ = writeln!(out, "drone_queue_polls_total {}", state.polls);
        header(
            &mut out,
            "drone_queue_poll_failures_total",
            "Failed polls since the start.",
            "counter",
        );
        let _ = writeln!(out, "drone_queue_poll_failures_total {}", state.failures);
        header(
            &mut out,
            "drone_queue_poll_duration_seconds",
            "How long the last poll took.",
            "gauge",
        );
        if let Some(duration) = state.last_duration {
            let _ = writeln!(out, "drone_queue_poll_duration_seconds {}", duration.as_secs_f64());
        }
        header(
            &mut out,
            "drone_queue_last_success_timestamp_seconds",
            "When the last successful poll ended, in seconds since the epoch.",
            "gauge",
        );
        if let Some(time) = state.last_success_time {
            let secs = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            let _ = writeln!(out, "drone_queue_last_success_timestamp_seconds {secs}");
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    // HELP texts are this program's own sentences: no `\` or newline.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{GroupCounts, QueueCounts};
    use crate::metrics::plan;

    fn key(labels: &[(&str, &str)]) -> GroupKey {
        GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn plan_of(groups: &[(GroupKey, u64, u64)]) -> Plan {
        let counts = QueueCounts {
            groups: groups
                .iter()
                .map(|(g, queued, running)| {
                    let c = GroupCounts {
                        queued: *queued,
                        running: *running,
                        startable: *queued,
                        ..GroupCounts::default()
                    };
                    (g.clone(), c)
                })
                .collect(),
            ..QueueCounts::default()
        };
        plan(&counts, 0)
    }

    /// The samples of one metric: labels to value.
    fn samples(page: &str, metric: &str) -> BTreeMap<String, String> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(series, value)| {
                let labels = series.strip_prefix(metric)?;
                (labels.is_empty() || labels.starts_with('{'))
                    .then(|| (labels.to_string(), value.to_string()))
            })
            .collect()
    }

    #[test]
    fn metric_names_follow_the_cloudwatch_names() {
        let names: Vec<String> = METRICS.iter().map(metric_name).collect();
        assert_eq!(
            names,
            [
                "drone_queued_builds",
                "drone_running_builds",
                "drone_startable_builds",
                "drone_blocked_builds",
                "drone_oldest_queued_seconds",
                "drone_busy_workers"
            ]
        );
    }

    #[test]
    fn ordinary_label_names_are_kept_and_the_rest_escaped() {
        for kept in ["class", "os", "arch", "instance_type", "Tier2", "a__b"] {
            assert_eq!(label_name(kept), kept);
        }
        for (dimension, label) in [
            ("cost-center", "_xcost_2Dcenter"),
            ("_tier", "_x__tier"),
            ("__name__", "_x____name____"),
            ("9lives", "_x9lives"),
            ("a.b/c", "_xa_2Eb_2Fc"),
            ("zone:az", "_xzone_3Aaz"),
            ("ü", "_x_C3_BC"),
            ("", "_x"),
            ("job", "_xjob"),
            ("instance", "_xinstance"),
            ("le", "_xle"),
            ("quantile", "_xquantile"),
        ] {
            assert_eq!(label_name(dimension), label, "{dimension:?}");
        }
    }

    #[test]
    fn the_page_has_help_type_and_escaped_values() {
        let exposition = Exposition::new();
        let t0 = Instant::now();
        exposition.update_groups(
            &plan_of(&[
                (key(&[("class", "gpu"), ("os", "linux")]), 2, 1),
                (key(&[]), 4, 0),
                (key(&[("path", "C:\\x \"y\""), ("cost-center", "r&d")]), 1, 0),
            ]),
            t0,
        );
        let start = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        exposition.record_poll(true, Duration::from_millis(1500), start);
        let page = exposition.render();
        let expected_start = "\
# HELP drone_queued_builds Pending stages of the runner group.
# TYPE drone_queued_builds gauge
drone_queued_builds 4
drone_queued_builds{group=\"class=gpu,os=linux\",class=\"gpu\",os=\"linux\"} 2
drone_queued_builds{group=\"cost-center=\\\"r&d\\\",path=\\\"C:\\\\\\\\x \\\\\\\"y\\\\\\\"\\\"\",_xcost_2Dcenter=\"r&d\",path=\"C:\\\\x \\\"y\\\"\"} 1
# HELP drone_running_builds Running stages of the runner group.
# TYPE drone_running_builds gauge
drone_running_builds 0
";
        assert!(page.starts_with(expected_start), "{page}");
        let expected_end = "\
# HELP drone_queue_poll_success 1 if the last poll read the queue and delivered it to every sink, 0 if not.
# TYPE drone_queue_poll_success gauge
drone_queue_poll_success 1
# HELP drone_queue_polls_total Polls since the start.
# TYPE drone_queue_polls_total counter
drone_queue_polls_total 1
# HELP drone_queue_poll_failures_total Failed polls since the start.
# TYPE drone_queue_poll_failures_total counter
drone_queue_poll_failures_total 0
# HELP drone_queue_poll_duration_seconds How long the last poll took.
# TYPE drone_queue_poll_duration_seconds gauge
drone_queue_poll_duration_seconds 1.5
# HELP drone_queue_last_success_timestamp_seconds When the last successful poll ended, in seconds since the epoch.
# TYPE drone_queue_last_success_timestamp_seconds gauge
drone_queue_last_success_timestamp_seconds 1767225600
";
        assert!(page.ends_with(expected_end), "{page}");
        // CloudWatch refuses control characters, so no group has a newline;
        // the escaping handles it all the same.
        let mut escaped = String::new();
        escape_value("a\nb\\\"", &mut escaped);
        assert_eq!(escaped, "a\\nb\\\\\\\"");
        // Every family is announced once, before its samples.
        assert_eq!(page.matches("# TYPE ").count(), METRICS.len() + 5);
    }

    #[test]
    fn a_vanished_group_reads_zero_and_is_dropped_after_an_hour() {
        let exposition = Exposition::new();
        let gpu = key(&[("class", "gpu")]);
        let arm = key(&[("class", "arm")]);
        let t0 = Instant::now();
        exposition.update_groups(&plan_of(&[(gpu.clone(), 3, 1)]), t0);
        let queued = |e: &Exposition| samples(&e.render(), "drone_queued_builds");
        assert_eq!(
            queued(&exposition),
            [("{group=\"class=gpu\",class=\"gpu\"}".into(), "3".into())].into()
        );

        // The gpu group left the queue; arm appeared.
        exposition.update_groups(&plan_of(&[(arm.clone(), 5, 0)]), t0 + Duration::from_secs(1));
        assert_eq!(
            queued(&exposition),
            [
                ("{group=\"class=arm\",class=\"arm\"}".into(), "5".into()),
                ("{group=\"class=gpu\",class=\"gpu\"}".into(), "0".into())
            ]
            .into()
        );
        let running = samples(&exposition.render(), "drone_running_builds");
        assert_eq!(running["{group=\"class=gpu\",class=\"gpu\"}"], "0");

        // An empty queue: both 0, until an hour after each was last seen.
        exposition.update_groups(&Plan::default(), t0 + VANISHED_RETENTION);
        assert_eq!(queued(&exposition).values().collect::<Vec<_>>(), ["0", "0"]);
        let later = t0 + VANISHED_RETENTION + Duration::from_millis(500);
        exposition.update_groups(&Plan::default(), later);
        assert_eq!(
            queued(&exposition),
            [("{group=\"class=arm\",class=\"arm\"}".into(), "0".into())].into()
        );
    }

    #[test]
    fn a_failed_poll_changes_no_group() {
        let exposition = Exposition::new();
        assert!(!exposition.has_polled());
        let before_any = exposition.render();
        assert!(!before_any.contains("\ndrone_queue_poll_success "), "{before_any}");
        assert!(before_any.contains("drone_queue_polls_total 0\n"));

        exposition.update_groups(&plan_of(&[(key(&[("class", "gpu")]), 3, 1)]), Instant::now());
        let now = SystemTime::now();
        exposition.record_poll(true, Duration::from_millis(20), now);
        let groups_before = samples(&exposition.render(), "drone_queued_builds");
        exposition.record_poll(false, Duration::from_millis(700), now);
        let page = exposition.render();
        assert_eq!(samples(&page, "drone_queued_builds"), groups_before);
        assert!(exposition.has_polled());
        for line in [
            "drone_queue_poll_success 0\n",
            "drone_queue_polls_total 2\n",
            "drone_queue_poll_failures_total 1\n",
            "drone_queue_poll_duration_seconds 0.7\n",
        ] {
            assert!(page.contains(line), "missing {line:?} in\n{page}");
        }
    }

    #[test]
    fn special_values_are_spelled_as_prometheus_reads_them() {
        assert_eq!(sample(f64::NAN), "NaN");
        assert_eq!(sample(f64::INFINITY), "+Inf");
        assert_eq!(sample(f64::NEG_INFINITY), "-Inf");
        assert_eq!(sample(3.0), "3");
        assert_eq!(sample(0.25), "0.25");
    }
}
