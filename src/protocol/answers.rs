//! The daemon's answers to the read requests: one type each, which the daemon
//! serializes, `--json` prints as it came and the CLI reads back to render
//! (`show.rs`), and the metrics endpoint renders (`metrics.rs`).
//!
//! An answer with a list of rules is generic over the list: the daemon's is a
//! sequence written as it is made, so that a 100,000-rule answer is never held
//! whole (`daemon::views::Lazy`), the CLI's the `Vec` it reads back. Borrowed
//! text is a `Cow`: the daemon's borrows from its snapshot, the CLI's owns.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::compile::location::Source;
use crate::compile::staged::Would;
use crate::daemon::first_contact::{Reason, SoftSa};
use crate::filewatch;
use crate::ike::sas::IkeSa;
use crate::ike::Status;
use crate::monitor::Totals;
use crate::policy::raw::IsolationMode;
use crate::policy::values::Keyword;
use crate::policy::{Action, DefaultLayer, Direction, FleetOrigin, LocalPolicy, ProfileKind, Verdict};

/// `show state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct State {
    /// `inet ringfence`.
    pub table: String,
    /// Whether the kernel has the table now.
    pub present: bool,
    pub generation: u64,
    /// RFC 3339, at the host's offset.
    pub applied_at: Option<String>,
    pub last_apply_ms: f64,
    pub policy_dirs: Vec<PathBuf>,
    pub services_dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
    pub ignored_dirs: Vec<PathBuf>,
    pub rules: usize,
    pub enabled_rules: usize,
    pub sets: usize,
    pub elements: usize,
    pub chains: usize,
    pub nft_rules: usize,
    pub confirm_pending_secs: Option<u64>,
    pub last_error: Option<String>,
    pub isolation: IsolationState,
    /// Changes that wait for the engine or are being made.
    pub changes_in_progress: usize,
    pub file_watch: filewatch::Mode,
}

/// Isolation's part of `show state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsolationState {
    pub mode: Option<IsolationMode>,
    pub xfrm_policies: Option<usize>,
    pub xfrm_error: Option<String>,
    pub ike: Status,
}

/// `show stats` and the metrics: counters of the rules, the profiles'
/// defaults, applies, dynamic sets, isolation and the monitor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Stats<R = Vec<RuleStats<'static>>> {
    pub applies: u64,
    pub last_apply_ms: f64,
    pub defaults: Vec<DefaultStats>,
    pub dynamic_sets: Vec<SetSize>,
    pub isolation: IsolationStats,
    pub monitor: MonitorStats,
    /// The host's interfaces and their profiles, as `show profiles` has them.
    #[serde(default)]
    pub interfaces: Vec<HostInterface>,
    pub rules: R,
}

/// One rule's line of `show stats`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RuleStats<'a> {
    pub name: Cow<'a, str>,
    /// `FILE:LINE:COLUMN`.
    pub source: String,
    pub direction: Direction,
    pub action: Action,
    pub enabled: bool,
    pub log: bool,
    pub packets: u64,
    pub bytes: u64,
    /// Packets of the rule read from NFLOG.
    pub logged: u64,
    /// A staged rule: what it would do; its packets are the new connections
    /// it would have decided otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Would>,
}

/// One profile's default in one direction.
#[derive(Debug, Serialize, Deserialize)]
pub struct DefaultStats {
    pub profile: ProfileKind,
    pub direction: Direction,
    #[serde(flatten)]
    pub count: DefaultCount,
    pub logged: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn of(v4: bool) -> Family {
        if v4 {
            Family::Ipv4
        } else {
            Family::Ipv6
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// How many addresses a keyword's dynamic set holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct SetSize {
    pub set: String,
    pub keyword: Keyword,
    pub family: Family,
    pub elements: usize,
}

/// Isolation's part of `show stats`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsolationStats {
    pub mode: Option<IsolationMode>,
    /// The kernel's ESP SAs of Ringfence's connections; `None` if they
    /// cannot be read (`error`).
    pub sas_up: Option<usize>,
    pub soft_sas: usize,
    pub fallbacks: Vec<Fallbacks>,
    pub error: Option<String>,
    pub charon_loaded: bool,
    /// The readiness counts by protocol and port, while the table counts them.
    pub clear_inbound: Option<Vec<ClearByPort>>,
}

/// First contacts that went on in clear for one reason.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fallbacks {
    pub reason: Reason,
    pub count: u64,
}

/// New connections in clear from secure subnets to one protocol and port
/// (0 for a protocol without ports).
#[derive(Debug, Serialize, Deserialize)]
pub struct ClearByPort {
    pub protocol: String,
    pub port: u16,
    pub connections: u64,
}

/// The same, by source too, for `show sas`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClearBySource {
    pub source: IpAddr,
    #[serde(flatten)]
    pub count: ClearByPort,
}

/// The monitor's part of `show stats`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MonitorStats {
    pub nflog_group: u16,
    pub reading: bool,
    pub error: Option<String>,
    pub totals: Totals,
    /// Events kept for `monitor --backlog`, of `ring-size` at most.
    pub recent: usize,
    pub ring_size: usize,
    pub subscribers: usize,
}

/// `show profiles`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Profiles {
    pub profiles: Vec<ProfileState>,
    /// The host's interfaces (but `lo`) and their profile.
    pub host_interfaces: Vec<HostInterface>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProfileState {
    pub profile: ProfileKind,
    pub interfaces: Vec<String>,
    pub inbound: DefaultCount,
    pub outbound: DefaultCount,
}

