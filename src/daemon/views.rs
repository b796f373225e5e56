//! Answers to the read-only requests, as JSON values the CLI renders.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::engine::Engine;
use crate::backend::Backend;
use crate::compile::keyword_sets;
use crate::compile::{default_rule_comment, TABLE};
use crate::net::{format_addr_range, icmp_type_name, protocol_name};
use crate::policy::values::{format_address, Keyword};
use crate::policy::{Direction, Policy, ProfileKind, Rule, Sourced};

/// Packets and bytes.
pub(super) type Counter = (u64, u64);

/// Per-rule counters (summed over the rule's set elements, found by their comment)
/// and per-profile-default counters (found by the default rule's comment).
pub(super) struct Counters {
    pub rules: HashMap<usize, Counter>,
    pub defaults: HashMap<String, Counter>,
}

fn read_counters(listing: &Value) -> Counters {
    let mut c = Counters { rules: HashMap::new(), defaults: HashMap::new() };
    let counter = |v: &Value| (v["packets"].as_u64().unwrap_or(0), v["bytes"].as_u64().unwrap_or(0));
    for obj in listing["nftables"].as_array().into_iter().flatten() {
        for elem in obj["set"]["elem"].as_array().into_iter().flatten() {
            let e = &elem["elem"];
            if let Some(tag) = e["comment"].as_str().and_then(|t| t.parse::<usize>().ok()) {
                let (p, b) = counter(&e["counter"]);
                let total = c.rules.entry(tag).or_default();
                *total = (total.0 + p, total.1 + b);
            }
        }
        if let Some(comment) = obj["rule"]["comment"].as_str() {
            let stmt = obj["rule"]["expr"].as_array().into_iter().flatten().find(|s| s.get("counter").is_some());
            if let Some(s) = stmt {
                c.defaults.insert(comment.to_string(), counter(&s["counter"]));
            }
        }
    }
    c
}

pub(super) fn counters<B: Backend>(engine: &Engine<B>) -> Result<Counters, String> {
    let listing = engine.backend.read(TABLE, false).map_err(|e| format!("cannot read the table: {e}"))?;
    Ok(listing.as_ref().map_or(Counters { rules: HashMap::new(), defaults: HashMap::new() }, read_counters))
}

fn sourced<T: serde::Serialize>(s: &Sourced<T>) -> Value {
    json!({ "value": s.value, "from": s.from.as_ref().map(ToString::to_string) })
}

pub fn rule_view(rule: &Rule) -> Value {
    let ports = |l: &[crate::net::PortRange]| -> Vec<String> {
        l.iter().map(|p| if p.0 == p.1 { p.0.to_string() } else { format!("{}-{}", p.0, p.1) }).collect()
    };
    let proto = rule.protocol.unwrap_or(0);
    json!({
        "name": rule.name,
        "source": rule.place.to_string(),
        "direction": rule.direction,
        "action": rule.action,
        "enabled": rule.enabled,
        "protocol": protocol_name(rule.protocol),
        "local-ports": ports(&rule.local_ports),
        "remote-ports": ports(&rule.remote_ports),
        "remote-addresses": rule.remote_addresses.iter().map(format_address).collect::<Vec<_>>(),
        "local-addresses": rule.local_addresses.iter().map(format_address).collect::<Vec<_>>(),
        "interfaces": rule.interfaces.iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        "profiles": rule.profiles,
        "icmp-types": rule.icmp_types.iter().map(|&t| icmp_type_name(proto, t)).collect::<Vec<_>>(),
        "services": rule.services,
        "group": rule.core.then_some("core-networking"),
        "users": rule.users,
        "remote-groups": rule.remote_groups,
        "require-secure": rule.require_secure,
        "log": rule.log,
    })
}

pub fn policy_view(policy: &Policy) -> Value {
    let profiles: Vec<Value> = policy
        .profiles
        .iter()
        .map(|p| {
            let interfaces = Sourced {
                value: p.interfaces.value.iter().map(|i| i.0.clone()).collect::<Vec<_>>(),
                from: p.interfaces.from.clone(),
            };
            json!({
                "profile": p.kind,
                "interfaces": sourced(&interfaces),
                "inbound": sourced(&p.inbound),
                "outbound": sourced(&p.outbound),
            })
        })
        .collect();
    json!({
        "files": policy.files,
        "default": policy.default,
        "profiles": profiles,
        "settings": {
            "log-dropped": sourced(&policy.settings.log_dropped),
            "core-networking": sourced(&policy.settings.core_networking),
        },
        "groups": policy.groups,
        "group-connections": policy.group_connections,
        "rules": policy.rules.iter().map(rule_view).collect::<Vec<_>>(),
    })
}

