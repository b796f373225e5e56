//! Parsing of the scalar values a rule is made of: addresses, ports, protocols,
//! ICMP types and interface patterns. Pure functions; each error is a sentence
//! that completes "<value> is not ...".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::text::Quoted;
use crate::net::{
    format_addr_range, icmp_family, icmp_table, protocol_name, AddrRange, PortRange, IFNAMSIZ, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
};

pub fn parse_addr_range(s: &str) -> Result<AddrRange, String> {
    let q = Quoted(s);
    let bad = || format!("{q} is not an address, CIDR prefix or address range");
    if let Some((addr, len)) = s.split_once('/') {
        let len: u32 = len.parse().map_err(|_| bad())?;
        return match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let (lo, hi) = prefix_bounds(u32::from(a) as u128, len, 32)
                    .ok_or_else(|| format!("{q} is not a CIDR prefix (IPv4 prefix length is at most 32)"))?;
                host_bits_clear(s, u32::from(a) as u128, lo, |v| Ipv4Addr::from(v as u32).to_string(), len)?;
                Ok(AddrRange::V4(lo as u32, hi as u32))
            }
            IpAddr::V6(a) => {
                let (lo, hi) = prefix_bounds(u128::from(a), len, 128)
                    .ok_or_else(|| format!("{q} is not a CIDR prefix (IPv6 prefix length is at most 128)"))?;
                host_bits_clear(s, u128::from(a), lo, |v| Ipv6Addr::from(v).to_string(), len)?;
                Ok(AddrRange::V6(lo, hi))
            }
        };
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (a.trim(), b.trim());
        return match (a.parse::<IpAddr>().map_err(|_| bad())?, b.parse::<IpAddr>().map_err(|_| bad())?) {
            (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => Ok(AddrRange::V4(a.into(), b.into())),
            (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => Ok(AddrRange::V6(a.into(), b.into())),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Err(format!("{q} is not an address range (start > end)"))
            }
            _ => Err(format!("{q} is not an address range (it mixes IPv4 and IPv6)")),
        };
    }
    match s.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V4(a) => Ok(AddrRange::V4(a.into(), a.into())),
        IpAddr::V6(a) => Ok(AddrRange::V6(a.into(), a.into())),
    }
}

fn prefix_bounds(addr: u128, len: u32, bits: u32) -> Option<(u128, u128)> {
    if len > bits {
        return None;
    }
    let host_bits = bits - len;
    let host_mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    Some((addr & !host_mask, addr | host_mask))
}

fn host_bits_clear(s: &str, addr: u128, network: u128, show: impl Fn(u128) -> String, len: u32) -> Result<(), String> {
    let q = Quoted(s);
    if addr == network {
        Ok(())
    } else {
        Err(format!("{q} has host bits set (did you mean \"{}/{len}\"?)", show(network)))
    }
}

/// Addresses that follow the host's live configuration (Windows' `DefaultGateway`,
/// `LocalSubnet`, `DNS`, `DHCP` and `WINS`); the daemon keeps a named set of
/// each up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keyword {
    /// The next hops of every default route, in every routing table.
    DefaultGateway,
    /// The prefixes of the addresses of the interface a packet uses.
    LocalSubnet,
    /// The name servers of resolv.conf (or of systemd-resolved's stub).
    Dns,
    /// The servers that granted the host's DHCP leases.
    Dhcp,
    /// The WINS (NetBIOS name) servers of the leases and of smb.conf.
    Wins,
}

impl Keyword {
    pub const ALL: [Keyword; 5] =
        [Keyword::DefaultGateway, Keyword::LocalSubnet, Keyword::Dns, Keyword::Dhcp, Keyword::Wins];

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::DefaultGateway => "default-gateway",
            Keyword::LocalSubnet => "local-subnet",
            Keyword::Dns => "dns",
            Keyword::Dhcp => "dhcp",
            Keyword::Wins => "wins",
        }
    }
}

/// One entry of `remote-addresses` or `local-addresses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Address {
    Range(AddrRange),
    Keyword(Keyword),
}

