//! Policy -> nftables table: a pure function (no clock, no kernel, no DNS).
//!
//! Layout of the table (see docs/precedence.md):
//!
//! ```text
//! input   (hook input, policy drop):  iif lo accept; ct state invalid drop;
//!          ct state established accept; ct state related (not ICMP) accept;
//!          iifname @location_domain/@location_not_domain (detection, `location`);
//!          iifname vmap {profile patterns}; goto in_public
//! in_P    for each reachable profile P: one lookup per set, the core networking
//!          group's first, then bypass (gated on the SA's reqid) before blocks
//!          before allows, then P's inbound default
//! output / out_P                      the same for outbound (no invalid drop)
//! log_*   rate-limited log to NFLOG, then the verdict, for rules with `log: true`
//! staged_* the staged rules (`stage: audit`): called from in_P/out_P for new
//!          connections at the verdicts they could change; they decide nothing
//!          (see [`staged`])
//! ```
//!
//! Rules with the same direction, action, profile scope, `log`, gate and
//! constrained fields share one set; its elements are the rules' values, made
//! disjoint.

mod dims;
mod disjoint;
mod gate;
pub mod isolation;
pub mod keyword_sets;
pub mod location;
pub mod staged;
mod units;

use disjoint::make_disjoint;
pub use gate::{Gate, GroupPeers};

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::dynamic::DynState;
use crate::net::{AddrRange, PortRange, IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::nft::{self, BaseChain, Chain, Elem, Expr, Hook, Set, Stmt, Table};
use crate::policy::values::{Address, Keyword};
use crate::policy::{Action, Diagnostic, Diagnostics, Direction, Policy, ProfileKind, Rule, Verdict};
use crate::units::Units;
pub use dims::Field;

/// The one table Ringfence owns; it creates, replaces and deletes nothing else.
pub const TABLE: &str = "ringfence";

/// A policy may not expand (the product of each rule's lists, summed) to more
/// set elements than this; YAML aliases let a small file ask for billions.
const MAX_ELEMENTS: usize = 1_000_000;

/// Log lines per second for all logging rules of one kind together: the kernel
/// drops the excess before it costs the daemon anything.
const LOG_RATE: u32 = 10;
const LOG_BURST: u32 = 20;

/// The NFLOG group logged packets go to; the daemon binds it (`monitor::nflog`).
/// Far from 0 and 1, which ulogd2 and most examples use.
pub const LOG_GROUP: u16 = 2714;

/// The start of every log prefix; `monitor` parses the rest (see [`log_prefix`]).
pub const LOG_PREFIX: &str = "ringfence ";

/// Which rules a set holds: the core networking group's, looked up first in
/// every profile, the policy's, or the staged rules' (looked up only by the
/// staged chains, [`staged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    CoreNetworking,
    Rules,
    Staged,
}

impl Layer {
    fn of(rule: &Rule) -> Layer {
        match (rule.core, rule.staged) {
            (true, _) => Layer::CoreNetworking,
            (false, true) => Layer::Staged,
            (false, false) => Layer::Rules,
        }
    }
}

/// What the rules of one set have in common.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Group {
    /// First, so that the core networking sets sort (and are looked up) first.
    pub layer: Layer,
    pub direction: Direction,
    /// Sorts (and is looked up) by precedence: bypass, block, allow.
    pub action: Action,
    /// `None` applies in every profile, and is looked up before a profile's own.
    pub scope: Option<ProfileKind>,
    pub log: bool,
    /// What the packet's SA must be, if anything.
    pub gate: Option<Gate>,
    /// Addresses matched against the daemon's dynamic sets, outside the key.
    pub dynamic: Vec<DynMatch>,
    pub fields: Vec<Field>,
}

/// A packet address looked up in a keyword's set (`ip saddr @dyn_default_gateway4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DynMatch {
    pub keyword: Keyword,
    pub v4: bool,
    /// The remote address (else the local one).
    pub remote: bool,
}

