//! From raw files to one resultant policy: the meaning of every value, checked
//! with every problem reported, and the drop-in merge (profiles and settings field
//! by field, later files winning; rules and groups as unions with unique names).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::Spanned as S;

use super::diag::{Ctx, Diagnostic, Place};
use super::groups::{self, Pending};
use super::raw::{Direction, LocalPolicy, ProfileKind, RawFile, RawProfile, RawRule, Scalar};
use super::services::{Catalogue, ServicePorts};
use super::text::{self, Quoted};
use super::values::{self, Address};
use super::{DefaultLayer, Policy, Profile, Rule, Settings, Sourced};
use crate::net::PortRange;

const MAX_NAME_CHARS: usize = 100;

/// Folds files into one policy, one at a time, so that a file's raw form is
/// dropped as soon as it is merged (100,000 rules' raw forms are large).
pub(super) struct Merger<'c> {
    catalogue: &'c Catalogue,
    policy: Policy,
    names: HashMap<String, Place>,
    /// Where each profile's interface pattern was written, for overlap messages.
    pattern_places: HashMap<(ProfileKind, String), Place>,
    pending: Pending,
}

impl<'c> Merger<'c> {
    pub(super) fn new(catalogue: &'c Catalogue) -> Self {
        Merger {
            catalogue,
            policy: Policy {
                files: Vec::new(),
                default: DefaultLayer::Absent,
                profiles: ProfileKind::ALL.map(Profile::builtin),
                rules: Vec::new(),
                settings: Settings {
                    log_dropped: Sourced::default(false),
                    core_networking: Sourced::default(true),
                    local_policy: Sourced::default(LocalPolicy::Apply),
                    ignored_dirs: Vec::new(),
                },
                isolation: Default::default(),
                groups: Vec::new(),
                group_connections: Vec::new(),
                fleet: Default::default(),
            },
            names: HashMap::new(),
            pattern_places: HashMap::new(),
            pending: Pending::default(),
        }
    }

    pub(super) fn add(&mut self, file: &Arc<Path>, raw: &RawFile, diags: &mut Vec<Diagnostic>) {
        let policy = &mut self.policy;
        let mut cx = Ctx { file, diags };
        if let Some(v) = &raw.version {
            if v.value != 1 {
                cx.error(v, format!("version: {} is not supported (this ringfence reads version 1)", v.value));
            }
        }
        if let Some(p) = &raw.profiles {
            for (kind, profile) in
                [(ProfileKind::Domain, &p.domain), (ProfileKind::Private, &p.private), (ProfileKind::Public, &p.public)]
            {
                if let Some(profile) = profile {
                    merge_profile(&mut cx, &mut policy.profiles[kind as usize], profile, &mut self.pattern_places);
                }
            }
        }
        if let Some(log) = raw.settings.as_ref().and_then(|s| s.log_dropped.as_ref()) {
            policy.settings.log_dropped = Sourced { value: log.value.0, from: Some(cx.place(log)) };
        }
        if let Some(core) = raw.settings.as_ref().and_then(|s| s.core_networking.as_ref()) {
            policy.settings.core_networking = Sourced { value: core.value.0, from: Some(cx.place(core)) };
        }
        let local = raw.settings.as_ref().and_then(|s| s.local_policy.as_ref());
        if let Some(local) = local.filter(|_| policy.settings.local_policy.value == LocalPolicy::Apply) {
            policy.settings.local_policy = Sourced { value: local.value, from: Some(cx.place(local)) };
        }
        if let Some(iso) = &raw.isolation {
            super::isolation::merge(&mut cx, &mut policy.isolation, iso);
        }
        if let Some(g) = &raw.groups {
            groups::merge(&mut cx, &mut policy.groups, &mut self.pending, g);
        }
        super::stage::check_file(&mut cx, raw);
        for (i, raw_rule) in raw.rules.iter().enumerate() {
            let place = cx.place(raw_rule);
            let staged = super::stage::is_staged(&mut cx, i, raw.stage.as_ref(), &raw_rule.value);
            let Some((rule, name_at)) =
                validate_rule(&mut cx, i, &raw_rule.value, place, &mut self.pending, self.catalogue)
            else {
                continue;
            };
            let rule = Rule { staged, ..rule };
            if let Some(first) = self.names.get(&rule.name) {
                let m = format!("rules[{i}].name: {} is already the name of the rule at {first}", Quoted(&rule.name));
                cx.error(name_at, m);
            } else {
                self.names.insert(rule.name.clone(), rule.place.clone());
            }
            policy.rules.push(rule);
        }
    }

