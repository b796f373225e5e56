//! Which rule decides a packet: the same lookups, in the same order, over the same
//! set elements and reqids as the kernel's chains (both come from
//! `compile::Compiled`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::compile::location::Source;
use crate::compile::staged::Would;
use crate::compile::{isolation, keyword_sets, Compiled, DynMatch, Field, Gate, Group, Layer, Lookup};
use crate::net::{has_ports, IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::nft;
use crate::policy::groups::DnPattern;
use crate::policy::raw::IsolationMode;
use crate::policy::values::Keyword;
use crate::policy::{Action, Direction, Place, Policy, ProfileKind, Verdict};

/// A new connection's first packet, as seen from this host. A field left out
/// matches only rules that do not constrain it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Packet {
    pub protocol: u8,
    pub remote: Option<IpAddr>,
    pub local: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub local_port: Option<u16>,
    pub interface: Option<String>,
    pub icmp_type: Option<u8>,
    pub uid: Option<u32>,
    /// The systemd unit whose cgroup holds the local socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// It came over an IPsec SA (of a peer in no group unless `groups` says).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secure: bool,
    /// It came over the SA of a peer whose certificate puts it in these
    /// groups (and in any other its connection belongs to); implies `secure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Packet {
    /// A field's value as `set` holds it: a unit is the cgroup id the set
    /// has for it (none while the unit is stopped), as the kernel matches.
    fn field_in(&self, field: Field, set: &nft::Set) -> Option<u128> {
        if field != Field::Unit {
            return self.field(field);
        }
        let name = self.unit.as_deref()?;
        let mut running = set.cgroups.iter().filter(|(_, path)| path.rsplit('/').next() == Some(name));
        running.next().map(|(&id, _)| id as u128)
    }

    fn field(&self, field: Field) -> Option<u128> {
        let v4 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(a)) => Some(u32::from(a) as u128),
            _ => None,
        };
        let v6 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V6(a)) => Some(u128::from(a)),
            _ => None,
        };
        let port = |p: Option<u16>| p.filter(|_| has_ports(self.protocol)).map(u128::from);
        match field {
            Field::Interface => self.interface.as_deref().map(nft::ifname_key),
            Field::User => self.uid.map(u128::from),
            // By the set (`field_in`).
            Field::Unit => None,
            Field::Protocol => Some(self.protocol as u128),
            Field::IcmpType => self.icmp_type.filter(|_| self.protocol == IPPROTO_ICMP).map(u128::from),
            Field::Icmpv6Type => self.icmp_type.filter(|_| self.protocol == IPPROTO_ICMPV6).map(u128::from),
            Field::RemoteAddr4 => v4(self.remote),
            Field::LocalAddr4 => v4(self.local),
            Field::RemoteAddr6 => v6(self.remote),
            Field::LocalAddr6 => v6(self.local),
            Field::RemotePort => port(self.remote_port),
            Field::LocalPort => port(self.local_port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decider {
    /// Traffic on the loopback interface is always allowed.
    Loopback,
    Rule {
        name: String,
        place: Place,
        set: String,
    },
    /// A rule of the core networking group, which no rule overrides.
    CoreNetworking {
        name: String,
        place: Place,
        set: String,
    },
    ProfileDefault {
        profile: ProfileKind,
    },
    /// A new inbound connection in clear from a secure subnet, where the
    /// isolation mode requires IPsec (docs/isolation.md).
    Isolation {
        mode: IsolationMode,
    },
}

/// The IPsec SA an inbound packet came over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Sa {
    pub reqid: u32,
    /// The peer identity pattern of its charon connection; none for
    /// isolation's own connection, which the peers in no group use.
    pub connection: Option<DnPattern>,
    /// Every group its peers are in.
    pub groups: BTreeSet<String>,
}

impl Sa {
    /// The SA of `packet`, if it came over one: the connection charon picks
    /// for a peer in all of its groups and no narrower one.
    fn of(policy: &Policy, packet: &Packet) -> Result<Option<Sa>, String> {
        let mut names = packet.groups.iter();
        let Some(first) = names.next() else {
            let base = Sa { reqid: crate::xfrm::REQID, connection: None, groups: BTreeSet::new() };
            return Ok(packet.secure.then_some(base));
        };
        let subject = |name: &String| {
            let known = || policy.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ");
            let group = policy.groups.iter().find(|g| g.name == *name);
            group.map(|g| &g.subject).ok_or_else(|| {
                format!("{} is not a group of the policy (groups: {})", crate::policy::text::Quoted(name), known())
            })
        };
        let mut pattern = subject(first)?.clone();
        for name in names {
            pattern = pattern.intersect(subject(name)?).ok_or_else(|| {
                format!(
                    "no peer is in all of {}: their subject patterns never match one certificate",
                    packet.groups.join(", ")
                )
            })?;
        }
        let conn = policy.group_connections.iter().find(|c| c.pattern == pattern);
        let conn = conn.ok_or_else(|| format!("the policy has no connection for {pattern}"))?;
        Ok(Some(Sa { reqid: conn.reqid, connection: Some(conn.pattern.clone()), groups: conn.groups.clone() }))
    }

    /// Whether a packet over this SA (or in clear) passes a set's gate, by
    /// the reqids the table has.
    fn passes(sa: Option<&Sa>, gate: Option<&Gate>, compiled: &Compiled) -> bool {
        match (gate, sa) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Gate::Secure), Some(_)) => true,
            (Some(Gate::Group(g)), Some(sa)) => compiled.reqids.get(g).is_some_and(|r| r.contains(&sa.reqid)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Explanation {
    pub verdict: Verdict,
    pub profile: ProfileKind,
    /// Why the packet's interface has that profile.
    pub profile_source: Source,
    pub decided_by: Decider,
    /// The SA the packet was taken to come over; none: in clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipsec: Option<Sa>,
}

/// What the enforced policy and its staged rules decide for a packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StagedExplanation {
    pub enforced: Explanation,
    /// As if the staged rules were enforced.
    pub staged: Explanation,
    /// Where the two differ: what the staged rule would do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<Would>,
}

/// Fails only on the packet's `groups` (not a group, or no peer in all of them).
pub fn explain(
    policy: &Policy,
    compiled: &Compiled,
    direction: Direction,
    packet: &Packet,
) -> Result<Explanation, String> {
    Ok(decide(policy, compiled, direction, packet)?.0)
}

/// [`explain`], and what the staged rules would decide, by the same steps
/// as the staged chains (`compile::staged`): a staged rule changes only a
/// decision of an enforced allow rule or of the profile's default.
pub fn explain_staged(
    policy: &Policy,
    compiled: &Compiled,
    direction: Direction,
    packet: &Packet,
) -> Result<StagedExplanation, String> {
    let (enforced, group) = decide(policy, compiled, direction, packet)?;
    let staged_rule = |action: Action| {
        let lookups = compiled.staged_lookups(direction, enforced.profile).filter(|l| l.group.action == action);
        first_match(policy, compiled, lookups, packet, None).map(|(_, by)| by)
    };
    let by_allow_rule = group.is_some_and(|g| g.layer == Layer::Rules && g.action == Action::Allow);
    let by_default = matches!(enforced.decided_by, Decider::ProfileDefault { .. });
    let decided = match (by_allow_rule || by_default, enforced.verdict) {
        (false, _) => None,
        (true, Verdict::Allow) => staged_rule(Action::Block).map(|by| (Verdict::Block, by)),
        (true, Verdict::Block) => (staged_rule(Action::Block).map(|by| (Verdict::Block, by)))
            .or_else(|| staged_rule(Action::Allow).map(|by| (Verdict::Allow, by))),
    };
    let staged = match decided {
        Some((verdict, decided_by)) => Explanation { verdict, decided_by, ..enforced.clone() },
        None => enforced.clone(),
    };
    let would = (staged.verdict != enforced.verdict).then(|| Would::of(staged.verdict));
    Ok(StagedExplanation { enforced, staged, would })
}

/// The explanation, and the group of the lookup that decided, if one did.
fn decide<'c>(
    policy: &Policy,
    compiled: &'c Compiled,
    direction: Direction,
    packet: &Packet,
) -> Result<(Explanation, Option<&'c Group>), String> {
    let ipsec = Sa::of(policy, packet)?;
    let (profile, profile_source) = packet
        .interface
        .as_deref()
        .map_or((ProfileKind::Public, Source::Default), |i| crate::compile::location::profile_of(policy, compiled, i));
    let decided =
        |verdict, decided_by| Explanation { verdict, profile, profile_source, decided_by, ipsec: ipsec.clone() };
    if packet.interface.as_deref() == Some("lo") {
        return Ok((decided(Verdict::Allow, Decider::Loopback), None));
    }
    if direction == Direction::In && ipsec.is_none() && isolation_drops(policy, compiled, packet, true) {
        return Ok((decided(Verdict::Block, Decider::Isolation { mode: policy.isolation.mode.value }), None));
    }
    let lookups = compiled.lookups(direction, profile);
    if let Some((group, by)) = first_match(policy, compiled, lookups, packet, ipsec.as_ref()) {
        return Ok((decided(group.action.verdict(), by), Some(group)));
    }
    Ok((decided(policy.profile(profile).default_for(direction), Decider::ProfileDefault { profile }), None))
}

