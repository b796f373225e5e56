//! `show stats` and the Prometheus endpoint's figures: per-rule and per-default
//! counters (the kernel's, and how many of their packets were logged), applies,
//! dynamic set sizes, isolation and the monitor.

use serde_json::{json, Value};

use super::engine::Engine;
use super::isolation::Isolation;
use super::readiness;
use super::views::counters;
use crate::backend::Backend;
use crate::compile::default_rule_comment;
use crate::compile::keyword_sets;
use crate::monitor::Hub;
use crate::policy::values::Keyword;
use crate::policy::{Direction, ProfileKind};

pub fn stats<B: Backend>(engine: &Engine<B>, hub: &Hub, isolation: &mut Isolation) -> Result<Value, String> {
    let counters = counters(engine)?;
    let applied = engine.applied.as_ref();
    let rules: Vec<Value> = applied
        .into_iter()
        .flat_map(|a| a.policy.rules.iter().enumerate())
        .map(|(i, r)| {
            let (packets, bytes) = counters.rules.get(&i).copied().unwrap_or_default();
            json!({
                "name": r.name,
                "source": r.place.to_string(),
                "direction": r.direction,
                "action": r.action,
                "enabled": r.enabled,
                "log": r.log,
                "packets": packets,
                "bytes": bytes,
                "logged": hub.logged_by_rule(&r.name),
            })
        })
        .collect();
    let defaults: Vec<Value> = applied
        .into_iter()
        .flat_map(|a| ProfileKind::ALL.map(|k| (a, k)))
        .flat_map(|(a, k)| [Direction::In, Direction::Out].map(|d| (a, k, d)))
        .map(|(a, profile, direction)| {
            let (packets, bytes) =
                counters.defaults.get(&default_rule_comment(direction, profile)).copied().unwrap_or_default();
            json!({
                "profile": profile,
                "direction": direction,
                "verdict": a.policy.profile(profile).default_for(direction),
                "packets": packets,
                "bytes": bytes,
                "logged": hub.logged_by_default(direction, profile),
            })
        })
        .collect();
    let sets: Vec<Value> = Keyword::ALL
        .iter()
        .flat_map(|&k| [true, false].map(|v4| (k, v4)))
        .map(|(keyword, v4)| {
            json!({
                "set": keyword_sets::name(keyword, v4),
                "keyword": keyword,
                "family": if v4 { "ipv4" } else { "ipv6" },
                "elements": engine.dynamic.entries(keyword, v4).len(),
            })
        })
        .collect();
    Ok(json!({
        "applies": engine.generation,
        "last-apply-ms": engine.last_apply.as_secs_f64() * 1000.0,
        "rules": rules,
        "defaults": defaults,
        "dynamic-sets": sets,
        "isolation": isolation.stats(applied.map(|a| &a.policy), engine.readiness().as_deref().map(readiness::per_port)),
        "monitor": hub.view(),
    }))
}