    /// Whether the merged settings keep the core networking group.
    pub(super) fn core_networking(&self) -> bool {
        self.policy.settings.core_networking.value
    }

    /// Adds the core networking rules (rules only: the file sets nothing else).
    /// Their names are their own: an administrator's rule may have the same.
    pub(super) fn add_core(&mut self, file: &Arc<Path>, raw: &RawFile, diags: &mut Vec<Diagnostic>) {
        let mut cx = Ctx { file, diags };
        for (i, raw_rule) in raw.rules.iter().enumerate() {
            let place = cx.place(raw_rule);
            if let Some((rule, _)) =
                validate_rule(&mut cx, i, &raw_rule.value, place, &mut self.pending, self.catalogue)
            {
                self.policy.rules.push(Rule { core: true, ..rule });
            }
        }
    }

    pub(super) fn finish(mut self, files: Vec<std::path::PathBuf>, diags: &mut Vec<Diagnostic>) -> Policy {
        check_profile_overlap(&self.policy.profiles, &self.pattern_places, diags);
        super::isolation::check(&self.policy.isolation, diags);
        let domain = &mut self.policy.profiles[ProfileKind::Domain as usize];
        super::location::resolve_ca(&mut domain.detect, &self.policy.isolation, diags);
        self.policy.group_connections = groups::check(&self.policy.groups, diags);
        self.pending.check(&self.policy.groups, &self.policy.isolation, diags);
        self.policy.files = files;
        self.policy.rules.shrink_to_fit();
        self.policy
    }
}

fn merge_profile(
    cx: &mut Ctx,
    profile: &mut Profile,
    raw: &S<RawProfile>,
    places: &mut HashMap<(ProfileKind, String), Place>,
) {
    let key = profile.kind.as_str();
    if let Some(ifs) = &raw.value.interfaces {
        for item in ifs.value.iter() {
            places.insert((profile.kind, item.value.clone()), cx.place(item));
        }
        let mut patterns = cx.list(&format!("profiles.{key}.interfaces"), &ifs.value, |s| values::parse_if_pattern(s));
        // A pattern inside another of the same profile adds nothing, and nftables
        // rejects overlapping elements of one interval map.
        let all = patterns.clone();
        patterns.retain(|p| {
            !all.iter().any(|q| {
                q != p && q.is_glob() && q.matches(p.stem()) && (!p.is_glob() || q.stem().len() < p.stem().len())
            })
        });
        profile.interfaces = Sourced { value: patterns, from: Some(cx.place(ifs)) };
    }
    if let Some(v) = &raw.value.inbound {
        profile.inbound = Sourced { value: v.value, from: Some(cx.place(v)) };
    }
    if let Some(v) = &raw.value.outbound {
        profile.outbound = Sourced { value: v.value, from: Some(cx.place(v)) };
    }
    if let Some(d) = &raw.value.detect {
        if profile.kind == ProfileKind::Domain {
            super::location::merge(cx, &mut profile.detect, d);
        } else {
            cx.error(
                d,
                format!(
                    "profiles.{key}.detect: only the domain profile is detected; the others are chosen by interfaces"
                ),
            );
        }
    }
}

/// An interface has exactly one profile, as a Windows network has one location.
fn check_profile_overlap(
    profiles: &[Profile; 3],
    places: &HashMap<(ProfileKind, String), Place>,
    diags: &mut Vec<Diagnostic>,
) {
    for (i, a) in profiles.iter().enumerate() {
        for b in &profiles[i + 1..] {
            for pa in &a.interfaces.value {
                if let Some(pb) = b.interfaces.value.iter().find(|pb| pa.overlaps(pb)) {
                    let (Some(at_a), Some(at_b)) =
                        (places.get(&(a.kind, pa.0.clone())), places.get(&(b.kind, pb.0.clone())))
                    else {
                        continue;
                    };
                    diags.push(Diagnostic::new(
                        at_b.clone(),
                        format!(
                            "profiles.{}.interfaces: {:?} overlaps {:?} of profile {} at {at_a}; an interface belongs to one profile",
                            b.kind.as_str(), pb.0, pa.0, a.kind.as_str()
                        ),
                    ));
                }
            }
        }
    }
}

