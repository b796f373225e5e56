use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

pub const FAMILY: &str = "inet";

/// The data types of set keys, as nft names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum KeyType {
    Ifname,
    Uid,
    InetProto,
    IcmpType,
    Icmpv6Type,
    Ipv4Addr,
    Ipv6Addr,
    InetService,
    /// A cgroup v2 id (the inode number of its directory), which nft takes
    /// and prints as the path under /sys/fs/cgroup only ([`Set::cgroups`]).
    Cgroup,
}

impl KeyType {
    pub fn nft_name(self) -> &'static str {
        match self {
            KeyType::Ifname => "ifname",
            KeyType::Uid => "uid",
            KeyType::InetProto => "inet_proto",
            KeyType::IcmpType => "icmp_type",
            KeyType::Icmpv6Type => "icmpv6_type",
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetService => "inet_service",
            KeyType::Cgroup => "cgroupsv2",
        }
    }

    /// The JSON of one inclusive range of values of this type.
    ///
    /// Interface names are 16 zero-padded bytes (IFNAMSIZ) read as a big-endian
    /// number, so that `eth*` is the range from `eth\0..` to `eth\xff..`: that is
    /// how the kernel stores a wildcard interface in an interval set. Such a range
    /// is written back as the wildcard string nft expects.
    pub fn value(self, lo: u128, hi: u128) -> Value {
        match self {
            KeyType::Ifname => {
                let name = ifname_stem(lo);
                if lo == hi {
                    Value::String(name)
                } else {
                    Value::String(format!("{name}*"))
                }
            }
            KeyType::Ipv4Addr => addr_value(lo, hi, 32, |v| Ipv4Addr::from(v as u32).to_string()),
            KeyType::Ipv6Addr => addr_value(lo, hi, 128, |v| Ipv6Addr::from(v).to_string()),
            _ if lo == hi => json!(lo as u64),
            _ => json!({ "range": [lo as u64, hi as u64] }),
        }
    }
}

/// Encodes an interface name as the kernel compares it (see [`KeyType::value`]).
pub fn ifname_key(name: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let n = name.len().min(15);
    bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}

/// The range of names a wildcard `stem*` stands for.
pub fn ifname_glob_range(stem: &str) -> (u128, u128) {
    let lo = ifname_key(stem);
    let free_bits = 8 * (16 - stem.len().min(16)) as u32;
    let hi = if free_bits == 128 { u128::MAX } else { lo | ((1u128 << free_bits) - 1) };
    (lo, hi)
}

fn ifname_stem(key: u128) -> String {
    let bytes = key.to_be_bytes();
    let end = bytes.iter().position(|&b| b == 0 || b == 0xff).unwrap_or(16);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn addr_value(lo: u128, hi: u128, bits: u32, show: impl Fn(u128) -> String) -> Value {
    if lo == hi {
        return Value::String(show(lo));
    }
    let span = hi - lo;
    if span.count_ones() == span.trailing_ones() && lo & span == 0 {
        return json!({ "prefix": { "addr": show(lo), "len": bits - span.trailing_ones() } });
    }
    json!({ "range": [show(lo), show(hi)] })
}

/// The tag of an element that no rule owns (the elements of dynamic sets).
pub const NO_OWNER: u32 = u32::MAX;

/// One set element: a range per key field, and a tag written as the element's
/// comment (the compiler uses it to name the rule that owns the element, which is
/// how per-rule counters are read back from the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Elem {
    pub ranges: Box<[(u128, u128)]>,
    pub tag: u32,
}

/// A named set. With `interval`, every field may be a range, prefix or
/// wildcard; without it, elements are exact values and the kernel picks a hash.
/// The elements are shared, so that a copy of a table (the daemon's published
/// snapshot) costs no copy of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: Vec<KeyType>,
    pub interval: bool,
    pub elems: Arc<Vec<Elem>>,
    pub fill: Fill,
    /// The path under /sys/fs/cgroup of each cgroup id in the elements: nft
    /// 1.0.6 reads a `cgroupsv2` value as a path, never as an id, and
    /// resolves it itself.
    pub cgroups: Arc<CgroupPaths>,
}

