//! The policy file format (version 1) exactly as written, with the place of every
//! value. Only the shape is checked here (unknown keys, wrong types); meaning is
//! checked in `validate`, which can report every problem at once.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned as S;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub version: Option<S<u32>>,
    pub profiles: Option<RawProfiles>,
    #[serde(default)]
    pub rules: Vec<S<RawRule>>,
    pub settings: Option<RawSettings>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfiles {
    pub domain: Option<S<RawProfile>>,
    pub private: Option<S<RawProfile>>,
    pub public: Option<S<RawProfile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub interfaces: Option<S<Vec<S<String>>>>,
    pub inbound: Option<S<Verdict>>,
    pub outbound: Option<S<Verdict>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    pub name: S<String>,
    pub direction: S<Direction>,
    pub action: S<Verdict>,
    pub protocol: Option<S<Scalar>>,
    #[serde(default)]
    pub local_ports: Vec<S<Scalar>>,
    #[serde(default)]
    pub remote_ports: Vec<S<Scalar>>,
    #[serde(default)]
    pub remote_addresses: Vec<S<String>>,
    #[serde(default)]
    pub local_addresses: Vec<S<String>>,
    #[serde(default)]
    pub interfaces: Vec<S<String>>,
    #[serde(default)]
    pub profiles: Vec<S<ProfileKind>>,
    #[serde(default)]
    pub icmp_types: Vec<S<Scalar>>,
    #[serde(default)]
    pub users: Vec<S<Scalar>>,
    pub log: Option<S<bool>>,
    pub enabled: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSettings {
    pub log_dropped: Option<S<bool>>,
}

/// Network location profiles, as in Windows Firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
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
        }
        d.deserialize_any(V)
    }
}
