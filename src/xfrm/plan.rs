//! The policies isolation needs: a pure function of the `isolation:` section,
//! of the exempt keywords' current addresses and of the peers that have a
//! soft SA now (`daemon::first_contact`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::{Action, Dir, Level, Policy, Prefix, Rank, Selector, INBOUND_REQID, ND_TYPES, REQID};
use crate::dynamic::DynState;
use crate::net::AddrRange;
use crate::net::IPPROTO_ICMPV6;
use crate::policy::isolation::Isolation;
use crate::policy::raw::IsolationMode;
use crate::policy::values::Address;

/// Every policy isolation needs now, sorted, one per (direction, selector).
/// None when the mode is `off`. `soft`: the peers that go on in clear for
/// now (soft SAs), each exempt as a host address.
pub fn policies(iso: &Isolation, dynamic: &DynState, soft: &BTreeSet<IpAddr>) -> Vec<Policy> {
    if iso.mode.value == IsolationMode::Off {
        return Vec::new();
    }
    // `required` in every mode: a packet with no SA yet is never sent in
    // clear. In the modes that fall back it is held in the policy's queue
    // while charon negotiates (net.core.xfrm_larval_drop = 0,
    // `daemon::isolation`), and a peer with no SA in time gets a soft SA, a
    // clear policy for that one address; in the require modes it is dropped.
    let secure_out = Action::Esp { reqid: REQID, level: Level::Required };
    // Inbound enforcement is nftables' (conntrack-aware): `use` lets clear in.
    let secure_in = Action::Esp { reqid: INBOUND_REQID, level: Level::Use };

    let mut all: Vec<Policy> = ND_TYPES
        .flat_map(|t| {
            let any = Prefix::any(false);
            let selector = Selector { src: any, dst: any, proto: Some(IPPROTO_ICMPV6), icmp_type: Some(t) };
            let priority = Rank::Neighbour.priority();
            [Dir::Out, Dir::In].map(|dir| Policy { dir, selector, priority, action: Action::Clear })
        })
        .collect();
    for range in &iso.secure_subnets.value {
        for p in prefixes(range) {
            let rank = Rank::Prefix { len: p.len, secure: true };
            all.extend(both_ways(p, rank, secure_out, secure_in));
        }
    }
    for exempt in &iso.exempt.value {
        match exempt {
            Address::Range(range) => {
                for p in prefixes(range) {
                    all.extend(both_ways(p, Rank::Prefix { len: p.len, secure: false }, Action::Clear, Action::Clear));
                }
            }
            Address::Keyword(k) => {
                // For `local-subnet`, the subnets of every interface: a
                // selector could name one, but traffic to the host's own
                // subnet stays in clear whichever interface it takes.
                let entries = [true, false].into_iter().flat_map(|v4| dynamic.entries(*k, v4));
                for p in entries.flat_map(|e| prefixes(&e.addresses)) {
                    all.extend(both_ways(p, Rank::ExemptKeyword, Action::Clear, Action::Clear));
                }
            }
        }
    }
    for peer in soft {
        let host = Prefix { addr: *peer, len: if peer.is_ipv4() { 32 } else { 128 } };
        all.extend(both_ways(host, Rank::ExemptKeyword, Action::Clear, Action::Clear));
    }
    // The kernel holds one policy per (direction, selector): of two with the
    // same, the preferred one is the one that would have decided.
    all.sort_by_key(|p| (p.key(), p.priority));
    all.dedup_by_key(|p| p.key());
    all.sort();
    all
}

/// The outbound policy the kernel would pick for a packet to `peer` of any
/// protocol: of those whose selector holds it, the most preferred.
pub fn outbound(all: &[Policy], peer: IpAddr) -> Option<&Policy> {
    all.iter()
        .filter(|p| p.dir == Dir::Out && p.selector.proto.is_none() && p.selector.dst.contains(peer))
        .min_by_key(|p| p.priority)
}

/// Traffic to and from `remote`.
fn both_ways(remote: Prefix, rank: Rank, out: Action, inbound: Action) -> [Policy; 2] {
    let any = Prefix::any(remote.addr.is_ipv4());
    let priority = rank.priority();
    let policy = |dir, src, dst, action| Policy {
        dir,
        selector: Selector { src, dst, proto: None, icmp_type: None },
        priority,
        action,
    };
    [policy(Dir::Out, any, remote, out), policy(Dir::In, remote, any, inbound)]
}

/// The fewest prefixes that make up a range (the policy model keeps
/// `secure-subnets` and `exempt` to prefixes; a keyword's address might be a
/// range).
fn prefixes(range: &AddrRange) -> Vec<Prefix> {
    if let Some((addr, len)) = range.prefix() {
        return vec![Prefix { addr, len }];
    }
    let (mut lo, hi, bits) = match *range {
        AddrRange::V4(lo, hi) => (u128::from(lo), u128::from(hi), 32),
        AddrRange::V6(lo, hi) => (lo, hi, 128),
    };
    let mut out = Vec::new();
    loop {
        // The largest block that starts at `lo` (aligned) and ends by `hi`;
        // `prefix()` took the only range of 2^128 addresses.
        let aligned = lo.trailing_zeros().min(bits);
        let fits = 127 - (hi - lo + 1).leading_zeros();
        let size_log = aligned.min(fits);
        let last = lo + ((1u128 << size_log) - 1);
        let addr = match range {
            AddrRange::V4(..) => std::net::IpAddr::V4((lo as u32).into()),
            AddrRange::V6(..) => std::net::IpAddr::V6(lo.into()),
        };
        out.push(Prefix { addr, len: (bits - size_log) as u8 });
        if last == hi {
            return out;
        }
        lo = last + 1;
    }
}

#[cfg(test)]
pub(crate) mod tests;