/// A profile's default in one direction and its counters.
#[derive(Debug, Serialize, Deserialize)]
pub struct DefaultCount {
    pub verdict: Verdict,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HostInterface {
    pub interface: String,
    pub profile: ProfileKind,
    /// Why it has that profile.
    #[serde(default)]
    pub source: Source,
    /// Location detection's view of it, where detection judges it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
}

/// What location detection knows of one interface.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Detection {
    pub state: crate::location::State,
    /// When the state was reached (RFC 3339); none while undecided since the link came up.
    pub detected_at: Option<String>,
    /// The end of the last probe round over it.
    pub checked_at: Option<String>,
    /// The probe that last authenticated the domain over it.
    pub endpoint: Option<String>,
    /// That probe's connect and handshake time.
    pub rtt_ms: Option<f64>,
    /// Why the last probe round failed, if it did.
    pub last_error: Option<String>,
}

/// One keyword's set in one family, for `show sets`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct KeywordSet {
    pub keyword: Keyword,
    pub family: Family,
    pub set: String,
    /// Whether a rule of the table uses it.
    pub in_table: bool,
    pub elements: Vec<SetElement>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SetElement {
    /// For `local-subnet`: the interface whose subnet it is.
    pub interface: Option<String>,
    pub address: String,
    /// Where it came from (e.g. "default route in table 254").
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

/// `show sas`: charon's IKE SAs, the soft SAs and, in `request` and
/// `boundary`, the readiness counts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Sas {
    pub isolation: OnOff,
    pub ike_sas: Vec<IkeSa>,
    pub soft_sas: Vec<SoftSa>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_inbound: Option<Vec<ClearBySource>>,
}

/// A rule as `show rules`, `show policy` and `rule list` print it; `show
/// rules` adds its counters.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RuleView<'a> {
    pub name: Cow<'a, str>,
    /// `FILE:LINE:COLUMN`.
    pub source: String,
    pub direction: Direction,
    pub action: Action,
    pub enabled: bool,
    pub protocol: String,
    pub local_ports: Vec<String>,
    pub remote_ports: Vec<String>,
    pub remote_addresses: Vec<String>,
    pub local_addresses: Vec<String>,
    pub interfaces: Vec<Cow<'a, str>>,
    pub profiles: Cow<'a, [ProfileKind]>,
    pub icmp_types: Vec<String>,
    pub services: Cow<'a, [String]>,
    /// `core-networking` for the core networking rules.
    pub group: Option<Cow<'a, str>>,
    pub users: Cow<'a, [u32]>,
    #[serde(default)]
    pub units: Cow<'a, [String]>,
    pub remote_groups: Cow<'a, [String]>,
    pub require_secure: bool,
    pub log: bool,
    /// Staged (`stage: audit`): it decides nothing; its packets are the new
    /// connections it would have decided otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// The group of the core networking rules.
pub const CORE_NETWORKING: &str = "core-networking";

impl RuleView<'_> {
    pub fn is_core(&self) -> bool {
        self.group.as_deref() == Some(CORE_NETWORKING)
    }
}

/// `show policy`: the merged policy.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyView<R = Vec<RuleView<'static>>> {
    pub files: Vec<PathBuf>,
    /// The files the fleet agent wrote: the scope and revision of each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet: BTreeMap<PathBuf, FleetOrigin>,
    pub default: DefaultLayer,
    pub profiles: Vec<ProfileSettings>,
    pub settings: SettingsView,
    pub groups: Vec<GroupView>,
    pub group_connections: Vec<GroupConnView>,
    pub rules: R,
}

/// A value and the place that set it (`FILE:LINE:COLUMN`); `from: None` is
/// the built-in default.
#[derive(Debug, Serialize, Deserialize)]
pub struct Setting<T> {
    pub value: T,
    pub from: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProfileSettings {
    pub profile: ProfileKind,
    pub interfaces: Setting<Vec<String>>,
    pub inbound: Setting<Verdict>,
    pub outbound: Setting<Verdict>,
    /// Domain only: location detection, and where it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect: Option<Setting<DetectView>>,
}

/// `profiles.domain.detect` as `show policy` prints it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DetectView {
    /// `HOST:PORT` of each probe, in order.
    pub probes: Vec<String>,
    /// The CA's path and where it was set (detect's own `ca`, or isolation's).
    pub ca: Option<Setting<PathBuf>>,
    pub pins: Vec<String>,
    pub interval_secs: u64,
    pub timeout_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SettingsView {
    pub log_dropped: Setting<bool>,
    pub core_networking: Setting<bool>,
    pub local_policy: Setting<LocalPolicy>,
    pub ignored_dirs: Vec<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    /// The subject pattern, as charon writes it.
    pub subject: String,
    pub place: String,
}

/// A charon connection for the groups.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupConnView {
    pub pattern: String,
    pub reqid: u32,
    pub groups: BTreeSet<String>,
}

/// `show staged`: what the staged rules would have decided otherwise, since
/// the table was last replaced.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Staged {
    pub rules: Vec<StagedRule>,
    /// The remote addresses of those connections, most first.
    pub sources: Vec<StagedSource>,
}

/// One staged rule and the new connections it would have decided otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StagedRule {
    pub name: String,
    /// `FILE:LINE:COLUMN`.
    pub source: String,
    pub direction: Direction,
    pub would: Would,
    pub connections: u64,
}

/// A remote address (the source of inbound connections, the destination
/// of outbound ones) and how many of its new connections the staged rules
/// would have decided otherwise.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StagedSource {
    pub direction: Direction,
    pub would: Would,
    pub address: IpAddr,
    pub connections: u64,
}