impl DynMatch {
    /// The lookup key: the address, with the interface for `local-subnet`.
    pub fn expr(self, direction: Direction) -> Expr {
        let field = match (self.v4, self.remote) {
            (true, true) => Field::RemoteAddr4,
            (true, false) => Field::LocalAddr4,
            (false, true) => Field::RemoteAddr6,
            (false, false) => Field::LocalAddr6,
        };
        match self.keyword {
            Keyword::DefaultGateway | Keyword::Dns | Keyword::Dhcp | Keyword::Wins => field.expr(direction),
            Keyword::LocalSubnet => Expr::Concat(vec![Field::Interface.expr(direction), field.expr(direction)]),
        }
    }

    fn short(self) -> String {
        let side = if self.remote { "r" } else { "l" };
        format!("{side}{}", keyword_sets::name(self.keyword, self.v4).trim_start_matches("dyn_"))
    }
}

impl Group {
    fn set_name(&self) -> String {
        let scope = self.scope.map_or("all", ProfileKind::as_str);
        let words: Vec<String> = (self.gate.iter().map(Gate::short))
            .chain(self.dynamic.iter().map(|d| d.short()))
            .chain(self.fields.iter().map(|f| f.short().to_string()))
            .collect();
        let log = if self.log { "_log" } else { "" };
        let layer = match self.layer {
            Layer::CoreNetworking => "core_",
            Layer::Rules => "",
            Layer::Staged => "staged_",
        };
        format!("{layer}{}_{}{log}_{scope}_{}", self.direction.as_str(), self.action.as_str(), words.join("_"))
    }

    /// The IP version of the packets this set can match, if its key or
    /// dynamic sets fix one (`Some(true)` for IPv4).
    fn ip_version(&self) -> Option<bool> {
        let fields = self.fields.iter().filter_map(|f| f.ip_version());
        fields.chain(self.dynamic.iter().map(|d| d.v4)).next()
    }

    /// Whether a packet in `profile` going `direction` meets this set.
    pub fn applies(&self, direction: Direction, profile: ProfileKind) -> bool {
        self.direction == direction && self.scope.is_none_or(|s| s == profile)
    }
}

/// One set lookup of the profile chains: what its rules have in common, and
/// the name of the set that holds their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub group: Group,
    pub set: String,
}

/// The compiled policy: the table to apply and what its sets mean (used by
/// `explain` and `show`, so they read exactly what the kernel has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub table: Table,
    /// In the order the chains look them up.
    pub lookups: Vec<Lookup>,
    /// The staged rules' lookups, in the same order; they decide nothing.
    pub staged: Vec<Lookup>,
    /// The keywords' sets in the table: those the lookups name and those
    /// isolation's exemptions name.
    pub dynamic: Vec<(Keyword, bool)>,
    /// The reqids of each policy group's SAs, which gated lookups match.
    pub reqids: BTreeMap<String, Vec<u32>>,
}

