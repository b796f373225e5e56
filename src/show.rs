//! Human-readable rendering of the daemon's answers (`--json` prints them as is).

use std::fmt::Write;

use serde_json::Value;

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(v: &Value) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(v.as_u64().unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "any".into()
    } else {
        items.join(",")
    }
}

pub fn state(v: &Value) -> String {
    let mut o = String::new();
    let present = if v["present"] == Value::Bool(true) { "present" } else { "MISSING" };
    let _ = writeln!(o, "table:       {} ({present})", s(&v["table"]));
    let _ = writeln!(
        o,
        "ruleset:     {} sets, {} elements, {} chains, {} nft rules",
        v["sets"], v["elements"], v["chains"], v["nft-rules"]
    );
    let _ = writeln!(
        o,
        "policy:      {} rules ({} enabled) from {} files",
        v["rules"],
        v["enabled-rules"],
        v["files"].as_array().map_or(0, Vec::len)
    );
    for f in v["files"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "             {}", s(f));
    }
    ignored_dirs(&mut o, &v["ignored-dirs"]);
    let _ = writeln!(
        o,
        "applied:     generation {}, at {}, in {:.1} ms",
        v["generation"],
        s(&v["applied-at"]),
        v["last-apply-ms"].as_f64().unwrap_or(0.0)
    );
    let watch = &v["file-watch"];
    match watch["mode"].as_str() {
        Some("polling") => {
            let _ = writeln!(
                o,
                "file watch:  POLLING every {} ms ({}); inotify is tried again at each poll",
                watch["interval-ms"],
                s(&watch["reason"])
            );
        }
        Some(mode) => {
            let _ = writeln!(o, "file watch:  {mode}");
        }
        None => {}
    }
    if let Some(n) = v["changes-in-progress"].as_u64().filter(|&n| n > 0) {
        let _ = writeln!(o, "changing:    {n} change(s) in progress; this is the state before them");
    }
    if let Some(secs) = v["confirm-pending-secs"].as_u64() {
        let _ = writeln!(o, "pending:     rolls back in {secs} s unless `ringfence confirm`");
    }
    match &v["last-error"] {
        Value::String(e) => {
            let _ = writeln!(o, "last reload: FAILED\n{e}");
        }
        _ => {
            let _ = writeln!(o, "last reload: ok");
        }
    }
    let iso = &v["isolation"];
    let mode = iso["mode"].as_str().unwrap_or("off");
    let ike = &iso["ike"];
    let charon = match (&ike["last-error"], ike["loaded"].as_bool()) {
        _ if mode == "off" => String::new(),
        (Value::String(e), _) => format!(", charon: {e}"),
        (_, Some(true)) => format!(", loaded into charon at {} ({} loads)", s(&ike["socket"]), ike["loads"]),
        _ => ", not loaded into charon yet".into(),
    };
    let _ = writeln!(o, "isolation:   {mode}{charon}");
    o
}

/// `tcp/22`, or `icmp` for a protocol without ports (port 0).
fn port_text(c: &Value) -> String {
    match c["port"].as_u64() {
        Some(0) | None => s(&c["protocol"]),
        Some(port) => format!("{}/{port}", s(&c["protocol"])),
    }
}

