//! What an agent reports, and `fleet status`'s view of every report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::raw::IsolationMode;
use crate::policy::Verdict;
use crate::protocol::answers::{DefaultCount, Profiles, Sas};

use super::scope::Labels;

/// A host's report: the value of its status and report keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub host: String,
    pub labels: Labels,
    /// Per scope, what is applied.
    pub applied: BTreeMap<String, Applied>,
    /// Per removed scope (its key deleted, or no longer matching), the
    /// revision it had: a later bundle of it must be newer.
    #[serde(default)]
    pub removed: BTreeMap<String, u64>,
    /// Per scope, why its latest bundle is not applied.
    pub errors: BTreeMap<String, Problem>,
    /// What the host's daemon says of itself.
    #[serde(default)]
    pub daemon: Daemon,
    /// This agent's ringfence version.
    pub version: String,
    /// When it was written, seconds since the Unix epoch.
    pub time: i64,
}

/// A summary of the daemon's state, small whatever the size of the policy:
/// no rule is listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Daemon {
    /// Each interface (but `lo`) and its profile.
    pub interfaces: BTreeMap<String, String>,
    /// The isolation mode (`off` ... `require-encryption`).
    pub isolation: Option<String>,
    /// IKE SAs up, one per protected peer; none when charon did not answer.
    pub sas: Option<u64>,
    /// Peers talked to in clear after the fallback (soft SAs).
    pub soft_sas: Option<u64>,
    /// Packets the profiles' block defaults dropped since the daemon last
    /// applied (each apply makes the table, and its counters, anew).
    pub dropped: Dropped,
    /// What the daemon would not tell (it is down, or charon is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Dropped {
    pub inbound: u64,
    pub outbound: u64,
}

impl Daemon {
    /// From the daemon's answers: the isolation mode of `show state`, `show
    /// profiles`, and `show sas` (or why it failed).
    pub fn from_answers(isolation: Option<IsolationMode>, profiles: &Profiles, sas: Result<Sas, String>) -> Daemon {
        let interfaces =
            profiles.host_interfaces.iter().map(|i| (i.interface.clone(), i.profile.as_str().to_string())).collect();
        let blocked = |d: &DefaultCount| if d.verdict == Verdict::Block { d.packets } else { 0 };
        let dropped = Dropped {
            inbound: profiles.profiles.iter().map(|p| blocked(&p.inbound)).sum(),
            outbound: profiles.profiles.iter().map(|p| blocked(&p.outbound)).sum(),
        };
        let (sas, soft_sas, error) = match sas {
            Ok(s) => (Some(s.ike_sas.len() as u64), Some(s.soft_sas.len() as u64), None),
            Err(e) => (None, None, Some(format!("show sas: {e}"))),
        };
        Daemon { interfaces, isolation: isolation.map(|m| m.as_str().to_string()), sas, soft_sas, dropped, error }
    }