/// The first of `lookups` that matches the packet (over `ipsec`), and the
/// rule it names.
fn first_match<'c>(
    policy: &Policy,
    compiled: &'c Compiled,
    lookups: impl Iterator<Item = &'c Lookup>,
    packet: &Packet,
    ipsec: Option<&Sa>,
) -> Option<(&'c Group, Decider)> {
    for Lookup { group, set } in lookups {
        if !Sa::passes(ipsec, group.gate.as_ref(), compiled)
            || !group.dynamic.iter().all(|d| dynamic_match(compiled, packet, *d))
        {
            continue;
        }
        let set = compiled.set(set);
        let Some(key) = group.fields.iter().map(|&f| packet.field_in(f, set)).collect::<Option<Vec<u128>>>() else {
            continue;
        };
        if let Some(elem) = find(set, &key) {
            let rule = &policy.rules[elem.tag as usize];
            let (name, place, set) = (rule.name.clone(), rule.place.clone(), set.name.clone());
            let by = if rule.core {
                Decider::CoreNetworking { name, place, set }
            } else {
                Decider::Rule { name, place, set }
            };
            return Some((group, by));
        }
    }
    None
}

fn find<'a>(set: &'a nft::Set, key: &[u128]) -> Option<&'a nft::Elem> {
    set.elems.iter().find(|e| e.ranges.iter().zip(key).all(|(&(lo, hi), &k)| lo <= k && k <= hi))
}