/// IKE SAs with their CHILD SAs, as Windows lists main and quick mode SAs.
pub fn sas(v: &Value) -> String {
    let mut o = String::new();
    let sas = v["ike-sas"].as_array().map_or(&[][..], Vec::as_slice);
    let soft = v["soft-sas"].as_array().map_or(&[][..], Vec::as_slice);
    if v["isolation"] == "off" {
        let _ = writeln!(o, "isolation is off");
    } else if sas.is_empty() && soft.is_empty() {
        let _ = writeln!(o, "no SA");
    }
    if let Some(clear) = v["clear-inbound"].as_array() {
        let total: u64 = clear.iter().filter_map(|c| c["connections"].as_u64()).sum();
        let _ = writeln!(
            o,
            "readiness: {total} new connections in clear from secure subnets (secure-request would refuse them){}",
            if clear.is_empty() { "" } else { ":" }
        );
        for c in clear {
            let _ = writeln!(o, "  {} {}: {}", s(&c["source"]), port_text(c), c["connections"]);
        }
    }
    for sa in soft {
        let _ = writeln!(
            o,
            "{} in clear (soft SA: {}) since {}, ends {} unless traffic goes on",
            s(&sa["peer"]),
            s(&sa["reason"]),
            rfc3339(&sa["since"]),
            rfc3339(&sa["expires"]),
        );
    }
    for ike in sas {
        let _ = writeln!(
            o,
            "{} {} <-> {} {}  {} ({} initiated), IKE {}/{}/{}{}",
            s(&ike["local-host"]),
            s(&ike["local-id"]),
            s(&ike["remote-host"]),
            s(&ike["remote-id"]),
            s(&ike["state"]),
            if ike["initiator"] == "yes" { "we" } else { "peer" },
            s(&ike["encr-alg"]),
            s(&ike["integ-alg"]),
            s(&ike["dh-group"]),
            match ike["groups"].as_array() {
                Some(g) if !g.is_empty() => format!(", groups {}", g.iter().map(s).collect::<Vec<_>>().join(",")),
                _ => String::new(),
            },
        );
        for child in ike["child-sas"].as_object().into_iter().flat_map(|m| m.values()) {
            let _ = writeln!(
                o,
                "  {} {} {} reqid {}  SPI in {} out {}  {}/{}  in {} B / {} pkts, out {} B / {} pkts  rekey in {} s, installed {} s ago",
                s(&child["state"]),
                s(&child["protocol"]),
                s(&child["mode"]),
                s(&child["reqid"]),
                s(&child["spi-in"]),
                s(&child["spi-out"]),
                s(&child["encr-alg"]),
                s(&child["integ-alg"]),
                s(&child["bytes-in"]),
                s(&child["packets-in"]),
                s(&child["bytes-out"]),
                s(&child["packets-out"]),
                s(&child["rekey-time"]),
                s(&child["install-time"]),
            );
        }
    }
    o
}

fn rule_match(r: &Value) -> String {
    let services = r["services"].as_array().is_some_and(|a| !a.is_empty());
    let mut parts = vec![if services { format!("services={}", list(&r["services"])) } else { s(&r["protocol"]) }];
    for (key, label) in [
        ("local-ports", "lport"),
        ("remote-ports", "rport"),
        ("remote-addresses", "remote"),
        ("local-addresses", "local"),
        ("interfaces", "if"),
        ("profiles", "profile"),
        ("icmp-types", "type"),
        ("users", "uid"),
        ("remote-groups", "groups"),
    ] {
        if r[key].as_array().is_some_and(|a| !a.is_empty()) {
            parts.push(format!("{label}={}", list(&r[key])));
        }
    }
    if r["require-secure"] == Value::Bool(true) && !parts.iter().any(|p| p.starts_with("groups=")) {
        parts.push("secure".into());
    }
    parts.join(" ")
}

/// The policy's rules, then the core networking group's.
pub fn rules(v: &Value) -> String {
    let all = v.as_array().map_or(&[][..], Vec::as_slice);
    let (core, own): (Vec<&Value>, Vec<&Value>) = all.iter().partition(|r| r["group"] == "core-networking");
    let mut o = rule_table(&own);
    if !core.is_empty() {
        o.push_str("\ncore networking (on unless settings.core-networking: false; looked up before every rule):\n");
        o.push_str(&rule_table(&core));
    }
    o
}