    /// One line: `eth0 public; isolation off; 0 SAs, 0 soft; dropped in 3, out 0`
    /// (`?` for what is not known).
    fn render(&self) -> String {
        let known = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        let interfaces: Vec<String> = self.interfaces.iter().map(|(i, p)| format!("{i} {p}")).collect();
        let mut line = format!(
            "{}; isolation {}; {} SAs, {} soft; dropped in {}, out {}",
            if interfaces.is_empty() { "no interfaces".into() } else { interfaces.join(", ") },
            self.isolation.as_deref().unwrap_or("?"),
            known(self.sas),
            known(self.soft_sas),
            self.dropped.inbound,
            self.dropped.outbound
        );
        if let Some(e) = &self.error {
            line += &format!(" ({e})");
        }
        line
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Applied {
    pub revision: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Problem {
    /// The revision refused or not applied (0: unreadable).
    pub revision: u64,
    pub reason: String,
}

/// `fleet status`: every host that ever reported.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Fleet {
    /// Per scope, per applied revision, the hosts.
    pub scopes: BTreeMap<String, BTreeMap<u64, Vec<String>>>,
    /// Hosts with errors.
    pub failing: BTreeMap<String, BTreeMap<String, Problem>>,
    /// Hosts with a durable report but no live status key.
    pub offline: Vec<String>,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Host {
    pub live: bool,
    pub report: Report,
}

impl Fleet {
    /// From the durable reports and the names of hosts with a live status key.
    pub fn new(reports: Vec<Report>, live: &[String]) -> Fleet {
        let mut fleet =
            Fleet { scopes: BTreeMap::new(), failing: BTreeMap::new(), offline: Vec::new(), hosts: Vec::new() };
        for report in reports {
            for (scope, applied) in &report.applied {
                let hosts = fleet.scopes.entry(scope.clone()).or_default();
                hosts.entry(applied.revision).or_default().push(report.host.clone());
            }
            if !report.errors.is_empty() {
                fleet.failing.insert(report.host.clone(), report.errors.clone());
            }
            let live = live.contains(&report.host);
            if !live {
                fleet.offline.push(report.host.clone());
            }
            fleet.hosts.push(Host { live, report });
        }
        fleet
    }

    pub fn render(&self) -> String {
        let mut out =
            format!("{} hosts, {} offline, {} failing\n", self.hosts.len(), self.offline.len(), self.failing.len());
        for (scope, revisions) in &self.scopes {
            out += &format!("scope {scope}\n");
            for (revision, hosts) in revisions.iter().rev() {
                out += &format!("  revision {revision}: {} hosts: {}\n", hosts.len(), hosts.join(" "));
            }
        }
        for (host, problems) in &self.failing {
            for (scope, p) in problems {
                out += &format!("failing {host}: scope {scope} revision {}: {}\n", p.revision, p.reason);
            }
        }
        if !self.offline.is_empty() {
            out += &format!("offline (no live status key): {}\n", self.offline.join(" "));
        }
        for host in &self.hosts {
            out += &format!("host {}: {}\n", host.report.host, host.report.daemon.render());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, revision: u64, error: Option<&str>) -> Report {
        let applied = BTreeMap::from([("all".into(), Applied { revision, hash: "h".into() })]);
        let errors = error.map(|r| ("all".into(), Problem { revision: revision + 1, reason: r.into() }));
        Report {
            host: host.into(),
            labels: Labels::new(),
            applied,
            removed: BTreeMap::new(),
            errors: errors.into_iter().collect(),
            daemon: Daemon::default(),
            version: "0".into(),
            time: 0,
        }
    }

    #[test]
    fn hosts_are_grouped_by_revision_failing_and_offline() {
        let reports = vec![report("a", 2, None), report("b", 2, Some("bad signature")), report("c", 1, None)];
        let fleet = Fleet::new(reports, &["a".into(), "b".into()]);
        assert_eq!(fleet.scopes["all"][&2], ["a", "b"]);
        assert_eq!(fleet.offline, ["c"]);
        assert_eq!(
            fleet.render(),
            "3 hosts, 1 offline, 1 failing\nscope all\n  revision 2: 2 hosts: a b\n  revision 1: 1 hosts: c\n\
             failing b: scope all revision 3: bad signature\noffline (no live status key): c\n\
             host a: no interfaces; isolation ?; ? SAs, ? soft; dropped in 0, out 0\n\
             host b: no interfaces; isolation ?; ? SAs, ? soft; dropped in 0, out 0\n\
             host c: no interfaces; isolation ?; ? SAs, ? soft; dropped in 0, out 0\n"
        );
    }

    #[test]
    fn the_daemon_summary_comes_from_its_answers() {
        let default =
            |verdict: &str, packets: u64| serde_json::json!({ "verdict": verdict, "packets": packets, "bytes": 60 });
        let profiles = serde_json::from_value(serde_json::json!({
            "profiles": [
                { "profile": "domain", "interfaces": ["eth1"], "inbound": default("block", 4), "outbound": default("allow", 90) },
                { "profile": "public", "interfaces": [], "inbound": default("block", 3), "outbound": default("block", 1) },
            ],
            "host-interfaces": [{ "interface": "eth0", "profile": "public" }, { "interface": "eth1", "profile": "domain" }],
        }))
        .unwrap();
        let soft = serde_json::json!({ "peer": "192.0.2.9", "reason": "timeout", "since": 1, "expires": 2 });
        let sas = serde_json::json!({ "isolation": "on", "ike-sas": [{}, {}], "soft-sas": [soft] });
        let mode = Some(IsolationMode::SecureRequest);
        let daemon = Daemon::from_answers(mode, &profiles, Ok(serde_json::from_value(sas).unwrap()));
        assert_eq!(
            daemon.render(),
            "eth0 public, eth1 domain; isolation secure-request; 2 SAs, 1 soft; dropped in 7, out 1"
        );
        let down = Daemon::from_answers(mode, &profiles, Err("charon does not answer".into()));
        assert!(down.render().ends_with("? SAs, ? soft; dropped in 7, out 1 (show sas: charon does not answer)"));
    }
}
