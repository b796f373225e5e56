//! The profile of a detected interface, in the kernel without a recompile:
//! two named sets of interface names that the daemon fills from detection
//! (`location::Judgements`), looked up in the base chains before the
//! patterns' verdict map:
//!
//! ```text
//! iifname @location_domain goto in_domain       detected on the domain's network
//! iifname @location_undecided goto in_public    judged, not yet decided
//! iifname vmap { patterns }                     the rest, by name
//! ```
//!
//! Interfaces that a domain pattern names are never judged (the pattern is
//! the administrator's assertion), so neither set holds them.

use serde::Serialize;

use crate::location::{Judgements, State};
use crate::nft::{self, ifname_key, Elem, Expr, Fill, KeyType, Set, Stmt, NO_OWNER};
use crate::policy::{Direction, Policy, ProfileKind};

use super::Compiled;

pub const DOMAIN_SET: &str = "location_domain";
pub const UNDECIDED_SET: &str = "location_undecided";

/// Why an interface has its profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A profile's `interfaces` names it.
    Pattern,
    /// Detection: found on the domain's network, or public while undecided.
    Detection,
    /// Nothing names it: public. (Also what an answer of a daemon from
    /// before detection means.)
    #[default]
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pattern => "pattern",
            Source::Detection => "detection",
            Source::Default => "default",
        }
    }
}

/// The two sets, holding the interfaces `judged` to be domain and undecided.
pub fn sets(judged: &Judgements) -> Vec<Set> {
    let set = |name: &str, state: State| {
        let elems = judged.iter().filter(|(_, j)| j.state == state).map(|(name, _)| {
            let k = ifname_key(name);
            Elem { ranges: Box::new([(k, k)]), tag: NO_OWNER }
        });
        Set {
            name: name.into(),
            key: vec![KeyType::Ifname],
            interval: false,
            elems: elems.collect::<Vec<_>>().into(),
            fill: Fill::Daemon,
            cgroups: Default::default(),
        }
    };
    vec![set(DOMAIN_SET, State::Domain), set(UNDECIDED_SET, State::Undecided)]
}

/// The base chain's lookups of the sets, before the patterns.
pub fn rules(direction: Direction) -> Vec<nft::Rule> {
    let key = Expr::Meta(if direction == Direction::In { "iifname" } else { "oifname" });
    [(DOMAIN_SET, ProfileKind::Domain), (UNDECIDED_SET, ProfileKind::Public)]
        .map(|(set, profile)| nft::Rule {
            stmts: vec![
                Stmt::InSet(key.clone(), set.into()),
                Stmt::Verdict(nft::Verdict::Goto(super::profile_chain_name(direction, profile))),
            ],
            comment: Some(format!("location {}", profile.as_str())),
        })
        .into()
}

/// The profile of `ifname` and why, as the base chains decide it: over the
/// sets of `compiled` (the kernel's elements), then the policy's patterns.
pub fn profile_of(policy: &Policy, compiled: &Compiled, ifname: &str) -> (ProfileKind, Source) {
    let k = ifname_key(ifname);
    let holds = |set: &str| {
        compiled.table.sets.iter().any(|s| s.name == set && s.elems.iter().any(|e| e.ranges.first() == Some(&(k, k))))
    };
    if holds(DOMAIN_SET) {
        (ProfileKind::Domain, Source::Detection)
    } else if holds(UNDECIDED_SET) {
        (ProfileKind::Public, Source::Detection)
    } else {
        policy.pattern_profile(ifname).map_or((ProfileKind::Public, Source::Default), |p| (p, Source::Pattern))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::DynState;
    use crate::explain::Packet;
    use crate::location::Judgement;
    use crate::policy::Verdict;

    const POLICY: &str = "profiles:
  domain: { interfaces: [corp0], inbound: allow, detect: { probes: ['dc.corp.test:443'], ca: /ca.pem } }
  private: { interfaces: [wl*], inbound: allow }
settings: { core-networking: false }
";

    fn judged(list: &[(&str, State)]) -> Judgements {
        list.iter().map(|&(n, state)| (n.to_string(), Judgement { state, ..Judgement::default() })).collect()
    }

    #[test]
    fn detection_decides_before_the_patterns_and_explain_reads_the_sets() {
        let p = crate::policy::load_text(&[("p.yaml".into(), POLICY.into())]).unwrap_or_else(|d| panic!("{d}"));
        let mut c = super::super::compile(&p, &DynState::default()).unwrap();
        let input = c.table.chains.iter().find(|ch| ch.name == "input").unwrap();
        let comments: Vec<_> = input.rules.iter().filter_map(|r| r.comment.as_deref()).collect();
        assert_eq!(comments, ["loopback", "location domain", "location public", "profiles"]);
        let of = |c: &Compiled, i| profile_of(&p, c, i);
        assert_eq!(of(&c, "wlan0"), (ProfileKind::Private, Source::Pattern));
        assert_eq!(of(&c, "eth0"), (ProfileKind::Public, Source::Default));

        let j = judged(&[("eth0", State::Domain), ("wlan0", State::Undecided), ("eth1", State::NotDomain)]);
        let updates = c.location_updates(&j);
        assert_eq!(updates.len(), 2);
        c.replace_sets(updates);
        assert!(c.location_updates(&j).is_empty(), "applied: nothing left to change");
        assert_eq!(of(&c, "eth0"), (ProfileKind::Domain, Source::Detection));
        assert_eq!(of(&c, "wlan0"), (ProfileKind::Public, Source::Detection));
        assert_eq!(of(&c, "eth1"), (ProfileKind::Public, Source::Default));
        assert_eq!(of(&c, "corp0"), (ProfileKind::Domain, Source::Pattern));

        let packet = Packet { protocol: 6, local_port: Some(22), interface: Some("eth0".into()), ..Packet::default() };
        let e = crate::explain::explain(&p, &c, Direction::In, &packet).unwrap();
        assert_eq!((e.verdict, e.profile, e.profile_source), (Verdict::Allow, ProfileKind::Domain, Source::Detection));
        let packet = Packet { interface: Some("wlan0".into()), ..packet };
        let e = crate::explain::explain(&p, &c, Direction::In, &packet).unwrap();
        assert_eq!((e.verdict, e.profile), (Verdict::Block, ProfileKind::Public));
    }

    #[test]
    fn without_detection_there_are_no_location_sets() {
        let text = "profiles:\n  domain: { interfaces: [corp0] }\n";
        let p = crate::policy::load_text(&[("p.yaml".into(), text.into())]).unwrap();
        let c = super::super::compile(&p, &DynState::default()).unwrap();
        assert!(!c.table.sets.iter().any(|s| s.name.starts_with("location")));
        assert!(c.location_updates(&judged(&[("eth0", State::Domain)])).is_empty());
    }
}
