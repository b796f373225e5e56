//! The policy file format (version 1) exactly as written, with the place of every
//! value. Only the shape is checked here (unknown keys, wrong types); meaning is
//! checked in `validate`, which can report every problem at once.

use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned as S;

#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[schemars(with = "Option<u32>")]
    pub version: Option<S<u32>>,
    pub profiles: Option<RawProfiles>,
    #[serde(default)]
    pub rules: List<S<RawRule>>,
    pub settings: Option<RawSettings>,
    pub isolation: Option<RawIsolation>,
    pub groups: Option<Groups>,
    /// `audit`: every rule of the file is staged; the file may then hold
    /// only `version` and `rules`.
    #[schemars(with = "Option<Stage>")]
    pub stage: Option<S<Stage>>,
}

/// A staged rule is evaluated beside the enforced policy and never decides
/// a packet: the daemon counts and logs the new connections it would decide
/// otherwise (docs/policy.md, "stage: audit"). Removing the marker enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Audit,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfiles {
    #[schemars(with = "Option<RawProfile>")]
    pub domain: Option<S<RawProfile>>,
    #[schemars(with = "Option<RawProfile>")]
    pub private: Option<S<RawProfile>>,
    #[schemars(with = "Option<RawProfile>")]
    pub public: Option<S<RawProfile>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    #[schemars(with = "Option<List<S<String>>>")]
    pub interfaces: Option<S<List<S<String>>>>,
    #[schemars(with = "Option<Verdict>")]
    pub inbound: Option<S<Verdict>>,
    #[schemars(with = "Option<Verdict>")]
    pub outbound: Option<S<Verdict>>,
    /// Domain only: the profile of an interface over which a probe
    /// authenticates the domain (docs/policy.md, "Network location detection").
    #[schemars(with = "Option<RawDetect>")]
    pub detect: Option<S<RawDetect>>,
}

/// `profiles.domain.detect`: TLS probes whose certificates must chain to the CA.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// `https://HOST[:PORT][/PATH]` or `HOST:PORT`; one success is enough.
    #[schemars(with = "Option<List<S<String>>>", required)]
    pub probes: Option<S<List<S<String>>>>,
    /// The CA (PEM) the probes' certificates must chain to; by default
    /// isolation.identity.ca.
    #[schemars(with = "Option<String>")]
    pub ca: Option<S<String>>,
    /// SHA-256 digests (base64) of accepted SubjectPublicKeyInfos of the leaf.
    #[serde(default)]
    pub pins: List<S<String>>,
    /// How often every interface is probed again without an event (10m).
    #[schemars(with = "Option<String>")]
    pub interval: Option<S<String>>,
    /// How long one probe may take, name resolution included (3s).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Block => "block",
        }
    }
}

/// What a rule does with the packets it matches: `bypass` (authenticated
/// bypass) accepts the packets of the rule's `remote-groups` even where a
/// block rule matches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Block,
    Bypass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Bypass => "bypass",
        }
    }

    /// What happens to the packet.
    pub fn verdict(self) -> Verdict {
        match self {
            Action::Allow | Action::Bypass => Verdict::Allow,
            Action::Block => Verdict::Block,
        }
    }

    fn precedence(self) -> u8 {
        match self {
            Action::Bypass => 0,
            Action::Block => 1,
            Action::Allow => 2,
        }
    }
}

/// By precedence, the order in which the rules' sets are looked up:
/// authenticated bypass, then block, then allow (docs/precedence.md). (Not
/// the order of declaration, which is the order in which messages list them.)
impl Ord for Action {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.precedence().cmp(&other.precedence())
    }
}

impl PartialOrd for Action {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    // Optional here so that a missing one is reported at the rule, by `validate`;
    // required in the schema, which tells an editor what `validate` will say.
    #[schemars(with = "Option<String>", required)]
    pub name: Option<S<String>>,
    #[schemars(with = "Option<Direction>", required)]
    pub direction: Option<S<Direction>>,
    #[schemars(with = "Option<Action>", required)]
    pub action: Option<S<Action>>,
    #[schemars(with = "Option<Scalar>")]
    pub protocol: Option<S<Scalar>>,
    #[serde(default)]
    pub local_ports: List<S<Scalar>>,
    #[serde(default)]
    pub remote_ports: List<S<Scalar>>,
    #[serde(default)]
    pub remote_addresses: List<S<String>>,
    #[serde(default)]
    pub local_addresses: List<S<String>>,
    #[serde(default)]
    pub interfaces: List<S<String>>,
    #[serde(default)]
    pub profiles: List<S<ProfileKind>>,
    #[serde(default)]
    pub icmp_types: List<S<Scalar>>,
    /// Names from the services catalogue, instead of protocol and ports.
    #[serde(default)]
    pub services: List<S<String>>,
    #[serde(default)]
    pub users: List<S<Scalar>>,
    /// systemd units whose sockets the rule matches (nginx.service).
    #[serde(default)]
    pub units: List<S<String>>,
    #[serde(default)]
    pub remote_groups: List<S<String>>,
    #[schemars(with = "Option<Flag>")]
    pub require_secure: Option<S<Flag>>,
    #[schemars(with = "Option<Flag>")]
    pub log: Option<S<Flag>>,
    #[schemars(with = "Option<Flag>")]
    pub enabled: Option<S<Flag>>,
    #[schemars(with = "Option<Stage>")]
    pub stage: Option<S<Stage>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSettings {
    #[schemars(with = "Option<Flag>")]
    pub log_dropped: Option<S<Flag>>,
    /// The core networking group (neighbour discovery, MLD, router
    /// advertisements, ICMP errors of tracked flows, DHCP client); on by default.
    #[schemars(with = "Option<Flag>")]
    pub core_networking: Option<S<Flag>>,
    /// `ignore`: the policy directories after this file's are not read (a
    /// fleet layer's "apply local firewall rules: no").
    #[schemars(with = "Option<LocalPolicy>")]
    pub local_policy: Option<S<LocalPolicy>>,
}

/// Whether the policy directories after a file's own are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LocalPolicy {
    /// They are (the default): later files replace and add to earlier ones.
    Apply,
    /// They are not: the policy ends with the directory of the file that says so.
    Ignore,
}

