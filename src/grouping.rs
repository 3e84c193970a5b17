//! Which runner group a stage belongs to, and so which dimensions its
//! metrics carry. By default a group is the stage's exact label set, as the
//! reference tool published it. Options narrow the labels, add the
//! pipeline's platform and type (Drone routes on those too), and name
//! groups that publish every poll, zeros included.

use std::collections::{BTreeMap, BTreeSet};

use crate::aggregate::GroupKey;
use crate::dimensions;
use crate::drone::Stage;

/// Name of the platform dimension.
pub const PLATFORM: &str = "platform";
/// Name of the pipeline type dimension.
pub const TYPE: &str = "type";

/// How stages are grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grouping {
    /// Only these label keys become dimensions (`None`: all of them).
    pub label_keys: Option<BTreeSet<String>>,
    /// Add `platform` (`os/arch[/variant][@kernel]`).
    pub platform: bool,
    /// Add `type` (`docker` when the stage has none).
    pub pipeline_type: bool,
    /// Groups that publish every poll, zeros included.
    pub known: Vec<GroupKey>,
}

/// What Drone routes a stage by, borrowed from it: stages with equal routes
/// always share a group, so a queue is grouped by comparing these without
/// building a key per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The `node:` labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Pipeline type, as sent (empty for `docker`).
    pub pipeline_type: &'a str,
    /// Platform operating system.
    pub os: &'a str,
    /// Platform architecture.
    pub arch: &'a str,
    /// Platform variant.
    pub variant: &'a str,
    /// Platform kernel.
    pub kernel: &'a str,
}

impl Route<'_> {
    /// Equal in everything but the labels.
    pub fn same_platform_and_type(&self, other: &Route<'_>) -> bool {
        // These strings are a few bytes long: comparing them in line is
        // several times faster than a call to memcmp per field.
        fn same(a: &str, b: &str) -> bool {
            a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
        }
        same(self.arch, other.arch)
            && same(self.os, other.os)
            && same(self.pipeline_type, other.pipeline_type)
            && same(self.variant, other.variant)
            && same(self.kernel, other.kernel)
    }
}

impl<'a> From<&'a Stage> for Route<'a> {
    fn from(stage: &'a Stage) -> Route<'a> {
        Route {
            labels: &stage.labels,
            pipeline_type: &stage.pipeline_type,
            os: &stage.os,
            arch: &stage.arch,
            variant: &stage.variant,
            kernel: &stage.kernel,
        }
    }
}

/// A group's key, and the extra dimensions its own labels collided with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The dimensions.
    pub key: GroupKey,
    /// Extra dimensions the stage's labels already use; such a group is
    /// reported as invalid rather than merged with another.
    pub conflicts: Vec<&'static str>,
}

impl Grouping {
    /// The group of a route.
    pub fn key(&self, route: &Route<'_>) -> Keyed {
        let mut dims: BTreeMap<String, String> = match &self.label_keys {
            None => route.labels.clone(),
            Some(keys) => route
                .labels
                .iter()
                .filter(|(k, _)| keys.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut conflicts = Vec::new();
        let extras = [
            (self.platform, PLATFORM, platform(route)),
            (self.pipeline_type, TYPE, pipeline_type(route)),
        ];
        for (wanted, name, value) in extras {
            if !wanted {
                continue;
            }
            if dims.contains_key(name) {
                conflicts.push(name);
            } else {
                dims.insert(name.to_string(), value);
            }
        }
        Keyed { key: GroupKey(dims), conflicts }
    }
}

/// `os/arch`, then `/variant` and `@kernel` when set: `linux/arm64/v8`,
/// `windows/amd64@1809`.
pub fn platform(route: &Route<'_>) -> String {
    let mut text = format!("{}/{}", route.os, route.arch);
    if !route.variant.is_empty() {
        text.push('/');
        text.push_str(route.variant);
    }
    if !route.kernel.is_empty() {
        text.push('@');
        text.push_str(route.kernel);
    }
    text
}

/// The pipeline type; Drone treats an empty one as `docker`.
pub fn pipeline_type(route: &Route<'_>) -> String {
    if route.pipeline_type.is_empty() { "docker".into() } else { route.pipeline_type.to_string() }
}

/// Parses `METRICS_LABEL_KEYS`: `class,os`.
///
/// # Errors
///
/// A message when a key is empty.
pub fn parse_label_keys(raw: &str) -> Result<BTreeSet<String>, String> {
    let keys: Vec<&str> = raw.split(',').map(str::trim).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(format!(
            "{raw:?} has an empty key; write the label keys separated by commas, e.g. class,os"
        ));
    }
    Ok(keys.into_iter().map(String::from).collect())
}

/// Parses `METRICS_EXTRA_DIMENSIONS`: `platform,type`.
///
/// # Errors
///
/// A message naming an unknown dimension.
pub fn parse_extra_dimensions(raw: &str) -> Result<(bool, bool), String> {
    let mut extras = (false, false);
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            PLATFORM => extras.0 = true,
            TYPE => extras.1 = true,
            other => {
                return Err(format!(
                    "{other:?} is not an extra dimension; the choices are platform and type"
                ));
            }
        }
    }
    Ok(extras)
}

