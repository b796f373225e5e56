//! Dynamic exceptions: addresses that follow the host's live configuration
//! (`default-gateway`, `local-subnet`, `dns`, `dhcp`, `wins`). This module holds
//! their current values with the source of each, and turns them into the
//! elements of the named sets that rules match against; `netlink` observes the
//! kernel's routes and addresses, `resolv` the resolver configuration, `leases`
//! the DHCP clients' lease files and smb.conf, to keep them current.
//! The daemon changes only these sets' elements when the host changes, never
//! the rules.

pub mod coalesce;
pub mod follow;
pub mod leases;
pub mod netlink;
pub mod resolv;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::nft::{self, Elem, KeyType, Set};
use crate::policy::values::{AddrRange, Keyword};

/// One address (range) a keyword stands for now.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entry {
    /// For `local-subnet`: the interface whose subnet it is.
    pub interface: Option<String>,
    pub addresses: AddrRange,
    /// Where it came from, for `show sets` (e.g. "default route in table 254").
    pub source: String,
}

/// The current value of every keyword, per IP version (`true` is IPv4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynState(pub BTreeMap<(Keyword, bool), Vec<Entry>>);

impl DynState {
    pub fn entries(&self, keyword: Keyword, v4: bool) -> &[Entry] {
        self.0.get(&(keyword, v4)).map_or(&[], Vec::as_slice)
    }

    /// Adds one host address to a keyword that is not per interface.
    pub fn push_host(&mut self, keyword: Keyword, ip: IpAddr, source: String) {
        let addresses = match ip {
            IpAddr::V4(a) => AddrRange::V4(a.into(), a.into()),
            IpAddr::V6(a) => AddrRange::V6(a.into(), a.into()),
        };
        self.0.entry((keyword, ip.is_ipv4())).or_default().push(Entry { interface: None, addresses, source });
    }

    /// Replaces the values of `keywords` (one source's) with those of `from`.
    pub fn replace(&mut self, keywords: &[Keyword], from: DynState) {
        self.0.retain(|(k, _), _| !keywords.contains(k));
        self.0.extend(from.0);
    }
}

/// New values of one source's keywords, sent to the daemon.
pub type Update = (&'static [Keyword], DynState);

/// What a source does with a fresh read: sends it if it differs from the last
/// one sent, or warns and keeps the last one if the read failed. `false` when
/// the daemon is gone.
async fn publish(
    keywords: &'static [Keyword],
    read: Result<DynState, String>,
    last: &mut DynState,
    updates: &tokio::sync::mpsc::Sender<Update>,
) -> bool {
    match read {
        Ok(state) if state != *last => {
            *last = state.clone();
            updates.send((keywords, state)).await.is_ok()
        }
        Ok(_) => true,
        Err(warning) => {
            tracing::warn!("{warning}");
            true
        }
    }
}

/// "dhcp, wins", for messages.
pub fn keyword_names(keywords: &[Keyword]) -> String {
    keywords.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

/// The name of a keyword's set for one IP version, e.g. `dyn_local_subnet4`.
pub fn set_name(keyword: Keyword, v4: bool) -> String {
    format!("dyn_{}{}", keyword.as_str().replace('-', "_"), if v4 { 4 } else { 6 })
}

/// The key of a keyword's set: `local-subnet` pairs a subnet with its interface,
/// so that a rule matches a remote host on the subnet of the interface the
/// packet uses, not on any of the host's subnets.
pub fn set_key(keyword: Keyword, v4: bool) -> Vec<KeyType> {
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
                let k = nft::ifname_key(i);
                ranges.push((k, k));
            }
            ranges.push((lo, hi));
            Elem { ranges: ranges.into(), tag: nft::NO_OWNER }
        })
        .collect();
    let first_is_ifname = keyword == Keyword::LocalSubnet;
    Set {
        name: set_name(keyword, v4),
        key: set_key(keyword, v4),
        interval: true,
        elems: crate::compile::make_disjoint(elems, first_is_ifname),
        timeout: None,
    }
}
