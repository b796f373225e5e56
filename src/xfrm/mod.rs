//! The kernel's xfrm policies for IPsec isolation (docs/isolation.md): which
//! packets leave protected by ESP and which stay in clear. `plan` turns the
//! `isolation:` section and the dynamic keywords' current addresses into a
//! list of [`Policy`] values (pure); `kernel` reads the kernel's policies and
//! changes them to match such a list over NETLINK_XFRM (synchronous, like the
//! rest of the apply engine). What may come in clear is nftables' decision
//! (`compile::isolation`), conntrack-aware; the inbound policies here only
//! let ESP in and never refuse clear packets.
//!
//! One policy per (direction, remote prefix):
//!
//! ```text
//! out  src any  dst S   tmpl esp transport reqid REQID level use|required   (secure subnet S)
//! in   src S    dst any tmpl esp transport reqid 0     level use
//! out  src any  dst E   (no template: clear)                                 (exempt E)
//! in   src E    dst any (no template: clear)
//! out/in  ::/0 -> ::/0 proto ipv6-icmp type 133..=137 (clear)                 (neighbour discovery)
//! ```
//!
//! Every policy Ringfence installs has a priority in [`BAND`]; that is how it
//! recognises its own policies in the kernel, and it never changes any other.

pub mod events;
pub mod kernel;
pub mod plan;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use crate::net::{IPPROTO_ICMP, IPPROTO_ICMPV6};

use serde::Serialize;

pub use kernel::{Error, Xfrm};
pub use plan::{outbound, policies};

/// The reqid of the outbound templates, and of the CHILD_SA that charon
/// negotiates for them (the connection must set `reqid = REQID`): an outbound
/// template only uses an SA of its own reqid (0 is no wildcard there), and an
/// ACQUIRE for a reqid that no trapped child has is ignored by charon.
/// 0x5246 is "RF".
pub const REQID: u32 = 0x5246;

/// Every reqid Ringfence's connections use: [`REQID`], then one per group
/// connection (`policy::groups`).
pub const REQIDS: std::ops::RangeInclusive<u32> = REQID..=REQID + 0xFF;

/// The priority of the per-peer policies charon installs for the SAs of a
/// group connection (`ike::conn`): just ahead of Ringfence's band, so that the
/// host's traffic to a peer that authenticated as a group member leaves over
/// that peer's SA. Outside the band: Ringfence's apply never touches them.
pub const GROUP_PRIORITY: u32 = *BAND.start() - 1;

/// The reqid of the inbound templates: 0 matches an SA of any reqid, so SAs
/// of other reqids (later per-group children) are accepted too.
pub const INBOUND_REQID: u32 = 0;

/// The priorities of Ringfence's policies (lower is preferred by the kernel).
/// `ip xfrm policy add` uses 0 unless told otherwise; charon computes its own
/// below 0x10000 (it is configured with `policies = no` anyway). Policies in
/// this band are Ringfence's: `apply` replaces and removes them, and only them.
pub const BAND: RangeInclusive<u32> = 0x1_0000..=0x1_FFFF;

/// ICMPv6 router solicitation (133), router advertisement, neighbour
/// solicitation, neighbour advertisement and redirect (137): IKE cannot start
/// before neighbour discovery has found the peer, and a `required` policy for
/// a secure subnet would otherwise hold these packets until an SA exists.
/// (IPv4 needs nothing: ARP is not IP. IKE itself passes through charon's
/// per-socket bypass policies.)
pub const ND_TYPES: RangeInclusive<u8> = 133..=137;

/// Why a policy exists, from the most preferred down; the kernel takes, of
/// the policies whose selector matches a packet, the one of lowest priority.
#[derive(Debug, Clone, Copy)]
enum Rank {
    /// Neighbour discovery, ahead of everything.
    Neighbour,
    /// An address of an exempt keyword (a DNS server, the host's own subnet...):
    /// clear whatever secure subnet holds it, as in `compile::isolation`.
    ExemptKeyword,
    /// A prefix of `secure-subnets` or `exempt`: the longer prefix first and,
    /// of two equal ones, the exemption.
    Prefix { len: u8, secure: bool },
}

impl Rank {
    fn priority(self) -> u32 {
        let offset = match self {
            Rank::Neighbour => 0,
            Rank::ExemptKeyword => 1,
            // 2 (len 128, exempt) ..= 259 (len 0, secure). IPv4 prefixes are
            // counted like IPv6 ones; the two families never compete.
            Rank::Prefix { len, secure } => 2 + 2 * (128 - u32::from(len)) + u32::from(secure),
        };
        BAND.start() + offset
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    In,
    Out,
}

/// An address prefix, as xfrm selectors hold them (`0.0.0.0/0` is any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn any(v4: bool) -> Prefix {
        let addr = if v4 { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        Prefix { addr, len: 0 }
    }

    /// Whether the prefix holds `addr` (of the same family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        // Both as the top bits of a u128, so that one mask serves both families.
        let bits = |a: IpAddr| match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        let ((net, v4), (a, also_v4)) = (bits(self.addr), bits(addr));
        let mask = u128::MAX.checked_shl(128 - u32::from(self.len)).unwrap_or(0);
        v4 == also_v4 && net & mask == a & mask
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Which packets a policy is for. Both prefixes have the same family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Selector {
    pub src: Prefix,
    pub dst: Prefix,
    /// None: every protocol.
    pub proto: Option<u8>,
    /// For ICMP and ICMPv6, one type; the kernel holds it in the source port
    /// field (with mask 0xffff), as `ip xfrm ... proto ipv6-icmp type N` does.
    pub icmp_type: Option<u8>,
}

/// `use` sends in clear when there is no SA yet (and asks charon for one);
/// `required` holds the packets until there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Use,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "action")]
pub enum Action {
    /// No template: in clear.
    Clear,
    /// One ESP transport-mode template.
    Esp { reqid: u32, level: Level },
}

/// One kernel xfrm policy (type main, action allow, no mark, no interface).
/// The kernel identifies a policy by its direction and selector: it refuses a
/// second one with both equal, whatever their priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Policy {
    pub dir: Dir,
    pub selector: Selector,
    pub priority: u32,
    pub action: Action,
}

impl Policy {
    /// What the kernel identifies it by.
    pub fn key(&self) -> (Dir, Selector) {
        (self.dir, self.selector)
    }
}

/// The arguments of `ip xfrm policy add` that make this policy.
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.selector;
        write!(f, "src {} dst {}", s.src, s.dst)?;
        match s.proto {
            Some(IPPROTO_ICMP) => write!(f, " proto icmp")?,
            Some(IPPROTO_ICMPV6) => write!(f, " proto ipv6-icmp")?,
            Some(p) => write!(f, " proto {p}")?,
            None => {}
        }
        if let Some(t) = s.icmp_type {
            write!(f, " type {t}")?;
        }
        let dir = match self.dir {
            Dir::In => "in",
            Dir::Out => "out",
        };
        write!(f, " dir {dir} priority {}", self.priority)?;
        if let Action::Esp { reqid, level } = self.action {
            let level = match level {
                Level::Use => "use",
                Level::Required => "required",
            };
            write!(f, " tmpl proto esp mode transport reqid {reqid} level {level}")?;
        }
        Ok(())
    }
}
