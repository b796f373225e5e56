//! Network location detection (`profiles.domain.detect`): which interfaces
//! are on the domain's network, found as Windows' network location awareness
//! finds it, by authenticating the domain over each interface, never from a
//! DNS suffix or a network's name. A TLS endpoint of the domain must answer
//! through the interface (`tls`), its name resolved by the link's name
//! servers asked out of that interface (`dns`), with a certificate that
//! chains to the domain's CA.
//!
//! The detector runs on a thread of its own: it follows the links over
//! rtnetlink, probes every judged interface after each burst of link, address
//! and route events, after each change of the resolvers or leases
//! ([`Setup`]), and every `interval`; it sends the daemon each new
//! [`Judgements`], which the engine writes into the two location sets
//! (`compile::location`) without touching the rules.

mod detector;
mod dns;
pub mod hysteresis;
mod tls;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use detector::start;

use crate::dynamic::{DynState, Entry};
use crate::policy::values::{IfPattern, Keyword};
use crate::policy::{location::Detect, Policy, ProfileKind};

/// Where detection stands on one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Not decided yet (new, or its link came up again): public meanwhile.
    #[default]
    Undecided,
    /// On the domain's network.
    Domain,
    /// Not: its profile is its pattern's, else public.
    NotDomain,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Undecided => "undecided",
            State::Domain => "domain",
            State::NotDomain => "not-domain",
        }
    }
}

/// What detection knows of one interface, for the sets and for `show profiles`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    pub state: State,
    /// When `state` was reached (`None`: undecided since the daemon saw the link).
    pub decided_at: Option<SystemTime>,
    /// The end of the last probe round over the interface.
    pub checked_at: Option<SystemTime>,
    /// The probe that authenticated the domain last, and its connect and
    /// handshake time.
    pub endpoint: Option<(String, Duration)>,
    /// Why the last round that failed did.
    pub last_error: Option<String>,
}

/// By interface name: every judged interface (those no domain pattern names).
pub type Judgements = BTreeMap<String, Judgement>;

/// What the detector needs from the daemon's state: the detection and the
/// interfaces it leaves alone, and the values whose changes call for a new
/// round (the resolvers, each link's own and the DHCP leases).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub detect: Option<Detect>,
    pub domain_patterns: Vec<IfPattern>,
    pub dns: Vec<Entry>,
    pub link_dns: BTreeMap<String, Vec<IpAddr>>,
    pub leases: Vec<Entry>,
}

impl Setup {
    pub fn of(policy: Option<&Policy>, dynamic: &DynState) -> Setup {
        let Some(policy) = policy.filter(|p| p.detect().is_some()) else { return Setup::default() };
        let values = |k| [true, false].iter().flat_map(|&v4| dynamic.entries(k, v4)).cloned().collect();
        // Without places: a file edited elsewhere does not make every
        // interface undecided again.
        let detect = policy.detect().map(|d| Detect {
            ca: d.ca.as_ref().map(|ca| crate::policy::Sourced::default(ca.value.clone())),
            ..d.clone()
        });
        Setup {
            detect,
            domain_patterns: policy.profile(ProfileKind::Domain).interfaces.value.clone(),
            dns: values(Keyword::Dns),
            link_dns: dynamic.link_dns.clone(),
            leases: values(Keyword::Dhcp),
        }
    }

    /// Whether detection judges `ifname`.
    fn judges(&self, ifname: &str) -> bool {
        self.detect.is_some() && ifname != "lo" && !self.domain_patterns.iter().any(|p| p.matches(ifname))
    }

    /// The name servers a probe's name over `ifname` is resolved by: those its
    /// DHCP lease names, else those of the resolv.conf the daemon follows
    /// (resolved's upstream servers where it names only the stub), which may
    /// be another link's (dhclient writes the servers of the lease it got
    /// last). Each query leaves through `ifname` whichever server it asks.
    fn servers(&self, ifname: &str) -> Vec<IpAddr> {
        if let Some(own) = self.link_dns.get(ifname) {
            return own.clone();
        }
        let host = |e: &Entry| {
            let (addr, len) = e.addresses.prefix()?;
            (len == if addr.is_ipv4() { 32 } else { 128 }).then_some(addr)
        };
        self.dns.iter().filter_map(host).collect()
    }
}

/// SO_BINDTODEVICE: the socket's packets leave through `ifname` and only its
/// packets are received, whatever the routes say.
fn bind_to_device(socket: &impl AsFd, ifname: &str) -> Result<(), String> {
    nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::BindToDevice, &ifname.into())
        .map_err(|e| format!("cannot bind a socket to {ifname}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_asks_its_own_name_servers_else_resolv_confs() {
        let mut dynamic = DynState::default();
        dynamic.push_host(Keyword::Dns, "10.9.2.53".parse().unwrap(), "resolv.conf".into());
        dynamic.push_host(Keyword::Dns, "fd00::53".parse().unwrap(), "resolv.conf".into());
        dynamic.link_dns.insert("eth0".into(), vec!["10.9.1.53".parse().unwrap(), "10.9.1.54".parse().unwrap()]);
        let policy = "profiles:\n  domain: { detect: { probes: ['dc.corp.test:443'], ca: /ca.pem } }\n";
        let policy = crate::policy::load_text(&[("p.yaml".into(), policy.into())]).unwrap_or_else(|d| panic!("{d}"));
        let setup = Setup::of(Some(&policy), &dynamic);
        let ips = |list: &[&str]| list.iter().map(|a| a.parse().unwrap()).collect::<Vec<IpAddr>>();
        assert_eq!(setup.servers("eth0"), ips(&["10.9.1.53", "10.9.1.54"]));
        assert_eq!(setup.servers("wan0"), ips(&["10.9.2.53", "fd00::53"]));
    }
}
