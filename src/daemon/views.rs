//! Answers to the read-only requests ([`crate::protocol::answers`]). They are
//! answered from the engine's published [`Snapshot`], on a blocking thread
//! of their own, and the large ones are written as they are produced
//! ([`Lazy`]): a 100,000-rule answer is never held whole.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::engine::{Applied, Snapshot};
use super::readiness;
use crate::compile::{default_rule_comment, Compiled, TABLE};
use crate::compile::{keyword_sets, location};
use crate::location::Judgements;
use crate::net::{format_addr_range, icmp_type_name, protocol_name};
use crate::nft::{self, Counter, NO_OWNER};
use crate::policy::values::{format_address, Keyword};
use crate::policy::{Direction, Policy, ProfileKind, Rule, Sourced};
use crate::protocol::answers::{
    DefaultCount, DetectView, Detection, Family, GroupConnView, GroupView, HostInterface, IsolationState, KeywordSet,
    OnOff, PolicyView, ProfileSettings, ProfileState, Profiles, RuleView, Sas, SetElement, Setting, SettingsView,
    State, CORE_NETWORKING,
};

/// A sequence serialized as its iterator yields it, one element at a time
/// (and only once: the iterator is used up).
pub(super) struct Lazy<I>(RefCell<Option<I>>);

impl<I> Lazy<I> {
    pub fn new(items: I) -> Self {
        Lazy(RefCell::new(Some(items)))
    }
}

impl<I: Iterator<Item = T>, T: Serialize> Serialize for Lazy<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.borrow_mut().take().into_iter().flatten())
    }
}

/// Per-rule counters (summed over the rule's set elements, found by their comment)
/// and per-profile-default counters (found by the default rule's comment).
#[derive(Default)]
pub(super) struct Counters {
    pub rules: HashMap<u32, Counter>,
    pub defaults: HashMap<String, Counter>,
}

impl Counters {
    pub fn rule(&self, index: usize) -> Counter {
        u32::try_from(index).ok().and_then(|i| self.rules.get(&i)).copied().unwrap_or_default()
    }

    pub fn profile_default(&self, direction: Direction, profile: ProfileKind) -> Counter {
        self.defaults.get(&default_rule_comment(direction, profile)).copied().unwrap_or_default()
    }
}

/// The kernel's counters of the applied table: the rules' from a netlink dump
/// of each set whose elements belong to rules, the defaults' from a listing
/// without set elements.
pub(super) fn counters(compiled: &Compiled) -> Result<Counters, String> {
    let mut c = Counters::default();
    read_defaults(&mut c)?;
    let table = &compiled.table;
    for set in table.sets.iter().filter(|s| s.elems.iter().any(|e| e.tag != NO_OWNER)) {
        nft::add_set_counters(&table.name, &set.name, &mut c.rules)
            .map_err(|e| format!("cannot read the counters of set {}: {e}", set.name))?;
    }
    Ok(c)
}

/// The counters of the rules with a comment (the profiles' defaults), from a
/// listing of the table without set elements.
fn read_defaults(c: &mut Counters) -> Result<(), String> {
    let listing = nft::list_table(TABLE, true).map_err(|e| format!("cannot read the table: {e}"))?;
    let counter = |v: &Value| (v["packets"].as_u64().unwrap_or(0), v["bytes"].as_u64().unwrap_or(0));
    for obj in listing.iter().flat_map(|l| l["nftables"].as_array()).flatten() {
        if let Some(comment) = obj["rule"]["comment"].as_str() {
            let stmt = obj["rule"]["expr"].as_array().into_iter().flatten().find(|s| s.get("counter").is_some());
            if let Some(s) = stmt {
                c.defaults.insert(comment.to_string(), counter(&s["counter"]));
            }
        }
    }
    Ok(())
}

fn setting<T: Clone>(s: &Sourced<T>) -> Setting<T> {
    Setting { value: s.value.clone(), from: s.from.as_ref().map(ToString::to_string) }
}

