//! Scale-in protection, the pure part: which instances of the named Auto
//! Scaling groups hold a build, and which protection flags must change.
//!
//! A scale-in picks its victims by the group's termination policy, blind
//! to builds. Drone names the runner of every running or accepted stage
//! (`machine`); mapped to an instance, that tells which instances must not
//! go. Busy instances are protected at once; an idle one is unprotected
//! only after it has been idle for a grace period, so that a runner between
//! two builds does not flap, and the group can still shrink.
//!
//! The state of every instance is read from Auto Scaling each poll, so a
//! change that failed is simply planned again next time; the only memory
//! kept between polls is since when each instance has been seen idle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::drone::Stage;

/// Most instance ids in one `SetInstanceProtection` call.
pub const MAX_IDS_PER_CALL: usize = 50;

/// The lifecycle state in which Auto Scaling accepts a protection change.
const IN_SERVICE: &str = "InService";

/// One instance of a named group, as Auto Scaling and EC2 describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// The Auto Scaling group it belongs to.
    pub group: String,
    /// `InService`, `Pending`, `Terminating`, ...
    pub lifecycle_state: String,
    /// `ProtectedFromScaleIn`.
    pub protected: bool,
    /// EC2's private DNS name (`ip-10-0-1-23.ec2.internal`), once looked up.
    pub private_dns_name: Option<String>,
    /// EC2's private IPv4 address, once looked up.
    pub private_ip: Option<String>,
    /// The value of the tag named by `SCALE_IN_PROTECTION_NAME_TAG`.
    pub name_tag: Option<String>,
}

/// The runner names of every running or accepted stage: the runners that
/// must not be terminated now.
pub fn busy_runners(stages: &[Stage]) -> BTreeSet<String> {
    stages
        .iter()
        .filter(|s| s.status == "running" || (s.status == "pending" && !s.machine.is_empty()))
        .filter(|s| !s.machine.trim().is_empty())
        .map(|s| s.machine.trim().to_string())
        .collect()
}

/// Host names are case-blind and may end with the root's dot.
fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `name` has the shape of an EC2 instance id.
pub fn is_instance_id(name: &str) -> bool {
    let name = name.trim();
    name.len() >= 10
        && name.len() <= 19
        && name.starts_with("i-")
        && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every name a runner on `instance` may go by: the instance id, the
/// private DNS name and its first label (the short host name, which is
/// what `hostname` prints), the private IP address, and the tag's value.
fn names_of(instance: &Instance) -> Vec<String> {
    let mut names = vec![normalise(&instance.id)];
    if let Some(dns) = instance.private_dns_name.as_deref().map(normalise).filter(|d| !d.is_empty())
    {
        if let Some((short, _)) = dns.split_once('.') {
            names.push(short.to_string());
        }
        names.push(dns);
    }
    names.extend(instance.private_ip.as_deref().map(normalise).filter(|ip| !ip.is_empty()));
    names.extend(instance.name_tag.as_deref().map(normalise).filter(|tag| !tag.is_empty()));
    names
}

/// Which instances each busy runner name stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Instance index (into the slice given) to the runner names on it.
    pub busy: BTreeMap<usize, Vec<String>>,
    /// Busy runner names that match no instance of the named groups.
    pub unmatched: Vec<String>,
}

/// Maps busy runner names to instances. A name matches an instance by its
/// id, private DNS name, short host name, private IP or tag value; a host
/// name whose first label is an instance id (EC2's resource-name host
/// names, `i-0abc.ec2.internal`) matches that instance. A name that fits
/// several instances (a tag value used twice) marks them all busy: sparing
/// an idle instance costs little, terminating a build costs a build.
pub fn match_runners(busy: &BTreeSet<String>, instances: &[Instance]) -> Matches {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, instance) in instances.iter().enumerate() {
        for name in names_of(instance) {
            let slot = index.entry(name).or_default();
            if !slot.contains(&i) {
                slot.push(i);
            }
        }
    }
    let mut matches = Matches::default();
    for runner in busy {
        let name = normalise(runner);
        let first_label = name.split('.').next().unwrap_or_default();
        let found = index.get(&name).or_else(|| {
            (first_label != name && is_instance_id(first_label))
                .then(|| index.get(first_label))
                .flatten()
        });
        match found {
            Some(found) => {
                for &i in found {
                    matches.busy.entry(i).or_default().push(runner.clone());
                }
            }
            None => matches.unmatched.push(runner.clone()),
        }
    }
    matches
}

