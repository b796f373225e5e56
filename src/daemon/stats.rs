//! `show stats` and the Prometheus endpoint's figures: per-rule and per-default
//! counters (the kernel's, and how many of their packets were logged), applies,
//! dynamic set sizes, isolation and the monitor. Answered from the engine's
//! snapshot; the rules' lines are made as they are written.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use super::engine::{Applied, Snapshot};
use super::isolation::esp_sas_up;
use super::readiness;
use super::views::{counters, Counters};
use crate::compile::keyword_sets;
use crate::compile::staged::Would;
use crate::monitor::Hub;
use crate::policy::values::Keyword;
use crate::policy::{Direction, ProfileKind};
use crate::protocol::answers::{DefaultCount, DefaultStats, Family, IsolationStats, RuleStats, SetSize, Stats};

/// The rules' lines of `show stats`, made from the policy and the counters
/// each time they are read: once for `show stats`, once per rule family for
/// the metrics. None is held.
pub struct RuleLines<'a> {
    applied: Option<&'a Applied>,
    counters: Counters,
    hub: &'a Hub,
}

impl<'a> RuleLines<'a> {
    pub fn iter(&self) -> impl Iterator<Item = RuleStats<'a>> + '_ {
        let rules = self.applied.into_iter().flat_map(|a| a.policy.rules.iter().enumerate());
        rules.map(|(i, r)| {
            let (packets, bytes) = self.counters.rule(i);
            RuleStats {
                name: Cow::Borrowed(&r.name),
                source: r.place.to_string(),
                direction: r.direction,
                action: r.action,
                enabled: r.enabled,
                log: r.log,
                packets,
                bytes,
                logged: self.hub.logged_by_rule(&r.name),
                staged: r.staged.then(|| Would::of(r.action.verdict())),
            }
        })
    }
}

impl Serialize for RuleLines<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Reads the kernel's counters, ESP SAs (netlink) and readiness counts
/// (`nft`), on the reader's thread, then [`stats`]. `isolation` is the event
/// loop's part.
pub fn read<'a>(
    snapshot: &'a Snapshot,
    hub: &'a Hub,
    mut isolation: IsolationStats,
) -> Result<Stats<RuleLines<'a>>, String> {
    let counters = snapshot.applied.as_deref().map(|a| counters(&a.compiled)).transpose()?.unwrap_or_default();
    let sas = esp_sas_up().map_err(|e| e.to_string());
    (isolation.sas_up, isolation.error) = (sas.as_ref().ok().copied(), sas.err());
    isolation.clear_inbound = snapshot.readiness().as_deref().map(readiness::per_port);
    Ok(stats(snapshot, hub, isolation, counters))
}

/// The stats of `snapshot` with the kernel's `counters`.
pub fn stats<'a>(
    snapshot: &'a Snapshot,
    hub: &'a Hub,
    isolation: IsolationStats,
    counters: Counters,
) -> Stats<RuleLines<'a>> {
    let applied = snapshot.applied.as_deref();
    let defaults = applied
        .into_iter()
        .flat_map(|a| ProfileKind::ALL.map(|k| (a, k)))
        .flat_map(|(a, k)| [Direction::In, Direction::Out].map(|d| (a, k, d)))
        .map(|(a, profile, direction)| {
            let (packets, bytes) = counters.profile_default(direction, profile);
            let verdict = a.policy.profile(profile).default_for(direction);
            DefaultStats {
                profile,
                direction,
                count: DefaultCount { verdict, packets, bytes },
                logged: hub.logged_by_default(direction, profile),
            }
        })
        .collect();
    let dynamic_sets = Keyword::ALL
        .iter()
        .flat_map(|&k| [true, false].map(|v4| (k, v4)))
        .map(|(keyword, v4)| SetSize {
            set: keyword_sets::name(keyword, v4),
            keyword,
            family: Family::of(v4),
            elements: snapshot.dynamic.entries(keyword, v4).len(),
        })
        .collect();
    Stats {
        applies: snapshot.generation,
        last_apply_ms: snapshot.last_apply.as_secs_f64() * 1000.0,
        defaults,
        dynamic_sets,
        isolation,
        monitor: hub.view(),
        interfaces: applied.map(|a| super::views::host_interfaces(a, &snapshot.location)).unwrap_or_default(),
        rules: RuleLines { applied, counters, hub },
    }
}

#[cfg(test)]
mod tests;