/// A rule as `show rules` and `show policy` print it, without counters.
pub fn rule_view(rule: &Rule) -> RuleView<'_> {
    let ports = |l: &[crate::net::PortRange]| -> Vec<String> {
        l.iter().map(|p| if p.0 == p.1 { p.0.to_string() } else { format!("{}-{}", p.0, p.1) }).collect()
    };
    let proto = rule.protocol.unwrap_or(0);
    RuleView {
        name: Cow::Borrowed(&rule.name),
        source: rule.place.to_string(),
        direction: rule.direction,
        action: rule.action,
        enabled: rule.enabled,
        protocol: protocol_name(rule.protocol),
        local_ports: ports(&rule.local_ports),
        remote_ports: ports(&rule.remote_ports),
        remote_addresses: rule.remote_addresses.iter().map(format_address).collect(),
        local_addresses: rule.local_addresses.iter().map(format_address).collect(),
        interfaces: rule.interfaces.iter().map(|p| Cow::Borrowed(p.0.as_str())).collect(),
        profiles: Cow::Borrowed(&rule.profiles),
        icmp_types: rule.icmp_types.iter().map(|&t| icmp_type_name(proto, t)).collect(),
        services: Cow::Borrowed(&rule.services),
        group: rule.core.then_some(Cow::Borrowed(CORE_NETWORKING)),
        users: Cow::Borrowed(&rule.users),
        units: Cow::Borrowed(&rule.units),
        remote_groups: Cow::Borrowed(&rule.remote_groups),
        require_secure: rule.require_secure,
        log: rule.log,
        staged: rule.staged,
        packets: None,
        bytes: None,
    }
}

/// `show policy`: the merged policy, its rules written one at a time.
pub fn policy_view(policy: &Policy) -> PolicyView<impl Serialize + '_> {
    let profiles = policy
        .profiles
        .iter()
        .map(|p| ProfileSettings {
            profile: p.kind,
            interfaces: Setting {
                value: p.interfaces.value.iter().map(|i| i.0.clone()).collect(),
                from: p.interfaces.from.as_ref().map(ToString::to_string),
            },
            inbound: setting(&p.inbound),
            outbound: setting(&p.outbound),
            detect: p.detect.value.as_ref().map(|d| Setting {
                value: DetectView {
                    probes: d.probes.iter().map(ToString::to_string).collect(),
                    ca: d.ca.as_ref().map(setting),
                    pins: d.pins.iter().map(ToString::to_string).collect(),
                    interval_secs: d.interval.as_secs(),
                    timeout_ms: d.timeout.as_millis() as u64,
                },
                from: p.detect.from.as_ref().map(ToString::to_string),
            }),
        })
        .collect();
    let settings = &policy.settings;
    PolicyView {
        files: policy.files.clone(),
        fleet: policy.fleet.clone(),
        default: policy.default.clone(),
        profiles,
        settings: SettingsView {
            log_dropped: setting(&settings.log_dropped),
            core_networking: setting(&settings.core_networking),
            local_policy: setting(&settings.local_policy),
            ignored_dirs: settings.ignored_dirs.clone(),
        },
        groups: policy
            .groups
            .iter()
            .map(|g| GroupView { name: g.name.clone(), subject: g.subject.to_string(), place: g.place.to_string() })
            .collect(),
        group_connections: policy
            .group_connections
            .iter()
            .map(|c| GroupConnView { pattern: c.pattern.to_string(), reqid: c.reqid, groups: c.groups.clone() })
            .collect(),
        rules: Lazy::new(policy.rules.iter().map(rule_view)),
    }
}