/// Whether `isolation_in` drops a packet in clear, the first of a new
/// connection (`new`) or one of an established one (a reply to a connection
/// the host opened): it comes from a secure subnet (`iso_secure4/6`, as
/// the table has them), from no exempt keyword's address, in a mode that
/// requires IPsec inbound (`secure-request` only for new connections).
pub fn isolation_drops(policy: &Policy, compiled: &Compiled, packet: &Packet, new: bool) -> bool {
    let requires = match policy.isolation.mode.value {
        IsolationMode::SecureRequest => new,
        IsolationMode::Require | IsolationMode::RequireEncryption => true,
        IsolationMode::Off | IsolationMode::Request | IsolationMode::Boundary => false,
    };
    let Some(remote) = packet.remote else { return false };
    let v4 = remote.is_ipv4();
    let secure = compiled.table.sets.iter().find(|s| s.name == isolation::secure_set_name(v4));
    let in_secure = matches!(
        (secure, packet.field(if v4 { Field::RemoteAddr4 } else { Field::RemoteAddr6 })),
        (Some(set), Some(a)) if find(set, &[a]).is_some()
    );
    let exempt = isolation::exempt_keywords(&policy.isolation)
        .any(|keyword| dynamic_match(compiled, packet, DynMatch { keyword, v4, remote: true }));
    let nd = packet.protocol == IPPROTO_ICMPV6 && packet.icmp_type.is_some_and(|t| crate::xfrm::ND_TYPES.contains(&t));
    requires && in_secure && !exempt && !nd
}

/// Whether the packet's address is in the keyword's set as the table has it now.
fn dynamic_match(compiled: &Compiled, packet: &Packet, d: DynMatch) -> bool {
    let field = match (d.v4, d.remote) {
        (true, true) => Field::RemoteAddr4,
        (true, false) => Field::LocalAddr4,
        (false, true) => Field::RemoteAddr6,
        (false, false) => Field::LocalAddr6,
    };
    let key = match d.keyword {
        Keyword::DefaultGateway | Keyword::Dns | Keyword::Dhcp | Keyword::Wins => packet.field(field).map(|a| vec![a]),
        Keyword::LocalSubnet => packet.field(Field::Interface).zip(packet.field(field)).map(|(i, a)| vec![i, a]),
    };
    let name = keyword_sets::name(d.keyword, d.v4);
    let set = compiled.table.sets.iter().find(|s| s.name == name);
    matches!((key, set), (Some(key), Some(set)) if find(set, &key).is_some())
}
