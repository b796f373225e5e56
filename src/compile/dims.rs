//! The packet fields a rule can constrain, each a field of a set key.
//!
//! A rule becomes elements of a set whose key is the concatenation of the fields
//! it constrains (its "shape"); one lookup per shape decides for every rule of
//! that shape, so the packet path costs the same for 10 rules or 100,000.

use serde::Serialize;

use crate::nft::{Expr, KeyType};
use crate::policy::Direction;

/// In key order. Interface first: the disjoint pass never splits field 0 when it
/// is an interface (see `disjoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Field {
    Interface,
    User,
    /// The cgroup of a systemd unit (see `units`).
    Unit,
    Protocol,
    IcmpType,
    Icmpv6Type,
    RemoteAddr4,
    LocalAddr4,
    RemoteAddr6,
    LocalAddr6,
    RemotePort,
    LocalPort,
}

impl Field {
    /// The IP version a packet with this field has: `Some(true)` for IPv4.
    pub fn ip_version(self) -> Option<bool> {
        match self {
            Field::RemoteAddr4 | Field::LocalAddr4 | Field::IcmpType => Some(true),
            Field::RemoteAddr6 | Field::LocalAddr6 | Field::Icmpv6Type => Some(false),
            Field::Interface | Field::User | Field::Unit | Field::Protocol | Field::RemotePort | Field::LocalPort => {
                None
            }
        }
    }

    pub fn key_type(self) -> KeyType {
        match self {
            Field::Interface => KeyType::Ifname,
            Field::User => KeyType::Uid,
            Field::Unit => KeyType::Cgroup,
            Field::Protocol => KeyType::InetProto,
            Field::IcmpType => KeyType::IcmpType,
            Field::Icmpv6Type => KeyType::Icmpv6Type,
            Field::RemoteAddr4 | Field::LocalAddr4 => KeyType::Ipv4Addr,
            Field::RemoteAddr6 | Field::LocalAddr6 => KeyType::Ipv6Addr,
            Field::RemotePort | Field::LocalPort => KeyType::InetService,
        }
    }

    /// Where the packet holds this field. Inbound, "remote" is the source;
    /// outbound, the destination.
    pub fn expr(self, direction: Direction) -> Expr {
        let inbound = direction == Direction::In;
        let (remote, local) = if inbound { ("saddr", "daddr") } else { ("daddr", "saddr") };
        let (remote_port, local_port) = if inbound { ("sport", "dport") } else { ("dport", "sport") };
        match self {
            Field::Interface => Expr::Meta(if inbound { "iifname" } else { "oifname" }),
            Field::User => Expr::Meta("skuid"),
            // The level is the lookup's (`units::keys`); 0, the root, is none.
            Field::Unit => Expr::SocketCgroup(0),
            Field::Protocol => Expr::Meta("l4proto"),
            Field::IcmpType => Expr::Payload("icmp", "type"),
            Field::Icmpv6Type => Expr::Payload("icmpv6", "type"),
            Field::RemoteAddr4 => Expr::Payload("ip", remote),
            Field::LocalAddr4 => Expr::Payload("ip", local),
            Field::RemoteAddr6 => Expr::Payload("ip6", remote),
            Field::LocalAddr6 => Expr::Payload("ip6", local),
            // `th` reads the transport header's first two 16-bit words, the ports of
            // TCP, UDP, SCTP, DCCP and UDP-Lite; the key's protocol field keeps it
            // from reading other headers.
            Field::RemotePort => Expr::Payload("th", remote_port),
            Field::LocalPort => Expr::Payload("th", local_port),
        }
    }

    /// Short name used in set names.
    pub fn short(self) -> &'static str {
        match self {
            Field::Interface => "if",
            Field::User => "uid",
            Field::Unit => "unit",
            Field::Protocol => "proto",
            Field::IcmpType => "icmp",
            Field::Icmpv6Type => "icmp6",
            Field::RemoteAddr4 => "raddr4",
            Field::LocalAddr4 => "laddr4",
            Field::RemoteAddr6 => "raddr6",
            Field::LocalAddr6 => "laddr6",
            Field::RemotePort => "rport",
            Field::LocalPort => "lport",
        }
    }
}
