//! The policy model: what the administrator asked for, validated and merged from
//! every drop-in file, with the place each value came from. Knows nothing of
//! nftables or netlink.

pub mod diag;
#[cfg(test)]
mod fuzz;
pub mod groups;
pub mod isolation;
mod load;
pub mod location;
pub mod raw;
pub mod services;
mod stage;
#[cfg(test)]
mod tests;
pub mod text;
pub mod units;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::net::PortRange;
pub use diag::{Diagnostic, Diagnostics, Place};
#[cfg(test)]
pub use load::load_text;
pub use load::{load, load_replacing, DefaultLayer, Dirs, EMBEDDED_DEFAULT, FLEET_MANIFEST};
pub use raw::{Action, Direction, LocalPolicy, ProfileKind, Verdict};
use values::{Address, IfPattern};

/// A value with the place that set it; `from: None` is the built-in default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub from: Option<Place>,
}

impl<T> Sourced<T> {
    pub fn default(value: T) -> Self {
        Sourced { value, from: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    pub kind: ProfileKind,
    pub interfaces: Sourced<Vec<IfPattern>>,
    pub inbound: Sourced<Verdict>,
    pub outbound: Sourced<Verdict>,
    /// Domain only: how an interface is found to be on the domain's network.
    pub detect: Sourced<Option<location::Detect>>,
}

impl Profile {
    fn builtin(kind: ProfileKind) -> Self {
        Profile {
            kind,
            interfaces: Sourced::default(Vec::new()),
            inbound: Sourced::default(Verdict::Block),
            outbound: Sourced::default(Verdict::Allow),
            detect: Sourced::default(None),
        }
    }

    pub fn default_for(&self, direction: Direction) -> Verdict {
        match direction {
            Direction::In => self.inbound.value,
            Direction::Out => self.outbound.value,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub log_dropped: Sourced<bool>,
    /// Whether the core networking rules are in the policy (`Rule::core`).
    pub core_networking: Sourced<bool>,
    /// `Ignore` from the first file that said so (no later file undoes it).
    pub local_policy: Sourced<LocalPolicy>,
    /// The policy directories not read because of `local_policy`.
    pub ignored_dirs: Vec<PathBuf>,
}

/// One validated rule. Empty lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: String,
    pub place: Place,
    pub direction: Direction,
    pub action: Action,
    /// `None` is any protocol.
    pub protocol: Option<u8>,
    pub local_ports: Vec<PortRange>,
    pub remote_ports: Vec<PortRange>,
    pub remote_addresses: Vec<Address>,
    pub local_addresses: Vec<Address>,
    pub interfaces: Vec<IfPattern>,
    pub profiles: Vec<ProfileKind>,
    pub icmp_types: Vec<u8>,
    /// The names of `services:`, whose protocols and ports are in `service_ports`
    /// (then `protocol` and the port lists are empty).
    pub services: Vec<String>,
    /// The ports of the services, per protocol: local ports inbound, remote outbound.
    pub service_ports: Vec<services::ServicePorts>,
    pub users: Vec<u32>,
    /// systemd units: the rule matches sockets in their cgroups.
    pub units: Vec<String>,
    /// Only packets that came over an SA of a peer in one of these groups.
    pub remote_groups: Vec<String>,
    /// Only packets that came over IPsec (true whenever `remote_groups` is set).
    pub require_secure: bool,
    pub log: bool,
    pub enabled: bool,
    /// A rule of the core networking group (`policies/core-networking.yaml`),
    /// looked up before every other rule.
    pub core: bool,
    /// Staged (`stage: audit`): evaluated beside the enforced rules, never
    /// deciding a packet.
    pub staged: bool,
}

/// The resultant policy after merging every file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The files that made it, in merge order (the embedded default as
    /// `<embedded>/00-default.yaml`).
    pub files: Vec<PathBuf>,
    /// Where the default layer came from.
    pub default: DefaultLayer,
    /// Domain, private, public, in that order.
    pub profiles: [Profile; 3],
    pub rules: Vec<Rule>,
    pub settings: Settings,
    pub isolation: isolation::Isolation,
    /// In merge order, names unique.
    pub groups: Vec<groups::GroupDef>,
    /// What charon must load to tell the groups apart (see [`groups::connections`]).
    pub group_connections: Vec<groups::GroupConn>,
    /// The files among `files` that the fleet agent wrote, and the scope and
    /// revision each came from (the layer's manifest, [`FLEET_MANIFEST`]).
    pub fleet: BTreeMap<PathBuf, FleetOrigin>,
}

/// The scope and revision of the bundle a file of the fleet layer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FleetOrigin {
    pub scope: String,
    pub revision: u64,
}

impl std::fmt::Display for FleetOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "fleet scope {} revision {}", self.scope, self.revision)
    }
}

impl Policy {
    pub fn profile(&self, kind: ProfileKind) -> &Profile {
        &self.profiles[kind as usize]
    }

    /// The profile whose pattern matches an interface's name, if any.
    /// Validation guarantees that at most one profile matches. (The profile
    /// in force may be detection's: `compile::location::profile_of`.)
    pub fn pattern_profile(&self, ifname: &str) -> Option<ProfileKind> {
        self.profiles.iter().find(|p| p.interfaces.value.iter().any(|pat| pat.matches(ifname))).map(|p| p.kind)
    }

    /// The domain profile's detection, if configured.
    pub fn detect(&self) -> Option<&location::Detect> {
        self.profile(ProfileKind::Domain).detect.value.as_ref()
    }

    /// The first enabled rule with `units:`, which needs the cgroup2 hierarchy.
    pub fn unit_rule(&self) -> Option<&Rule> {
        self.rules.iter().find(|r| r.enabled && !r.units.is_empty())
    }
}