impl Compiled {
    /// The set of the table named `name`; compile makes every set it names.
    pub fn set(&self, name: &str) -> &Set {
        self.table.sets.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("the table has no set {name}"))
    }

    /// The keywords' sets whose elements differ under `state`, rebuilt.
    pub fn dynamic_updates(&self, state: &DynState) -> Vec<Set> {
        self.changed(self.dynamic.iter().map(|&(k, v4)| keyword_sets::set(state, k, v4)))
    }

    /// The unit rules' sets whose elements differ under `units`, rebuilt
    /// from `policy`'s unit rules (the policy this was compiled from).
    pub fn unit_updates(&self, policy: &Policy, units: &Units) -> Vec<Set> {
        // (The policy compiled, with every unit counted as running.)
        let groups = grouped(policy, |r| !r.units.is_empty(), units, &mut 0).unwrap_or_default();
        let sets = groups.into_iter().flat_map(|(group, elems)| group_sets(&group, elems, units));
        // The staged chains' copies of enforced block sets follow them.
        self.changed(sets.flat_map(|set| [staged::check_copy(&set), set]))
    }

    /// The location sets whose elements differ under `judged`, rebuilt.
    pub fn location_updates(&self, judged: &crate::location::Judgements) -> Vec<Set> {
        self.changed(location::sets(judged).into_iter())
    }

    /// The groups' peer sets whose elements differ under `peers`, rebuilt.
    pub fn peer_updates(&self, peers: &GroupPeers) -> Vec<Set> {
        self.changed(gate::peer_sets(self.reqids.keys(), peers).into_iter())
    }

    fn changed(&self, sets: impl Iterator<Item = Set>) -> Vec<Set> {
        sets.filter(|new| self.table.sets.iter().any(|s| s.name == new.name && s != new)).collect()
    }

    /// Puts `sets` in place of the table's sets of the same names.
    pub fn replace_sets(&mut self, sets: Vec<Set>) {
        for new in sets {
            if let Some(old) = self.table.sets.iter_mut().find(|s| s.name == new.name) {
                *old = new;
            }
        }
    }

    /// The lookups a packet meets, in the order the chain looks them up.
    pub fn lookups(&self, direction: Direction, profile: ProfileKind) -> impl Iterator<Item = &Lookup> + '_ {
        self.lookups.iter().filter(move |l| l.group.applies(direction, profile))
    }

    /// The staged lookups of a packet's direction and profile.
    pub fn staged_lookups(&self, direction: Direction, profile: ProfileKind) -> impl Iterator<Item = &Lookup> + '_ {
        self.staged.iter().filter(move |l| l.group.applies(direction, profile))
    }
}

/// Compiles `policy`, with the dynamic sets holding the keywords' values of
/// `dynamic` (empty when there is no live host to read them from, as for
/// `check`), and no unit running.
pub fn compile(policy: &Policy, dynamic: &DynState) -> Result<Compiled, Diagnostics> {
    compile_with_units(policy, dynamic, &Units::default())
}

/// [`compile`], with the unit rules' sets holding the cgroups of `units`.
pub fn compile_with_units(policy: &Policy, dynamic: &DynState, units: &Units) -> Result<Compiled, Diagnostics> {
    let mut total = 0usize;
    let enforced = grouped(policy, |r| !r.staged, units, &mut total)?;
    let staged = grouped(policy, |r| r.staged, units, &mut total)?;
    let (lookups, mut sets) = lookups_and_sets(enforced, units);
    let (staged, staged_sets) = lookups_and_sets(staged, units);
    sets.extend(staged_sets);
    let mut used: Vec<(Keyword, bool)> = lookups
        .iter()
        .chain(&staged)
        .flat_map(|l| l.group.dynamic.iter().map(|d| (d.keyword, d.v4)))
        .chain(isolation::exempt_keywords(&policy.isolation).flat_map(|k| [(k, true), (k, false)]))
        .collect();
    used.sort();
    used.dedup();
    sets.extend(used.iter().map(|&(k, v4)| keyword_sets::set(dynamic, k, v4)));
    if policy.detect().is_some() {
        sets.extend(location::sets(&Default::default()));
    }
    let reqids = gate::reqids(&policy.group_connections);
    if policy.isolation.enabled() {
        sets.extend(isolation::sets(&policy.isolation));
        sets.extend(gate::peer_sets(reqids.keys(), &GroupPeers::default()));
    }
    let mut compiled = Compiled {
        table: Table { name: TABLE.into(), sets, chains: Vec::new() },
        lookups,
        staged,
        dynamic: used,
        reqids,
    };
    let staged_sets = staged::sets(policy, &compiled);
    compiled.table.sets.extend(staged_sets);
    compiled.table.chains = chains(policy, &compiled);
    Ok(compiled)
}