/// Whether looking up the EC2 side (host names, IPs, tags) can match more
/// runners than the instance ids already do.
pub fn needs_ec2(busy: &BTreeSet<String>, instances: &[Instance], name_tag: bool) -> bool {
    name_tag || !match_runners(busy, instances).unmatched.is_empty()
}

/// Why an instance's protection changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A build runs on it (or was accepted by its runner).
    Busy {
        /// The runner names that matched it.
        runners: Vec<String>,
    },
    /// No build for at least the grace period.
    Idle {
        /// For how long, as far as this process has seen.
        for_at_least: Duration,
    },
}

/// One instance whose protection flag must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The instance.
    pub instance: String,
    /// Its group.
    pub group: String,
    /// The new `ProtectedFromScaleIn`.
    pub protect: bool,
    /// Why.
    pub reason: Reason,
}

/// A busy instance whose protection cannot be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotectable {
    /// The instance.
    pub instance: String,
    /// Its group.
    pub group: String,
    /// Its lifecycle state, in which Auto Scaling refuses the change.
    pub lifecycle_state: String,
    /// The runner names on it.
    pub runners: Vec<String>,
}

/// What one poll must change, and what it found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectionPlan {
    /// Changes, ordered by group, then instance.
    pub changes: Vec<Change>,
    /// Busy runner names that match no instance of the named groups.
    pub unmatched: Vec<String>,
    /// Busy instances that are not in service (terminating, in standby).
    pub unprotectable: Vec<Unprotectable>,
    /// Instances of the named groups.
    pub instances: usize,
    /// Of these, the busy ones.
    pub busy: usize,
    /// Idle instances left protected because the grace period is not over.
    pub in_grace: usize,
}

/// Since when each instance has been seen idle: the only memory kept
/// between polls. A process that starts (a Lambda cold start) has seen
/// nothing, so the grace period of every idle instance starts again:
/// protection can come off later than it would have, never sooner.
#[derive(Debug, Clone, Default)]
pub struct IdleClock {
    idle_since: HashMap<String, Instant>,
}

/// How much the instances say about which runner is where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Ids, host names, IPs and tags: every way a runner may be named.
    Full,
    /// Only the ids (EC2 could not be read): an instance that matches no
    /// runner may still hold one named by host name, so it is not known to
    /// be idle.
    IdsOnly,
}

/// Plans the changes of one poll at `now`: busy instances are protected
/// and idle ones unprotected once idle for `grace`. Only in-service
/// instances can change; nothing outside `instances` is ever touched.
pub fn plan(
    busy: &BTreeSet<String>,
    instances: &[Instance],
    clock: &mut IdleClock,
    now: Instant,
    grace: Duration,
    sight: Sight,
) -> ProtectionPlan {
    let matches = match_runners(busy, instances);
    let mut plan = ProtectionPlan {
        unmatched: matches.unmatched,
        instances: instances.len(),
        busy: matches.busy.len(),
        ..ProtectionPlan::default()
    };
    for (i, instance) in instances.iter().enumerate() {
        let in_service = instance.lifecycle_state == IN_SERVICE;
        if let Some(runners) = matches.busy.get(&i) {
            clock.idle_since.remove(&instance.id);
            if instance.protected {
                continue;
            }
            if in_service {
                plan.changes.push(Change {
                    instance: instance.id.clone(),
                    group: instance.group.clone(),
                    protect: true,
                    reason: Reason::Busy { runners: runners.clone() },
                });
            } else {
                plan.unprotectable.push(Unprotectable {
                    instance: instance.id.clone(),
                    group: instance.group.clone(),
                    lifecycle_state: instance.lifecycle_state.clone(),
                    runners: runners.clone(),
                });
            }
            continue;
        }
        if sight == Sight::IdsOnly {
            // Not known to be idle: no release, and its idle time starts
            // again once it can be seen.
            clock.idle_since.remove(&instance.id);
            continue;
        }
        let since = *clock.idle_since.entry(instance.id.clone()).or_insert(now);
        if !instance.protected || !in_service {
            continue;
        }
        let idle = now.saturating_duration_since(since);
        if idle >= grace {
            plan.changes.push(Change {
                instance: instance.id.clone(),
                group: instance.group.clone(),
                protect: false,
                reason: Reason::Idle { for_at_least: idle },
            });
        } else {
            plan.in_grace += 1;
        }
    }
    // Instances that left the groups are forgotten.
    let present: BTreeSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    clock.idle_since.retain(|id, _| present.contains(id.as_str()));
    plan.changes.sort_by(|a, b| (&a.group, &a.instance).cmp(&(&b.group, &b.instance)));
    plan
}

