//! The profile of a judged interface, in the kernel without a recompile:
//! two named sets of interface names that the daemon fills from detection
//! (`location::Judgements`), looked up in the base chains before the
//! patterns' verdict map:
//!
//! ```text
//! iifname @location_domain goto in_domain        detected on the domain's network
//! iifname != @location_not_domain
//!   iifname != { domain patterns } goto in_public  not decided: undecided, or not seen yet
//! iifname vmap { patterns }                      decided not domain: by name
//! ```
//!
//! An interface earns its private pattern by a decision, so one that appears
//! is public until the detector has judged it, however fast a packet comes.
//! Interfaces that a domain pattern names are never judged (the pattern is
//! the administrator's assertion), so neither set holds them; `lo` never
//! reaches the profiles.

use serde::Serialize;

use crate::location::{Judgements, State};
use crate::nft::{self, ifname_key, Elem, Expr, Fill, KeyType, Set, Stmt, NO_OWNER};
use crate::policy::{Direction, Policy, ProfileKind};

use super::Compiled;

pub const DOMAIN_SET: &str = "location_domain";
pub const NOT_DOMAIN_SET: &str = "location_not_domain";

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

/// The two sets, holding the interfaces `judged` to be domain and not.
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
    vec![set(DOMAIN_SET, State::Domain), set(NOT_DOMAIN_SET, State::NotDomain)]
}

/// The base chain's lookups of the sets, before the patterns.
pub fn rules(policy: &Policy, direction: Direction) -> Vec<nft::Rule> {
    let key = Expr::Meta(if direction == Direction::In { "iifname" } else { "oifname" });
    let goto = |profile| Stmt::Verdict(nft::Verdict::Goto(super::profile_chain_name(direction, profile)));
    let domain = nft::Rule {
        stmts: vec![Stmt::InSet(key.clone(), DOMAIN_SET.into()), goto(ProfileKind::Domain)],
        comment: Some("location domain".into()),
    };
    let mut undecided = vec![Stmt::NotInSet(key.clone(), NOT_DOMAIN_SET.into())];
    let patterns = &policy.profile(ProfileKind::Domain).interfaces.value;
    if !patterns.is_empty() {
        let names: Vec<serde_json::Value> = patterns.iter().map(|p| p.0.clone().into()).collect();
        undecided.push(Stmt::NotEquals(key, serde_json::json!({ "set": names })));
    }
    undecided.push(goto(ProfileKind::Public));
    vec![domain, nft::Rule { stmts: undecided, comment: Some("location public".into()) }]
}

/// The profile of `ifname` and why, as the base chains decide it: over the
/// sets of `compiled` (the kernel's elements), then the policy's patterns.
pub fn profile_of(policy: &Policy, compiled: &Compiled, ifname: &str) -> (ProfileKind, Source) {
    let k = ifname_key(ifname);
    let holds = |set: &str| {
        compiled.table.sets.iter().any(|s| s.name == set && s.elems.iter().any(|e| e.ranges.first() == Some(&(k, k))))
    };
    let pattern = policy.pattern_profile(ifname);
    if holds(DOMAIN_SET) {
        (ProfileKind::Domain, Source::Detection)
    } else if policy.detect().is_some()
        && ifname != "lo"
        && pattern != Some(ProfileKind::Domain)
        && !holds(NOT_DOMAIN_SET)
    {
        (ProfileKind::Public, Source::Detection)
    } else {
        pattern.map_or((ProfileKind::Public, Source::Default), |p| (p, Source::Pattern))
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
        assert_eq!(
            of(&c, "wlan0"),
            (ProfileKind::Public, Source::Detection),
            "a private pattern waits for a judgement"
        );
        assert_eq!(of(&c, "eth0"), (ProfileKind::Public, Source::Detection));
        assert_eq!(of(&c, "corp0"), (ProfileKind::Domain, Source::Pattern), "a domain pattern is never judged");

        let j = judged(&[
            ("eth0", State::Domain),
            ("wlan0", State::Undecided),
            ("eth1", State::NotDomain),
            ("wlan1", State::NotDomain),
        ]);
        let updates = c.location_updates(&j);
        assert_eq!(updates.len(), 2);
        c.replace_sets(updates);
        assert!(c.location_updates(&j).is_empty(), "applied: nothing left to change");
        assert_eq!(of(&c, "eth0"), (ProfileKind::Domain, Source::Detection));
        assert_eq!(of(&c, "wlan0"), (ProfileKind::Public, Source::Detection));
        assert_eq!(of(&c, "eth1"), (ProfileKind::Public, Source::Default));
        assert_eq!(of(&c, "wlan1"), (ProfileKind::Private, Source::Pattern), "decided not domain: its pattern");
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
