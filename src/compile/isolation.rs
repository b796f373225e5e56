//! Inbound requirements of IPsec isolation, in nftables (docs/isolation.md).
//! The kernel's xfrm policies decide what goes out protected; what may come in
//! clear is decided here, conntrack-aware, because an xfrm inbound policy
//! cannot tell a new connection from the reply to one the host opened in clear
//! (Windows' "secure request" accepts those replies).
//!
//! ```text
//! input          ... ct state { invalid, new } ip saddr . meta l4proto . th sport . th dport @iso_held4 accept
//!                ct state invalid drop ...     (the held flows' replies, see below)
//! isolation_in   meta l4proto esp accept            (decrypted, the packet comes back with meta ipsec exists)
//!                udp dport { 500, 4500 } accept     (IKE)
//!                ip saddr @dyn_dns4 return ...      (exempt keywords)
//!                [ct state new] meta ipsec missing ip saddr @iso_secure4 drop
//! isolation_out  meta l4proto esp accept; udp dport { 500, 4500 } accept
//!                ct state new ip daddr @iso_secure4 rt ipsec missing meta l4proto { tcp, udp }
//!                    update @iso_held4 { ip daddr . meta l4proto . th dport . th sport }
//!                ct state { new, established, related } ip daddr @iso_secure4 rt ipsec missing
//!                    ip daddr != @iso_waited4 update @iso_waited4 { ip daddr }
//!                    limit rate 50/second log group 2714 prefix "ringfence held: "
//! ```
//!
//! Held flows: a first packet to a secure subnet waits in the xfrm policy's
//! queue until its SA is up (`xfrm::plan`), and the kernel lets it go with its
//! conntrack entry dropped (`nf_reset_ct` in `xfrm_policy_queue_process`): the
//! entry created at the output hook is never confirmed, so the peer's SYN-ACK
//! is `ct state invalid` and a UDP reply is `new`, and both would be dropped
//! (the connection would wait for TCP's retransmission, a second or three).
//! The output hook records every new TCP/UDP flow to a secure subnet that has
//! no SA yet (`rt ipsec missing`: its route is no xfrm bundle) for
//! [`HELD_TIMEOUT`]; its reply is accepted before the invalid drop, and the
//! host's next packet of the flow makes the conntrack entry anew. Only the
//! exact flows the host itself began are in the set. The log (any protocol,
//! at most once per peer in 2 s) tells the daemon that a packet to that peer
//! may wait (`daemon::first_contact`): a packet to a peer with an SA has an
//! xfrm route (`rt ipsec exists`), and the daemon ignores peers that its own
//! policies exempt.
//! `iso_secure4/6` hold the secure subnets minus the more specific exempt
//! prefixes. Exempt keywords are hosts (or, for `local-subnet`, the host's own
//! subnets) and beat every secure subnet.

use serde_json::json;

use crate::net::AddrRange;
use crate::nft::{self, Chain, Elem, Expr, Set, Stmt};
use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::policy::values::{Address, Keyword};

/// IKE and NAT-T.
pub const IKE_PORTS: [u16; 2] = [500, 4500];
pub const CHAIN_IN: &str = "isolation_in";
pub const CHAIN_OUT: &str = "isolation_out";

pub fn secure_set_name(v4: bool) -> String {
    format!("iso_secure{}", if v4 { 4 } else { 6 })
}

fn held_set_name(v4: bool) -> String {
    format!("iso_held{}", if v4 { 4 } else { 6 })
}

/// `iso_clear4/6`: readiness counts (request and boundary modes).
pub fn clear_set_name(v4: bool) -> String {
    format!("iso_clear{}", if v4 { 4 } else { 6 })
}

fn waited_set_name(v4: bool) -> String {
    format!("iso_waited{}", if v4 { 4 } else { 6 })
}

/// A peer is logged as waited for at most once in this many seconds.
const WAITED_TIMEOUT: u32 = 2;

/// How long a held flow's reply is expected: the xfrm queue holds a packet for
/// 60 s at most (XFRM_QUEUE_TMO_MAX).
pub const HELD_TIMEOUT: u32 = 60;

