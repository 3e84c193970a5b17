//! What a poll prints: the dry-run table and JSON, and the short summary a
//! Lambda invocation answers with. Pure rendering of a [`PollOutcome`].

use std::collections::BTreeMap;
use std::fmt::Write;

use aws_sdk_cloudwatch::primitives::{DateTime, DateTimeFormat};
use serde::Serialize;

use crate::aggregate::GroupCounts;
use crate::asg::{ProtectionReport, shown};
use crate::cloudwatch::batches;
use crate::metrics::METRICS;
use crate::poll::PollOutcome;
use crate::protection::Reason;

/// The answer of a Lambda invocation and the numbers of a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Groups published.
    pub groups: usize,
    /// Data points published.
    pub datums: usize,
    /// `PutMetricData` calls made (or, in a dry run, that would be made).
    pub calls: usize,
    /// EMF lines written, when that sink is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emf_lines: Option<usize>,
    /// Pending stages over all groups.
    pub queued: u64,
    /// Running stages over all groups.
    pub running: u64,
    /// Startable stages over all groups.
    pub startable: u64,
    /// Blocked stages over all groups.
    pub blocked: u64,
    /// Groups left out because of their labels.
    pub rejected_groups: usize,
    /// Stages not counted because of their status.
    pub ignored_stages: usize,
    /// Scale-in protection, when it is on and its groups could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protection: Option<ProtectionSummary>,
}

/// Scale-in protection in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProtectionSummary {
    /// Instances of the protected groups.
    pub instances: usize,
    /// Of these, the ones with a build.
    pub busy: usize,
    /// Instances protected by this poll (to be, in a dry run).
    pub protected: usize,
    /// Instances unprotected by this poll (to be, in a dry run).
    pub unprotected: usize,
    /// Changes that failed.
    pub failed: usize,
    /// Busy runner names that matched no instance.
    pub unmatched_runners: usize,
    /// `SetInstanceProtection` calls made (to be made, in a dry run).
    pub calls: usize,
}

impl ProtectionSummary {
    fn of(report: &ProtectionReport) -> ProtectionSummary {
        let made = || report.plan.changes.iter().filter(|c| !report.failed.contains(&c.instance));
        let protected = made().filter(|c| c.protect).count();
        ProtectionSummary {
            instances: report.plan.instances,
            busy: report.plan.busy,
            protected,
            unprotected: made().count() - protected,
            failed: report.failed.len(),
            unmatched_runners: report.plan.unmatched.len(),
            calls: report.calls,
        }
    }
}

impl Summary {
    /// Summarises a poll.
    pub fn of(outcome: &PollOutcome) -> Summary {
        let totals = outcome.counts.totals();
        Summary {
            groups: outcome.plan.groups.len(),
            datums: outcome.published.map_or(outcome.plan.datums.len(), |p| p.datums),
            // EMF instead of PutMetricData makes no call at all.
            calls: match (outcome.published, outcome.emf_lines) {
                (Some(published), _) => published.calls,
                (None, Some(_)) => 0,
                (None, None) => batches(&outcome.plan).len(),
            },
            emf_lines: outcome.emf_lines,
            queued: totals.queued,
            running: totals.running,
            startable: totals.startable,
            blocked: totals.blocked(),
            rejected_groups: outcome.plan.rejected.len(),
            ignored_stages: outcome.counts.ignored.len(),
            protection: outcome.protection.as_ref().map(ProtectionSummary::of),
        }
    }
}

const HELD_BACK: &str = "HELD BACK";

/// Why pending stages of a group are not startable: `limit 2, throttle 1,
/// accepted 1`, or `-`.
fn held_back(counts: &GroupCounts) -> String {
    let parts: Vec<String> = [
        ("limit", counts.blocked_by_limit),
        ("throttle", counts.blocked_by_throttle),
        ("accepted", counts.accepted),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(why, n)| format!("{why} {n}"))
    .collect();
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

fn timestamp(outcome: &PollOutcome) -> String {
    DateTime::from(outcome.timestamp)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "(unrepresentable time)".into())
}

