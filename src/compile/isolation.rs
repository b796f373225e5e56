//! Inbound requirements of IPsec isolation, in nftables (docs/isolation.md).
//! The kernel's xfrm policies decide what goes out protected; what may come in
//! clear is decided here, conntrack-aware, because an xfrm inbound policy
//! cannot tell a new connection from the reply to one the host opened in clear
//! (Windows' "secure request" accepts those replies).
//!
//! ```text
//! isolation_in   meta l4proto esp accept            (decrypted, the packet comes back with meta ipsec exists)
//!                udp dport { 500, 4500 } accept     (IKE)
//!                ip saddr @dyn_dns4 return ...      (exempt keywords)
//!                [ct state new] meta ipsec missing ip saddr @iso_secure4 drop
//! isolation_out  meta l4proto esp accept; udp dport { 500, 4500 } accept
//! ```
//! `iso_secure4/6` hold the secure subnets minus the more specific exempt
//! prefixes. Exempt keywords are hosts (or, for `local-subnet`, the host's own
//! subnets) and beat every secure subnet.

use serde_json::json;

use crate::nft::{self, Chain, Elem, Expr, Set, Stmt};
use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::policy::values::{AddrRange, Address, Keyword};

/// IKE and NAT-T.
pub const IKE_PORTS: [u16; 2] = [500, 4500];
pub const CHAIN_IN: &str = "isolation_in";
pub const CHAIN_OUT: &str = "isolation_out";

pub fn secure_set_name(v4: bool) -> String {
    format!("iso_secure{}", if v4 { 4 } else { 6 })
}

/// The keywords in `exempt`, whose dynamic sets the table must have.
pub fn exempt_keywords(iso: &Isolation) -> impl Iterator<Item = Keyword> + '_ {
    iso.exempt.value.iter().filter_map(|a| match a {
        Address::Keyword(k) => Some(*k),
        Address::Range(_) => None,
    })
}

/// The address ranges where isolation applies, disjoint and sorted: every
/// address takes the class of the most specific prefix of `secure-subnets` or
/// `exempt` that holds it (a tie goes to `exempt`).
pub fn secure_ranges(iso: &Isolation, v4: bool) -> Vec<(u128, u128)> {
    let bounds = |r: &AddrRange| match *r {
        AddrRange::V4(lo, hi) => (lo as u128, hi as u128),
        AddrRange::V6(lo, hi) => (lo, hi),
    };
    let exempt = iso.exempt.value.iter().filter_map(|a| match a {
        Address::Range(r) => Some((r, false)),
        Address::Keyword(_) => None,
    });
    let mut prefixes: Vec<((u128, u128), bool)> = iso
        .secure_subnets
        .value
        .iter()
        .map(|r| (r, true))
        .chain(exempt)
        .filter(|(r, _)| r.is_v4() == v4)
        .map(|(r, secure)| (bounds(r), secure))
        .collect();
    // Widest first, and of two equal prefixes the secure one first: each paint
    // overrides what it covers, so the most specific (or the exemption) wins.
    prefixes.sort_by_key(|&((lo, hi), secure)| (std::cmp::Reverse(hi - lo), !secure));
    let mut painted: Vec<(u128, u128, bool)> = Vec::new();
    for ((lo, hi), secure) in prefixes {
        let mut next = Vec::with_capacity(painted.len() + 2);
        for &(a, b, c) in &painted {
            if b < lo || a > hi {
                next.push((a, b, c));
                continue;
            }
            if a < lo {
                next.push((a, lo - 1, c));
            }
            if b > hi {
                next.push((hi + 1, b, c));
            }
        }
        next.push((lo, hi, secure));
        next.sort();
        painted = next;
    }
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (lo, hi, _) in painted.into_iter().filter(|p| p.2) {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// `iso_secure4` and `iso_secure6`.
pub fn sets(iso: &Isolation) -> Vec<Set> {
    [true, false]
        .map(|v4| Set {
            name: secure_set_name(v4),
            key: vec![if v4 { nft::KeyType::Ipv4Addr } else { nft::KeyType::Ipv6Addr }],
            interval: true,
            elems: secure_ranges(iso, v4)
                .into_iter()
                .map(|r| Elem { ranges: Box::new([r]), tag: nft::NO_OWNER })
                .collect(),
        })
        .into()
}

/// ESP, and IKE to a peer's port 500 or 4500 (both ways: the initiator's
/// packets go to those ports, and replies are established).
fn accept_ipsec_and_ike() -> Vec<nft::Rule> {
    vec![
        nft::Rule {
            stmts: vec![Stmt::Equals(Expr::Meta("l4proto"), json!("esp")), Stmt::Verdict(nft::Verdict::Accept)],
            comment: Some("ESP".into()),
        },
        nft::Rule {
            stmts: vec![
                Stmt::Equals(Expr::Payload("udp", "dport"), json!({ "set": IKE_PORTS })),
                Stmt::Verdict(nft::Verdict::Accept),
            ],
            comment: Some("IKE".into()),
        },
    ]
}

/// The two chains, empty when isolation is off.
pub fn chains(iso: &Isolation) -> Vec<Chain> {
    let mode = iso.mode.value;
    if mode == IsolationMode::Off {
        return Vec::new();
    }
    let mut inbound = accept_ipsec_and_ike();
    let new_only = match mode {
        IsolationMode::SecureRequest => Some(true),
        IsolationMode::Require | IsolationMode::RequireEncryption => Some(false),
        IsolationMode::Off | IsolationMode::Request | IsolationMode::Boundary => None,
    };
    if let Some(new_only) = new_only {
        for v4 in [true, false] {
            let saddr = Expr::Payload(if v4 { "ip" } else { "ip6" }, "saddr");
            for k in exempt_keywords(iso) {
                inbound.push(nft::Rule {
                    stmts: vec![
                        Stmt::InSet(saddr.clone(), crate::dynamic::set_name(k, v4)),
                        Stmt::Verdict(nft::Verdict::Return),
                    ],
                    comment: Some(format!("exempt: {}", k.as_str())),
                });
            }
            if !v4 {
                // Neighbour discovery (untracked, so never `ct state new`) must
                // work before any SA can: IKE needs it.
                inbound.push(nft::Rule {
                    stmts: vec![
                        Stmt::Equals(
                            Expr::Payload("icmpv6", "type"),
                            json!({ "set": crate::xfrm::ND_TYPES.collect::<Vec<u8>>() }),
                        ),
                        Stmt::Verdict(nft::Verdict::Return),
                    ],
                    comment: Some("neighbour discovery".into()),
                });
            }
            let mut stmts = Vec::new();
            if new_only {
                stmts.push(Stmt::CtState(vec!["new"]));
            }
            stmts.extend([
                Stmt::Equals(Expr::Meta("ipsec"), json!(false)),
                Stmt::InSet(saddr, secure_set_name(v4)),
                Stmt::Counter,
                Stmt::Verdict(nft::Verdict::Drop),
            ]);
            inbound.push(nft::Rule {
                stmts,
                comment: Some(format!("isolation {}: clear from a secure subnet", mode.as_str())),
            });
        }
    }
    vec![
        Chain { name: CHAIN_IN.into(), base: None, rules: inbound },
        Chain { name: CHAIN_OUT.into(), base: None, rules: accept_ipsec_and_ike() },
    ]
}

#[cfg(test)]
mod tests;