/// The log prefix of a held flow's first packet: the daemon starts the
/// peer's fallback timer from it (as from the kernel's ACQUIRE, which is not
/// raised again while an earlier negotiation's larval state lasts).
pub const HELD_LOG_PREFIX: &str = "ringfence held: ";

/// Peers logged as waited for, per second at most.
const HELD_LOG_RATE: u32 = 50;

fn ip(v4: bool) -> &'static str {
    if v4 {
        "ip"
    } else {
        "ip6"
    }
}

/// A held flow's key, seen from the host: `ip daddr . meta l4proto . th dport
/// . th sport` outbound; the same fields of the reply inbound.
fn held_key(v4: bool, outbound: bool) -> Expr {
    let (remote, remote_port, local_port) =
        if outbound { ("daddr", "dport", "sport") } else { ("saddr", "sport", "dport") };
    Expr::Concat(vec![
        Expr::Payload(ip(v4), remote),
        Expr::Meta("l4proto"),
        Expr::Payload("th", remote_port),
        Expr::Payload("th", local_port),
    ])
}

/// The input chain's first rule after loopback, when isolation is on: the
/// replies of held flows, before conntrack's verdict on them.
pub fn held_replies(v4: bool) -> nft::Rule {
    nft::Rule {
        stmts: vec![
            Stmt::CtState(vec!["invalid", "new"]),
            Stmt::InSet(held_key(v4, false), held_set_name(v4)),
            Stmt::Verdict(nft::Verdict::Accept),
        ],
        comment: Some("reply to a flow held for its SA".into()),
    }
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

fn addr_key(v4: bool) -> nft::KeyType {
    if v4 {
        nft::KeyType::Ipv4Addr
    } else {
        nft::KeyType::Ipv6Addr
    }
}

/// `iso_secure4/6`, and the packet path's `iso_held4/6`, `iso_clear4/6` and
/// `iso_waited4/6`.
pub fn sets(iso: &Isolation) -> Vec<Set> {
    [true, false]
        .map(|v4| Set {
            name: secure_set_name(v4),
            key: vec![addr_key(v4)],
            interval: true,
            elems: secure_ranges(iso, v4)
                .into_iter()
                .map(|r| Elem { ranges: Box::new([r]), tag: nft::NO_OWNER })
                .collect::<Vec<_>>()
                .into(),
            fill: nft::Fill::Daemon,
            cgroups: Default::default(),
        })
        .into_iter()
        .chain([true, false].map(|v4| Set {
            name: held_set_name(v4),
            key: vec![addr_key(v4), nft::KeyType::InetProto, nft::KeyType::InetService, nft::KeyType::InetService],
            interval: false,
            elems: Default::default(),
            fill: nft::Fill::Expiring(HELD_TIMEOUT),
            cgroups: Default::default(),
        }))
        .chain([true, false].map(|v4| Set {
            name: clear_set_name(v4),
            key: vec![addr_key(v4), nft::KeyType::InetProto, nft::KeyType::InetService],
            interval: false,
            elems: Default::default(),
            fill: nft::Fill::Counting,
            cgroups: Default::default(),
        }))
        .chain([true, false].map(|v4| Set {
            name: waited_set_name(v4),
            key: vec![addr_key(v4)],
            interval: false,
            elems: Default::default(),
            fill: nft::Fill::Expiring(WAITED_TIMEOUT),
            cgroups: Default::default(),
        }))
        .collect()
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

fn drop() -> [Stmt; 2] {
    [Stmt::Counter, Stmt::Verdict(nft::Verdict::Drop)]
}

/// Protocols with ports (`net::has_ports`), by name as nft writes them.
const PORT_PROTOCOLS: [&str; 5] = ["tcp", "udp", "dccp", "sctp", "udplite"];

/// Readiness, in the modes that let clear connections in: every new one from
/// a secure subnet (`clear`), which `secure-request` would refuse, counted in
/// `iso_clear4/6` by source, protocol and port (0 for a protocol without
/// ports).
fn readiness(v4: bool, clear: &[Stmt; 2], comment: Option<String>) -> [nft::Rule; 2] {
    let key = |port: Expr| Expr::Concat(vec![Expr::Payload(ip(v4), "saddr"), Expr::Meta("l4proto"), port]);
    let count = |ports: Stmt, port: Expr| nft::Rule {
        stmts: [Stmt::CtState(vec!["new"])]
            .into_iter()
            .chain(clear.iter().cloned())
            .chain([ports, Stmt::Update(key(port), clear_set_name(v4))])
            .collect(),
        comment: comment.clone(),
    };
    [
        count(Stmt::Equals(Expr::Meta("l4proto"), json!({ "set": PORT_PROTOCOLS })), Expr::Payload("th", "dport")),
        count(Stmt::NotEquals(Expr::Meta("l4proto"), json!({ "set": PORT_PROTOCOLS })), Expr::Number(0)),
    ]
}

/// The two chains, empty when isolation is off.
pub fn chains(iso: &Isolation) -> Vec<Chain> {
    let mode = iso.mode.value;
    if mode == IsolationMode::Off {
        return Vec::new();
    }
    let mut inbound = accept_ipsec_and_ike();
    for v4 in [true, false] {
        let saddr = Expr::Payload(ip(v4), "saddr");
        for k in exempt_keywords(iso) {
            inbound.push(nft::Rule {
                stmts: vec![
                    Stmt::InSet(saddr.clone(), super::keyword_sets::name(k, v4)),
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
        let clear = [Stmt::Equals(Expr::Meta("ipsec"), json!(false)), Stmt::InSet(saddr, secure_set_name(v4))];
        let comment = Some(format!("isolation {}: clear from a secure subnet", mode.as_str()));
        match mode {
            IsolationMode::Request | IsolationMode::Boundary | IsolationMode::Off => {
                inbound.extend(readiness(v4, &clear, comment));
                continue;
            }
            IsolationMode::SecureRequest => inbound.push(nft::Rule {
                stmts: [Stmt::CtState(vec!["new"])].into_iter().chain(clear).chain(drop()).collect(),
                comment,
            }),
            IsolationMode::Require | IsolationMode::RequireEncryption => {
                inbound.push(nft::Rule { stmts: clear.into_iter().chain(drop()).collect(), comment })
            }
        }
    }
    let mut outbound = accept_ipsec_and_ike();
    for v4 in [true, false] {
        let daddr = Expr::Payload(ip(v4), "daddr");
        let no_sa = || [Stmt::InSet(daddr.clone(), secure_set_name(v4)), Stmt::Equals(Expr::Rt("ipsec"), json!(false))];
        let mut held = vec![Stmt::CtState(vec!["new"])];
        held.extend(no_sa());
        held.extend([
            Stmt::Equals(Expr::Meta("l4proto"), json!({ "set": ["tcp", "udp"] })),
            Stmt::Update(held_key(v4, true), held_set_name(v4)),
        ]);
        // Any tracked packet (a reply too: in `request` a peer's clear
        // connection waits for the host's SYN-ACK), once per peer and
        // WAITED_TIMEOUT. (Untracked: neighbour discovery, which is exempt.)
        let mut waited = vec![Stmt::CtState(vec!["new", "established", "related"])];
        waited.extend(no_sa());
        waited.extend([
            Stmt::NotInSet(daddr.clone(), waited_set_name(v4)),
            Stmt::Update(daddr.clone(), waited_set_name(v4)),
            Stmt::Limit { per_second: HELD_LOG_RATE, burst: HELD_LOG_RATE },
            Stmt::Log { group: crate::compile::LOG_GROUP, prefix: HELD_LOG_PREFIX.into() },
        ]);
        outbound.push(nft::Rule { stmts: held, comment: Some("a flow held for its SA".into()) });
        outbound.push(nft::Rule { stmts: waited, comment: Some("tell the daemon a peer is waited for".into()) });
    }
    vec![
        Chain { name: CHAIN_IN.into(), base: None, rules: inbound },
        Chain { name: CHAIN_OUT.into(), base: None, rules: outbound },
    ]
}

#[cfg(test)]
mod tests;