/// Parses `METRICS_KNOWN_GROUPS`: groups separated by `;`, each a list of
/// `name=value` separated by `,`; `-` is the group without dimensions. Each
/// group must be one that stages can fall into with the given grouping, and
/// one CloudWatch accepts. Empty items (a trailing `;`) are refused: taking
/// them for the group without dimensions would add a group nobody asked for.
///
/// # Errors
///
/// Every problem found, one message each.
pub fn parse_known_groups(raw: &str, grouping: &Grouping) -> Result<Vec<GroupKey>, Vec<String>> {
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    for item in raw.split(';') {
        let item = item.trim();
        if item.is_empty() {
            problems.push(
                "has an empty group (two ';' in a row, or one at the end); remove it, \
                 or write - for the group without dimensions"
                    .to_string(),
            );
            continue;
        }
        let item = if item == "-" { "" } else { item };
        let mut dims = BTreeMap::new();
        let mut ok = true;
        for pair in item.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                problems.push(format!("{pair:?} in group {item:?} is not name=value"));
                ok = false;
                continue;
            };
            if dims.insert(name.trim().to_string(), value.trim().to_string()).is_some() {
                problems.push(format!("group {item:?} names {:?} twice", name.trim()));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        let key = GroupKey(dims);
        let mut why = Vec::new();
        for problem in dimensions::check(&key) {
            why.push(problem.to_string());
        }
        for (wanted, name) in [(grouping.platform, PLATFORM), (grouping.pipeline_type, TYPE)] {
            if wanted && !key.0.contains_key(name) {
                why.push(format!("it has no {name}=... although METRICS_EXTRA_DIMENSIONS adds {name} to every group"));
            }
        }
        if let Some(keys) = &grouping.label_keys {
            for name in key.0.keys() {
                let extra = (grouping.platform && name == PLATFORM)
                    || (grouping.pipeline_type && name == TYPE);
                if !extra && !keys.contains(name) {
                    why.push(format!(
                        "it uses label {name:?}, which METRICS_LABEL_KEYS leaves out"
                    ));
                }
            }
        }
        if why.is_empty() {
            if !groups.contains(&key) {
                groups.push(key);
            }
        } else {
            problems.push(format!("group {item:?} can never be published: {}", why.join("; ")));
        }
    }
    if problems.is_empty() { Ok(groups) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(
        os: &str,
        arch: &str,
        variant: &str,
        kernel: &str,
        kind: &str,
        labels: &[(&str, &str)],
    ) -> Stage {
        Stage {
            os: os.into(),
            arch: arch.into(),
            variant: variant.into(),
            kernel: kernel.into(),
            pipeline_type: kind.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Stage::default()
        }
    }

    fn key(pairs: &[(&str, &str)]) -> GroupKey {
        GroupKey(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    fn platform_of(s: Stage) -> String {
        platform(&Route::from(&s))
    }

    fn type_of(s: Stage) -> String {
        pipeline_type(&Route::from(&s))
    }

    #[test]
    fn platform_strings() {
        assert_eq!(platform_of(stage("linux", "amd64", "", "", "", &[])), "linux/amd64");
        assert_eq!(platform_of(stage("linux", "arm64", "v8", "", "", &[])), "linux/arm64/v8");
        assert_eq!(
            platform_of(stage("windows", "amd64", "", "1809", "", &[])),
            "windows/amd64@1809"
        );
        assert_eq!(type_of(stage("linux", "amd64", "", "", "", &[])), "docker");
        assert_eq!(type_of(stage("linux", "amd64", "", "", "kubernetes", &[])), "kubernetes");
    }

    #[test]
    fn keys_under_each_option() {
        let s = stage(
            "linux",
            "arm64",
            "",
            "",
            "exec",
            &[("class", "standard"), ("os", "linux"), ("team", "a")],
        );
        let plain = Grouping::default();
        assert_eq!(
            plain.key(&Route::from(&s)).key,
            key(&[("class", "standard"), ("os", "linux"), ("team", "a")])
        );
        let narrowed =
            Grouping { label_keys: Some(["class".to_string()].into()), ..Grouping::default() };
        assert_eq!(narrowed.key(&Route::from(&s)).key, key(&[("class", "standard")]));
        let routed = Grouping { platform: true, pipeline_type: true, ..narrowed };
        let keyed = routed.key(&Route::from(&s));
        assert_eq!(
            keyed.key,
            key(&[("class", "standard"), ("platform", "linux/arm64"), ("type", "exec")])
        );
        assert!(keyed.conflicts.is_empty());
    }

    #[test]
    fn a_label_named_like_an_extra_dimension_is_a_conflict_not_a_merge() {
        let s = stage("linux", "amd64", "", "", "", &[("platform", "linux/arm64")]);
        let g = Grouping { platform: true, ..Grouping::default() };
        let keyed = g.key(&Route::from(&s));
        assert_eq!(keyed.key, key(&[("platform", "linux/arm64")]));
        assert_eq!(keyed.conflicts, ["platform"]);
        // Left out by METRICS_LABEL_KEYS, the label no longer collides.
        let g = Grouping { label_keys: Some(["class".to_string()].into()), ..g };
        assert!(g.key(&Route::from(&s)).conflicts.is_empty());
    }

    #[test]
    fn option_parsing() {
        assert_eq!(
            parse_label_keys(" class , os"),
            Ok(["class".to_string(), "os".to_string()].into())
        );
        assert!(parse_label_keys("class,,os").is_err());
        assert_eq!(parse_extra_dimensions("platform, type"), Ok((true, true)));
        assert_eq!(parse_extra_dimensions(""), Ok((false, false)));
        assert!(parse_extra_dimensions("arch").unwrap_err().contains("\"arch\""));
    }

    #[test]
    fn known_groups() {
        let plain = Grouping::default();
        assert_eq!(
            parse_known_groups("class=gpu,os=linux; class=standard,os=linux;-", &plain),
            Ok(vec![
                key(&[("class", "gpu"), ("os", "linux")]),
                key(&[("class", "standard"), ("os", "linux")]),
                key(&[])
            ])
        );
        let err = parse_known_groups("class;gpu=", &plain).unwrap_err();
        assert_eq!(err.len(), 2, "{err:?}");
        assert!(err[0].contains("not name=value"));
        assert!(err[1].contains("is empty"));
        let err = parse_known_groups("class=gpu;", &plain).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].contains("empty group") && err[0].contains("write -"), "{err:?}");

        let routed = Grouping {
            label_keys: Some(["class".to_string()].into()),
            platform: true,
            ..Grouping::default()
        };
        assert_eq!(
            parse_known_groups("class=gpu,platform=linux/amd64", &routed),
            Ok(vec![key(&[("class", "gpu"), ("platform", "linux/amd64")])])
        );
        let err = parse_known_groups("class=gpu,os=linux", &routed).unwrap_err();
        assert!(
            err[0].contains("no platform=...")
                && err[0].contains("\"os\", which METRICS_LABEL_KEYS leaves out"),
            "{err:?}"
        );
    }
}
