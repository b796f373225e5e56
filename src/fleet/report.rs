//! What an agent reports, and `fleet status`'s view of every report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::scope::Labels;

/// A host's report: the value of its status and report keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub host: String,
    pub labels: Labels,
    /// Per scope, what is applied.
    pub applied: BTreeMap<String, Applied>,
    /// Per scope, why its latest bundle is not applied.
    pub errors: BTreeMap<String, Problem>,
    /// This agent's ringfence version.
    pub version: String,
    /// When it was written, seconds since the Unix epoch.
    pub time: i64,
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
            errors: errors.into_iter().collect(),
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
             failing b: scope all revision 3: bad signature\noffline (no live status key): c\n"
        );
    }
}