/// The rule, and where its name is written; `None` if it lacks a required key.
fn validate_rule<'r>(
    cx: &mut Ctx,
    i: usize,
    r: &'r RawRule,
    place: Place,
    pending: &mut Pending,
    catalogue: &Catalogue,
) -> Option<(Rule, &'r S<String>)> {
    let at = |key: &str| format!("rules[{i}].{key}");
    let (Some(name_at), Some(direction), Some(action)) = (&r.name, &r.direction, &r.action) else {
        let missing: Vec<&str> =
            [("name", r.name.is_none()), ("direction", r.direction.is_none()), ("action", r.action.is_none())]
                .iter()
                .filter(|(_, m)| *m)
                .map(|(k, _)| *k)
                .collect();
        let m = format!("rules[{i}]: missing {} (every rule needs name, direction and action)", missing.join(" and "));
        cx.diags.push(Diagnostic::new(place, m));
        return None;
    };
    let name = name_at.value.trim_matches(' ').to_string();
    if let Err(m) = text::check_name(&name, "a rule name", MAX_NAME_CHARS) {
        cx.error(name_at, format!("{}: {m}", at("name")));
    }
    let direction = direction.value;
    let protocol = match &r.protocol {
        None => None,
        Some(p) => {
            let parsed = match &p.value {
                Scalar::Int(n) => {
                    u8::try_from(*n).map(Some).map_err(|_| format!("{n} is not a protocol number (0-255)"))
                }
                Scalar::Str(s) => values::parse_protocol(s),
            };
            parsed.unwrap_or_else(|m| {
                cx.error(p, format!("{}: {m}", at("protocol")));
                None
            })
        }
    };
    let ports = |cx: &mut Ctx, key: &str, list: &[S<Scalar>]| -> Vec<PortRange> {
        let parsed = cx.list(&at(key), list, |s| match s {
            Scalar::Int(n) => values::parse_port(*n).map(|p| PortRange(p, p)),
            Scalar::Str(s) => values::parse_port_range(s),
        });
        if let Some(first) = list.first() {
            if !protocol.is_some_and(crate::net::has_ports) {
                let m = format!(
                    "{}: ports need protocol tcp, udp, sctp, dccp or udplite (protocol is {})",
                    at(key),
                    crate::net::protocol_name(protocol)
                );
                cx.error(first, m);
            }
        }
        parsed
    };
    let local_ports = ports(cx, "local-ports", &r.local_ports);
    let remote_ports = ports(cx, "remote-ports", &r.remote_ports);
    let remote_addresses = cx.list(&at("remote-addresses"), &r.remote_addresses, |s| values::parse_address(s, false));
    let local_addresses = cx.list(&at("local-addresses"), &r.local_addresses, |s| values::parse_address(s, true));
    check_families(cx, name_at, &at(""), protocol, &remote_addresses, &local_addresses);

    let mut interfaces = cx.list(&at("interfaces"), &r.interfaces, |s| values::parse_if_pattern(s));
    if interfaces.iter().any(|p| p.stem().is_empty()) {
        interfaces.clear(); // "*" is every interface
    }
    let profiles = cx.list(&at("profiles"), &r.profiles, |p| Ok::<_, String>(*p));
    let icmp_types = match protocol {
        Some(p @ (crate::net::IPPROTO_ICMP | crate::net::IPPROTO_ICMPV6)) => {
            cx.list(&at("icmp-types"), &r.icmp_types, |s| match s {
                Scalar::Int(n) => {
                    u8::try_from(*n).map_err(|_| format!("{n} is not an {} type (0-255)", crate::net::icmp_family(p)))
                }
                Scalar::Str(s) => values::parse_icmp_type(p, s),
            })
        }
        _ => {
            if let Some(first) = r.icmp_types.first() {
                cx.error(
                    first,
                    format!(
                        "{}: icmp-types need protocol icmp or icmpv6 (protocol is {})",
                        at("icmp-types"),
                        crate::net::protocol_name(protocol)
                    ),
                );
            }
            Vec::new()
        }
    };
    let users = cx.list(&at("users"), &r.users, resolve_user);
    if let (Direction::In, Some(first)) = (direction, r.users.first()) {
        cx.error(
            first,
            format!("{}: users match the owner of a local socket, so they apply to direction out only", at("users")),
        );
    }
    let units = cx.list(&at("units"), &r.units, |s| super::units::parse_unit(s));
    let (services, service_ports) = rule_services(cx, &at("services"), r, catalogue);
    let (remote_groups, require_secure) = pending.rule(cx, i, r, direction, action.value);
    let rule = Rule {
        name,
        place,
        direction,
        action: action.value,
        protocol,
        local_ports,
        remote_ports,
        remote_addresses,
        local_addresses,
        interfaces,
        profiles,
        icmp_types,
        services,
        service_ports,
        users,
        units,
        remote_groups,
        require_secure,
        log: r.log.as_ref().is_some_and(|l| l.value.0),
        enabled: r.enabled.as_ref().is_none_or(|e| e.value.0),
        core: false,
        staged: false,
    };
    Some((rule, name_at))
}

