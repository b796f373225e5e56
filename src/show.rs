//! Human-readable rendering of the daemon's answers (`--json` prints them as is).

use std::fmt::{Display, Write};
use std::path::PathBuf;

use serde_json::Value;

use crate::filewatch;
use crate::policy::raw::IsolationMode;
use crate::policy::{DefaultLayer, ProfileKind};
use crate::protocol::answers::{KeywordSet, OnOff, PolicyView, Profiles, RuleView, Sas, Setting, Staged, State, Stats};

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A text the daemon may not know: `-` then.
fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn strings<T: Display>(items: impl IntoIterator<Item = T>) -> Vec<String> {
    items.into_iter().map(|i| i.to_string()).collect()
}

fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let items = strings(items);
    if items.is_empty() {
        "any".into()
    } else {
        items.join(",")
    }
}

pub fn state(v: &State) -> String {
    let mut o = String::new();
    let present = if v.present { "present" } else { "MISSING" };
    let _ = writeln!(o, "table:       {} ({present})", v.table);
    let _ = writeln!(
        o,
        "ruleset:     {} sets, {} elements, {} chains, {} nft rules",
        v.sets, v.elements, v.chains, v.nft_rules
    );
    let _ = writeln!(o, "policy:      {} rules ({} enabled) from {} files", v.rules, v.enabled_rules, v.files.len());
    for f in &v.files {
        let _ = writeln!(o, "             {}", f.display());
    }
    ignored_dirs(&mut o, &v.ignored_dirs);
    let _ = writeln!(
        o,
        "applied:     generation {}, at {}, in {:.1} ms",
        v.generation,
        or_dash(&v.applied_at),
        v.last_apply_ms
    );
    let _ = match &v.file_watch {
        filewatch::Mode::Polling { interval_ms, reason } => {
            writeln!(o, "file watch:  POLLING every {interval_ms} ms ({reason}); inotify is tried again at each poll")
        }
        filewatch::Mode::Inotify => writeln!(o, "file watch:  inotify"),
    };
    if v.changes_in_progress > 0 {
        let _ =
            writeln!(o, "changing:    {} change(s) in progress; this is the state before them", v.changes_in_progress);
    }
    if let Some(secs) = v.confirm_pending_secs {
        let _ = writeln!(o, "pending:     rolls back in {secs} s unless `ringfence confirm`");
    }
    let _ = match &v.last_error {
        Some(e) => writeln!(o, "last reload: FAILED\n{e}"),
        None => writeln!(o, "last reload: ok"),
    };
    let mode = v.isolation.mode.unwrap_or(IsolationMode::Off);
    let ike = &v.isolation.ike;
    let charon = match (&ike.last_error, ike.loaded) {
        _ if mode == IsolationMode::Off => String::new(),
        (Some(e), _) => format!(", charon: {e}"),
        (None, true) => format!(
            ", loaded into charon at {} ({} loads)",
            ike.socket.as_deref().map_or_else(|| "-".into(), |p| p.display().to_string()),
            ike.loads
        ),
        (None, false) => ", not loaded into charon yet".into(),
    };
    let _ = writeln!(o, "isolation:   {}{charon}", mode.as_str());
    o
}

/// `tcp/22`, or `icmp` for a protocol without ports (port 0).
fn port_text(protocol: &str, port: u16) -> String {
    match port {
        0 => protocol.into(),
        port => format!("{protocol}/{port}"),
    }
}

