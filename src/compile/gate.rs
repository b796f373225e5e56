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

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use crate::nft::{Expr, Stmt};
use crate::policy::groups::GroupConn;
use crate::policy::Rule;

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

    /// `ipsec in reqid { ... }` or `meta ipsec exists`.
    pub fn stmt(&self, reqids: &BTreeMap<String, Vec<u32>>) -> Stmt {
        match self {
            Gate::Group(name) => {
                let right = match reqids.get(name).map(Vec::as_slice) {
                    Some([one]) => json!(one),
                    set => json!({ "set": set.unwrap_or_default() }),
                };
                Stmt::Equals(Expr::IpsecIn("reqid"), right)
            }
            Gate::Secure => Stmt::Equals(Expr::Meta("ipsec"), json!(true)),
        }
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