/// Cgroup ids and their paths under /sys/fs/cgroup.
pub type CgroupPaths = BTreeMap<u64, String>;

impl Set {
    /// The JSON of one element's key, fields concatenated.
    pub(super) fn key_value(&self, e: &Elem) -> Value {
        key_value(&self.key, &self.cgroups, e)
    }
}

fn key_value(key: &[KeyType], cgroups: &CgroupPaths, e: &Elem) -> Value {
    let mut parts = key.iter().zip(e.ranges.iter()).map(|(k, &(lo, hi))| match k {
        // (A cgroup field is exact: ids have no order worth a range.)
        KeyType::Cgroup => json!(cgroups.get(&(lo as u64)).cloned().unwrap_or_else(|| lo.to_string())),
        _ => k.value(lo, hi),
    });
    if key.len() == 1 {
        parts.next().unwrap_or(Value::Null)
    } else {
        json!({ "concat": parts.collect::<Vec<_>>() })
    }
}

/// Who fills a set, and what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The daemon, in the table and by set updates; a counter on every element.
    Daemon,
    /// The packet path ([`Stmt::Update`]): it starts empty, and each element
    /// is gone this many seconds after it was last updated; no counters.
    Expiring(u32),
    /// The packet path: it starts empty and keeps its elements (up to
    /// [`DYNAMIC_SET_SIZE`]), with a counter on each, of the packets that
    /// updated it.
    Counting,
}

/// How many elements a set filled by the packet path may hold: the kernel
/// refuses new ones beyond it (the update statement then does nothing).
pub const DYNAMIC_SET_SIZE: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Input,
    Output,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    pub priority: i32,
    /// The verdict when no rule decides (Ringfence's chains always decide; this is
    /// the fail-closed backstop).
    pub policy_drop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
}