/// The set elements of the enabled rules that `which` picks, by the group of
/// rules they share a set with; `total` counts the elements of every call.
fn grouped(
    policy: &Policy,
    which: impl Fn(&Rule) -> bool,
    units: &Units,
    total: &mut usize,
) -> Result<BTreeMap<Group, Vec<Elem>>, Diagnostics> {
    let mut by_group: BTreeMap<Group, Vec<Elem>> = BTreeMap::new();
    for (tag, rule) in policy.rules.iter().enumerate().filter(|(_, r)| r.enabled && which(r)) {
        let shapes = shapes(rule, units);
        // Every unit counted as running, so that units that start never take
        // the policy past the limit.
        let len = |f: &Field, v: &Vec<(u128, u128)>| if *f == Field::Unit { rule.units.len() } else { v.len() };
        let count = shapes
            .iter()
            .map(|s| s.fields.iter().map(|(f, v)| len(f, v)).fold(1usize, usize::saturating_mul))
            .fold(0usize, usize::saturating_add);
        *total = total.saturating_add(count);
        if *total > MAX_ELEMENTS {
            let m = format!(
                "rule {:?} expands to {count} set elements (its lists multiply), which takes the policy past {MAX_ELEMENTS}; split or narrow it",
                rule.name
            );
            return Err(Diagnostics(vec![Diagnostic::new(rule.place.clone(), m)]));
        }
        let scopes: Vec<Option<ProfileKind>> =
            if rule.profiles.is_empty() || rule.profiles.len() == ProfileKind::ALL.len() {
                vec![None]
            } else {
                rule.profiles.iter().copied().map(Some).collect()
            };
        let gates = Gate::of(rule);
        for shape in &shapes {
            for (&scope, gate) in scopes.iter().flat_map(|s| gates.iter().map(move |g| (s, g))) {
                let group = Group {
                    layer: Layer::of(rule),
                    direction: rule.direction,
                    action: rule.action,
                    scope,
                    log: rule.log,
                    gate: gate.clone(),
                    dynamic: shape.dynamic.clone(),
                    fields: shape.fields.iter().map(|(f, _)| *f).collect(),
                };
                product(&shape.fields, tag as u32, by_group.entry(group).or_default());
            }
        }
    }
    Ok(by_group)
}

/// The groups' sets, and their lookups in the order the chains make them.
fn lookups_and_sets(by_group: BTreeMap<Group, Vec<Elem>>, units: &Units) -> (Vec<Lookup>, Vec<Set>) {
    let mut lookups = Vec::new();
    let mut sets = Vec::new();
    for (group, elems) in by_group {
        for set in group_sets(&group, elems, units) {
            lookups.push(Lookup { group: group.clone(), set: set.name.clone() });
            sets.push(set);
        }
    }
    (lookups, sets)
}

/// The sets of one group. Exact values go to a hash set, looked up in
/// constant time. Ranges, prefixes and wildcards need an interval set
/// (rbtree, or pipapo for a concatenation), whose lookup cost grows with the
/// number of elements. A group of unit rules has one interval set, even
/// empty, whatever units run (see `units`).
fn group_sets(group: &Group, elems: Vec<Elem>, units: &Units) -> Vec<Set> {
    let key: Vec<nft::KeyType> = group.fields.iter().map(|f| f.key_type()).collect();
    let first_is_ifname = group.fields.first() == Some(&Field::Interface);
    let elems = disjoint::make_disjoint(elems, first_is_ifname);
    let parts: Vec<(Vec<Elem>, bool)> = if units::has_units(&key) {
        vec![(elems, true)]
    } else {
        let (exact, ranged): (Vec<Elem>, Vec<Elem>) =
            elems.into_iter().partition(|e| e.ranges.iter().all(|r| r.0 == r.1));
        [(exact, false), (ranged, true)].into_iter().filter(|(e, _)| !e.is_empty()).collect()
    };
    let unit_field = group.fields.iter().position(|f| *f == Field::Unit);
    parts
        .into_iter()
        .map(|(elems, interval)| {
            let ids = unit_field.into_iter().flat_map(|i| elems.iter().map(move |e| e.ranges[i].0 as u64));
            let cgroups = units.paths(ids).into();
            let only_set = units::has_units(&key) || !interval;
            let name = if only_set { group.set_name() } else { format!("{}_ranges", group.set_name()) };
            Set { name, key: key.clone(), interval, elems: elems.into(), fill: nft::Fill::Daemon, cgroups }
        })
        .collect()
}