/// The dry run as a table for people.
pub fn table(outcome: &PollOutcome, namespace: &str) -> String {
    let plan = &outcome.plan;
    let summary = Summary::of(outcome);
    let mut out = String::new();
    if plan.groups.is_empty() {
        let why = if !plan.rejected.is_empty() {
            "no group can be published"
        } else if outcome.counts.ignored.is_empty() {
            "the queue is empty"
        } else {
            "no stage in the queue is pending or running"
        };
        let _ = writeln!(out, "Nothing would be published to namespace {namespace:?}: {why}.");
    } else {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match (outcome.published, outcome.emf_lines) {
            (None, Some(lines)) => {
                let _ = writeln!(
                    out,
                    "Wrote {} data points for namespace {namespace:?} at {} as {lines} EMF line{}.\n",
                    summary.datums,
                    timestamp(outcome),
                    plural(lines)
                );
            }
            (published, _) => {
                let verb = if published.is_some() { "Published" } else { "Would publish" };
                let _ = writeln!(
                    out,
                    "{verb} to namespace {namespace:?} at {}: {} data points in {} PutMetricData call{}.\n",
                    timestamp(outcome),
                    summary.datums,
                    summary.calls,
                    plural(summary.calls)
                );
            }
        }
        // Counts first and the group last: label sets can be long (values
        // of up to 1,024 characters), and should not push the numbers away.
        let held: Vec<String> = plan.groups.iter().map(|(_, c)| held_back(c)).collect();
        let held_width = held.iter().map(String::len).max().unwrap_or(0).max(HELD_BACK.len());
        for metric in METRICS {
            let _ = write!(out, "{}  ", metric.name);
        }
        let _ = writeln!(out, "{HELD_BACK:<held_width$}  GROUP");
        for datums in plan.datums.chunk_by(|a, b| a.group == b.group) {
            for datum in datums {
                let _ = write!(out, "{:>w$}  ", datum.value, w = datum.metric.name.len());
            }
            let group = datums[0].group;
            let _ = writeln!(out, "{:<held_width$}  {}", held[group], plan.groups[group].0);
        }
    }
    if !plan.rejected.is_empty() {
        out.push_str("\nLeft out, because CloudWatch would refuse their labels as dimensions:\n");
        for rejected in &plan.rejected {
            let reasons: Vec<String> = rejected.problems.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {} ({} queued, {} running): {}",
                rejected.group,
                rejected.counts.queued,
                rejected.counts.running,
                reasons.join("; ")
            );
        }
    }
    if !outcome.counts.ignored.is_empty() {
        let _ = writeln!(
            out,
            "\n{} stage(s) with a status other than pending or running were not counted.",
            outcome.counts.ignored.len()
        );
    }
    if let Some(protection) = &outcome.protection {
        protection_table(&mut out, protection);
    }
    out
}

/// The protection part of the table: one line per change.
fn protection_table(out: &mut String, report: &ProtectionReport) {
    let plan = &report.plan;
    let (protect, unprotect) = if report.applied {
        ("protected", "unprotected")
    } else {
        ("would protect", "would unprotect")
    };
    let _ = writeln!(
        out,
        "\nScale-in protection: {} instances, {} busy, {} idle within the grace period; {} change{} in {} SetInstanceProtection call{}.",
        plan.instances,
        plan.busy,
        plan.in_grace,
        plan.changes.len(),
        if plan.changes.len() == 1 { "" } else { "s" },
        report.calls,
        if report.calls == 1 { "" } else { "s" },
    );
    for change in &plan.changes {
        let why = match &change.reason {
            Reason::Busy { runners } => format!("busy: runner {}", shown_list(runners)),
            Reason::Idle { for_at_least } => format!("idle for {} s", for_at_least.as_secs()),
        };
        let verb = match (change.protect, report.failed.contains(&change.instance)) {
            (true, false) => protect,
            (false, false) => unprotect,
            (true, true) => "FAILED protect",
            (false, true) => "FAILED unprotect",
        };
        let _ = writeln!(out, "  {verb:<15}  {}  {}  ({why})", change.instance, change.group);
    }
    for instance in &plan.unprotectable {
        let _ = writeln!(
            out,
            "  {:<15}  {}  {}  (busy: runner {}, but {})",
            "cannot protect",
            instance.instance,
            instance.group,
            shown_list(&instance.runners),
            instance.lifecycle_state
        );
    }
    if !plan.unmatched.is_empty() {
        let _ = writeln!(
            out,
            "  Busy runners matching no instance of the groups: {}",
            shown_list(&plan.unmatched)
        );
    }
}

fn shown_list(names: &[String]) -> String {
    names.iter().map(|n| shown(n)).collect::<Vec<_>>().join(", ")
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    dimensions: &'a BTreeMap<String, String>,
    metrics: BTreeMap<&'static str, f64>,
    held_back: HeldBack,
}

/// Pending stages that are not startable, by reason.
#[derive(Serialize)]
struct HeldBack {
    limit: u64,
    throttle: u64,
    accepted: u64,
}

#[derive(Serialize)]
struct JsonRejected<'a> {
    dimensions: &'a BTreeMap<String, String>,
    queued: u64,
    running: u64,
    problems: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    namespace: &'a str,
    timestamp: String,
    summary: Summary,
    groups: Vec<JsonGroup<'a>>,
    rejected: Vec<JsonRejected<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protection: Option<JsonProtection<'a>>,
}