/// `local` is for `local-addresses`, where only `local-subnet` makes sense.
pub fn parse_address(s: &str, local: bool) -> Result<Address, String> {
    let q = Quoted(s);
    if let Some(k) = Keyword::ALL.into_iter().find(|k| k.as_str() == s) {
        if local && k != Keyword::LocalSubnet {
            return Err(format!("{q} names remote hosts; local-addresses takes only the keyword \"local-subnet\""));
        }
        return Ok(Address::Keyword(k));
    }
    // A word is a mistyped keyword, not a mistyped address.
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_') {
        let names: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
        return Err(format!("{q} is not a keyword ({}) nor an address", names.join(", ")));
    }
    parse_addr_range(s).map(Address::Range)
}

pub fn format_address(a: &Address) -> String {
    match a {
        Address::Range(r) => format_addr_range(r),
        Address::Keyword(k) => k.as_str().to_string(),
    }
}

pub fn parse_port(n: i64) -> Result<u16, String> {
    u16::try_from(n).map_err(|_| format!("{n} is not a port (0-65535)"))
}

pub fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let q = Quoted(s);
    let num = |p: &str| -> Result<u16, String> {
        let n: i64 = p.trim().parse().map_err(|_| format!("{q} is not a port or port range"))?;
        parse_port(n)
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("{q} is not a port range (start > end)"));
            }
            Ok(PortRange(a, b))
        }
        None => num(s).map(|p| PortRange(p, p)),
    }
}

/// `None` is `any`.
pub fn parse_protocol(s: &str) -> Result<Option<u8>, String> {
    let q = Quoted(s);
    match s {
        "any" => Ok(None),
        "tcp" => Ok(Some(IPPROTO_TCP)),
        "udp" => Ok(Some(IPPROTO_UDP)),
        "icmp" => Ok(Some(IPPROTO_ICMP)),
        "icmpv6" => Ok(Some(IPPROTO_ICMPV6)),
        "sctp" => Ok(Some(132)),
        "dccp" => Ok(Some(33)),
        "udplite" => Ok(Some(136)),
        _ => s
            .parse::<u8>()
            .map(Some)
            .map_err(|_| format!("{q} is not a protocol (tcp, udp, icmp, icmpv6, sctp, dccp, udplite, any or 0-255)")),
    }
}