/// IKE SAs with their CHILD SAs, as Windows lists main and quick mode SAs.
pub fn sas(v: &Sas) -> String {
    let mut o = String::new();
    if v.isolation == OnOff::Off {
        let _ = writeln!(o, "isolation is off");
    } else if v.ike_sas.is_empty() && v.soft_sas.is_empty() {
        let _ = writeln!(o, "no SA");
    }
    if let Some(clear) = &v.clear_inbound {
        let total: u64 = clear.iter().map(|c| c.count.connections).sum();
        let _ = writeln!(
            o,
            "readiness: {total} new connections in clear from secure subnets (secure-request would refuse them){}",
            if clear.is_empty() { "" } else { ":" }
        );
        for c in clear {
            let (source, c) = (c.source, &c.count);
            let _ = writeln!(o, "  {source} {}: {}", port_text(&c.protocol, c.port), c.connections);
        }
    }
    for sa in &v.soft_sas {
        let _ = writeln!(
            o,
            "{} in clear (soft SA: {}) since {}, ends {} unless traffic goes on",
            sa.peer,
            sa.reason.as_str(),
            rfc3339(sa.since),
            rfc3339(sa.expires),
        );
    }
    for ike in &v.ike_sas {
        let _ = writeln!(
            o,
            "{} {} <-> {} {}  {} ({} initiated), IKE {}/{}/{}{}",
            or_dash(&ike.local_host),
            or_dash(&ike.local_id),
            or_dash(&ike.remote_host),
            or_dash(&ike.remote_id),
            or_dash(&ike.state),
            if ike.initiator.as_deref() == Some("yes") { "we" } else { "peer" },
            or_dash(&ike.encr_alg),
            or_dash(&ike.integ_alg),
            or_dash(&ike.dh_group),
            if ike.groups.is_empty() { String::new() } else { format!(", groups {}", ike.groups.join(",")) },
        );
        for child in ike.child_sas.values() {
            let _ = writeln!(
                o,
                "  {} {} {} reqid {}  SPI in {} out {}  {}/{}  in {} B / {} pkts, out {} B / {} pkts  rekey in {} s, installed {} s ago",
                or_dash(&child.state),
                or_dash(&child.protocol),
                or_dash(&child.mode),
                or_dash(&child.reqid),
                or_dash(&child.spi_in),
                or_dash(&child.spi_out),
                or_dash(&child.encr_alg),
                or_dash(&child.integ_alg),
                or_dash(&child.bytes_in),
                or_dash(&child.packets_in),
                or_dash(&child.bytes_out),
                or_dash(&child.packets_out),
                or_dash(&child.rekey_time),
                or_dash(&child.install_time),
            );
        }
    }
    o
}

fn rule_match(r: &RuleView) -> String {
    let mut parts =
        vec![if r.services.is_empty() { r.protocol.clone() } else { format!("services={}", list(r.services.iter())) }];
    let lists = [
        ("lport", strings(&r.local_ports)),
        ("rport", strings(&r.remote_ports)),
        ("remote", strings(&r.remote_addresses)),
        ("local", strings(&r.local_addresses)),
        ("if", strings(&r.interfaces)),
        ("profile", strings(r.profiles.iter().map(|p| p.as_str()))),
        ("type", strings(&r.icmp_types)),
        ("uid", strings(r.users.iter())),
        ("unit", strings(r.units.iter())),
        ("groups", strings(r.remote_groups.iter())),
    ];
    for (label, items) in lists {
        if !items.is_empty() {
            parts.push(format!("{label}={}", items.join(",")));
        }
    }
    if r.require_secure && r.remote_groups.is_empty() {
        parts.push("secure".into());
    }
    parts.join(" ")
}

/// The policy's rules, then the core networking group's.
pub fn rules(all: &[RuleView]) -> String {
    let (core, own): (Vec<&RuleView>, Vec<&RuleView>) = all.iter().partition(|r| r.is_core());
    let mut o = rule_table(&own);
    if !core.is_empty() {
        o.push_str("\ncore networking (on unless settings.core-networking: false; looked up before every rule):\n");
        o.push_str(&rule_table(&core));
    }
    o
}