/// Fields with the ranges of values a rule gives them.
type FieldValues = Vec<(Field, Vec<(u128, u128)>)>;

/// What a rule constrains, for one of its set groups: fields with their values
/// (the set key) and addresses looked up in dynamic sets.
#[derive(Clone, Default)]
struct Shape {
    fields: FieldValues,
    dynamic: Vec<DynMatch>,
}

/// One way an address list can match for one IP version: its literal ranges,
/// or one of its keywords.
enum Alternative {
    Any,
    Literal(Vec<(u128, u128)>),
    Dynamic(Keyword),
}

/// The alternatives of an address list for one IP version; none if the list
/// names no address of that version.
fn alternatives(list: &[Address], v4: bool) -> Vec<Alternative> {
    if list.is_empty() {
        return vec![Alternative::Any];
    }
    let literal: Vec<(u128, u128)> = list
        .iter()
        .filter_map(|a| match *a {
            Address::Range(AddrRange::V4(lo, hi)) if v4 => Some((lo as u128, hi as u128)),
            Address::Range(AddrRange::V6(lo, hi)) if !v4 => Some((lo, hi)),
            _ => None,
        })
        .collect();
    let keywords = list.iter().filter_map(|a| match a {
        Address::Keyword(k) => Some(Alternative::Dynamic(*k)),
        Address::Range(_) => None,
    });
    (!literal.is_empty()).then_some(Alternative::Literal(literal)).into_iter().chain(keywords).collect()
}

/// The shapes of a rule: one per IP version its addresses need (one in all if it
/// names no address), times one per keyword it names.
fn shapes(rule: &Rule, units: &Units) -> Vec<Shape> {
    let mut common = Shape::default();
    let fields = &mut common.fields;
    if !rule.interfaces.is_empty() {
        let ranges = rule.interfaces.iter().map(|p| {
            if p.is_glob() {
                nft::ifname_glob_range(p.stem())
            } else {
                let k = nft::ifname_key(&p.0);
                (k, k)
            }
        });
        fields.push((Field::Interface, ranges.collect()));
    }
    if !rule.users.is_empty() {
        fields.push((Field::User, rule.users.iter().map(|&u| (u as u128, u as u128)).collect()));
    }
    if !rule.units.is_empty() {
        // No value while none of them runs: the rule has no elements then.
        fields.push((Field::Unit, units.of(&rule.units).map(|u| (u.id as u128, u.id as u128)).collect()));
    }
    let mut shapes = Vec::new();
    if rule.remote_addresses.is_empty() && rule.local_addresses.is_empty() {
        shapes.push(common);
    } else {
        for (v4, remote_field, local_field) in
            [(true, Field::RemoteAddr4, Field::LocalAddr4), (false, Field::RemoteAddr6, Field::LocalAddr6)]
        {
            if rule.protocol == Some(if v4 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP }) {
                continue;
            }
            for remote in alternatives(&rule.remote_addresses, v4) {
                for local in alternatives(&rule.local_addresses, v4) {
                    let mut shape = common.clone();
                    for (alt, field, is_remote) in [(&remote, remote_field, true), (&local, local_field, false)] {
                        match alt {
                            Alternative::Any => {}
                            Alternative::Literal(ranges) => shape.fields.push((field, ranges.clone())),
                            Alternative::Dynamic(k) => {
                                shape.dynamic.push(DynMatch { keyword: *k, v4, remote: is_remote })
                            }
                        }
                    }
                    shapes.push(shape);
                }
            }
        }
    }
    // One shape per protocol of the rule's services (tcp/443 and udp/53 must
    // not make udp/443), else the rule's own protocol and ports.
    let services = rule.service_ports.iter().map(|s| {
        let port_field = if rule.direction == Direction::In { Field::LocalPort } else { Field::RemotePort };
        let mut fields = vec![(Field::Protocol, vec![(s.protocol as u128, s.protocol as u128)])];
        if !s.ports.is_empty() {
            fields.push((port_field, ports(&s.ports)));
        }
        fields
    });
    let protocols: Vec<FieldValues> =
        if rule.services.is_empty() { vec![protocol_fields(rule)] } else { services.collect() };
    let mut shapes: Vec<Shape> = shapes
        .iter()
        .flat_map(|shape| {
            protocols.iter().map(move |extra| {
                let mut shape = shape.clone();
                shape.fields.extend(extra.iter().cloned());
                shape
            })
        })
        .collect();
    for shape in &mut shapes {
        if shape.fields.is_empty() {
            // "any protocol" with nothing else in the key: a key needs a field.
            shape.fields.push((Field::Protocol, vec![(0, 255)]));
        }
        shape.fields.sort_by_key(|(f, _)| *f);
    }
    shapes
}