/// Packet fields a key or match reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta KEY` (iifname, oifname, l4proto, skuid, iif, oif)
    Meta(&'static str),
    /// `PROTO FIELD` (ip saddr, ip6 daddr, th dport, icmp type)
    Payload(&'static str, &'static str),
    /// `ipsec in KEY` (reqid): of the SA the packet was received over.
    IpsecIn(&'static str),
    /// `rt KEY` (ipsec: whether the packet's route is an xfrm bundle, i.e. it
    /// leaves through an SA).
    Rt(&'static str),
    /// A number, in a key that is the same for every packet in that place
    /// (the port of a protocol that has none).
    Number(u16),
    /// `socket cgroupv2 level N`: the id of the ancestor at depth N (the
    /// root is 0) of the cgroup of the packet's local socket: the sender's
    /// outbound; inbound, the socket the packet is for (the listener of a new
    /// connection). nft's JSON cannot say it (see `text`).
    SocketCgroup(u8),
    Concat(Vec<Expr>),
}

impl Expr {
    fn json(&self) -> Value {
        match self {
            Expr::Meta(key) => json!({ "meta": { "key": key } }),
            Expr::Payload(protocol, field) => json!({ "payload": { "protocol": protocol, "field": field } }),
            Expr::IpsecIn(key) => json!({ "ipsec": { "key": key, "dir": "in" } }),
            Expr::Rt(key) => json!({ "rt": { "key": key } }),
            Expr::Number(n) => json!(n),
            Expr::SocketCgroup(level) => json!({ "socket": { "key": "cgroupv2", "level": level } }),
            Expr::Concat(parts) if parts.len() == 1 => parts[0].json(),
            Expr::Concat(parts) => json!({ "concat": parts.iter().map(Expr::json).collect::<Vec<_>>() }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Goto(String),
    Jump(String),
    Return,
}

impl Verdict {
    fn json(&self) -> Value {
        match self {
            Verdict::Accept => json!({ "accept": null }),
            Verdict::Drop => json!({ "drop": null }),
            Verdict::Goto(target) => json!({ "goto": { "target": target } }),
            Verdict::Jump(target) => json!({ "jump": { "target": target } }),
            Verdict::Return => json!({ "return": null }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stmt {
    /// `EXPR == "literal"`
    Equals(Expr, Value),
    /// `EXPR != literal` (a value or an anonymous set)
    NotEquals(Expr, Value),
    /// `EXPR @set`
    InSet(Expr, String),
    /// `EXPR != @set`
    NotInSet(Expr, String),
    /// `ct state { ... }`
    CtState(Vec<&'static str>),
    /// `EXPR vmap { literal : verdict, ... }`
    Vmap(Expr, Vec<(Value, Verdict)>),
    /// `limit rate N/second burst B packets`
    Limit {
        per_second: u32,
        burst: u32,
    },
    /// `log group N prefix "..."`: the packet goes to NFLOG group N (read by the
    /// daemon over netlink), not to the kernel log.
    Log {
        group: u16,
        prefix: String,
    },
    Counter,
    /// `update @set { EXPR }`: adds the key to the set, or restarts its timeout.
    Update(Expr, String),
    Verdict(Verdict),
}

impl Stmt {
    fn json(&self) -> Value {
        match self {
            Stmt::Equals(left, right) => json!({ "match": { "op": "==", "left": left.json(), "right": right } }),
            Stmt::NotEquals(left, right) => json!({ "match": { "op": "!=", "left": left.json(), "right": right } }),
            Stmt::InSet(left, set) => {
                json!({ "match": { "op": "==", "left": left.json(), "right": format!("@{set}") } })
            }
            Stmt::NotInSet(left, set) => {
                json!({ "match": { "op": "!=", "left": left.json(), "right": format!("@{set}") } })
            }
            Stmt::CtState(states) => {
                json!({ "match": { "op": "in", "left": { "ct": { "key": "state" } }, "right": states } })
            }
            Stmt::Vmap(key, entries) => {
                let data: Vec<Value> = entries.iter().map(|(k, v)| json!([k, v.json()])).collect();
                json!({ "vmap": { "key": key.json(), "data": { "set": data } } })
            }
            Stmt::Limit { per_second, burst } => {
                json!({ "limit": { "rate": per_second, "per": "second", "burst": burst } })
            }
            Stmt::Log { group, prefix } => json!({ "log": { "group": group, "prefix": prefix } }),
            Stmt::Counter => json!({ "counter": null }),
            Stmt::Update(key, set) => {
                json!({ "set": { "op": "update", "elem": key.json(), "set": format!("@{set}") } })
            }
            Stmt::Verdict(v) => v.json(),
        }
    }
}

/// The whole owned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub sets: Vec<Set>,
    /// In an order where every chain comes after the chains its rules jump to.
    pub chains: Vec<Chain>,
}

impl Table {
    /// One transaction that replaces the table, whether or not it exists: `add`
    /// (a no-op if present) then `delete` then the new table. The kernel commits
    /// it atomically, so packets see the old table or the new one, never neither.
    pub fn replace(&self) -> ReplaceBatch<'_> {
        ReplaceBatch(self)
    }

    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elems.len()).sum()
    }

    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Whether nft can take this table only in its text syntax: it looks up
    /// sockets' cgroups (see [`Expr::SocketCgroup`]).
    pub fn needs_text(&self) -> bool {
        let cgroup = |e: &Expr| match e {
            Expr::SocketCgroup(_) => true,
            Expr::Concat(parts) => parts.iter().any(|p| matches!(p, Expr::SocketCgroup(_))),
            _ => false,
        };
        let rules = self.chains.iter().flat_map(|c| &c.rules);
        rules.flat_map(|r| &r.stmts).any(|s| matches!(s, Stmt::InSet(e, _) if cgroup(e)))
    }
}

/// Above this many deletions, emptying a set and adding all its elements is
/// cheaper than deleting them one by one. Measured on a 1,344-element
/// `ifname . ipv4_addr` interval set (pipapo), kernel 6.18: adding one element
/// 7 ms, deleting one 39 ms, flushing and re-adding all 590 ms.
const MAX_DELETES: usize = 8;

/// The change of one set's elements: what to delete and what to add, or, with
/// `flush`, all the elements to put in the emptied set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDiff {
    pub name: String,
    pub key: Vec<KeyType>,
    pub flush: bool,
    pub delete: Vec<Elem>,
    pub add: Vec<Elem>,
    pub cgroups: Arc<CgroupPaths>,
}

impl SetDiff {
    /// From the elements in the kernel to `new` (both as the compiler made them,
    /// so the kernel holds exactly the elements to delete). A small change is
    /// sent as such: the kernel's cost of rewriting an interval set grows with
    /// its size, not with the change.
    pub fn between(old: &Set, new: &Set) -> SetDiff {
        let (was, is): (HashSet<&Elem>, HashSet<&Elem>) = (old.elems.iter().collect(), new.elems.iter().collect());
        let delete: Vec<Elem> = old.elems.iter().filter(|e| !is.contains(e)).cloned().collect();
        // A cgroup that is gone has no path, and nft deletes by path only.
        let gone_cgroup = new.key.contains(&KeyType::Cgroup) && !delete.is_empty();
        let (flush, delete, add) = if delete.len() > MAX_DELETES || gone_cgroup {
            (true, Vec::new(), new.elems.to_vec())
        } else {
            (false, delete, new.elems.iter().filter(|e| !was.contains(e)).cloned().collect())
        };
        SetDiff { name: new.name.clone(), key: new.key.clone(), flush, delete, add, cgroups: Arc::clone(&new.cgroups) }
    }
}

/// A batch that changes the elements of some sets, leaving everything else of
/// the table (rules, their handles, other elements and their counters) as it is.
/// Deletions come first, so that a changed element never overlaps its old self.
pub struct UpdateSets<'a> {
    pub table: &'a str,
    pub diffs: &'a [SetDiff],
}

impl Serialize for UpdateSets<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wrap("nftables", UpdateCommands(self)).serialize(s)
    }
}

struct UpdateCommands<'a>(&'a UpdateSets<'a>);

impl Serialize for UpdateCommands<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for d in self.0.diffs.iter().filter(|d| d.flush) {
            let id = json!({ "family": FAMILY, "table": self.0.table, "name": d.name });
            seq.serialize_element(&json!({ "flush": { "set": id } }))?;
        }
        for verb in ["delete", "add"] {
            for d in self.0.diffs {
                let elems = if verb == "delete" { &d.delete } else { &d.add };
                if !elems.is_empty() {
                    let fields =
                        ElementFields { table: self.0.table, name: &d.name, key: &d.key, cgroups: &d.cgroups, elems };
                    seq.serialize_element(&Wrap(verb, Wrap("element", fields)))?;
                }
            }
        }
        seq.end()
    }
}

