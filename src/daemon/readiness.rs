//! Isolation readiness (`request`, `boundary`): the new connections from
//! secure subnets that came in clear, which `secure-request` would refuse, by
//! source, protocol and port. The kernel counts them in `iso_clear4/6`
//! (`compile::isolation`); a new table starts those sets empty, so the engine
//! keeps what they held before it replaces the table, and the counts run
//! from the daemon's start.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::compile::isolation::clear_set_name;
use crate::nft::Table;
use crate::protocol::answers::{ClearByPort, ClearBySource};

/// Where clear connections came from and went to. The port is 0 for a
/// protocol without ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Clear {
    pub source: IpAddr,
    /// As nft names it (`tcp`, `icmp`), or its number.
    pub protocol: String,
    pub port: u16,
}

/// At most this many sources, protocols and ports are kept across tables,
/// as the kernel keeps at most as many in one set.
const MAX_KEPT: usize = crate::nft::DYNAMIC_SET_SIZE as usize;

#[derive(Debug, Default, Clone)]
pub struct Readiness {
    /// Counted by the tables replaced so far.
    before: BTreeMap<Clear, u64>,
}

impl Readiness {
    /// Adds the counts of the table about to be replaced (`listed`: `nft -j
    /// list set` of `iso_clear4` and `iso_clear6`).
    pub fn keep<'a>(&mut self, listed: impl IntoIterator<Item = &'a Value>) {
        for (clear, n) in listed.into_iter().flat_map(counts) {
            let room = self.before.len() < MAX_KEPT;
            match self.before.get_mut(&clear) {
                Some(total) => *total += n,
                None if room => {
                    self.before.insert(clear, n);
                }
                None => {}
            }
        }
    }

    /// Every count so far: the replaced tables' and the current one's
    /// (`listed`), most first.
    pub fn report<'a>(&self, listed: impl IntoIterator<Item = &'a Value>) -> Vec<(Clear, u64)> {
        let mut all = self.before.clone();
        for (clear, n) in listed.into_iter().flat_map(counts) {
            *all.entry(clear).or_default() += n;
        }
        let mut out: Vec<(Clear, u64)> = all.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }
}

/// The counts summed by protocol and port, most first, for `show stats`
/// and metrics.
pub fn per_port(counts: &[(Clear, u64)]) -> Vec<ClearByPort> {
    let mut sums: BTreeMap<(&str, u16), u64> = BTreeMap::new();
    for (clear, n) in counts {
        *sums.entry((clear.protocol.as_str(), clear.port)).or_default() += n;
    }
    let mut sums: Vec<((&str, u16), u64)> = sums.into_iter().collect();
    sums.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sums.into_iter()
        .map(|((protocol, port), connections)| ClearByPort { protocol: protocol.to_string(), port, connections })
        .collect()
}

/// The counts by source, protocol and port, for `show sas`.
pub fn per_source(counts: &[(Clear, u64)]) -> Vec<ClearBySource> {
    counts
        .iter()
        .map(|(c, n)| ClearBySource {
            source: c.source,
            count: ClearByPort { protocol: c.protocol.clone(), port: c.port, connections: *n },
        })
        .collect()
}

/// Whether `table` counts clear connections (isolation in `request` or
/// `boundary`).
pub fn counts_in(table: &Table) -> bool {
    table.sets.iter().any(|s| s.name == clear_set_name(true) || s.name == clear_set_name(false))
}

/// The counting sets of `table`, as `read` lists them (`nft -j list set`);
/// one that cannot be read is left out, with a warning.
pub fn list<E: Display>(table: &Table, read: impl Fn(&str, &str) -> Result<Option<Value>, E>) -> Vec<Value> {
    let names = [clear_set_name(true), clear_set_name(false)];
    let present = names.into_iter().filter(|n| table.sets.iter().any(|s| s.name == *n));
    present
        .filter_map(|name| match read(&table.name, &name) {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!("cannot read {name}, which counts clear connections: {e}");
                None
            }
        })
        .collect()
}

/// The counted elements of one listed set: `{"elem": {"val": {"concat":
/// ["10.0.0.7", "tcp", 80]}, "counter": {"packets": 3, ...}}}`.
fn counts(listed: &Value) -> Vec<(Clear, u64)> {
    let sets = listed["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get("set"));
    let elems = sets.flat_map(|s| s["elem"].as_array().into_iter().flatten());
    elems
        .filter_map(|e| {
            let e = &e["elem"];
            let [source, protocol, port] = e["val"]["concat"].as_array()?.as_slice() else { return None };
            let protocol = match protocol {
                Value::String(name) => name.clone(),
                other => other.as_u64()?.to_string(),
            };
            let clear =
                Clear { source: source.as_str()?.parse().ok()?, protocol, port: u16::try_from(port.as_u64()?).ok()? };
            Some((clear, e["counter"]["packets"].as_u64()?))
        })
        .collect()
}

#[cfg(test)]
mod tests;