fn ports(list: &[PortRange]) -> Vec<(u128, u128)> {
    list.iter().map(|p| (p.0 as u128, p.1 as u128)).collect()
}

/// The fields of a rule's own protocol, ICMP types and ports.
fn protocol_fields(rule: &Rule) -> FieldValues {
    let mut fields = Vec::new();
    let icmp = rule.icmp_types.iter().map(|&t| (t as u128, t as u128)).collect::<Vec<_>>();
    match rule.protocol {
        Some(IPPROTO_ICMP) if !icmp.is_empty() => fields.push((Field::IcmpType, icmp)),
        Some(IPPROTO_ICMPV6) if !icmp.is_empty() => fields.push((Field::Icmpv6Type, icmp)),
        Some(p) => fields.push((Field::Protocol, vec![(p as u128, p as u128)])),
        None => {}
    }
    if !rule.remote_ports.is_empty() {
        fields.push((Field::RemotePort, ports(&rule.remote_ports)));
    }
    if !rule.local_ports.is_empty() {
        fields.push((Field::LocalPort, ports(&rule.local_ports)));
    }
    fields
}

/// Appends the cartesian product of a shape's value lists.
fn product(shape: &[(Field, Vec<(u128, u128)>)], tag: u32, out: &mut Vec<Elem>) {
    if shape.iter().any(|(_, values)| values.is_empty()) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        let ranges: Box<[(u128, u128)]> = shape.iter().zip(&idx).map(|((_, v), &i)| v[i]).collect();
        out.push(Elem { ranges, tag });
        let mut f = shape.len();
        loop {
            if f == 0 {
                return;
            }
            f -= 1;
            idx[f] += 1;
            if idx[f] < shape[f].1.len() {
                break;
            }
            idx[f] = 0;
        }
    }
}

fn profile_chain_name(direction: Direction, profile: ProfileKind) -> String {
    format!("{}_{}", direction.as_str(), profile.as_str())
}

/// The chain of the logged rules of one direction, action and gate: `log_in_block`,
/// `log_in_bypass_grp_scanners`.
fn log_chain_name(direction: Direction, action: Action, gate: Option<&Gate>) -> String {
    let gate = gate.map_or_else(String::new, |g| format!("_{}", g.short()));
    format!("log_{}_{}{gate}", direction.as_str(), action.as_str())
}

fn verdict(action: Verdict) -> nft::Verdict {
    match action {
        Verdict::Allow => nft::Verdict::Accept,
        Verdict::Block => nft::Verdict::Drop,
    }
}

fn limited_log(prefix: String) -> nft::Rule {
    nft::Rule {
        stmts: vec![Stmt::Limit { per_second: LOG_RATE, burst: LOG_BURST }, Stmt::Log { group: LOG_GROUP, prefix }],
        comment: None,
    }
}

/// Who logged a packet, as its prefix says: the logging chain of the rules
/// of one action and gate, or a profile's block default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOrigin {
    Rule(Action, Option<Gate>),
    Default(ProfileKind),
    /// A new connection that the staged rules would decide otherwise.
    Staged(staged::Would),
}

