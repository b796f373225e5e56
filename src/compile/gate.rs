//! What a rule asks of the IPsec SA a packet came over (`remote-groups`,
//! `require-secure`; docs/isolation.md): a match placed before the rule's set
//! lookups.
//!
//! Kernel and tool constraints this follows:
//! - `ipsec in reqid` (nft_xfrm) reads the secure path of a received packet,
//!   so it works in the input hook only; the rules that use it are inbound
//!   (validation sees to it). A packet that came in clear has no secure path
//!   and matches neither it nor `meta ipsec exists`.
//! - `ipsec in ip saddr` is the SA's tunnel address, which a transport-mode SA
//!   does not have: the rule's addresses stay on the packet's `ip saddr`.
//! - nft 1.0.6 cannot declare a named set of reqids in JSON (its JSON parser
//!   has no `typeof`, and refuses `type integer` as unqualified), so a group's
//!   reqids are an anonymous set in each rule that needs them.
//!
//! A rule with `remote-groups: [a, b]` goes into a set per group: the
//! packet matches it through either.
//!
//! A group member's SA has its group connection's reqid only when the member
//! started the negotiation: as initiator, charon always uses the isolation
//! connection (reqid [`REQID`]), since it learns the peer's identity only
//! during the exchange. So a group gate has a second way in: an SA of that
//! reqid from an address in `grp_NAME_peers4/6`, which the daemon fills with
//! the addresses of the peers whose authenticated certificate subject is in
//! the group (`ike::peers`). The address is the SA's: charon installs
//! transport-mode SAs with selectors of the two hosts, and the kernel drops a
//! packet whose addresses are not its SA's (`xfrm_selector_match` in the
//! policy check, before any socket sees it).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;

use crate::nft::{Elem, Expr, Fill, KeyType, Set, Stmt, NO_OWNER};
use crate::policy::groups::GroupConn;
use crate::policy::Rule;
use crate::xfrm::REQID;

/// The addresses of the peers in each group whose SAs this host started (the
/// isolation connection's), by group name: what `grp_NAME_peers4/6` hold.
pub type GroupPeers = BTreeMap<String, BTreeSet<IpAddr>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Gate {
    /// Over an SA of a connection whose peers are in this group.
    Group(String),
    /// Over any SA.
    Secure,
}

impl Gate {
    /// The gates of a rule, one set each; `None` is a rule for every packet.
    pub fn of(rule: &Rule) -> Vec<Option<Gate>> {
        if !rule.remote_groups.is_empty() {
            rule.remote_groups.iter().map(|g| Some(Gate::Group(g.clone()))).collect()
        } else if rule.require_secure {
            vec![Some(Gate::Secure)]
        } else {
            vec![None]
        }
    }

    /// In set and chain names: `grp_NAME` or `secure` (group names have no `_`).
    pub fn short(&self) -> String {
        match self {
            Gate::Group(name) => format!("grp_{name}"),
            Gate::Secure => "secure".into(),
        }
    }

    /// In log prefixes: `group NAME` or `secure` (group names have no space).
    pub fn words(&self) -> String {
        match self {
            Gate::Group(name) => format!("group {name}"),
            Gate::Secure => "secure".into(),
        }
    }

    /// The ways through the gate, one rule each: `meta ipsec exists`, or for
    /// a group `ipsec in reqid { ... }` and an SA of [`REQID`] from one of the
    /// group's peers, of the IP version of the rule's packets (`ip_version`,
    /// if it has one: nft refuses `ip6 saddr` beside `ip saddr`).
    pub fn ways(&self, reqids: &BTreeMap<String, Vec<u32>>, ip_version: Option<bool>) -> Vec<Vec<Stmt>> {
        let Gate::Group(name) = self else { return vec![vec![Stmt::Equals(Expr::Meta("ipsec"), json!(true))]] };
        let right = match reqids.get(name).map(Vec::as_slice) {
            Some([one]) => json!(one),
            set => json!({ "set": set.unwrap_or_default() }),
        };
        let by_peer = |v4: bool| {
            let saddr = Expr::Payload(if v4 { "ip" } else { "ip6" }, "saddr");
            vec![Stmt::Equals(Expr::IpsecIn("reqid"), json!(REQID)), Stmt::InSet(saddr, peer_set_name(name, v4))]
        };
        let versions = [true, false].into_iter().filter(|&v4| ip_version.is_none_or(|v| v == v4));
        [vec![Stmt::Equals(Expr::IpsecIn("reqid"), right)]].into_iter().chain(versions.map(by_peer)).collect()
    }
}

/// `grp_NAME_peers4` or `grp_NAME_peers6` (group names have no `_`).
pub fn peer_set_name(group: &str, v4: bool) -> String {
    format!("grp_{group}_peers{}", if v4 { 4 } else { 6 })
}

/// The peer sets of every group with a connection, holding `peers`.
pub fn peer_sets<'a>(groups: impl Iterator<Item = &'a String>, peers: &GroupPeers) -> Vec<Set> {
    groups.flat_map(|g| [true, false].map(|v4| peer_set(g, v4, peers))).collect()
}

/// One group's peer set for one IP version.
fn peer_set(group: &str, v4: bool, peers: &GroupPeers) -> Set {
    let addrs = peers.get(group).into_iter().flatten().filter(|a| a.is_ipv4() == v4);
    let elems: Vec<Elem> = addrs
        .map(|a| {
            let n = match a {
                IpAddr::V4(a) => u32::from(*a).into(),
                IpAddr::V6(a) => u128::from(*a),
            };
            Elem { ranges: vec![(n, n)].into(), tag: NO_OWNER }
        })
        .collect();
    Set {
        name: peer_set_name(group, v4),
        key: vec![if v4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr }],
        interval: false,
        elems: elems.into(),
        fill: Fill::Daemon,
        cgroups: Default::default(),
    }
}

/// Each group's reqids: those of the connections its peers may come over.
pub fn reqids(connections: &[GroupConn]) -> BTreeMap<String, Vec<u32>> {
    let mut by_group: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for conn in connections {
        for g in &conn.groups {
            by_group.entry(g.clone()).or_default().push(conn.reqid);
        }
    }
    by_group
}

#[cfg(test)]
mod tests;
