//! Dynamic exceptions: addresses that follow the host's live configuration
//! (`default-gateway`, `local-subnet`, `dns`, `dhcp`, `wins`). This module holds
//! their current values with the source of each (which `compile::keyword_sets`
//! turns into the elements of the named sets that rules match); `netlink` observes the
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

use crate::net::AddrRange;

use crate::policy::values::Keyword;

/// One address (range) a keyword stands for now.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Entry {
    /// For `local-subnet`: the interface whose subnet it is.
    pub interface: Option<String>,
    pub addresses: AddrRange,
    /// Where it came from, for `show sets` (e.g. "default route in table 254").
    pub source: String,
}

/// The current value of every keyword, per IP version (`true` is IPv4), and
/// the name servers of each link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynState {
    pub values: BTreeMap<(Keyword, bool), Vec<Entry>>,
    /// The name servers each current DHCP lease names (option 6), by the
    /// lease's interface (never empty), for location detection's probes. A
    /// field of its own rather than a keyword's value: policies cannot name
    /// it and no set holds it, so `dns` stays resolv.conf's servers. Only the
    /// leases source's update replaces it ([`DynState::replace`]).
    pub link_dns: BTreeMap<String, Vec<IpAddr>>,
}

impl DynState {
    pub fn entries(&self, keyword: Keyword, v4: bool) -> &[Entry] {
        self.values.get(&(keyword, v4)).map_or(&[], Vec::as_slice)
    }

    /// Adds one host address to a keyword that is not per interface.
    pub fn push_host(&mut self, keyword: Keyword, ip: IpAddr, source: String) {
        let addresses = match ip {
            IpAddr::V4(a) => AddrRange::V4(a.into(), a.into()),
            IpAddr::V6(a) => AddrRange::V6(a.into(), a.into()),
        };
        self.values.entry((keyword, ip.is_ipv4())).or_default().push(Entry { interface: None, addresses, source });
    }

    /// Replaces the values of `keywords` (one source's) with those of `from`,
    /// and the links' name servers if that source is the leases'.
    pub fn replace(&mut self, keywords: &[Keyword], from: DynState) {
        self.values.retain(|(k, _), _| !keywords.contains(k));
        self.values.extend(from.values);
        if keywords == <leases::Leases as follow::FileSource>::KEYWORDS {
            self.link_dns = from.link_dns;
        }
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
