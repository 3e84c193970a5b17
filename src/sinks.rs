//! Where metrics go: the names `METRICS_SINKS` accepts, parsed. Pure.

use std::fmt;

/// One destination for the metrics of a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SinkKind {
    /// `PutMetricData` calls.
    CloudWatch,
    /// Embedded Metric Format lines on standard output, which CloudWatch
    /// Logs turns into metrics (in Lambda, or with the CloudWatch agent).
    Emf,
    /// An HTTP endpoint in the Prometheus text format (daemon only).
    Prometheus,
    /// The dry-run table or JSON on standard output.
    Stdout,
}

impl SinkKind {
    /// Every sink, in the order they are documented.
    pub const ALL: [SinkKind; 4] =
        [SinkKind::CloudWatch, SinkKind::Emf, SinkKind::Prometheus, SinkKind::Stdout];

    /// The name used in `METRICS_SINKS`.
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::CloudWatch => "cloudwatch",
            SinkKind::Emf => "emf",
            SinkKind::Prometheus => "prometheus",
            SinkKind::Stdout => "stdout",
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The sinks of a run: a non-empty set without repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSet(u8);

impl SinkSet {
    /// Only `kind`.
    pub fn only(kind: SinkKind) -> SinkSet {
        SinkSet(bit(kind))
    }

    /// True when `kind` is in the set.
    pub fn has(self, kind: SinkKind) -> bool {
        self.0 & bit(kind) != 0
    }

    /// True when `kind` is the only sink.
    pub fn is_only(self, kind: SinkKind) -> bool {
        self.0 == bit(kind)
    }

    /// The sinks, in documented order.
    pub fn iter(self) -> impl Iterator<Item = SinkKind> {
        SinkKind::ALL.into_iter().filter(move |k| self.has(*k))
    }
}

impl Default for SinkSet {
    /// `cloudwatch`, what the product did before there was a choice.
    fn default() -> SinkSet {
        SinkSet::only(SinkKind::CloudWatch)
    }
}

impl fmt::Display for SinkSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(SinkKind::name).collect();
        f.write_str(&names.join(","))
    }
}

fn bit(kind: SinkKind) -> u8 {
    1 << (kind as u8)
}

/// Parses a comma list such as `cloudwatch,prometheus` (case and spaces
/// around names do not matter).
///
/// # Errors
///
/// One message per problem: an unknown name, a name given twice, or no
/// name at all.
pub fn parse_sinks(raw: &str) -> Result<SinkSet, Vec<String>> {
    let known = || SinkKind::ALL.map(SinkKind::name).join(", ");
    let mut set = 0u8;
    let mut problems = Vec::new();
    for item in raw.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let lower = item.to_ascii_lowercase();
        match SinkKind::ALL.into_iter().find(|k| k.name() == lower) {
            Some(kind) if set & bit(kind) != 0 => {
                problems.push(format!("{kind} is listed twice; give each sink once"));
            }
            Some(kind) => set |= bit(kind),
            None => {
                problems.push(format!("{item:?} is not a sink; use one or more of {}", known()))
            }
        }
    }
    if set == 0 && problems.is_empty() {
        problems.push(format!(
            "is empty; give a comma list of {}, or unset it for cloudwatch",
            known()
        ));
    }
    if problems.is_empty() { Ok(SinkSet(set)) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(set: SinkSet) -> Vec<SinkKind> {
        set.iter().collect()
    }

    #[test]
    fn lists_are_read_in_any_order_and_case() {
        let set = parse_sinks(" Prometheus, cloudwatch ,EMF").unwrap();
        assert_eq!(kinds(set), [SinkKind::CloudWatch, SinkKind::Emf, SinkKind::Prometheus]);
        assert!(!set.has(SinkKind::Stdout) && !set.is_only(SinkKind::Emf));
        assert_eq!(set.to_string(), "cloudwatch,emf,prometheus");
        assert!(parse_sinks("emf").unwrap().is_only(SinkKind::Emf));
        assert_eq!(kinds(SinkSet::default()), [SinkKind::CloudWatch]);
        // A trailing comma is not an empty name.
        assert_eq!(kinds(parse_sinks("stdout,").unwrap()), [SinkKind::Stdout]);
    }

    #[test]
    fn unknown_repeated_and_missing_names_are_each_reported() {
        let problems = parse_sinks("cloudwatch,statsd,CloudWatch,prom").unwrap_err();
        assert_eq!(
            problems,
            [
                "\"statsd\" is not a sink; use one or more of cloudwatch, emf, prometheus, stdout",
                "cloudwatch is listed twice; give each sink once",
                "\"prom\" is not a sink; use one or more of cloudwatch, emf, prometheus, stdout",
            ]
        );
        for empty in ["", " ", ",", " , "] {
            let problems = parse_sinks(empty).unwrap_err();
            assert_eq!(problems.len(), 1);
            assert!(problems[0].starts_with("is empty"), "{problems:?}");
        }
    }
}