fn rule_table(rules: &[&Value]) -> String {
    let rows: Vec<[String; 7]> = rules
        .iter()
        .map(|r| {
            let mut action = s(&r["action"]);
            if r["enabled"] == Value::Bool(false) {
                action.push_str(" (disabled)");
            }
            [
                s(&r["name"]),
                s(&r["direction"]),
                action,
                rule_match(r),
                s(&r["packets"]),
                s(&r["bytes"]),
                s(&r["source"]),
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

pub fn profiles(v: &Value) -> String {
    let mut o = String::new();
    for p in v["profiles"].as_array().into_iter().flatten() {
        let default = |d: &Value| format!("{} ({} packets, {} bytes)", s(&d["verdict"]), d["packets"], d["bytes"]);
        let interfaces = profile_interfaces(&p["profile"], &p["interfaces"]);
        let _ = writeln!(
            o,
            "{}:\n  interfaces: {interfaces}\n  inbound:    {}\n  outbound:   {}",
            s(&p["profile"]),
            default(&p["inbound"]),
            default(&p["outbound"])
        );
    }
    let _ = writeln!(o, "host interfaces:");
    for i in v["host-interfaces"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {:<16} {}", s(&i["interface"]), s(&i["profile"]));
    }
    o
}

/// An empty list means "none" for a profile, except for public, which has every
/// interface that no other profile claims.
fn profile_interfaces(profile: &Value, list: &Value) -> String {
    let names: Vec<String> = list.as_array().into_iter().flatten().map(s).collect();
    match (names.is_empty(), profile == "public") {
        (true, true) => "every interface no other profile has".into(),
        (true, false) => "none".into(),
        (false, true) => format!("{}, and every interface no other profile has", names.join(",")),
        (false, false) => names.join(","),
    }
}

fn from(v: &Value) -> String {
    match &v["from"] {
        Value::String(place) => format!("(set at {place})"),
        _ => "(built-in default)".into(),
    }
}

pub fn policy(v: &Value) -> String {
    let mut o = String::new();
    let path = s(&v["default"]["path"]);
    let default = match v["default"]["from"].as_str() {
        Some("embedded") => "the embedded copy (no file of its name exists)".into(),
        Some("file") => path,
        Some("masked") => format!("masked by {path}: not in the policy"),
        _ => "none".into(),
    };
    let _ = writeln!(o, "default layer (00-default.yaml): {default}");
    let _ = writeln!(o, "files:");
    for f in v["files"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {}", s(f));
    }
    let _ = writeln!(o, "profiles:");
    for p in v["profiles"].as_array().into_iter().flatten() {
        let _ = writeln!(o, "  {}:", s(&p["profile"]));
        for key in ["interfaces", "inbound", "outbound"] {
            let value = if key == "interfaces" {
                profile_interfaces(&p["profile"], &p[key]["value"])
            } else {
                s(&p[key]["value"])
            };
            let _ = writeln!(o, "    {key:<11} {value:<12} {}", from(&p[key]));
        }
    }
    let _ = writeln!(o, "settings:");
    for key in ["log-dropped", "core-networking", "local-policy"] {
        let setting = &v["settings"][key];
        let _ = writeln!(o, "  {key} {} {}", s(&setting["value"]), from(setting));
    }
    ignored_dirs(&mut o, &v["settings"]["ignored-dirs"]);
    let groups = v["groups"].as_array().map_or(&[][..], Vec::as_slice);
    if !groups.is_empty() {
        let _ = writeln!(o, "groups:");
        for g in groups {
            let _ = writeln!(o, "  {}: subject {}  (set at {})", s(&g["name"]), s(&g["subject"]), s(&g["place"]));
        }
        let _ = writeln!(o, "group connections (charon):");
        for c in v["group-connections"].as_array().into_iter().flatten() {
            let reqid = c["reqid"].as_u64().unwrap_or(0);
            let _ = writeln!(o, "  reqid {reqid:#x}  {}  groups {}", s(&c["pattern"]), list(&c["groups"]));
        }
    }
    let _ = writeln!(o, "rules:");
    for r in v["rules"].as_array().into_iter().flatten() {
        let enabled = if r["enabled"] == Value::Bool(false) { " (disabled)" } else { "" };
        let enabled =
            if r["group"] == "core-networking" { format!("{enabled} [core networking]") } else { enabled.into() };
        let _ = writeln!(
            o,
            "  {} {} {}{enabled}: {}  (set at {})",
            s(&r["name"]),
            s(&r["direction"]),
            s(&r["action"]),
            rule_match(r),
            s(&r["source"])
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
        .map(|svc| [s(&svc["name"]), list(&svc["ports"]), s(&svc["description"]), s(&svc["source"])])
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
    format!("verdict:    {}\ndecided by: {by}\nprofile:    {}\n{over}", s(&v["verdict"]), s(&v["profile"]))
}

pub fn sets(v: &Value) -> String {
    let mut o = String::new();
    for set in v.as_array().into_iter().flatten() {
        let used = if set["in-table"] == Value::Bool(true) { "" } else { " (no rule uses it)" };
        let _ = writeln!(o, "{} {} -> set {}{used}", s(&set["keyword"]), s(&set["family"]), s(&set["set"]));
        let elements = set["elements"].as_array().map_or(&[][..], Vec::as_slice);
        if elements.is_empty() {
            let _ = writeln!(o, "  (empty)");
        }
        for e in elements {
            let iface = match &e["interface"] {
                Value::String(i) => format!("{i} "),
                _ => String::new(),
            };
            let _ = writeln!(o, "  {iface}{}  <- {}", s(&e["address"]), s(&e["source"]));
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
    let uid = e["uid"].as_u64().map_or_else(String::new, |u| format!(" uid={u}"));
    format!(
        "{} {:<3} {:<8} {what} {from} -> {to}{uid}  {}  {by}\n",
        s(&e["time"]),
        s(&e["direction"]),
        s(&e["interface"]),
        s(&e["verdict"])
    )
}

pub fn stats(v: &Value) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "applies:      {} (the last took {:.1} ms)",
        v["applies"],
        v["last-apply-ms"].as_f64().unwrap_or(0.0)
    );
    let iso = &v["isolation"];
    let loaded =
        if iso["charon-loaded"] == Value::Bool(true) { "loaded into charon" } else { "not loaded into charon" };
    let _ = writeln!(
        o,
        "isolation:    mode {}, {} ESP SAs in the kernel, {} soft SAs, {loaded}",
        s(&iso["mode"]),
        iso["sas-up"],
        iso["soft-sas"]
    );
    let fallbacks: Vec<String> = iso["fallbacks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} {}", f["count"], s(&f["reason"])))
        .collect();
    if !fallbacks.is_empty() {
        let _ = writeln!(o, "fallbacks:    {} (first contacts that went on in clear)", fallbacks.join(", "));
    }
    if let Some(clear) = iso["clear-inbound"].as_array() {
        let total: u64 = clear.iter().filter_map(|c| c["connections"].as_u64()).sum();
        let ports: Vec<String> = clear.iter().map(|c| format!("{} {}", port_text(c), c["connections"])).collect();
        let ports = if ports.is_empty() { String::new() } else { format!(" ({})", ports.join(", ")) };
        let _ = writeln!(o, "readiness:    {total} new connections in clear from secure subnets{ports}");
    }
    let m = &v["monitor"];
    let t = &m["totals"];
    let reading = match &m["error"] {
        Value::String(e) => format!("NOT reading: {e}"),
        _ => format!("reading NFLOG group {}", m["nflog-group"]),
    };
    let _ = writeln!(
        o,
        "monitor:      {reading}; {} logged, {} unattributed, {} overruns, {} queue drops; {} of {} recent kept; {} subscribers",
        t["logged"], t["unattributed"], t["overruns"], t["queue-drops"], m["recent"], m["ring-size"], m["subscribers"]
    );
    let sets: Vec<String> = v["dynamic-sets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| format!("{} {}", s(&d["set"]), d["elements"]))
        .collect();
    let _ = writeln!(o, "dynamic sets: {}\n", sets.join(", "));
    let rules = columns(&v["rules"], ["name", "direction", "action", "packets", "bytes", "logged", "source"]);
    o.push_str(&table(&["RULE", "DIR", "ACTION", "PACKETS", "BYTES", "LOGGED", "SOURCE"], &rules));
    let defaults = columns(&v["defaults"], ["profile", "direction", "verdict", "packets", "bytes", "logged"]);
    o.push('\n');
    o.push_str(&table(&["DEFAULT", "DIR", "VERDICT", "PACKETS", "BYTES", "LOGGED"], &defaults));
    o
}

/// The given keys of each object of an array, as table cells.
fn columns<const N: usize>(rows: &Value, keys: [&str; N]) -> Vec<[String; N]> {
    rows.as_array().into_iter().flatten().map(|r| keys.map(|k| s(&r[k]))).collect()
}

/// The policy directories that `settings.local-policy: ignore` left unread.
fn ignored_dirs(o: &mut String, dirs: &Value) {
    for d in dirs.as_array().into_iter().flatten() {
        let _ = writeln!(o, "             NOT READ (local-policy: ignore): {}", s(d));
    }
}