/// The prefix of logged packets: `ringfence in block: ` or `ringfence in
/// bypass group scanners: ` for a logged rule, `ringfence in public default: `
/// for a profile's default.
pub fn log_prefix(direction: Direction, origin: &LogOrigin) -> String {
    let what = match origin {
        LogOrigin::Rule(action, None) => action.as_str().to_string(),
        LogOrigin::Rule(action, Some(gate)) => format!("{} {}", action.as_str(), gate.words()),
        LogOrigin::Default(p) => format!("{} default", p.as_str()),
        LogOrigin::Staged(would) => format!("staged {}", would.as_str()),
    };
    format!("{LOG_PREFIX}{} {what}: ", direction.as_str())
}

/// The comment on a profile's default rule; `show` reads its counter by it.
pub fn default_rule_comment(direction: Direction, profile: ProfileKind) -> String {
    format!("default {} {}", direction.as_str(), profile.as_str())
}

/// The profiles an interface can have: public, those with interfaces, and
/// domain with detection.
fn reachable(policy: &Policy) -> Vec<ProfileKind> {
    let has_interfaces = |k: ProfileKind| !policy.profile(k).interfaces.value.is_empty();
    let detected = |k: ProfileKind| policy.profile(k).detect.value.is_some();
    ProfileKind::ALL.into_iter().filter(|&k| k == ProfileKind::Public || has_interfaces(k) || detected(k)).collect()
}

fn chains(policy: &Policy, compiled: &Compiled) -> Vec<Chain> {
    let mut chains = Vec::new();
    let reachable = reachable(policy);
    for direction in [Direction::In, Direction::Out] {
        for &profile in &reachable {
            chains.push(profile_chain(policy, compiled, direction, profile));
        }
        let mut logged: Vec<(Action, Option<&Gate>)> = compiled
            .lookups
            .iter()
            .map(|l| &l.group)
            .filter(|g| g.direction == direction && g.log)
            .map(|g| (g.action, g.gate.as_ref()))
            .collect();
        logged.sort();
        logged.dedup();
        for (action, gate) in logged {
            let prefix = log_prefix(direction, &LogOrigin::Rule(action, gate.cloned()));
            let then = nft::Rule { stmts: vec![Stmt::Verdict(verdict(action.verdict()))], comment: None };
            chains.push(Chain {
                name: log_chain_name(direction, action, gate),
                base: None,
                rules: vec![limited_log(prefix), then],
            });
        }
        chains.extend(staged::chains(policy, compiled, direction));
        chains.push(base_chain(policy, direction, &reachable));
    }
    chains.extend(isolation::chains(&policy.isolation));
    chains
}

fn base_chain(policy: &Policy, direction: Direction, reachable: &[ProfileKind]) -> Chain {
    let inbound = direction == Direction::In;
    let mut rules = vec![nft::Rule {
        stmts: vec![
            Stmt::Equals(Expr::Meta(if inbound { "iif" } else { "oif" }), json!("lo")),
            Stmt::Verdict(nft::Verdict::Accept),
        ],
        comment: Some("loopback".into()),
    }];
    if inbound {
        if policy.isolation.enabled() {
            rules.extend([true, false].map(isolation::held_replies));
        }
        rules.push(nft::Rule {
            stmts: vec![Stmt::CtState(vec!["invalid"]), Stmt::Verdict(nft::Verdict::Drop)],
            comment: None,
        });
    }
    // Before `established`: in require modes a clear connection from a secure
    // subnet is dropped even if it was established before.
    if policy.isolation.enabled() {
        let chain = if inbound { isolation::CHAIN_IN } else { isolation::CHAIN_OUT };
        rules.push(nft::Rule { stmts: vec![Stmt::Verdict(nft::Verdict::Jump(chain.into()))], comment: None });
    }
    rules.push(nft::Rule {
        stmts: vec![Stmt::CtState(vec!["established"]), Stmt::Verdict(nft::Verdict::Accept)],
        comment: None,
    });
    // ICMP errors are `related` too; they go on to the core networking group
    // (or, without it, to the rules). Other related flows are those a
    // conntrack helper expects (an FTP data connection), accepted as before.
    rules.push(nft::Rule {
        stmts: vec![
            Stmt::CtState(vec!["related"]),
            Stmt::NotEquals(Expr::Meta("l4proto"), json!({ "set": [IPPROTO_ICMP, IPPROTO_ICMPV6] })),
            Stmt::Verdict(nft::Verdict::Accept),
        ],
        comment: None,
    });
    if policy.detect().is_some() {
        rules.extend(location::rules(policy, direction));
    }
    let entries: Vec<(serde_json::Value, nft::Verdict)> = reachable
        .iter()
        .flat_map(|&k| {
            let target = profile_chain_name(direction, k);
            policy.profile(k).interfaces.value.iter().map(move |p| (json!(p.0), nft::Verdict::Goto(target.clone())))
        })
        .collect();
    if !entries.is_empty() {
        let key = Expr::Meta(if inbound { "iifname" } else { "oifname" });
        rules.push(nft::Rule { stmts: vec![Stmt::Vmap(key, entries)], comment: Some("profiles".into()) });
    }
    rules.push(nft::Rule {
        stmts: vec![Stmt::Verdict(nft::Verdict::Goto(profile_chain_name(direction, ProfileKind::Public)))],
        comment: None,
    });
    let hook = if inbound { Hook::Input } else { Hook::Output };
    Chain {
        name: if inbound { "input".into() } else { "output".into() },
        base: Some(BaseChain { hook, priority: 0, policy_drop: true }),
        rules,
    }
}

