//! Staged rules beside the enforced ones (docs/policy.md, "stage: audit"):
//! they decide nothing; the first packet of a new connection that they would
//! decide otherwise is counted, by staged rule (the counter of its set
//! element, as for enforced rules) and by remote address (a set the packet
//! path fills), and logged, rate-limited.
//!
//! A staged rule can only change what the enforced rules leave to a lower
//! precedence: core networking, bypass and block rules decide the same with
//! or without it. So the profile chain `in_P` calls the staged chains at its
//! verdicts that a staged rule could change, and only there:
//!
//! ```text
//! enforced allow lookup   goto staged_in_P_accept (or _log_in_allow...):
//!                             ct state new jump staged_in_P_blocks; then the
//!                             lookup's own verdict
//! before a default allow  ct state new jump staged_in_P_blocks
//! before a default block  ct state new jump staged_in_P_unmatched:
//!                             staged block lookups (in copies, `_check`,
//!                             which count nothing): return
//!                             staged allow lookups: goto staged_in_would_allow
//! staged_in_P_blocks      staged block lookups: goto staged_in_would_block
//! staged_in_would_*       update @staged_in_would_*4/6 { remote address },
//!                         rate-limited log; return
//! ```
//!
//! Established traffic never reaches a profile chain, so it costs nothing.

use serde::{Deserialize, Serialize};

use super::{limited_log, log_prefix, Compiled, Field, Layer, LogOrigin, Lookup};
use crate::nft::{self, Chain, Elem, Set, Stmt};
use crate::policy::{Action, Direction, Policy, ProfileKind, Verdict};

/// What a staged rule would have done to a connection the enforced policy
/// decided otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Would {
    /// Block one that the enforced policy allowed.
    Block,
    /// Allow one that the enforced policy's default blocked.
    Allow,
}

impl Would {
    pub const ALL: [Would; 2] = [Would::Block, Would::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            Would::Block => "would-block",
            Would::Allow => "would-allow",
        }
    }

    /// The staged decision.
    pub fn verdict(self) -> Verdict {
        match self {
            Would::Block => Verdict::Block,
            Would::Allow => Verdict::Allow,
        }
    }

    /// What a staged rule whose verdict is `verdict` would do where it differs.
    pub fn of(verdict: Verdict) -> Would {
        match verdict {
            Verdict::Block => Would::Block,
            Verdict::Allow => Would::Allow,
        }
    }
}

/// The set of the remote addresses a staged rule would have decided
/// otherwise, by direction: `staged_in_would_block4`.
pub fn sources_set_name(direction: Direction, would: Would, v4: bool) -> String {
    let version = if v4 { 4 } else { 6 };
    format!("staged_{}_{}{version}", direction.as_str(), would.as_str().replace('-', "_"))
}

fn would_chain_name(direction: Direction, would: Would) -> String {
    format!("staged_{}_{}", direction.as_str(), would.as_str().replace('-', "_"))
}

/// The copy of a staged block set that the unmatched chains look up: its
/// elements own no rule, so that checking them counts nothing.
fn check_set_name(set: &str) -> String {
    format!("{set}_check")
}

/// The staged rules of one direction and profile, where they can change a
/// decision.
pub(super) struct Plan<'c> {
    direction: Direction,
    profile: ProfileKind,
    default: Verdict,
    blocks: Vec<&'c Lookup>,
    allows: Vec<&'c Lookup>,
}

impl<'c> Plan<'c> {
    /// None where no staged rule can change a decision.
    pub(super) fn of(
        policy: &Policy,
        compiled: &'c Compiled,
        direction: Direction,
        profile: ProfileKind,
    ) -> Option<Self> {
        let (blocks, allows) =
            compiled.staged_lookups(direction, profile).partition(|l| l.group.action == Action::Block);
        let plan = Plan { direction, profile, default: policy.profile(profile).default_for(direction), blocks, allows };
        (!plan.blocks.is_empty() || plan.counts_allows()).then_some(plan)
    }

    /// Whether a staged allow can meet a connection that the enforced policy
    /// blocks by default (one that an enforced block rule blocks stays blocked).
    fn counts_allows(&self) -> bool {
        self.default == Verdict::Block && !self.allows.is_empty()
    }

    fn name(&self, what: &str) -> String {
        format!("staged_{}_{}_{what}", self.direction.as_str(), self.profile.as_str())
    }

    /// The verdict of an enforced lookup, which was `then`: an allow goes
    /// through the staged blocks first.
    pub(super) fn verdict(&self, lookup: &Lookup, then: nft::Verdict) -> nft::Verdict {
        if lookup.group.layer != Layer::Rules || lookup.group.action != Action::Allow || self.blocks.is_empty() {
            return then;
        }
        nft::Verdict::Goto(self.allowed_chain_name(&then))
    }

    fn allowed_chain_name(&self, then: &nft::Verdict) -> String {
        match then {
            nft::Verdict::Goto(target) => self.name(target),
            _ => self.name("accept"),
        }
    }

    /// The rule before the profile's default.
    pub(super) fn before_default(&self) -> Option<nft::Rule> {
        let chain = match self.default {
            Verdict::Allow => (!self.blocks.is_empty()).then(|| self.name("blocks")),
            Verdict::Block => self.counts_allows().then(|| self.name("unmatched")),
        };
        chain.map(new_jump)
    }