/// `t` in RFC 3339 at the offset of `zone` (the host's local time for the
/// daemon, `/etc/localtime` or `TZ`), to the second: `2026-12-03T09:15:02+01:00`.
fn rfc3339(t: SystemTime, zone: &jiff::tz::TimeZone) -> Option<String> {
    let at = jiff::Timestamp::try_from(t).ok()?.to_zoned_datetime(zone.clone());
    Some(at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

/// `show state`; `isolation` is the event loop's part, `changing` how many
/// changes wait for the engine or are being made.
pub fn state(
    snapshot: &Snapshot,
    isolation: IsolationState,
    changing: usize,
    file_watch: crate::filewatch::Mode,
) -> Result<State, String> {
    // Terse: a 100,000-element table need not be listed to know it is there.
    let present = nft::table_exists(TABLE).map_err(|e| format!("cannot read the table: {e}"))?;
    let applied = snapshot.applied.as_ref();
    let table = applied.map(|a| &a.compiled.table);
    Ok(State {
        table: format!("inet {TABLE}"),
        present,
        generation: snapshot.generation,
        applied_at: applied.and_then(|a| rfc3339(a.at, &jiff::tz::TimeZone::system())),
        last_apply_ms: snapshot.last_apply.as_secs_f64() * 1000.0,
        policy_dirs: snapshot.dirs.policy.clone(),
        services_dirs: snapshot.dirs.services.clone(),
        files: applied.map(|a| a.policy.files.clone()).unwrap_or_default(),
        ignored_dirs: applied.map(|a| a.policy.settings.ignored_dirs.clone()).unwrap_or_default(),
        rules: applied.map_or(0, |a| a.policy.rules.len()),
        enabled_rules: applied.map_or(0, |a| a.policy.rules.iter().filter(|r| r.enabled).count()),
        sets: table.map_or(0, |t| t.sets.len()),
        elements: table.map_or(0, |t| t.element_count()),
        chains: table.map_or(0, |t| t.chains.len()),
        nft_rules: table.map_or(0, |t| t.rule_count()),
        confirm_pending_secs: snapshot
            .confirm_deadline
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs()),
        last_error: snapshot.last_error.clone(),
        isolation,
        changes_in_progress: changing,
        file_watch,
    })
}

/// `show rules`: every rule with its counters, written one at a time.
pub fn rules(snapshot: &Snapshot) -> Result<impl Serialize + '_, String> {
    let applied = snapshot.applied.as_deref();
    let counters = applied.map(|a| counters(&a.compiled)).transpose()?.unwrap_or_default();
    Ok(Lazy::new(applied.into_iter().flat_map(|a| a.policy.rules.iter().enumerate()).map(move |(i, r)| {
        let (packets, bytes) = counters.rule(i);
        RuleView { packets: Some(packets), bytes: Some(bytes), ..rule_view(r) }
    })))
}

/// The host's interfaces (in the daemon's network namespace), their profile
/// as the table in force decides it, and detection's view of them.
pub(super) fn host_interfaces(applied: &Applied, judged: &Judgements) -> Vec<HostInterface> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    let zone = jiff::tz::TimeZone::system();
    let at = |t: Option<SystemTime>| t.and_then(|t| rfc3339(t, &zone));
    names
        .into_iter()
        .map(|n| {
            let (profile, source) = location::profile_of(&applied.policy, &applied.compiled, &n);
            let detection = judged.get(&n).map(|j| Detection {
                state: j.state,
                detected_at: at(j.decided_at),
                checked_at: at(j.checked_at),
                endpoint: j.endpoint.as_ref().map(|(e, _)| e.clone()),
                rtt_ms: j.endpoint.as_ref().map(|(_, rtt)| rtt.as_secs_f64() * 1000.0),
                last_error: j.last_error.clone(),
            });
            HostInterface { interface: n, profile, source, detection }
        })
        .collect()
}

/// `show profiles`: the defaults' counters need no set listed.
pub fn profiles(snapshot: &Snapshot) -> Result<Option<Profiles>, String> {
    let Some(applied) = &snapshot.applied else { return Ok(None) };
    let mut counters = Counters::default();
    read_defaults(&mut counters)?;
    let policy = &applied.policy;
    let profiles = ProfileKind::ALL
        .iter()
        .map(|&k| {
            let p = policy.profile(k);
            let default = |d: Direction| {
                let (packets, bytes) = counters.profile_default(d, k);
                DefaultCount { verdict: p.default_for(d), packets, bytes }
            };
            ProfileState {
                profile: k,
                interfaces: p.interfaces.value.iter().map(|i| i.0.clone()).collect(),
                inbound: default(Direction::In),
                outbound: default(Direction::Out),
            }
        })
        .collect();
    Ok(Some(Profiles { profiles, host_interfaces: host_interfaces(applied, &snapshot.location) }))
}