/// The keys of `pairs` whose flag is set.
pub(super) fn keys_set<'k>(pairs: &[(&'k str, bool)]) -> Vec<&'k str> {
    pairs.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect()
}

/// The names of a rule's `services` and their ports merged per protocol. A
/// rule takes its protocols and ports from its services or from its own keys,
/// not both: which ports a mix would mean is not obvious.
fn rule_services(cx: &mut Ctx, key: &str, r: &RawRule, catalogue: &Catalogue) -> (Vec<String>, Vec<ServicePorts>) {
    let Some(first) = r.services.first() else { return (Vec::new(), Vec::new()) };
    let own = keys_set(&[
        ("protocol", r.protocol.is_some()),
        ("local-ports", !r.local_ports.is_empty()),
        ("remote-ports", !r.remote_ports.is_empty()),
        ("icmp-types", !r.icmp_types.is_empty()),
    ]);
    if !own.is_empty() {
        let m = format!(
            "{key}: a rule with services takes its protocols and ports from them; remove {} or make a second rule",
            own.join(" and ")
        );
        cx.error(first, m);
    }
    let names = cx.list(key, &r.services, |name| {
        catalogue.get(name.trim()).map(|s| s.name.clone()).ok_or_else(|| {
            let near: Vec<&str> = catalogue.0.keys().filter(|k| near(k, name)).map(String::as_str).collect();
            let hint = if near.is_empty() { String::new() } else { format!(" (did you mean {}?)", near.join(", ")) };
            format!("{} is not a known service{hint}; `ringfence show services` lists them", Quoted(name))
        })
    });
    let mut ports: Vec<ServicePorts> = Vec::new();
    for service in names.iter().filter_map(|n| catalogue.get(n)) {
        for entry in &service.ports {
            match ports.iter_mut().find(|p| p.protocol == entry.protocol) {
                // An entry without ports is the whole protocol, which covers every port.
                Some(p) if p.ports.is_empty() || entry.ports.is_empty() => p.ports.clear(),
                Some(p) => {
                    p.ports.extend(entry.ports.iter().filter(|r| !p.ports.contains(r)).copied().collect::<Vec<_>>())
                }
                None => ports.push(entry.clone()),
            }
        }
    }
    (names, ports)
}

/// Levenshtein distance, for "did you mean" (names are short).
/// Whether `a` is one edit from `b`. The lengths are compared first: the
/// distance costs the product of the lengths, and a name may be 1 MB long.
fn near(a: &str, b: &str) -> bool {
    a.chars().count().abs_diff(b.chars().count()) <= 1 && edit_distance(a, b) <= 1
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A rule must be able to match some packet: its addresses and protocol must
/// agree on IPv4 or IPv6.
fn check_families(
    cx: &mut Ctx,
    at_name: &S<String>,
    at: &str,
    protocol: Option<u8>,
    remote: &[Address],
    local: &[Address],
) {
    // (IPv4 possible, IPv6 possible, what limits it) for each constraint. A
    // keyword stands for addresses of both versions.
    let of_list = |key: &'static str, list: &[Address]| {
        let has = |v4: bool| {
            list.iter().any(|a| matches!(a, Address::Keyword(_)) || matches!(a, Address::Range(r) if r.is_v4() == v4))
        };
        (list.is_empty() || has(true), list.is_empty() || has(false), key)
    };
    let of_protocol = match protocol {
        Some(crate::net::IPPROTO_ICMP) => (true, false, "protocol icmp"),
        Some(crate::net::IPPROTO_ICMPV6) => (false, true, "protocol icmpv6"),
        _ => (true, true, "protocol"),
    };
    let limits = [of_list("remote-addresses", remote), of_list("local-addresses", local), of_protocol];
    if limits.iter().all(|l| l.0) || limits.iter().all(|l| l.1) {
        return;
    }
    let only =
        |v4: bool| limits.iter().filter(|l| l.0 == v4 && l.1 != v4).map(|l| l.2).collect::<Vec<_>>().join(" and ");
    let rule = at.trim_end_matches('.');
    cx.error(at_name, format!("{rule}: can never match: IPv4 only by {}, IPv6 only by {}", only(true), only(false)));
}

fn resolve_user(s: &Scalar) -> Result<u32, String> {
    match s {
        Scalar::Int(n) => u32::try_from(*n).map_err(|_| format!("{n} is not a user id")),
        Scalar::Str(s) if s.parse::<u32>().is_ok() => Ok(s.parse().unwrap_or_default()),
        Scalar::Str(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            Ok(None) => Err(format!("{} is not a user on this host", Quoted(name))),
            Err(e) => Err(format!("cannot look up user {}: {e}", Quoted(name))),
        },
    }
}