    /// The plan's chains; `thens` are the verdicts of the enforced allow
    /// lookups of its profile chain.
    fn chains(&self, compiled: &Compiled, thens: &[nft::Verdict]) -> Vec<Chain> {
        let mut chains = Vec::new();
        if !self.blocks.is_empty() {
            let would = nft::Verdict::Goto(would_chain_name(self.direction, Would::Block));
            let rules = self.lookups(compiled, &self.blocks, |l| l.set.clone(), would);
            chains.push(Chain { name: self.name("blocks"), base: None, rules });
            for then in thens {
                let rules = vec![new_jump(self.name("blocks")), verdict_rule(then.clone())];
                chains.push(Chain { name: self.allowed_chain_name(then), base: None, rules });
            }
        }
        if self.counts_allows() {
            let mut rules = self.lookups(compiled, &self.blocks, |l| check_set_name(&l.set), nft::Verdict::Return);
            let would = nft::Verdict::Goto(would_chain_name(self.direction, Would::Allow));
            rules.extend(self.lookups(compiled, &self.allows, |l| l.set.clone(), would));
            chains.push(Chain { name: self.name("unmatched"), base: None, rules });
        }
        chains
    }

    fn lookups(
        &self,
        compiled: &Compiled,
        lookups: &[&Lookup],
        set: impl Fn(&Lookup) -> String,
        then: nft::Verdict,
    ) -> Vec<nft::Rule> {
        let rules = lookups.iter().flat_map(|l| {
            super::lookup_rules(compiled, self.direction, &l.group, &set(l), Stmt::Verdict(then.clone()))
        });
        rules.collect()
    }
}

fn new_jump(chain: String) -> nft::Rule {
    nft::Rule { stmts: vec![Stmt::CtState(vec!["new"]), Stmt::Verdict(nft::Verdict::Jump(chain))], comment: None }
}

fn verdict_rule(then: nft::Verdict) -> nft::Rule {
    nft::Rule { stmts: vec![Stmt::Verdict(then)], comment: None }
}

fn plans<'c>(policy: &Policy, compiled: &'c Compiled) -> Vec<Plan<'c>> {
    let reachable = super::reachable(policy);
    [Direction::In, Direction::Out]
        .into_iter()
        .flat_map(|d| reachable.iter().map(move |&p| (d, p)))
        .filter_map(|(d, p)| Plan::of(policy, compiled, d, p))
        .collect()
}

/// What each direction's plans count: would-block, would-allow.
fn counted(plans: &[Plan], direction: Direction) -> Vec<Would> {
    let mine = || plans.iter().filter(move |p| p.direction == direction);
    let block = mine().any(|p| !p.blocks.is_empty());
    let allow = mine().any(Plan::counts_allows);
    [(Would::Block, block), (Would::Allow, allow)].into_iter().filter(|(_, on)| *on).map(|(w, _)| w).collect()
}

/// The sets the staged chains add: the remote addresses counted, and the
/// copies of the staged block sets that the unmatched chains check.
pub(super) fn sets(policy: &Policy, compiled: &Compiled) -> Vec<Set> {
    let plans = plans(policy, compiled);
    let mut sets: Vec<Set> = [Direction::In, Direction::Out]
        .into_iter()
        .flat_map(|d| counted(&plans, d).into_iter().map(move |w| (d, w)))
        .flat_map(|(d, w)| [true, false].map(|v4| (d, w, v4)))
        .map(|(d, w, v4)| Set {
            name: sources_set_name(d, w, v4),
            key: vec![if v4 { nft::KeyType::Ipv4Addr } else { nft::KeyType::Ipv6Addr }],
            interval: false,
            elems: Default::default(),
            fill: nft::Fill::Counting,
            cgroups: Default::default(),
        })
        .collect();
    let mut checked: Vec<&str> =
        plans.iter().filter(|p| p.counts_allows()).flat_map(|p| p.blocks.iter().map(|l| l.set.as_str())).collect();
    checked.sort();
    checked.dedup();
    sets.extend(checked.into_iter().map(|name| check_copy(compiled.set(name))));
    sets
}

/// The copy of an enforced block set that the staged chains check.
pub(super) fn check_copy(set: &Set) -> Set {
    let elems: Vec<Elem> = set.elems.iter().map(|e| Elem { ranges: e.ranges.clone(), tag: nft::NO_OWNER }).collect();
    Set { name: check_set_name(&set.name), elems: elems.into(), ..set.clone() }
}

/// The staged chains of `direction`.
pub(super) fn chains(policy: &Policy, compiled: &Compiled, direction: Direction) -> Vec<Chain> {
    let plans = plans(policy, compiled);
    let mut chains: Vec<Chain> = counted(&plans, direction)
        .into_iter()
        .map(|would| Chain {
            name: would_chain_name(direction, would),
            base: None,
            rules: would_rules(direction, would),
        })
        .collect();
    for plan in plans.iter().filter(|p| p.direction == direction) {
        let allows = compiled
            .lookups(direction, plan.profile)
            .filter(|l| l.group.layer == Layer::Rules && l.group.action == Action::Allow);
        let mut thens: Vec<nft::Verdict> = Vec::new();
        for then in allows.map(|l| super::enforced_then(direction, &l.group)) {
            if !thens.contains(&then) {
                thens.push(then);
            }
        }
        chains.extend(plan.chains(compiled, &thens));
    }
    chains
}

/// Counts the remote address (nft adds the IP version's check that each
/// address expression depends on) and logs.
fn would_rules(direction: Direction, would: Would) -> Vec<nft::Rule> {
    let count = [(true, Field::RemoteAddr4), (false, Field::RemoteAddr6)].map(|(v4, field)| nft::Rule {
        stmts: vec![Stmt::Update(field.expr(direction), sources_set_name(direction, would, v4))],
        comment: None,
    });
    count.into_iter().chain([limited_log(log_prefix(direction, &LogOrigin::Staged(would)))]).collect()
}

#[cfg(test)]
mod tests;