/// Every keyword's current values, where each came from, and its set.
pub fn sets(snapshot: &Snapshot) -> Vec<KeywordSet> {
    let in_table: Vec<String> = snapshot
        .applied
        .as_ref()
        .map_or_else(Vec::new, |a| a.compiled.dynamic.iter().map(|&(k, v4)| keyword_sets::name(k, v4)).collect());
    Keyword::ALL
        .iter()
        .flat_map(|&k| [true, false].map(|v4| (k, v4)))
        .map(|(keyword, v4)| {
            let set = keyword_sets::name(keyword, v4);
            let elements = snapshot
                .dynamic
                .entries(keyword, v4)
                .iter()
                .map(|e| SetElement {
                    interface: e.interface.clone(),
                    address: format_addr_range(&e.addresses),
                    source: e.source.clone(),
                })
                .collect();
            KeywordSet { keyword, family: Family::of(v4), in_table: in_table.contains(&set), set, elements }
        })
        .collect()
}

/// charon's SAs, each with the groups of its peer: those of its group
/// connection, or for an SA this host started, of the peer sets its address
/// is in; and the soft SAs (`soft`); and in `request` and `boundary`, the
/// readiness counts by source.
pub async fn sas(snapshot: Arc<Snapshot>, soft: Vec<super::first_contact::SoftSa>) -> Result<Sas, String> {
    let Some(policy) = snapshot.applied.as_ref().map(|a| &a.policy).filter(|p| p.isolation.enabled()) else {
        return Ok(Sas { isolation: OnOff::Off, ike_sas: Vec::new(), soft_sas: Vec::new(), clear_inbound: None });
    };
    let groups: BTreeMap<String, &std::collections::BTreeSet<String>> =
        policy.group_connections.iter().map(|g| (crate::ike::conn::group_conn_name(g), &g.groups)).collect();
    // `nft` lists the counting sets, on a blocking thread.
    let reader = Arc::clone(&snapshot);
    let clear_inbound = tokio::task::spawn_blocking(move || reader.readiness());
    let mut sas = crate::ike::list_sas(&crate::ike::socket_path(&policy.isolation)).await?;
    for sa in &mut sas {
        let addr = sa.remote_host.as_deref().and_then(|h| h.parse::<std::net::IpAddr>().ok());
        let started = sa.name == crate::ike::conn::CONN;
        sa.groups = match (started, addr) {
            (true, Some(addr)) => {
                snapshot.peers.iter().filter(|(_, a)| a.contains(&addr)).map(|(g, _)| g.clone()).collect()
            }
            _ => groups.get(&sa.name).map(|g| g.iter().cloned().collect()).unwrap_or_default(),
        };
    }
    let clear_inbound = clear_inbound.await.ok().flatten().as_deref().map(readiness::per_source);
    Ok(Sas { isolation: OnOff::On, ike_sas: sas, soft_sas: soft, clear_inbound })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use jiff::tz::{Offset, TimeZone};

    use super::{rfc3339, Lazy};

    #[test]
    fn a_lazy_sequence_is_the_json_of_its_whole_value() {
        assert_eq!(serde_json::to_string(&Lazy::new([1, 2].into_iter())).unwrap(), "[1,2]");
    }

    #[test]
    fn applied_at_is_rfc3339_at_the_zone_offset() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_276_418);
        assert_eq!(rfc3339(t, &TimeZone::UTC).as_deref(), Some("2026-12-03T05:40:18+00:00"));
        let cet = TimeZone::fixed(Offset::constant(1));
        assert_eq!(rfc3339(t, &cet).as_deref(), Some("2026-12-03T06:40:18+01:00"));
        let nst = TimeZone::fixed(Offset::from_seconds(-(3 * 3600 + 1800)).unwrap());
        assert_eq!(rfc3339(t, &nst).as_deref(), Some("2026-12-03T02:10:18-03:30"));
    }
}
