//! The replacing batch in nft's text syntax, for a table that JSON cannot
//! say: nft's JSON parser knows no `socket cgroupv2` (1.0.6, Debian 12's, nor
//! its version of 2026), which unit rules look up. The same commands as
//! [`Table::replace`]'s JSON, in the same order, from the same values: a
//! JSON value is written as nft writes it (`"eth*"`, `10.0.0.0/8`, `80-90`,
//! `{ tcp, udp }`, `exists`).

use std::fmt::Write;

use serde_json::Value;

use super::model::{Elem, Expr, Fill, Hook, Set, Stmt, Table, Verdict, DYNAMIC_SET_SIZE, FAMILY, NO_OWNER};

/// `add table; delete table; add table`, then every set, chain and rule.
pub fn replace(table: &Table) -> String {
    let t = format!("{FAMILY} {}", table.name);
    let mut out = format!("add table {t}\ndelete table {t}\nadd table {t}\n");
    for set in &table.sets {
        let _ = writeln!(out, "add set {t} {} {{ {}}}", set.name, set_body(set));
    }
    for chain in &table.chains {
        let base = chain.base.as_ref().map_or_else(String::new, |b| {
            let hook = match b.hook {
                Hook::Input => "input",
                Hook::Output => "output",
            };
            let policy = if b.policy_drop { "drop" } else { "accept" };
            format!(" {{ type filter hook {hook} priority {}; policy {policy}; }}", b.priority)
        });
        let _ = writeln!(out, "add chain {t} {}{base}", chain.name);
    }
    for chain in &table.chains {
        for rule in &chain.rules {
            let stmts: Vec<String> = rule.stmts.iter().map(stmt).collect();
            let comment = rule.comment.as_deref().map_or_else(String::new, |c| format!(" comment {}", quoted(c)));
            let _ = writeln!(out, "add rule {t} {} {}{comment}", chain.name, stmts.join(" "));
        }
    }
    out
}

fn set_body(set: &Set) -> String {
    let key: Vec<&str> = set.key.iter().map(|k| k.nft_name()).collect();
    let mut body = format!("type {}; ", key.join(" . "));
    match set.fill {
        Fill::Expiring(timeout) => {
            return body + &format!("flags timeout; timeout {timeout}s; size {DYNAMIC_SET_SIZE}; ")
        }
        Fill::Counting => body += &format!("size {DYNAMIC_SET_SIZE}; "),
        Fill::Daemon => {}
    }
    if set.interval {
        body += "flags interval; ";
    }
    body += "counter; ";
    if !set.elems.is_empty() {
        let elems: Vec<String> = set.elems.iter().map(|e| elem(set, e)).collect();
        body += &format!("elements = {{ {} }}; ", elems.join(", "));
    }
    body
}

fn elem(set: &Set, e: &Elem) -> String {
    let comment = if e.tag == NO_OWNER { String::new() } else { format!(" comment \"{}\"", e.tag) };
    value(&set.key_value(e)) + &comment
}

fn expr(e: &Expr) -> String {
    match e {
        Expr::Meta(key) => format!("meta {key}"),
        Expr::Payload(protocol, field) => format!("{protocol} {field}"),
        Expr::IpsecIn(key) => format!("ipsec in {key}"),
        Expr::Rt(key) => format!("rt {key}"),
        Expr::Number(n) => n.to_string(),
        Expr::SocketCgroup(level) => format!("socket cgroupv2 level {level}"),
        Expr::Concat(parts) => parts.iter().map(expr).collect::<Vec<_>>().join(" . "),
    }
}

fn stmt(s: &Stmt) -> String {
    match s {
        Stmt::Equals(left, right) => format!("{} {}", expr(left), value(right)),
        Stmt::NotEquals(left, right) => format!("{} != {}", expr(left), value(right)),
        Stmt::InSet(left, set) => format!("{} @{set}", expr(left)),
        Stmt::NotInSet(left, set) => format!("{} != @{set}", expr(left)),
        // A bit mask, as JSON's `in` (not the anonymous set `{ a, b }`).
        Stmt::CtState(states) => format!("ct state {}", states.join(",")),
        Stmt::Vmap(key, entries) => {
            let entries: Vec<String> = entries.iter().map(|(k, v)| format!("{} : {}", value(k), verdict(v))).collect();
            format!("{} vmap {{ {} }}", expr(key), entries.join(", "))
        }
        Stmt::Limit { per_second, burst } => format!("limit rate {per_second}/second burst {burst} packets"),
        Stmt::Log { group, prefix } => format!("log prefix {} group {group}", quoted(prefix)),
        Stmt::Counter => "counter".into(),
        Stmt::Update(key, set) => format!("update @{set} {{ {} }}", expr(key)),
        Stmt::Verdict(v) => verdict(v),
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Goto(target) => format!("goto {target}"),
        Verdict::Jump(target) => format!("jump {target}"),
        Verdict::Return => "return".into(),
    }
}

/// A value of the JSON API in the text syntax. Strings are quoted, which nft
/// reads as the same symbol (a protocol name, an interface, a cgroup path),
/// except addresses, whose ranges and prefixes nft reads unquoted only.
fn value(v: &Value) -> String {
    match v {
        Value::Bool(true) => "exists".into(),
        Value::Bool(false) => "missing".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => s.clone(),
        Value::String(s) => quoted(s),
        Value::Array(items) => items.iter().map(value).collect::<Vec<_>>().join(" . "),
        Value::Object(o) => match (o.get("set"), o.get("range"), o.get("prefix"), o.get("concat")) {
            (Some(Value::Array(items)), ..) => {
                format!("{{ {} }}", items.iter().map(value).collect::<Vec<_>>().join(", "))
            }
            (_, Some(Value::Array(r)), ..) if r.len() == 2 => format!("{}-{}", value(&r[0]), value(&r[1])),
            (_, _, Some(p), _) => format!("{}/{}", value(&p["addr"]), value(&p["len"])),
            (_, _, _, Some(c)) => value(c),
            // (The model writes no other value; nft refuses this one.)
            _ => v.to_string(),
        },
        Value::Null => v.to_string(),
    }
}

/// nft's text syntax has no escape inside quotes; the model's strings (names,
/// prefixes, comments) hold no double quote.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

#[cfg(test)]
mod tests;