pub fn parse_icmp_type(proto: u8, s: &str) -> Result<u8, String> {
    let q = Quoted(s);
    if let Ok(n) = s.parse::<u8>() {
        return Ok(n);
    }
    icmp_table(proto).iter().find(|(name, _)| *name == s).map(|&(_, n)| n).ok_or_else(|| {
        let other = if proto == IPPROTO_ICMPV6 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 };
        let hint = if icmp_table(other).iter().any(|(name, _)| *name == s) {
            format!(" (it is an {} type: use protocol {})", icmp_family(other), protocol_name(Some(other)))
        } else {
            String::new()
        };
        format!("{q} is not an {} type name or number (0-255){hint}", icmp_family(proto))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IfPattern(pub String);

impl IfPattern {
    pub fn is_glob(&self) -> bool {
        self.0.ends_with('*')
    }

    /// The fixed part: the whole name, or what precedes the `*`.
    pub fn stem(&self) -> &str {
        self.0.trim_end_matches('*')
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.is_glob() {
            name.starts_with(self.stem())
        } else {
            name == self.0
        }
    }

    /// Whether some interface name matches both patterns (globs are prefix sets,
    /// so two patterns either nest or are disjoint).
    pub fn overlaps(&self, other: &IfPattern) -> bool {
        match (self.is_glob(), other.is_glob()) {
            (false, false) => self.0 == other.0,
            (true, false) => self.matches(&other.0),
            (false, true) => other.matches(&self.0),
            (true, true) => self.stem().starts_with(other.stem()) || other.stem().starts_with(self.stem()),
        }
    }
}

pub fn parse_if_pattern(s: &str) -> Result<IfPattern, String> {
    let q = Quoted(s);
    let stem = s.strip_suffix('*').unwrap_or(s);
    if s.is_empty() {
        return Err("\"\" is not an interface name".into());
    }
    if stem.len() >= IFNAMSIZ {
        return Err(format!("{q} is not an interface name (at most {} bytes)", IFNAMSIZ - 1));
    }
    if let Some(c) = stem.chars().find(|c| *c == '*' || *c == '/' || *c == ':' || c.is_whitespace() || c.is_control()) {
        let why =
            if c == '*' { "`*` may only end a pattern".to_string() } else { format!("{c:?} cannot be part of a name") };
        return Err(format!("{q} is not an interface name or pattern ({why})"));
    }
    Ok(IfPattern(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr_range("10.0.0.0/8"), Ok(AddrRange::V4(0x0a00_0000, 0x0aff_ffff)));
        assert_eq!(parse_addr_range("192.0.2.7"), Ok(AddrRange::V4(0xc000_0207, 0xc000_0207)));
        assert_eq!(parse_addr_range("192.0.2.10-192.0.2.20"), Ok(AddrRange::V4(0xc000_020a, 0xc000_0214)));
        assert_eq!(parse_addr_range("0.0.0.0/0"), Ok(AddrRange::V4(0, u32::MAX)));
        assert_eq!(parse_addr_range("::/0"), Ok(AddrRange::V6(0, u128::MAX)));
        assert!(matches!(parse_addr_range("2001:db8::/32"), Ok(AddrRange::V6(..))));
        assert_eq!(
            parse_addr_range("10.0.0.0/33").unwrap_err(),
            "\"10.0.0.0/33\" is not a CIDR prefix (IPv4 prefix length is at most 32)"
        );
        assert_eq!(
            parse_addr_range("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"
        );
        assert_eq!(
            parse_addr_range("10.0.0.9-10.0.0.1").unwrap_err(),
            "\"10.0.0.9-10.0.0.1\" is not an address range (start > end)"
        );
        assert!(parse_addr_range("10.0.0.1-::1").unwrap_err().contains("mixes IPv4 and IPv6"));
        assert!(parse_addr_range("300.1.1.1").is_err());
        assert!(parse_addr_range("example.com").is_err());
    }

    #[test]
    fn address_rendering_round_trips() {
        for s in ["10.0.0.0/8", "192.0.2.7", "192.0.2.10-192.0.2.20", "2001:db8::/32", "::/0", "0.0.0.0/0"] {
            assert_eq!(format_addr_range(&parse_addr_range(s).unwrap()), s);
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port_range("8000-8080"), Ok(PortRange(8000, 8080)));
        assert_eq!(parse_port_range("22"), Ok(PortRange(22, 22)));
        assert_eq!(parse_port_range("80-70").unwrap_err(), "\"80-70\" is not a port range (start > end)");
        assert_eq!(parse_port(70000).unwrap_err(), "70000 is not a port (0-65535)");
        assert_eq!(parse_port(-1).unwrap_err(), "-1 is not a port (0-65535)");
        assert!(parse_port_range("http").is_err());
    }

    #[test]
    fn protocols_and_icmp() {
        assert_eq!(parse_protocol("tcp"), Ok(Some(6)));
        assert_eq!(parse_protocol("any"), Ok(None));
        assert_eq!(parse_protocol("47"), Ok(Some(47)));
        assert!(parse_protocol("256").is_err());
        assert_eq!(parse_icmp_type(IPPROTO_ICMP, "echo-request"), Ok(8));
        assert_eq!(parse_icmp_type(IPPROTO_ICMPV6, "echo-request"), Ok(128));
        assert_eq!(parse_icmp_type(IPPROTO_ICMPV6, "nd-neighbor-solicit"), Ok(135));
        assert!(parse_icmp_type(IPPROTO_ICMP, "nd-neighbor-solicit").is_err());
        assert_eq!(crate::net::icmp_type_name(IPPROTO_ICMPV6, 136), "nd-neighbor-advert");
    }

    #[test]
    fn interface_patterns() {
        let p = |s| parse_if_pattern(s).unwrap();
        assert!(p("eth*").matches("eth0"));
        assert!(!p("eth0").matches("eth01"));
        assert!(p("eth*").overlaps(&p("eth0")));
        assert!(p("eth0").overlaps(&p("eth*")));
        assert!(p("e*").overlaps(&p("eth*")));
        assert!(!p("eth0").overlaps(&p("eth1")));
        assert!(!p("eth*").overlaps(&p("ens*")));
        assert!(!p("eth0*").overlaps(&p("eth")));
        assert!(p("eth*").overlaps(&p("eth")));
        assert!(parse_if_pattern("e*th").is_err());
        assert!(parse_if_pattern("averyveryverylongname").is_err());
        assert!(parse_if_pattern("").is_err());
    }
}