fn rule_table(rules: &[&RuleView]) -> String {
    let count = |n: Option<u64>| n.map_or_else(|| "-".into(), |n| n.to_string());
    let rows: Vec<[String; 7]> = rules
        .iter()
        .map(|r| {
            let mut action = r.action.as_str().to_string();
            if !r.enabled {
                action.push_str(" (disabled)");
            }
            if r.staged {
                action.push_str(" (staged)");
            }
            [
                r.name.to_string(),
                r.direction.as_str().into(),
                action,
                rule_match(r),
                count(r.packets),
                count(r.bytes),
                r.source.clone(),
            ]
        })
        .collect();
    table(&["NAME", "DIR", "ACTION", "MATCH", "PACKETS", "BYTES", "SOURCE"], &rows)
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut o = String::new();
    let mut line = |cells: Vec<&str>| {
        let text: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(o, "{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    o
}

pub fn profiles(v: &Option<Profiles>) -> String {
    let mut o = String::new();
    let Some(v) = v else { return o };
    for p in &v.profiles {
        let default = |d: &crate::protocol::answers::DefaultCount| {
            format!("{} ({} packets, {} bytes)", d.verdict.as_str(), d.packets, d.bytes)
        };
        let interfaces = profile_interfaces(p.profile, &p.interfaces);
        let _ = writeln!(
            o,
            "{}:\n  interfaces: {interfaces}\n  inbound:    {}\n  outbound:   {}",
            p.profile.as_str(),
            default(&p.inbound),
            default(&p.outbound)
        );
    }
    let _ = writeln!(o, "host interfaces:");
    for i in &v.host_interfaces {
        let _ = writeln!(o, "  {:<16} {:<8} by {}", i.interface, i.profile.as_str(), i.source.as_str());
        if let Some(d) = &i.detection {
            let since = d.detected_at.as_deref().map_or_else(String::new, |t| format!(" since {t}"));
            let _ = write!(o, "    detection: {}{since}", d.state.as_str());
            if let (Some(e), Some(ms)) = (&d.endpoint, d.rtt_ms) {
                let _ = write!(o, "; {e} answered in {ms:.1} ms");
            }
            let _ = writeln!(o, "; checked {}", d.checked_at.as_deref().unwrap_or("never"));
            if let Some(e) = &d.last_error {
                let _ = writeln!(o, "    last error: {e}");
            }
        }
    }
    o
}

/// An empty list means "none" for a profile, except for public, which has every
/// interface that no other profile claims.
fn profile_interfaces(profile: ProfileKind, names: &[String]) -> String {
    match (names.is_empty(), profile == ProfileKind::Public) {
        (true, true) => "every interface no other profile has".into(),
        (true, false) => "none".into(),
        (false, true) => format!("{}, and every interface no other profile has", names.join(",")),
        (false, false) => names.join(","),
    }
}

/// Where a value was set, with the fleet scope and revision of its file.
fn from<T>(v: &PolicyView, setting: &Setting<T>) -> String {
    match &setting.from {
        Some(place) => format!("(set at {place}{})", fleet_origin(v, place)),
        None => "(built-in default)".into(),
    }
}

/// `, fleet scope S revision R` for a file (or a place in one) that the fleet
/// agent wrote; nothing for other files.
fn fleet_origin(v: &PolicyView, place: &str) -> String {
    let of_file = |path: &&std::path::PathBuf| {
        path.to_str().and_then(|p| place.strip_prefix(p)).is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
    };
    let origin = v.fleet.iter().find(|(path, _)| of_file(path));
    origin.map_or(String::new(), |(_, o)| format!(", {o}"))
}

pub fn policy(v: &Option<PolicyView>) -> String {
    let mut o = String::new();
    let Some(v) = v else { return o };
    let default = match &v.default {
        DefaultLayer::Embedded => "the embedded copy (no file of its name exists)".into(),
        DefaultLayer::File(path) => path.display().to_string(),
        DefaultLayer::Masked(path) => format!("masked by {}: not in the policy", path.display()),
        DefaultLayer::Absent => "none".into(),
    };
    let _ = writeln!(o, "default layer (00-default.yaml): {default}");
    let _ = writeln!(o, "files:");
    for f in &v.files {
        let origin = v.fleet.get(f).map_or(String::new(), |o| format!("  ({o})"));
        let _ = writeln!(o, "  {}{origin}", f.display());
    }
    let _ = writeln!(o, "profiles:");
    for p in &v.profiles {
        let _ = writeln!(o, "  {}:", p.profile.as_str());
        let lines = [
            ("interfaces", profile_interfaces(p.profile, &p.interfaces.value), from(v, &p.interfaces)),
            ("inbound", p.inbound.value.as_str().into(), from(v, &p.inbound)),
            ("outbound", p.outbound.value.as_str().into(), from(v, &p.outbound)),
        ];
        for (key, value, from) in lines {
            let _ = writeln!(o, "    {key:<11} {value:<12} {from}");
        }
        if let Some(d) = &p.detect {
            let _ = writeln!(o, "    {:<11} {:<12} {}", "detect", d.value.probes.join(","), from(v, d));
            if let Some(ca) = &d.value.ca {
                let _ = writeln!(o, "      {:<9} {:<12} {}", "ca", ca.value.display(), from(v, ca));
            }
            let pins = if d.value.pins.is_empty() { "any key".to_string() } else { d.value.pins.join(",") };
            let (every, timeout) = (d.value.interval_secs, d.value.timeout_ms);
            let _ = writeln!(o, "      {:<9} {pins}; probed every {every} s, each probe within {timeout} ms", "pins");
        }
    }
    let _ = writeln!(o, "settings:");
    let settings = &v.settings;
    let lines = [
        ("log-dropped", settings.log_dropped.value.to_string(), from(v, &settings.log_dropped)),
        ("core-networking", settings.core_networking.value.to_string(), from(v, &settings.core_networking)),
        ("local-policy", settings.local_policy.value.as_str().into(), from(v, &settings.local_policy)),
    ];
    for (key, value, from) in lines {
        let _ = writeln!(o, "  {key} {value} {from}");
    }
    ignored_dirs(&mut o, &settings.ignored_dirs);
    if !v.groups.is_empty() {
        let _ = writeln!(o, "groups:");
        for g in &v.groups {
            let _ = writeln!(o, "  {}: subject {}  (set at {})", g.name, g.subject, g.place);
        }
        let _ = writeln!(o, "group connections (charon):");
        for c in &v.group_connections {
            let _ = writeln!(o, "  reqid {:#x}  {}  groups {}", c.reqid, c.pattern, list(&c.groups));
        }
    }
    let _ = writeln!(o, "rules:");
    for r in &v.rules {
        let enabled = if r.enabled { "" } else { " (disabled)" };
        let enabled = if r.is_core() { format!("{enabled} [core networking]") } else { enabled.into() };
        let _ = writeln!(
            o,
            "  {} {} {}{enabled}: {}  (set at {}{})",
            r.name,
            r.direction.as_str(),
            r.action.as_str(),
            rule_match(r),
            r.source,
            fleet_origin(v, &r.source)
        );
    }
    o
}

/// The catalogue, as `show services --json` prints it.
pub fn services_view(c: &crate::policy::services::Catalogue) -> Value {
    let entries = c.0.values().map(|svc| {
        let ports: Vec<String> = svc
            .ports
            .iter()
            .flat_map(|p| {
                let proto = crate::net::protocol_name(Some(p.protocol));
                let ranges: Vec<String> = p
                    .ports
                    .iter()
                    .map(|r| if r.0 == r.1 { format!("{proto}/{}", r.0) } else { format!("{proto}/{}-{}", r.0, r.1) })
                    .collect();
                if ranges.is_empty() {
                    vec![proto]
                } else {
                    ranges
                }
            })
            .collect();
        serde_json::json!({
            "name": svc.name,
            "ports": ports,
            "description": svc.description,
            "source": svc.place.to_string(),
        })
    });
    Value::Array(entries.collect())
}

pub fn services(v: &Value) -> String {
    let rows: Vec<[String; 4]> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|svc| {
            [
                s(&svc["name"]),
                list(svc["ports"].as_array().into_iter().flatten().map(s)),
                s(&svc["description"]),
                s(&svc["source"]),
            ]
        })
        .collect();
    table(&["NAME", "PORTS", "DESCRIPTION", "SOURCE"], &rows)
}

pub fn explanation(v: &Value) -> String {
    let d = &v["decided-by"];
    let by = match d["kind"].as_str() {
        Some("rule") => format!("rule {} ({}), set {}", s(&d["name"]), s(&d["place"]), s(&d["set"])),
        Some("core-networking") => format!(
            "core networking, rule {} ({}), set {} (settings.core-networking)",
            s(&d["name"]),
            s(&d["place"]),
            s(&d["set"])
        ),
        Some("loopback") => "loopback traffic is always allowed".into(),
        Some("isolation") => format!(
            "isolation ({}): a new connection in clear from a secure subnet is dropped; it must come over IPsec",
            s(&d["mode"])
        ),
        _ => format!("the {} profile's default", s(&d["profile"])),
    };
    // (In clear unless it says: the line is there only for a packet over IPsec.)
    let over = match &v["ipsec"] {
        Value::Null => String::new(),
        sa => {
            let reqid = sa["reqid"].as_u64().unwrap_or(0);
            let peer = match &sa["connection"] {
                Value::Null => "a peer in no group".into(),
                conn => {
                    let groups: Vec<String> = sa["groups"].as_array().into_iter().flatten().map(s).collect();
                    format!("connection for {}; groups {}", s(conn), groups.join(", "))
                }
            };
            format!("packet:     over IPsec, reqid {reqid:#x} ({peer})\n")
        }
    };
    // Where detection decided it, say so: the policy's patterns do not.
    let detected = if v["profile-source"] == "detection" { " (by detection)" } else { "" };
    format!("verdict:    {}\ndecided by: {by}\nprofile:    {}{detected}\n{over}", s(&v["verdict"]), s(&v["profile"]))
}

/// `explain --staged`: the enforced decision, then the staged one.
pub fn staged_explanation(v: &Value) -> String {
    let staged = match v["would"].as_str() {
        Some(would) => {
            format!("staged:     {} ({would}: only counted and logged, as staged)\n", s(&v["staged"]["verdict"]))
        }
        None => "staged:     the same\n".to_string(),
    };
    let by = match &v["staged"]["decided-by"] {
        d if d["kind"] == "rule" && v["would"].is_string() => {
            format!("            by staged rule {} ({}), set {}\n", s(&d["name"]), s(&d["place"]), s(&d["set"]))
        }
        _ => String::new(),
    };
    format!("{}{staged}{by}", explanation(&v["enforced"]))
}

/// The remote addresses `show staged` prints; `--json` has them all.
const TOP_SOURCES: usize = 20;

pub fn staged(v: &Staged) -> String {
    let mut o = String::new();
    if v.rules.is_empty() {
        let _ = writeln!(o, "no staged rule");
    }
    for r in &v.rules {
        let _ = writeln!(
            o,
            "{} ({}, {}): {} new connections {}",
            r.name,
            r.source,
            r.direction.as_str(),
            r.connections,
            r.would.as_str()
        );
    }
    if !v.sources.is_empty() {
        let _ = writeln!(o, "remote addresses, most first:");
    }
    for src in v.sources.iter().take(TOP_SOURCES) {
        let _ = writeln!(o, "  {} {} {}: {}", src.address, src.direction.as_str(), src.would.as_str(), src.connections);
    }
    if let Some(more) = v.sources.len().checked_sub(TOP_SOURCES).filter(|&n| n > 0) {
        let _ = writeln!(o, "  ... and {more} more (--json lists them all)");
    }
    o
}

pub fn sets(v: &[KeywordSet]) -> String {
    let mut o = String::new();
    for set in v {
        let used = if set.in_table { "" } else { " (no rule uses it)" };
        let _ = writeln!(o, "{} {} -> set {}{used}", set.keyword.as_str(), set.family.as_str(), set.set);
        if set.elements.is_empty() {
            let _ = writeln!(o, "  (empty)");
        }
        for e in &set.elements {
            let iface = e.interface.as_ref().map_or_else(String::new, |i| format!("{i} "));
            let _ = writeln!(o, "  {iface}{}  <- {}", e.address, e.source);
        }
    }
    o
}

/// `ADDRESS:PORT`, with brackets for IPv6, or the bare address.
fn endpoint(addr: &Value, port: &Value) -> String {
    let a = s(addr);
    match (port.as_u64(), a.contains(':')) {
        (Some(p), true) => format!("[{a}]:{p}"),
        (Some(p), false) => format!("{a}:{p}"),
        (None, _) => a,
    }
}

/// One line of `ringfence monitor`: a logged packet, source -> destination as
/// sent, or how many events a slow reader lost.
pub fn monitor_line(v: &Value) -> String {
    if let Some(n) = v["lagged"].as_u64() {
        return format!("-- {n} events lost: this monitor read too slowly --\n");
    }
    let e = &v["event"];
    let (remote, local) = (endpoint(&e["remote"], &e["remote-port"]), endpoint(&e["local"], &e["local-port"]));
    let (from, to) = if e["direction"] == "out" { (local, remote) } else { (remote, local) };
    let what = match &e["icmp-type"] {
        Value::String(t) => format!("{} {t}", s(&e["protocol"])),
        _ => s(&e["protocol"]),
    };
    let d = &e["decided-by"];
    let by = match d["kind"].as_str() {
        Some("rule") => format!("rule {} ({})", s(&d["name"]), s(&d["place"])),
        Some("profile-default") => format!("{} default", s(&d["profile"])),
        _ => "unknown (the policy changed since)".into(),
    };
    let by = match e["staged"].as_str() {
        Some(would) => format!("staged: would {would}, {by}"),
        None => by,
    };
    let uid = e["uid"].as_u64().map_or_else(String::new, |u| format!(" uid={u}"));
    format!(
        "{} {:<3} {:<8} {what} {from} -> {to}{uid}  {}  {by}\n",
        s(&e["time"]),
        s(&e["direction"]),
        s(&e["interface"]),
        s(&e["verdict"])
    )
}

pub fn stats(v: &Stats) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "applies:      {} (the last took {:.1} ms)", v.applies, v.last_apply_ms);
    let iso = &v.isolation;
    let loaded = if iso.charon_loaded { "loaded into charon" } else { "not loaded into charon" };
    let _ = writeln!(
        o,
        "isolation:    mode {}, {} ESP SAs in the kernel, {} soft SAs, {loaded}",
        iso.mode.map_or("-", IsolationMode::as_str),
        iso.sas_up.map_or_else(|| "?".into(), |n| n.to_string()),
        iso.soft_sas
    );
    let fallbacks: Vec<String> = iso.fallbacks.iter().map(|f| format!("{} {}", f.count, f.reason.as_str())).collect();
    if !fallbacks.is_empty() {
        let _ = writeln!(o, "fallbacks:    {} (first contacts that went on in clear)", fallbacks.join(", "));
    }
    if let Some(clear) = &iso.clear_inbound {
        let total: u64 = clear.iter().map(|c| c.connections).sum();
        let ports: Vec<String> =
            clear.iter().map(|c| format!("{} {}", port_text(&c.protocol, c.port), c.connections)).collect();
        let ports = if ports.is_empty() { String::new() } else { format!(" ({})", ports.join(", ")) };
        let _ = writeln!(o, "readiness:    {total} new connections in clear from secure subnets{ports}");
    }
    let m = &v.monitor;
    let t = &m.totals;
    let reading = match &m.error {
        Some(e) => format!("NOT reading: {e}"),
        None => format!("reading NFLOG group {}", m.nflog_group),
    };
    let _ = writeln!(
        o,
        "monitor:      {reading}; {} logged, {} unattributed, {} overruns, {} queue drops; {} of {} recent kept; {} subscribers",
        t.logged, t.unattributed, t.overruns, t.queue_drops, m.recent, m.ring_size, m.subscribers
    );
    let sets: Vec<String> = v.dynamic_sets.iter().map(|d| format!("{} {}", d.set, d.elements)).collect();
    let _ = writeln!(o, "dynamic sets: {}\n", sets.join(", "));
    let rules: Vec<[String; 7]> = v
        .rules
        .iter()
        .map(|r| {
            [
                r.name.to_string(),
                r.direction.as_str().into(),
                r.action.as_str().into(),
                r.packets.to_string(),
                r.bytes.to_string(),
                r.logged.to_string(),
                r.source.clone(),
            ]
        })
        .collect();
    o.push_str(&table(&["RULE", "DIR", "ACTION", "PACKETS", "BYTES", "LOGGED", "SOURCE"], &rules));
    let defaults: Vec<[String; 6]> = v
        .defaults
        .iter()
        .map(|d| {
            [
                d.profile.as_str().into(),
                d.direction.as_str().into(),
                d.count.verdict.as_str().into(),
                d.count.packets.to_string(),
                d.count.bytes.to_string(),
                d.logged.to_string(),
            ]
        })
        .collect();
    o.push('\n');
    o.push_str(&table(&["DEFAULT", "DIR", "VERDICT", "PACKETS", "BYTES", "LOGGED"], &defaults));
    o
}