/// `t` in RFC 3339 at the offset of `zone` (the host's local time for the
/// daemon, `/etc/localtime` or `TZ`), to the second: `2026-12-03T09:15:02+01:00`.
fn rfc3339(t: SystemTime, zone: &jiff::tz::TimeZone) -> Option<String> {
    let at = jiff::Timestamp::try_from(t).ok()?.to_zoned_datetime(zone.clone());
    Some(at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
}

pub fn state<B: Backend>(engine: &Engine<B>) -> Result<Value, String> {
    // Terse: a 100,000-element table need not be listed to know it is there.
    let present = engine.backend.read(TABLE, true).map_err(|e| format!("cannot read the table: {e}"))?.is_some();
    let applied = engine.applied.as_ref();
    let table = applied.map(|a| &a.compiled.table);
    Ok(json!({
        "table": format!("inet {TABLE}"),
        "present": present,
        "generation": engine.generation,
        "applied-at": applied.and_then(|a| rfc3339(a.at, &jiff::tz::TimeZone::system())),
        "last-apply-ms": engine.last_apply.as_secs_f64() * 1000.0,
        "policy-dirs": engine.dirs.policy,
        "services-dirs": engine.dirs.services,
        "files": applied.map(|a| a.policy.files.clone()).unwrap_or_default(),
        "rules": applied.map_or(0, |a| a.policy.rules.len()),
        "enabled-rules": applied.map_or(0, |a| a.policy.rules.iter().filter(|r| r.enabled).count()),
        "sets": table.map_or(0, |t| t.sets.len()),
        "elements": table.map_or(0, |t| t.element_count()),
        "chains": table.map_or(0, |t| t.chains.len()),
        "nft-rules": table.map_or(0, |t| t.rule_count()),
        "confirm-pending-secs": engine.pending.as_ref().map(|p| p.deadline.saturating_duration_since(Instant::now()).as_secs()),
        "last-error": engine.last_error,
    }))
}

pub fn rules<B: Backend>(engine: &Engine<B>) -> Result<Value, String> {
    let Some(applied) = &engine.applied else { return Ok(json!([])) };
    let counters = counters(engine)?;
    let rules = applied.policy.rules.iter().enumerate().map(|(i, r)| {
        let (packets, bytes) = counters.rules.get(&i).copied().unwrap_or_default();
        let mut v = rule_view(r);
        v["packets"] = json!(packets);
        v["bytes"] = json!(bytes);
        v
    });
    Ok(Value::Array(rules.collect()))
}

/// The host's interfaces (in the daemon's network namespace) and their profile.
fn host_interfaces(policy: &Policy) -> Vec<Value> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().map(|n| json!({ "interface": n, "profile": policy.profile_of(&n) })).collect()
}

pub fn profiles<B: Backend>(engine: &Engine<B>) -> Result<Value, String> {
    let Some(applied) = &engine.applied else { return Ok(json!({})) };
    let counters = counters(engine)?;
    let policy = &applied.policy;
    let profiles: Vec<Value> = ProfileKind::ALL
        .iter()
        .map(|&k| {
            let p = policy.profile(k);
            let default = |d: Direction| {
                let (packets, bytes) = counters.defaults.get(&default_rule_comment(d, k)).copied().unwrap_or_default();
                json!({ "verdict": p.default_for(d), "packets": packets, "bytes": bytes })
            };
            json!({
                "profile": k,
                "interfaces": p.interfaces.value.iter().map(|i| i.0.clone()).collect::<Vec<_>>(),
                "inbound": default(Direction::In),
                "outbound": default(Direction::Out),
            })
        })
        .collect();
    Ok(json!({ "profiles": profiles, "host-interfaces": host_interfaces(policy) }))
}

/// Every keyword's current values, where each came from, and its set.
pub fn sets<B: Backend>(engine: &Engine<B>) -> Value {
    let in_table: Vec<String> = engine
        .applied
        .as_ref()
        .map_or_else(Vec::new, |a| a.compiled.dynamic.iter().map(|&(k, v4)| keyword_sets::name(k, v4)).collect());
    let sets: Vec<Value> = Keyword::ALL
        .iter()
        .flat_map(|&k| [true, false].map(|v4| (k, v4)))
        .map(|(keyword, v4)| {
            let name = keyword_sets::name(keyword, v4);
            let entries: Vec<Value> = engine
                .dynamic
                .entries(keyword, v4)
                .iter()
                .map(|e| json!({ "interface": e.interface, "address": format_addr_range(&e.addresses), "source": e.source }))
                .collect();
            json!({
                "keyword": keyword,
                "family": if v4 { "ipv4" } else { "ipv6" },
                "set": name,
                "in-table": in_table.contains(&name),
                "elements": entries,
            })
        })
        .collect();
    Value::Array(sets)
}

/// charon's SAs, each with the groups of its peer: those of its group
/// connection (`groups`: the group connections' names and groups), or for an
/// SA this host started, of the peer sets its address is in (`peers`); and
/// the soft SAs; and in `request` and `boundary`, the readiness counts by
/// source (`clear_inbound`). `socket` is `None` when isolation is off.
pub async fn sas(
    socket: Option<std::path::PathBuf>,
    groups: BTreeMap<String, Vec<String>>,
    peers: crate::compile::GroupPeers,
    soft: Vec<super::first_contact::SoftSa>,
    clear_inbound: Option<Vec<Value>>,
) -> crate::protocol::Response {
    use crate::protocol::Response;
    let Some(socket) = socket else {
        return Response::Ok(json!({ "isolation": "off", "ike-sas": [], "soft-sas": [] }));
    };
    match crate::ike::list_sas(&socket).await {
        Ok(mut sas) => {
            for sa in &mut sas {
                let addr = sa.remote_host.as_deref().and_then(|h| h.parse::<std::net::IpAddr>().ok());
                let started = sa.name == crate::ike::conn::CONN;
                sa.groups = match (started, addr) {
                    (true, Some(addr)) => {
                        peers.iter().filter(|(_, a)| a.contains(&addr)).map(|(g, _)| g.clone()).collect()
                    }
                    _ => groups.get(&sa.name).cloned().unwrap_or_default(),
                };
            }
            Response::Ok(json!({ "isolation": "on", "ike-sas": sas, "soft-sas": soft, "clear-inbound": clear_inbound }))
        }
        Err(e) => Response::Error(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use jiff::tz::{Offset, TimeZone};

    use super::rfc3339;

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
