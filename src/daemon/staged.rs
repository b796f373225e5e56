//! `show staged`: the staged rules' counts (the counters of their set
//! elements, read as the enforced rules' are) and the remote addresses the
//! packet path counted in `staged_*_would_*4/6` (`compile::staged`). Both
//! start from zero when the table is replaced.

use std::net::IpAddr;

use serde_json::Value;

use super::engine::Snapshot;
use super::views::counters;
use crate::compile::staged::{sources_set_name, Would};
use crate::nft;
use crate::policy::Direction;
use crate::protocol::answers::{Staged, StagedRule, StagedSource};

/// Reads the kernel's counters and counting sets, on the reader's thread.
pub fn read(snapshot: &Snapshot) -> Result<Staged, String> {
    let Some(applied) = snapshot.applied.as_deref() else { return Ok(Staged::default()) };
    let counters = counters(&applied.compiled)?;
    let rules = applied.policy.rules.iter().enumerate().filter(|(_, r)| r.staged && r.enabled);
    let rules = rules
        .map(|(i, r)| StagedRule {
            name: r.name.clone(),
            source: r.place.to_string(),
            direction: r.direction,
            would: Would::of(r.action.verdict()),
            connections: counters.rule(i).0,
        })
        .collect();
    let table = &applied.compiled.table;
    let mut sources = Vec::new();
    for direction in [Direction::In, Direction::Out] {
        for would in Would::ALL {
            for v4 in [true, false] {
                let name = sources_set_name(direction, would, v4);
                if !table.sets.iter().any(|s| s.name == name) {
                    continue;
                }
                let listed = nft::list_set(&table.name, &name).map_err(|e| format!("cannot read set {name}: {e}"))?;
                sources.extend(counted(listed.as_ref()).map(|(address, connections)| StagedSource {
                    direction,
                    would,
                    address,
                    connections,
                }));
            }
        }
    }
    sources.sort_by(|a, b| b.connections.cmp(&a.connections).then(a.address.cmp(&b.address)));
    Ok(Staged { rules, sources })
}

/// The addresses of one listed set with their counters: `{"elem": {"val":
/// "10.0.0.7", "counter": {"packets": 3, ...}}}`.
fn counted(listed: Option<&Value>) -> impl Iterator<Item = (IpAddr, u64)> + '_ {
    let sets = listed.into_iter().flat_map(|l| l["nftables"].as_array()).flatten().filter_map(|o| o.get("set"));
    let elems = sets.flat_map(|s| s["elem"].as_array().into_iter().flatten());
    elems.filter_map(|e| {
        let e = &e["elem"];
        Some((e["val"].as_str()?.parse().ok()?, e["counter"]["packets"].as_u64()?))
    })
}

#[cfg(test)]
mod tests;