/// One `SetInstanceProtection` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The group (the API takes one per call).
    pub group: String,
    /// The new flag.
    pub protect: bool,
    /// At most [`MAX_IDS_PER_CALL`] instances of that group.
    pub instances: Vec<String>,
}

/// The fewest calls that make the changes: one per group and flag, split
/// at [`MAX_IDS_PER_CALL`] instances. Protecting comes first: when time runs
/// short, sparing a build matters more than letting a group shrink.
pub fn calls(changes: &[Change]) -> Vec<Call> {
    let mut by_target: BTreeMap<(&str, bool), Vec<String>> = BTreeMap::new();
    for change in changes {
        by_target
            .entry((change.group.as_str(), change.protect))
            .or_default()
            .push(change.instance.clone());
    }
    let mut out = Vec::new();
    for ((group, protect), mut instances) in by_target {
        instances.sort();
        instances.dedup();
        for chunk in instances.chunks(MAX_IDS_PER_CALL) {
            out.push(Call { group: group.to_string(), protect, instances: chunk.to_vec() });
        }
    }
    out.sort_by_key(|call| !call.protect);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, group: &str, protected: bool) -> Instance {
        Instance {
            id: id.into(),
            group: group.into(),
            lifecycle_state: IN_SERVICE.into(),
            protected,
            ..Instance::default()
        }
    }

    fn with_host(mut i: Instance, dns: &str, ip: &str) -> Instance {
        i.private_dns_name = Some(dns.into());
        i.private_ip = Some(ip.into());
        i
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn busy_runners_are_those_of_running_and_accepted_stages() {
        let stage = |id, status: &str, machine: &str| Stage {
            id,
            status: status.into(),
            machine: machine.into(),
            ..Stage::default()
        };
        let stages = [
            stage(1, "running", "i-0aaaaaaaaaaaaaaa1"),
            stage(2, "pending", "ip-10-0-0-7"), // accepted
            stage(3, "pending", ""),            // waiting for a runner
            stage(4, "success", "done-runner"), // finished
            stage(5, "running", " i-0aaaaaaaaaaaaaaa1 "),
            stage(6, "running", ""), // a server that leaves it out
        ];
        assert_eq!(busy_runners(&stages), names(&["i-0aaaaaaaaaaaaaaa1", "ip-10-0-0-7"]));
    }

    #[test]
    fn runner_names_map_to_instances() {
        let mut tagged = instance("i-0ccccccccccccccc3", "asg-b", false);
        tagged.name_tag = Some("gpu-runner-7".into());
        let instances = vec![
            with_host(
                instance("i-0aaaaaaaaaaaaaaa1", "asg-a", false),
                "ip-10-0-1-23.us-west-2.compute.internal",
                "10.0.1.23",
            ),
            with_host(
                instance("i-0bbbbbbbbbbbbbbb2", "asg-a", true),
                "i-0bbbbbbbbbbbbbbb2.us-west-2.compute.internal",
                "10.0.1.24",
            ),
            tagged,
        ];
        // (runner name, the instances it stands for; none = unmatched)
        let cases: &[(&str, &[usize])] = &[
            ("i-0aaaaaaaaaaaaaaa1", &[0]),                            // the id
            ("I-0AAAAAAAAAAAAAAA1", &[0]),                            // any case
            ("ip-10-0-1-23.us-west-2.compute.internal", &[0]),        // private DNS name
            ("ip-10-0-1-23.us-west-2.compute.internal.", &[0]),       // with the root's dot
            ("ip-10-0-1-23", &[0]),                                   // short host name
            ("10.0.1.23", &[0]),                                      // private IP
            ("i-0bbbbbbbbbbbbbbb2.us-west-2.compute.internal", &[1]), // resource name
            ("i-0bbbbbbbbbbbbbbb2.anything.else", &[1]),              // id as first label
            ("gpu-runner-7", &[2]),                                   // tag value
            ("i-0ddddddddddddddd4", &[]), // an instance that left the groups
            ("ip-10-0-1-99", &[]),        // a host of no named group
            ("3f2a9c1b7d0e", &[]),        // a container's host name
            ("10.0.1.2", &[]),            // a prefix of an IP is not the IP
            ("ip-10-0-1", &[]),
        ];
        for (runner, expected) in cases {
            let matches = match_runners(&names(&[runner]), &instances);
            let found: Vec<usize> = matches.busy.keys().copied().collect();
            assert_eq!(&found, expected, "{runner}");
            assert_eq!(matches.unmatched.is_empty(), !expected.is_empty(), "{runner}");
        }
        // Many at once: each instance lists every name that matched it.
        let matches = match_runners(&names(&["10.0.1.23", "i-0aaaaaaaaaaaaaaa1", "x"]), &instances);
        assert_eq!(
            matches.busy,
            BTreeMap::from([(0, vec!["10.0.1.23".to_string(), "i-0aaaaaaaaaaaaaaa1".to_string()])])
        );
        assert_eq!(matches.unmatched, ["x"]);
    }

    #[test]
    fn a_name_that_fits_two_instances_spares_both() {
        let mut a = instance("i-0aaaaaaaaaaaaaaa1", "asg-a", false);
        let mut b = instance("i-0bbbbbbbbbbbbbbb2", "asg-b", false);
        a.name_tag = Some("runner".into());
        b.name_tag = Some("runner".into());
        let plan = plan(
            &names(&["runner"]),
            &[a, b],
            &mut IdleClock::default(),
            Instant::now(),
            Duration::from_secs(120),
            Sight::Full,
        );
        let protected: Vec<&str> = plan.changes.iter().map(|c| c.instance.as_str()).collect();
        assert_eq!(protected, ["i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"]);
    }

    #[test]
    fn ec2_is_asked_only_when_ids_do_not_match_every_runner() {
        let instances = [instance("i-0aaaaaaaaaaaaaaa1", "asg-a", false)];
        assert!(!needs_ec2(&names(&["i-0aaaaaaaaaaaaaaa1"]), &instances, false));
        assert!(!needs_ec2(&names(&[]), &instances, false));
        assert!(needs_ec2(&names(&["ip-10-0-1-23"]), &instances, false));
        assert!(needs_ec2(&names(&["i-0aaaaaaaaaaaaaaa1"]), &instances, true));
    }

    #[test]
    fn instance_ids_are_recognised_by_shape() {
        for id in ["i-0123abcd", "i-0123456789abcdef0"] {
            assert!(is_instance_id(id), "{id}");
        }
        for name in ["i-", "i-xyz12345", "ip-10-0-0-1", "i-0123456789abcdef01", "runner-1"] {
            assert!(!is_instance_id(name), "{name}");
        }
    }

    #[test]
    fn only_in_service_instances_change_and_busy_ones_elsewhere_are_reported() {
        let mut leaving = instance("i-0aaaaaaaaaaaaaaa1", "asg-a", false);
        leaving.lifecycle_state = "Terminating".into();
        let mut standby = instance("i-0bbbbbbbbbbbbbbb2", "asg-a", true);
        standby.lifecycle_state = "Standby".into();
        let now = Instant::now();
        let mut clock = IdleClock::default();
        let plan = plan(
            &names(&["i-0aaaaaaaaaaaaaaa1"]),
            &[leaving, standby],
            &mut clock,
            now,
            Duration::ZERO,
            Sight::Full,
        );
        assert!(plan.changes.is_empty(), "{plan:?}");
        assert_eq!(plan.unprotectable.len(), 1);
        assert_eq!(plan.unprotectable[0].lifecycle_state, "Terminating");
        assert_eq!(plan.busy, 1);
    }

    #[test]
    fn calls_are_per_group_and_flag_at_most_fifty_instances_protecting_first() {
        let change = |i: usize, group: &str, protect: bool| Change {
            instance: format!("i-{i:08x}"),
            group: group.into(),
            protect,
            reason: Reason::Busy { runners: Vec::new() },
        };
        let mut changes: Vec<Change> = (0..120).map(|i| change(i, "asg-a", true)).collect();
        changes.extend((200..203).map(|i| change(i, "asg-a", false)));
        changes.push(change(300, "asg-b", true));
        let calls = calls(&changes);
        let shape: Vec<(&str, bool, usize)> =
            calls.iter().map(|c| (c.group.as_str(), c.protect, c.instances.len())).collect();
        assert_eq!(
            shape,
            [
                ("asg-a", true, 50),
                ("asg-a", true, 50),
                ("asg-a", true, 20),
                ("asg-b", true, 1),
                ("asg-a", false, 3)
            ]
        );
        let all: BTreeSet<&String> = calls.iter().flat_map(|c| &c.instances).collect();
        assert_eq!(all.len(), 124, "every change is in exactly one call");
        assert!(super::calls(&[]).is_empty());
    }

    /// A fleet over a sequence of polls, with protection applied as planned.
    struct Fleet {
        instances: Vec<Instance>,
        clock: IdleClock,
        /// When each instance was last busy (or first seen).
        last_busy: HashMap<String, Instant>,
        start: Instant,
        grace: Duration,
        calls: Vec<usize>,
    }

    impl Fleet {
        fn new(n: usize, grace: Duration) -> Fleet {
            let start = Instant::now();
            let instances: Vec<Instance> = (0..n)
                .map(|i| {
                    let mut instance = instance(&format!("i-{:017x}", i + 1), "workers", false);
                    // Half the runners go by their host name.
                    if i % 2 == 1 {
                        instance.private_dns_name = Some(format!("ip-10-0-0-{i}.ec2.internal"));
                    }
                    instance
                })
                .collect();
            let last_busy = instances.iter().map(|i| (i.id.clone(), start)).collect();
            Fleet {
                instances,
                clock: IdleClock::default(),
                last_busy,
                start,
                grace,
                calls: Vec::new(),
            }
        }

        fn runner(&self, i: usize) -> String {
            if i % 2 == 1 { format!("ip-10-0-0-{i}") } else { self.instances[i].id.clone() }
        }

        /// One poll at `at` seconds with builds on `busy` (instance indexes)
        /// and `ghosts` (runners that died with their build still running).
        fn poll(&mut self, at: u64, busy: &[usize], ghosts: &[&str]) -> ProtectionPlan {
            let now = self.start + Duration::from_secs(at);
            let mut runners: BTreeSet<String> = busy.iter().map(|&i| self.runner(i)).collect();
            runners.extend(ghosts.iter().map(|g| g.to_string()));
            let plan =
                plan(&runners, &self.instances, &mut self.clock, now, self.grace, Sight::Full);
            let calls = calls(&plan.changes);
            self.calls.push(calls.len());
            for call in &calls {
                for id in &call.instances {
                    let instance = self.instances.iter_mut().find(|i| &i.id == id).unwrap();
                    assert_eq!(instance.group, call.group);
                    if !call.protect {
                        let idle = now - self.last_busy[id];
                        assert!(idle >= self.grace, "{id} unprotected after {idle:?} idle");
                    }
                    instance.protected = call.protect;
                }
            }
            for &i in busy {
                self.last_busy.insert(self.instances[i].id.clone(), now);
                assert!(self.instances[i].protected, "busy {} left unprotected", self.runner(i));
            }
            plan
        }

        fn protected(&self) -> Vec<usize> {
            (0..self.instances.len()).filter(|&i| self.instances[i].protected).collect()
        }
    }

    #[test]
    fn over_a_run_of_polls_busy_instances_stay_protected_and_idle_ones_go_after_the_grace() {
        let grace = Duration::from_secs(120);
        let mut fleet = Fleet::new(6, grace);
        // Builds start on 0, 1 and 2.
        fleet.poll(0, &[0, 1, 2], &[]);
        assert_eq!(fleet.protected(), [0, 1, 2]);
        // Nothing changes: no call at all.
        fleet.poll(60, &[0, 1, 2], &[]);
        assert_eq!(fleet.calls[1], 0);
        // 1 finishes; it stays protected through the grace period...
        let plan = fleet.poll(120, &[0, 2], &[]);
        assert_eq!(plan.in_grace, 1);
        fleet.poll(180, &[0, 2], &[]);
        assert_eq!(fleet.protected(), [0, 1, 2]);
        // ...and is unprotected once idle for two minutes.
        let plan = fleet.poll(240, &[0, 2], &[]);
        assert_eq!(fleet.protected(), [0, 2]);
        assert!(
            matches!(plan.changes[0].reason, Reason::Idle { for_at_least } if for_at_least == grace)
        );
        // A runner between two builds never loses its protection.
        fleet.poll(300, &[2], &[]);
        fleet.poll(360, &[0, 2], &[]);
        fleet.poll(480, &[0, 2], &[]);
        assert_eq!(fleet.protected(), [0, 2]);
        // The runner on 3 dies with its build "running" in Drone; the
        // instance is gone from the group. Its name is reported, nothing
        // else changes.
        fleet.instances.remove(3);
        let plan = fleet.poll(540, &[0, 2], &["ip-10-0-0-3"]);
        assert_eq!(plan.unmatched, ["ip-10-0-0-3"]);
        assert!(plan.changes.is_empty());
        assert_eq!(fleet.clock.idle_since.len(), 3, "the departed instance is forgotten");
        // Everything finishes: after the grace, nothing is protected.
        fleet.poll(600, &[], &[]);
        fleet.poll(720, &[], &[]);
        assert!(fleet.protected().is_empty());
        // Idle and steady: no more calls.
        fleet.poll(780, &[], &[]);
        assert_eq!(fleet.calls.last(), Some(&0));
    }

    #[test]
    fn a_steady_fleet_of_fifty_busy_and_fifty_idle_makes_no_call() {
        let mut fleet = Fleet::new(100, Duration::from_secs(120));
        let busy: Vec<usize> = (0..50).collect();
        fleet.poll(0, &busy, &[]);
        assert_eq!(fleet.calls, [1], "50 instances fit in one call");
        for minute in 1..=10 {
            let plan = fleet.poll(minute * 60, &busy, &[]);
            assert!(plan.changes.is_empty());
        }
        assert_eq!(fleet.calls.iter().sum::<usize>(), 1);
        assert_eq!(fleet.protected(), busy);
    }

    #[test]
    fn a_new_process_starts_every_grace_period_again() {
        // Instances protected at launch, seen idle by a process that just
        // started: none is unprotected before the grace period has passed
        // in this process's own sight.
        let grace = Duration::from_secs(120);
        let instances: Vec<Instance> =
            (1..=3).map(|i| instance(&format!("i-{i:017x}"), "workers", true)).collect();
        let start = Instant::now();
        let mut clock = IdleClock::default();
        let first = plan(&names(&[]), &instances, &mut clock, start, grace, Sight::Full);
        assert!(first.changes.is_empty());
        assert_eq!(first.in_grace, 3);
        let later = plan(&names(&[]), &instances, &mut clock, start + grace, grace, Sight::Full);
        assert_eq!(later.changes.len(), 3);
        assert!(later.changes.iter().all(|c| !c.protect));
    }

    #[test]
    fn without_ec2_nothing_is_released_and_idle_time_starts_again() {
        let grace = Duration::from_secs(60);
        let mut host_named = Instance {
            id: "i-0aaaaaaaaaaaaaaa1".into(),
            group: "w".into(),
            lifecycle_state: "InService".into(),
            protected: true,
            ..Instance::default()
        };
        let by_id =
            Instance { id: "i-0bbbbbbbbbbbbbbb2".into(), protected: false, ..host_named.clone() };
        let start = Instant::now();
        let mut clock = IdleClock::default();
        let busy: BTreeSet<String> =
            ["i-0bbbbbbbbbbbbbbb2".to_string(), "ip-10-0-0-1".to_string()].into();
        // EC2 is down: the runner named by host name cannot be placed. The
        // instance named by id is still protected; the other is not released,
        // however long it has looked idle.
        for minute in 0..5 {
            let at = start + Duration::from_secs(60 * minute);
            let plan = plan(
                &busy,
                &[host_named.clone(), by_id.clone()],
                &mut clock,
                at,
                grace,
                Sight::IdsOnly,
            );
            assert_eq!(plan.changes.len(), 1, "{plan:?}");
            assert!(plan.changes[0].protect && plan.changes[0].instance == by_id.id);
        }
        // EC2 answers again and the build has finished: the grace period
        // starts now, not when EC2 went down.
        host_named.private_dns_name = Some("ip-10-0-0-1.ec2.internal".into());
        let back = start + Duration::from_secs(300);
        let idle: BTreeSet<String> = BTreeSet::new();
        let plan_now = plan(&idle, &[host_named.clone()], &mut clock, back, grace, Sight::Full);
        assert!(plan_now.changes.is_empty(), "{plan_now:?}");
        let later = plan(&idle, &[host_named], &mut clock, back + grace, grace, Sight::Full);
        assert_eq!(later.changes.len(), 1);
    }
}
