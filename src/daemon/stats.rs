//! `show stats` and the Prometheus endpoint's figures: per-rule and per-default
//! counters (the kernel's, and how many of their packets were logged), applies,
//! dynamic set sizes, isolation and the monitor. Answered from the engine's
//! snapshot; the rules are written one at a time.

use serde::Serialize;
use serde_json::{json, Value};

use super::engine::Snapshot;
use super::isolation::esp_sas_up;
use super::readiness;
use super::views::{counters, Counters, Lazy, WithRules};
use crate::compile::keyword_sets;
use crate::monitor::Hub;
use crate::policy::values::Keyword;
use crate::policy::{Action, Direction, ProfileKind};

/// One rule's line of `show stats`.
#[derive(Serialize)]
struct RuleStats<'a> {
    name: &'a str,
    source: String,
    direction: Direction,
    action: Action,
    enabled: bool,
    log: bool,
    packets: u64,
    bytes: u64,
    logged: u64,
}

/// `isolation` is the event loop's part; the ESP SAs and the readiness counts
/// are added to it here, on the reader's thread (they are read from the
/// kernel, with netlink and `nft`).
pub fn stats<'a>(snapshot: &'a Snapshot, hub: &'a Hub, mut isolation: Value) -> Result<impl Serialize + 'a, String> {
    let sas = esp_sas_up().map_err(|e| e.to_string());
    isolation["sas-up"] = json!(sas.as_ref().ok());
    isolation["error"] = json!(sas.err());
    isolation["clear-inbound"] = json!(snapshot.readiness().as_deref().map(readiness::per_port));
    let applied = snapshot.applied.as_deref();
    let counters: Counters = applied.map(|a| counters(&a.compiled)).transpose()?.unwrap_or_default();
    let defaults: Vec<Value> = applied
        .into_iter()
        .flat_map(|a| ProfileKind::ALL.map(|k| (a, k)))
        .flat_map(|(a, k)| [Direction::In, Direction::Out].map(|d| (a, k, d)))
        .map(|(a, profile, direction)| {
            let (packets, bytes) = counters.profile_default(direction, profile);
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
                "elements": snapshot.dynamic.entries(keyword, v4).len(),
            })
        })
        .collect();
    let head = json!({
        "applies": snapshot.generation,
        "last-apply-ms": snapshot.last_apply.as_secs_f64() * 1000.0,
        "defaults": defaults,
        "dynamic-sets": sets,
        "isolation": isolation,
        "monitor": hub.view(),
    });
    let rules = applied.into_iter().flat_map(|a| a.policy.rules.iter().enumerate()).map(move |(i, r)| {
        let (packets, bytes) = counters.rule(i);
        RuleStats {
            name: &r.name,
            source: r.place.to_string(),
            direction: r.direction,
            action: r.action,
            enabled: r.enabled,
            log: r.log,
            packets,
            bytes,
            logged: hub.logged_by_rule(&r.name),
        }
    });
    Ok(WithRules { head, rules: Lazy::new(rules) })
}
