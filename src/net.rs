//! The network types that policy and mechanism share: address and port
//! ranges, IP protocol numbers and their names, ICMP types, interface name
//! limits. The policy parses text into them (`policy::values`); compile,
//! xfrm, dynamic and monitor use them without depending on the policy's
//! parsing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// An inclusive range of IPv4 or IPv6 addresses (a single address, a CIDR prefix
/// or `start-end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum AddrRange {
    V4(u32, u32),
    V6(u128, u128),
}

impl AddrRange {
    pub fn is_v4(&self) -> bool {
        matches!(self, AddrRange::V4(..))
    }

    /// The network address and prefix length, if the range is one CIDR prefix
    /// (a single address is a /32 or /128).
    pub fn prefix(&self) -> Option<(IpAddr, u8)> {
        let (lo, hi, bits) = match *self {
            AddrRange::V4(lo, hi) => (lo as u128, hi as u128, 32),
            AddrRange::V6(lo, hi) => (lo, hi, 128),
        };
        let span = hi - lo;
        if span.count_ones() != span.trailing_ones() || lo & span != 0 {
            return None;
        }
        let len = (bits - span.trailing_ones()) as u8;
        let addr = match self {
            AddrRange::V4(..) => IpAddr::V4(Ipv4Addr::from(lo as u32)),
            AddrRange::V6(..) => IpAddr::V6(Ipv6Addr::from(lo)),
        };
        Some((addr, len))
    }
}

/// Renders an address range the way a person writes it.
pub fn format_addr_range(r: &AddrRange) -> String {
    let (lo, hi): (IpAddr, IpAddr) = match *r {
        AddrRange::V4(lo, hi) => (Ipv4Addr::from(lo).into(), Ipv4Addr::from(hi).into()),
        AddrRange::V6(lo, hi) => (Ipv6Addr::from(lo).into(), Ipv6Addr::from(hi).into()),
    };
    match r.prefix() {
        _ if lo == hi => lo.to_string(),
        Some((addr, len)) => format!("{addr}/{len}"),
        None => format!("{lo}-{hi}"),
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PortRange(pub u16, pub u16);

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;

/// Protocols whose header starts with 16-bit source and destination ports, which
/// is what nftables' `th sport`/`th dport` read (TCP, UDP, DCCP, SCTP, UDP-Lite).
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

pub fn protocol_name(p: Option<u8>) -> String {
    match p {
        None => "any".into(),
        Some(IPPROTO_TCP) => "tcp".into(),
        Some(IPPROTO_UDP) => "udp".into(),
        Some(IPPROTO_ICMP) => "icmp".into(),
        Some(IPPROTO_ICMPV6) => "icmpv6".into(),
        Some(132) => "sctp".into(),
        Some(33) => "dccp".into(),
        Some(136) => "udplite".into(),
        Some(n) => n.to_string(),
    }
}

/// ICMP type names as nftables spells them.
const ICMP_TYPES: &[(&str, u8)] = &[
    ("echo-reply", 0),
    ("destination-unreachable", 3),
    ("source-quench", 4),
    ("redirect", 5),
    ("echo-request", 8),
    ("router-advertisement", 9),
    ("router-solicitation", 10),
    ("time-exceeded", 11),
    ("parameter-problem", 12),
    ("timestamp-request", 13),
    ("timestamp-reply", 14),
    ("info-request", 15),
    ("info-reply", 16),
    ("address-mask-request", 17),
    ("address-mask-reply", 18),
];

/// ICMPv6 type names as nftables spells them.
const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("destination-unreachable", 1),
    ("packet-too-big", 2),
    ("time-exceeded", 3),
    ("parameter-problem", 4),
    ("echo-request", 128),
    ("echo-reply", 129),
    ("mld-listener-query", 130),
    ("mld-listener-report", 131),
    ("mld-listener-done", 132),
    ("nd-router-solicit", 133),
    ("nd-router-advert", 134),
    ("nd-neighbor-solicit", 135),
    ("nd-neighbor-advert", 136),
    ("nd-redirect", 137),
    ("router-renumbering", 138),
    ("ind-neighbor-solicit", 141),
    ("ind-neighbor-advert", 142),
    ("mld2-listener-report", 143),
];

pub(crate) fn icmp_table(proto: u8) -> &'static [(&'static str, u8)] {
    if proto == IPPROTO_ICMPV6 {
        ICMPV6_TYPES
    } else {
        ICMP_TYPES
    }
}

pub fn icmp_family(proto: u8) -> &'static str {
    if proto == IPPROTO_ICMPV6 {
        "ICMPv6"
    } else {
        "ICMP"
    }
}

pub fn icmp_type_name(proto: u8, t: u8) -> String {
    icmp_table(proto).iter().find(|&&(_, n)| n == t).map_or_else(|| t.to_string(), |(name, _)| name.to_string())
}

/// Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL); nftables
/// matches a trailing `*` as a prefix and nothing else as a wildcard.
pub const IFNAMSIZ: usize = 16;