/// The rules that look a packet up in `set` (the lookup's own, or a copy of
/// it), one per way through the group's gate, each ending in `then`.
fn lookup_rules(compiled: &Compiled, direction: Direction, group: &Group, set: &str, then: Stmt) -> Vec<nft::Rule> {
    let dynamic: Vec<Stmt> =
        group.dynamic.iter().map(|d| Stmt::InSet(d.expr(direction), keyword_sets::name(d.keyword, d.v4))).collect();
    let ways = group.gate.as_ref().map_or_else(|| vec![Vec::new()], |g| g.ways(&compiled.reqids, group.ip_version()));
    let mut rules = Vec::new();
    for key in units::keys(group, direction) {
        let lookup: Vec<Stmt> = dynamic.iter().cloned().chain([Stmt::InSet(key, set.to_string())]).collect();
        rules.extend(ways.iter().map(|way| nft::Rule {
            stmts: way.iter().cloned().chain(lookup.iter().cloned()).chain([then.clone()]).collect(),
            comment: None,
        }));
    }
    rules
}

/// What a packet that an enforced lookup matches gets.
fn enforced_then(direction: Direction, group: &Group) -> nft::Verdict {
    if group.log {
        nft::Verdict::Goto(log_chain_name(direction, group.action, group.gate.as_ref()))
    } else {
        verdict(group.action.verdict())
    }
}

fn profile_chain(policy: &Policy, compiled: &Compiled, direction: Direction, profile: ProfileKind) -> Chain {
    let plan = staged::Plan::of(policy, compiled, direction, profile);
    let mut rules: Vec<nft::Rule> = compiled
        .lookups(direction, profile)
        .flat_map(|lookup| {
            let mut then = enforced_then(direction, &lookup.group);
            if let Some(plan) = &plan {
                then = plan.verdict(lookup, then);
            }
            lookup_rules(compiled, direction, &lookup.group, &lookup.set, Stmt::Verdict(then))
        })
        .collect();
    rules.extend(plan.as_ref().and_then(staged::Plan::before_default));
    let default = policy.profile(profile).default_for(direction);
    if default == Verdict::Block && policy.settings.log_dropped.value {
        rules.push(limited_log(log_prefix(direction, &LogOrigin::Default(profile))));
    }
    rules.push(nft::Rule {
        stmts: vec![Stmt::Counter, Stmt::Verdict(verdict(default))],
        comment: Some(default_rule_comment(direction, profile)),
    });
    Chain { name: profile_chain_name(direction, profile), base: None, rules }
}

#[cfg(test)]
mod tests;