struct ElementFields<'a> {
    table: &'a str,
    name: &'a str,
    key: &'a [KeyType],
    cgroups: &'a CgroupPaths,
    elems: &'a [Elem],
}

impl Serialize for ElementFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("family", FAMILY)?;
        m.serialize_entry("table", self.table)?;
        m.serialize_entry("name", self.name)?;
        m.serialize_entry("elem", &Elems(self.key, self.cgroups, self.elems))?;
        m.end()
    }
}

/// A batch that deletes the table if it exists (`--flush-on-exit`, purge).
pub fn delete_batch(table: &str) -> Value {
    let t = json!({ "family": FAMILY, "name": table });
    json!({ "nftables": [ { "add": { "table": t } }, { "delete": { "table": t } } ] })
}

pub struct ReplaceBatch<'a>(&'a Table);

impl Serialize for ReplaceBatch<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let table = json!({ "family": FAMILY, "name": t.name });
        Wrap("nftables", Commands(t, &table)).serialize(s)
    }
}

struct Commands<'a>(&'a Table, &'a Value);

impl Serialize for Commands<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (t, table) = (self.0, self.1);
        let add = |obj: &str, v: Value| json!({ "add": { obj: v } });
        let mut seq = s.serialize_seq(None)?;
        seq.serialize_element(&add("table", table.clone()))?;
        seq.serialize_element(&json!({ "delete": { "table": table } }))?;
        seq.serialize_element(&add("table", table.clone()))?;
        for set in &t.sets {
            seq.serialize_element(&Wrap("add", Wrap("set", SetFields(&t.name, set))))?;
        }
        for chain in &t.chains {
            let mut c = json!({ "family": FAMILY, "table": t.name, "name": chain.name });
            if let Some(base) = &chain.base {
                c["type"] = json!("filter");
                c["hook"] = json!(match base.hook {
                    Hook::Input => "input",
                    Hook::Output => "output",
                });
                c["prio"] = json!(base.priority);
                c["policy"] = json!(if base.policy_drop { "drop" } else { "accept" });
            }
            seq.serialize_element(&add("chain", c))?;
        }
        for chain in &t.chains {
            for rule in &chain.rules {
                let mut r = json!({
                    "family": FAMILY, "table": t.name, "chain": chain.name,
                    "expr": rule.stmts.iter().map(Stmt::json).collect::<Vec<_>>(),
                });
                if let Some(comment) = &rule.comment {
                    r["comment"] = json!(comment);
                }
                seq.serialize_element(&add("rule", r))?;
            }
        }
        seq.end()
    }
}

