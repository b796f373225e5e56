//! Which rule decides a packet: the same lookups, in the same order, over the same
//! set elements as the kernel's chains (both come from `compile::Compiled`).

use std::net::IpAddr;

use serde::Serialize;

use crate::compile::{isolation, Compiled, DynMatch, Field};
use crate::dynamic;
use crate::nft;
use crate::policy::raw::IsolationMode;
use crate::policy::values::Keyword;
use crate::policy::values::{has_ports, IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::policy::{Direction, Place, Policy, ProfileKind, Verdict};

/// A new connection's first packet, as seen from this host. A field left out
/// matches only rules that do not constrain it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Packet {
    pub protocol: u8,
    pub remote: Option<IpAddr>,
    pub local: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub local_port: Option<u16>,
    pub interface: Option<String>,
    pub icmp_type: Option<u8>,
    pub uid: Option<u32>,
}

impl Packet {
    fn field(&self, field: Field) -> Option<u128> {
        let v4 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V4(a)) => Some(u32::from(a) as u128),
            _ => None,
        };
        let v6 = |a: Option<IpAddr>| match a {
            Some(IpAddr::V6(a)) => Some(u128::from(a)),
            _ => None,
        };
        let port = |p: Option<u16>| p.filter(|_| has_ports(self.protocol)).map(u128::from);
        match field {
            Field::Interface => self.interface.as_deref().map(nft::ifname_key),
            Field::User => self.uid.map(u128::from),
            Field::Protocol => Some(self.protocol as u128),
            Field::IcmpType => self.icmp_type.filter(|_| self.protocol == IPPROTO_ICMP).map(u128::from),
            Field::Icmpv6Type => self.icmp_type.filter(|_| self.protocol == IPPROTO_ICMPV6).map(u128::from),
            Field::RemoteAddr4 => v4(self.remote),
            Field::LocalAddr4 => v4(self.local),
            Field::RemoteAddr6 => v6(self.remote),
            Field::LocalAddr6 => v6(self.local),
            Field::RemotePort => port(self.remote_port),
            Field::LocalPort => port(self.local_port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decider {
    /// Traffic on the loopback interface is always allowed.
    Loopback,
    Rule {
        name: String,
        place: Place,
        set: String,
    },
    ProfileDefault {
        profile: ProfileKind,
    },
    /// A new inbound connection in clear from a secure subnet, where the
    /// isolation mode requires IPsec (docs/isolation.md).
    Isolation {
        mode: IsolationMode,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Explanation {
    pub verdict: Verdict,
    pub profile: ProfileKind,
    pub decided_by: Decider,
}

pub fn explain(policy: &Policy, compiled: &Compiled, direction: Direction, packet: &Packet) -> Explanation {
    let profile = packet.interface.as_deref().map_or(ProfileKind::Public, |i| policy.profile_of(i));
    if packet.interface.as_deref() == Some("lo") {
        return Explanation { verdict: Verdict::Allow, profile, decided_by: Decider::Loopback };
    }
    if direction == Direction::In && isolation_drops(policy, compiled, packet) {
        let mode = policy.isolation.mode.value;
        return Explanation { verdict: Verdict::Block, profile, decided_by: Decider::Isolation { mode } };
    }
    for i in compiled.lookups(direction, profile) {
        let group = &compiled.groups[i];
        if !group.dynamic.iter().all(|d| dynamic_match(compiled, packet, *d)) {
            continue;
        }
        let Some(key) = group.fields.iter().map(|&f| packet.field(f)).collect::<Option<Vec<u128>>>() else {
            continue;
        };
        let set = &compiled.table.sets[i];
        if let Some(elem) = find(set, &key) {
            let rule = &policy.rules[elem.tag as usize];
            return Explanation {
                verdict: group.action(),
                profile,
                decided_by: Decider::Rule { name: rule.name.clone(), place: rule.place.clone(), set: set.name.clone() },
            };
        }
    }
    Explanation {
        verdict: policy.profile(profile).default_for(direction),
        profile,
        decided_by: Decider::ProfileDefault { profile },
    }
}

fn find<'a>(set: &'a nft::Set, key: &[u128]) -> Option<&'a nft::Elem> {
    set.elems.iter().find(|e| e.ranges.iter().zip(key).all(|(&(lo, hi), &k)| lo <= k && k <= hi))
}

/// Whether `isolation_in` drops the packet, taken as the first of a new
/// connection in clear: it comes from a secure subnet (`iso_secure4/6`, as
/// the table has them), from no exempt keyword's address, in a mode that
/// requires IPsec inbound.
fn isolation_drops(policy: &Policy, compiled: &Compiled, packet: &Packet) -> bool {
    let requires = matches!(
        policy.isolation.mode.value,
        IsolationMode::SecureRequest | IsolationMode::Require | IsolationMode::RequireEncryption
    );
    let Some(remote) = packet.remote else { return false };
    let v4 = remote.is_ipv4();
    let secure = compiled.table.sets.iter().find(|s| s.name == isolation::secure_set_name(v4));
    let in_secure = matches!(
        (secure, packet.field(if v4 { Field::RemoteAddr4 } else { Field::RemoteAddr6 })),
        (Some(set), Some(a)) if find(set, &[a]).is_some()
    );
    let exempt = isolation::exempt_keywords(&policy.isolation)
        .any(|keyword| dynamic_match(compiled, packet, DynMatch { keyword, v4, remote: true }));
    let nd = packet.protocol == IPPROTO_ICMPV6 && packet.icmp_type.is_some_and(|t| crate::xfrm::ND_TYPES.contains(&t));
    requires && in_secure && !exempt && !nd
}

/// Whether the packet's address is in the keyword's set as the table has it now.
fn dynamic_match(compiled: &Compiled, packet: &Packet, d: DynMatch) -> bool {
    let field = match (d.v4, d.remote) {
        (true, true) => Field::RemoteAddr4,
        (true, false) => Field::LocalAddr4,
        (false, true) => Field::RemoteAddr6,
        (false, false) => Field::LocalAddr6,
    };
    let key = match d.keyword {
        Keyword::DefaultGateway | Keyword::Dns | Keyword::Dhcp | Keyword::Wins => packet.field(field).map(|a| vec![a]),
        Keyword::LocalSubnet => packet.field(Field::Interface).zip(packet.field(field)).map(|(i, a)| vec![i, a]),
    };
    let name = dynamic::set_name(d.keyword, d.v4);
    let set = compiled.table.sets.iter().find(|s| s.name == name);
    matches!((key, set), (Some(key), Some(set)) if find(set, &key).is_some())
}