impl LocalPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalPolicy::Apply => "apply",
            LocalPolicy::Ignore => "ignore",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawIsolation {
    #[schemars(with = "Option<IsolationMode>")]
    pub mode: Option<S<IsolationMode>>,
    #[schemars(with = "Option<List<S<String>>>")]
    pub secure_subnets: Option<S<List<S<String>>>>,
    #[schemars(with = "Option<List<S<String>>>")]
    pub exempt: Option<S<List<S<String>>>>,
    pub identity: Option<RawIdentity>,
    pub lifetimes: Option<RawLifetimes>,
    /// How long a first contact may negotiate before it goes on in clear (a
    /// soft SA), in the modes that fall back: 100ms to 10s.
    #[schemars(with = "Option<String>")]
    pub fallback: Option<S<String>>,
    pub ike: Option<RawIke>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawIdentity {
    #[schemars(with = "Option<String>")]
    pub ca: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub certificate: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub private_key: Option<S<String>>,
    /// The CA's certificate revocation list (PEM or DER), handed to charon.
    #[schemars(with = "Option<String>")]
    pub crl: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLifetimes {
    #[schemars(with = "Option<String>")]
    pub ike: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub child: Option<S<String>>,
    #[schemars(with = "Option<String>")]
    pub idle: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIke {
    #[schemars(with = "Option<String>")]
    pub socket: Option<S<String>>,
}

/// One group of `groups:`: the peers whose certificate subject matches.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    // Optional here so that a missing one is reported at the group, by `validate`.
    #[schemars(with = "Option<String>", required)]
    pub subject: Option<S<String>>,
}

/// `groups:`, a mapping from names to groups, in file order with the place of
/// every name (a `BTreeMap` would need ordered keys and lose the order).
#[derive(Debug)]
pub struct Groups(pub Vec<(S<String>, S<RawGroup>)>);

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Groups;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of group names to groups")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Groups, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Groups(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// How far a host goes in protecting its traffic with the members of its
/// domain (Windows' connection security rule modes, in rollout order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// No IPsec.
    Off,
    /// Try IPsec both ways; clear traffic is accepted both ways.
    Request,
    /// Outbound tries IPsec and falls back to clear; new inbound connections
    /// from secure subnets must come over IPsec.
    SecureRequest,
    /// IPsec both ways with secure subnets, no fallback.
    Require,
    /// As `require`, with an encrypting algorithm.
    RequireEncryption,
    /// Clear inbound from anyone, IPsec with members where they offer it.
    Boundary,
}

impl IsolationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IsolationMode::Off => "off",
            IsolationMode::Request => "request",
            IsolationMode::SecureRequest => "secure-request",
            IsolationMode::Require => "require",
            IsolationMode::RequireEncryption => "require-encryption",
            IsolationMode::Boundary => "boundary",
        }
    }
}

/// Network location profiles, as in Windows Firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProfileKind {
    Domain,
    Private,
    Public,
}

impl ProfileKind {
    pub const ALL: [ProfileKind; 3] = [ProfileKind::Domain, ProfileKind::Private, ProfileKind::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Domain => "domain",
            ProfileKind::Private => "private",
            ProfileKind::Public => "public",
        }
    }
}

/// A value written either as a number or as a string (`22` or `"8000-8080"`,
/// `6` or `tcp`, `1000` or `alice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Str(s) => write!(f, "{s}"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v).map(Scalar::Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            // `8.5` or `1e20` as a port: let validation say it is not a port.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` or `false`, nothing else: YAML 1.1's `yes`, `on`, `y` and quoted
/// strings are refused rather than guessed at, in a firewall's `enabled:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                Err(E::custom(format!("{} is not true or false", super::text::Quoted(v))))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list that may also be written empty (`key:` with no value, YAML null).
#[derive(Debug)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T> std::ops::Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<Vec<T>>::deserialize(d).map(|v| List(v.unwrap_or_default()))
    }
}