/// `{ KEY: VALUE }`, streamed.
struct Wrap<T>(&'static str, T);

impl<T: Serialize> Serialize for Wrap<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.0, &self.1)?;
        m.end()
    }
}

struct SetFields<'a>(&'a str, &'a Set);

impl Serialize for SetFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (table, set) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("family", FAMILY)?;
        m.serialize_entry("table", table)?;
        m.serialize_entry("name", &set.name)?;
        // nft wants a plain string for a one-field key and an array for a concatenation.
        match set.key.as_slice() {
            [one] => m.serialize_entry("type", one.nft_name())?,
            many => m.serialize_entry("type", &many.iter().map(|k| k.nft_name()).collect::<Vec<_>>())?,
        }
        match set.fill {
            Fill::Expiring(timeout) => {
                m.serialize_entry("flags", &["timeout"])?;
                m.serialize_entry("timeout", &timeout)?;
                m.serialize_entry("size", &DYNAMIC_SET_SIZE)?;
                return m.end();
            }
            // (nft's JSON takes no `dynamic` flag; an update statement sets it.)
            Fill::Counting => m.serialize_entry("size", &DYNAMIC_SET_SIZE)?,
            Fill::Daemon => {}
        }
        if set.interval {
            m.serialize_entry("flags", &["interval"])?;
        }
        m.serialize_entry("stmt", &[json!({ "counter": null })])?;
        if !set.elems.is_empty() {
            m.serialize_entry("elem", &Elems(&set.key, &set.cgroups, &set.elems))?;
        }
        m.end()
    }
}

struct Elems<'a>(&'a [KeyType], &'a CgroupPaths, &'a [Elem]);

impl Serialize for Elems<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (key, cgroups, elems) = (self.0, self.1, self.2);
        let mut seq = s.serialize_seq(Some(elems.len()))?;
        for e in elems {
            let val = key_value(key, cgroups, e);
            let elem = if e.tag == NO_OWNER {
                json!({ "elem": { "val": val } })
            } else {
                json!({ "elem": { "val": val, "comment": e.tag.to_string() } })
            };
            seq.serialize_element(&elem)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_keys() {
        let (lo, hi) = ifname_glob_range("eth");
        assert!(lo <= ifname_key("eth0") && ifname_key("eth0") <= hi);
        assert!(lo <= ifname_key("eth") && ifname_key("eth") <= hi);
        assert!(!(lo <= ifname_key("ens3") && ifname_key("ens3") <= hi));
        assert_eq!(KeyType::Ifname.value(lo, hi), json!("eth*"));
        assert_eq!(KeyType::Ifname.value(ifname_key("lo"), ifname_key("lo")), json!("lo"));
        assert_eq!(ifname_glob_range(""), (0, u128::MAX));
    }

    #[test]
    fn address_values() {
        assert_eq!(
            KeyType::Ipv4Addr.value(0x0a00_0000, 0x0aff_ffff),
            json!({"prefix": {"addr": "10.0.0.0", "len": 8}})
        );
        assert_eq!(KeyType::Ipv4Addr.value(1, 2), json!({"range": ["0.0.0.1", "0.0.0.2"]}));
        assert_eq!(KeyType::Ipv6Addr.value(0, u128::MAX), json!({"prefix": {"addr": "::", "len": 0}}));
        assert_eq!(KeyType::InetService.value(22, 22), json!(22));
    }
}