/// The policy directories that `settings.local-policy: ignore` left unread.
fn ignored_dirs(o: &mut String, dirs: &[PathBuf]) {
    for d in dirs {
        let _ = writeln!(o, "             NOT READ (local-policy: ignore): {}", d.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::staged::Would;
    use crate::policy::Direction;
    use crate::protocol::answers::{StagedRule, StagedSource};

    #[test]
    fn show_staged_lists_the_rules_and_the_top_sources() {
        let rule = StagedRule {
            name: "no-smtp".into(),
            source: "60.yaml:4:5".into(),
            direction: Direction::Out,
            would: Would::Block,
            connections: 30,
        };
        let sources = (0..25u8)
            .map(|i| StagedSource {
                direction: Direction::Out,
                would: Would::Block,
                address: std::net::IpAddr::from([192, 0, 2, i]),
                connections: 30 - u64::from(i),
            })
            .collect();
        let text = staged(&Staged { rules: vec![rule], sources });
        assert!(text.starts_with("no-smtp (60.yaml:4:5, out): 30 new connections would-block\n"), "{text}");
        assert!(text.contains("  192.0.2.19 out would-block: 11\n"), "{text}");
        assert!(!text.contains("192.0.2.20 "), "{text}");
        assert!(text.ends_with("  ... and 5 more (--json lists them all)\n"), "{text}");
        assert_eq!(staged(&Staged::default()), "no staged rule\n");
    }
}
