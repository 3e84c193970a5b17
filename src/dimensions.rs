//! CloudWatch's rules for dimensions (facts §3.1), checked before sending so
//! that one group with labels CloudWatch would refuse is left out on its
//! own instead of failing the whole `PutMetricData` call.

use std::fmt;

use crate::aggregate::GroupKey;

/// Most dimensions one metric may carry.
pub const MAX_DIMENSIONS: usize = 30;
/// Longest dimension name.
pub const MAX_NAME_LEN: usize = 255;
/// Longest dimension value.
pub const MAX_VALUE_LEN: usize = 1024;

/// One reason CloudWatch would refuse a group's dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionProblem {
    /// More than [`MAX_DIMENSIONS`] labels.
    TooMany(usize),
    /// A label name that breaks a rule.
    Name { name: String, rule: Rule },
    /// A label value that breaks a rule.
    Value { name: String, rule: Rule },
    /// A label with the name of a dimension that METRICS_EXTRA_DIMENSIONS
    /// adds; publishing it would mix two meanings in one series.
    Collision { name: &'static str },
}

/// The rule a name or value breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Empty.
    Empty,
    /// Only white space.
    Blank,
    /// Longer than allowed (length in bytes).
    TooLong(usize),
    /// Holds a character outside ASCII.
    NotAscii,
    /// Holds an ASCII control character.
    Control,
    /// A name that starts with `:`.
    LeadingColon,
}

impl fmt::Display for DimensionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule_text = |rule: &Rule, max: usize| match rule {
            Rule::Empty => "is empty".to_string(),
            Rule::Blank => "is only white space".to_string(),
            Rule::TooLong(len) => format!("is {len} characters long (at most {max})"),
            Rule::NotAscii => "has non-ASCII characters".to_string(),
            Rule::Control => "has control characters".to_string(),
            Rule::LeadingColon => "starts with ':'".to_string(),
        };
        match self {
            DimensionProblem::TooMany(n) => {
                write!(
                    f,
                    "it has {n} labels and CloudWatch allows at most {MAX_DIMENSIONS} dimensions"
                )
            }
            DimensionProblem::Name { name, rule } => {
                write!(f, "label name {name:?} {}", rule_text(rule, MAX_NAME_LEN))
            }
            DimensionProblem::Value { name, rule } => {
                write!(f, "the value of label {name:?} {}", rule_text(rule, MAX_VALUE_LEN))
            }
            DimensionProblem::Collision { name } => write!(
                f,
                "its own label {name:?} has the name of a dimension METRICS_EXTRA_DIMENSIONS adds; \
                 rename the label, or leave it out with METRICS_LABEL_KEYS"
            ),
        }
    }
}

/// Every reason CloudWatch would refuse this group's dimensions; empty when
/// the group can be published.
pub fn check(group: &GroupKey) -> Vec<DimensionProblem> {
    let mut problems = Vec::new();
    if group.0.len() > MAX_DIMENSIONS {
        problems.push(DimensionProblem::TooMany(group.0.len()));
    }
    for (name, value) in group.dimensions() {
        if let Some(rule) = check_text(name, MAX_NAME_LEN) {
            problems.push(DimensionProblem::Name { name: name.to_string(), rule });
        } else if name.starts_with(':') {
            problems
                .push(DimensionProblem::Name { name: name.to_string(), rule: Rule::LeadingColon });
        }
        if let Some(rule) = check_text(value, MAX_VALUE_LEN) {
            problems.push(DimensionProblem::Value { name: name.to_string(), rule });
        }
    }
    problems
}

fn check_text(text: &str, max: usize) -> Option<Rule> {
    if text.is_empty() {
        Some(Rule::Empty)
    } else if !text.is_ascii() {
        Some(Rule::NotAscii)
    } else if text.bytes().any(|b| b.is_ascii_control()) {
        Some(Rule::Control)
    } else if text.bytes().all(|b| b == b' ') {
        Some(Rule::Blank)
    } else if text.len() > max {
        Some(Rule::TooLong(text.len()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(labels: &[(&str, &str)]) -> GroupKey {
        GroupKey(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn valid_groups_pass() {
        assert_eq!(check(&group(&[])), []);
        assert_eq!(check(&group(&[("class", "gpu"), ("sel", "a:b,c")])), []);
        let long = "v".repeat(MAX_VALUE_LEN);
        let name = "n".repeat(MAX_NAME_LEN);
        assert_eq!(check(&group(&[(name.as_str(), long.as_str())])), []);
        let thirty: Vec<(String, String)> =
            (0..30).map(|i| (format!("k{i:02}"), "v".to_string())).collect();
        assert_eq!(check(&GroupKey(thirty.into_iter().collect())), []);
    }

    #[test]
    fn each_rule_is_caught() {
        let too_long_value = "v".repeat(MAX_VALUE_LEN + 1);
        let too_long_name = "n".repeat(MAX_NAME_LEN + 1);
        let value = |name: &str, rule| DimensionProblem::Value { name: name.into(), rule };
        let name = |name: &str, rule| DimensionProblem::Name { name: name.into(), rule };
        let cases: Vec<(GroupKey, Vec<DimensionProblem>)> = vec![
            (group(&[("gpu", "")]), vec![value("gpu", Rule::Empty)]),
            (group(&[("class", " ")]), vec![value("class", Rule::Blank)]),
            (group(&[("site", "zürich")]), vec![value("site", Rule::NotAscii)]),
            (group(&[("k", "a\tb")]), vec![value("k", Rule::Control)]),
            (group(&[("k", &too_long_value)]), vec![value("k", Rule::TooLong(1025))]),
            (group(&[("", "x")]), vec![name("", Rule::Empty)]),
            (group(&[(" ", "x")]), vec![name(" ", Rule::Blank)]),
            (group(&[(":k", "x")]), vec![name(":k", Rule::LeadingColon)]),
            (group(&[("k\u{7f}", "x")]), vec![name("k\u{7f}", Rule::Control)]),
            (group(&[("ключ", "x")]), vec![name("ключ", Rule::NotAscii)]),
            (group(&[(&too_long_name, "x")]), vec![name(&too_long_name, Rule::TooLong(256))]),
            // Both halves are reported.
            (group(&[("", "")]), vec![name("", Rule::Empty), value("", Rule::Empty)]),
        ];
        for (group, expected) in cases {
            assert_eq!(check(&group), expected, "{group}");
        }
    }

    #[test]
    fn more_than_thirty_labels_are_refused() {
        let labels: GroupKey =
            GroupKey((0..31).map(|i| (format!("k{i:02}"), "v".to_string())).collect());
        assert_eq!(check(&labels), [DimensionProblem::TooMany(31)]);
        assert_eq!(
            DimensionProblem::TooMany(31).to_string(),
            "it has 31 labels and CloudWatch allows at most 30 dimensions"
        );
    }
}