#[derive(Serialize)]
struct JsonProtection<'a> {
    applied: bool,
    changes: Vec<JsonChange<'a>>,
    unmatched_runners: &'a [String],
    in_grace: usize,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    instance: &'a str,
    group: &'a str,
    protect: bool,
    /// The call for this change failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    failed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    runners: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_seconds: Option<u64>,
}

/// The dry run as one JSON document, indented for people.
pub fn json(outcome: &PollOutcome, namespace: &str) -> String {
    serde_json::to_string_pretty(&json_report(outcome, namespace))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// The same document on one line, for the `stdout` sink: a log collector
/// (Lambda's, or a container runtime's) makes each line one event.
pub fn json_line(outcome: &PollOutcome, namespace: &str) -> String {
    serde_json::to_string(&json_report(outcome, namespace))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn json_report<'a>(outcome: &'a PollOutcome, namespace: &'a str) -> JsonReport<'a> {
    let plan = &outcome.plan;
    let mut groups: Vec<JsonGroup<'_>> = plan
        .groups
        .iter()
        .map(|(g, c)| JsonGroup {
            dimensions: &g.0,
            metrics: BTreeMap::new(),
            held_back: HeldBack {
                limit: c.blocked_by_limit,
                throttle: c.blocked_by_throttle,
                accepted: c.accepted,
            },
        })
        .collect();
    for datum in &plan.datums {
        groups[datum.group].metrics.insert(datum.metric.name, datum.value);
    }
    let rejected = plan
        .rejected
        .iter()
        .map(|r| JsonRejected {
            dimensions: &r.group.0,
            queued: r.counts.queued,
            running: r.counts.running,
            problems: r.problems.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let protection = outcome.protection.as_ref().map(|report| JsonProtection {
        applied: report.applied,
        changes: report
            .plan
            .changes
            .iter()
            .map(|c| JsonChange {
                instance: &c.instance,
                group: &c.group,
                protect: c.protect,
                failed: report.failed.contains(&c.instance),
                runners: match &c.reason {
                    Reason::Busy { runners } => Some(runners),
                    Reason::Idle { .. } => None,
                },
                idle_seconds: match &c.reason {
                    Reason::Busy { .. } => None,
                    Reason::Idle { for_at_least } => Some(for_at_least.as_secs()),
                },
            })
            .collect(),
        unmatched_runners: &report.plan.unmatched,
        in_grace: report.plan.in_grace,
    });
    JsonReport {
        namespace,
        timestamp: timestamp(outcome),
        summary: Summary::of(outcome),
        groups,
        rejected,
        protection,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::protection::{Change, ProtectionPlan};

    fn outcome(protection: ProtectionReport) -> PollOutcome {
        PollOutcome {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            counts: Default::default(),
            plan: Default::default(),
            published: None,
            emf_lines: None,
            fetch_time: Duration::ZERO,
            publish_time: Duration::ZERO,
            protection: Some(protection),
        }
    }

    fn change(instance: &str, protect: bool) -> Change {
        Change {
            instance: instance.into(),
            group: "workers".into(),
            protect,
            reason: if protect {
                Reason::Busy { runners: vec!["runner\nFAKE ERROR".into()] }
            } else {
                Reason::Idle { for_at_least: Duration::from_secs(150) }
            },
        }
    }

    #[test]
    fn a_failed_change_is_reported_as_failed_not_made() {
        let report = ProtectionReport {
            plan: ProtectionPlan {
                changes: vec![change("i-1", true), change("i-2", true), change("i-3", false)],
                instances: 3,
                busy: 2,
                ..ProtectionPlan::default()
            },
            calls: 1,
            reads: 1,
            applied: true,
            failed: ["i-2".to_string()].into(),
        };
        let outcome = outcome(report);
        let table = table(&outcome, "Drone");
        assert!(table.contains("  protected        i-1  workers"), "{table}");
        assert!(table.contains("  FAILED protect   i-2  workers"), "{table}");
        assert!(table.contains("  unprotected      i-3  workers  (idle for 150 s)"), "{table}");
        // A runner name from the queue cannot start a line of its own.
        assert!(table.contains(r"(busy: runner runner\nFAKE ERROR)"), "{table}");
        assert!(!table.lines().any(|l| l.starts_with("FAKE")), "{table}");
        let doc: serde_json::Value = serde_json::from_str(&json(&outcome, "Drone")).unwrap();
        assert_eq!(
            doc["summary"]["protection"],
            serde_json::json!({"instances": 3, "busy": 2, "protected": 1, "unprotected": 1,
                               "failed": 1, "unmatched_runners": 0, "calls": 1})
        );
        let failed: Vec<bool> = doc["protection"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.get("failed").is_some_and(|f| f == true))
            .collect();
        assert_eq!(failed, [false, true, false]);
    }
}
