//! The named sets of the address keywords (`dyn_dns4`, `dyn_local_subnet6`,
//! ...): their names, keys and elements, rendered from the values the daemon
//! follows (`dynamic::DynState`).

use super::make_disjoint;
use crate::dynamic::DynState;
use crate::net::AddrRange;
use crate::nft::{ifname_key, Elem, Fill, KeyType, Set, NO_OWNER};
use crate::policy::values::Keyword;

/// The name of a keyword's set for one IP version, e.g. `dyn_local_subnet4`.
pub fn name(keyword: Keyword, v4: bool) -> String {
    format!("dyn_{}{}", keyword.as_str().replace('-', "_"), if v4 { 4 } else { 6 })
}

/// The key of a keyword's set: `local-subnet` pairs a subnet with its interface,
/// so that a rule matches a remote host on the subnet of the interface the
/// packet uses, not on any of the host's subnets.
fn key(keyword: Keyword, v4: bool) -> Vec<KeyType> {
    let addr = if v4 { KeyType::Ipv4Addr } else { KeyType::Ipv6Addr };
    match keyword {
        Keyword::DefaultGateway | Keyword::Dns | Keyword::Dhcp | Keyword::Wins => vec![addr],
        Keyword::LocalSubnet => vec![KeyType::Ifname, addr],
    }
}

/// The set of a keyword with its current elements (disjoint, as the kernel needs).
pub fn set(state: &DynState, keyword: Keyword, v4: bool) -> Set {
    let elems = state
        .entries(keyword, v4)
        .iter()
        .map(|e| {
            let (lo, hi) = match e.addresses {
                AddrRange::V4(lo, hi) => (lo as u128, hi as u128),
                AddrRange::V6(lo, hi) => (lo, hi),
            };
            let mut ranges = Vec::with_capacity(2);
            if let Some(i) = &e.interface {
                let k = ifname_key(i);
                ranges.push((k, k));
            }
            ranges.push((lo, hi));
            Elem { ranges: ranges.into(), tag: NO_OWNER }
        })
        .collect();
    let first_is_ifname = keyword == Keyword::LocalSubnet;
    Set {
        name: name(keyword, v4),
        key: key(keyword, v4),
        interval: true,
        elems: make_disjoint(elems, first_is_ifname).into(),
        fill: Fill::Daemon,
        cgroups: Default::default(),
    }
}
