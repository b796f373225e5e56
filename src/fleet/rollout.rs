//! `fleet rollout`: moves a scope's isolation mode one step (request ->
//! secure-request -> require) on canaries first, then on the whole scope,
//! gated on what the canaries report (docs/fleet.md, Phased rollout).
//!
//! Built only from what the fleet already has, so that nothing new needs
//! trusting: the canary part is an ordinary signed bundle per canary, under
//! the scope narrowed to that host (`S,host=NAME`: every agent has the label
//! `host`), holding one file, [`MODE_FILE`], that sets `isolation.mode`.
//! Host scopes layer last, so that file replaces the scope's file of the same
//! name. Completing publishes the scope's own files with that file as its next
//! revision, then deletes the canary keys; aborting deletes them, and after a
//! completion publishes the scope's files from before it as a new revision
//! (agents refuse an old one). Agents take a deleted key's files out, so no
//! other withdrawal is needed.
//!
//! Three commands, not one that runs to the end: the white paper's phases
//! last while the administrator watches the canaries (their SAs, their
//! drops), so the phase a scope is in is kept in etcd under
//! `/ringfence/v1/rollout/SCOPE` ([`Record`]), read by the next command and
//! by whichever administrator runs it. Agents do not read it.
//!
//! The gate's drop count is what each canary's report says its profile
//! defaults dropped since its daemon last applied. The daemon makes its
//! counters anew at each apply, so after a canary applied the new mode they
//! count only what was dropped under it: that is the rise. (A count from
//! before the rollout covers an unknown span since an older apply: it is no
//! baseline to subtract.)

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};

use super::commands::{self, Current};
use super::config::Etcd;
use super::etcd::{self, REPORT, ROLLOUT};
use super::report::Fleet;
use super::scope::{for_host, Scope};
use super::sign::Publisher;

/// The file a rollout sets the mode with, in the canaries' bundles and then
/// in the scope's. Its name sorts after the usual `NN-name.yaml`, so that it
/// wins over the scope's own isolation file.
pub const MODE_FILE: &str = "99-rollout-isolation.yaml";

/// The steps, in order.
const STEPS: [&str; 3] = ["request", "secure-request", "require"];

fn next_mode(mode: &str) -> Option<&'static str> {
    STEPS.iter().position(|m| *m == mode).and_then(|i| STEPS.get(i + 1)).copied()
}

fn mode_file(mode: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(MODE_FILE.to_string(), format!("isolation:\n  mode: {mode}\n"))])
}

/// A scope's rollout, the value of its rollout key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    pub from: String,
    pub to: String,
    pub canaries: Vec<String>,
    #[serde(flatten)]
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    /// The canaries have the new mode, the rest of the scope the old one.
    Canary,
    /// The scope has the new mode from `revision` on; `before` are its files
    /// before it, which `--abort` publishes again.
    Complete { revision: u64, before: BTreeMap<String, String> },
}

impl Record {
    /// The scope's rollout and its key's modification revision (0: none).
    async fn read(client: &mut Client, scope: &str) -> anyhow::Result<(Option<Record>, i64)> {
        let key = format!("{ROLLOUT}{scope}");
        let answer = client.get(key.as_str(), None).await.context("reading the rollout")?;
        match answer.kvs().first() {
            None => Ok((None, 0)),
            Some(kv) => Ok((
                Some(serde_json::from_slice(kv.value()).with_context(|| format!("{key} holds no rollout"))?),
                kv.mod_revision(),
            )),
        }
    }

    /// Writes it (or, with none, deletes the key) unless another rollout
    /// command of the scope wrote it since it was read at `mod_revision`.
    async fn write(record: Option<&Record>, client: &mut Client, scope: &str, mod_revision: i64) -> anyhow::Result<()> {
        let key = format!("{ROLLOUT}{scope}");
        let op = match record {
            Some(r) => TxnOp::put(key.as_str(), serde_json::to_vec(r)?, None),
            None => TxnOp::delete(key.as_str(), None),
        };
        let txn = Txn::new().when([Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision)]).and_then([op]);
        if !client.txn(txn).await.context("writing the rollout")?.succeeded() {
            bail!("another rollout command of scope {scope} came first; see where it stands and run again");
        }
        Ok(())
    }
}

/// The canaries: a share of the scope's hosts, or hosts by name.
pub enum Canaries {
    Percent(u32),
    Hosts(Vec<String>),
}

/// `--canary`'s value: `10%` or `10`, 1 to 100.
pub fn percent(s: &str) -> Result<u32, String> {
    match s.strip_suffix('%').unwrap_or(s).parse() {
        Ok(p @ 1..=100) => Ok(p),
        _ => Err(format!("{s:?} is not a percentage from 1% to 100%")),
    }
}

/// `percent`% of `hosts` (at least one), the same ones every time: those
/// first by the SHA-256 of their name, which spreads them over names and sites.
fn pick(hosts: &[String], percent: u32) -> Vec<String> {
    let mut by_hash: Vec<(Vec<u8>, &String)> = hosts
        .iter()
        .map(|h| (ring::digest::digest(&ring::digest::SHA256, h.as_bytes()).as_ref().to_vec(), h))
        .collect();
    by_hash.sort();
    let count = (hosts.len() * percent as usize).div_ceil(100).max(1);
    let mut picked: Vec<String> = by_hash.into_iter().take(count).map(|(_, h)| h.clone()).collect();
    picked.sort();
    picked
}

/// The live hosts whose labels the scope matches.
fn hosts_of(fleet: &Fleet, scope: &Scope) -> Vec<String> {
    let hosts = fleet.hosts.iter().filter(|h| h.live && scope.matches(&h.report.labels));
    hosts.map(|h| h.report.host.clone()).collect()
}

/// What the hosts of a rollout must report.
struct Want<'a> {
    scope: &'a str,
    mode: &'a str,
    /// The scope's revision (after completing or aborting a completion).
    revision: Option<u64>,
    /// Whether each host has its canary scope applied, or must have none.
    canary: bool,
    /// The gate: the most packets the profile defaults may have dropped
    /// since the host's daemon last applied.
    max_dropped: Option<u64>,
}

/// What each of `hosts` reports that `want` does not hold, one line each
/// (none: every host is there).
fn lagging(fleet: &Fleet, hosts: &[String], want: &Want) -> Vec<String> {
    let mut problems = Vec::new();
    for name in hosts {
        let Some(host) = fleet.hosts.iter().find(|h| h.report.host == *name) else {
            problems.push(format!("{name}: has never reported"));
            continue;
        };
        let (report, canary) = (&host.report, for_host(want.scope, name));
        let mut say = |what: String| problems.push(format!("{name}: {what}"));
        if !host.live {
            say("is offline (no live status key)".into());
        }
        for (scope, p) in report.errors.iter().filter(|(s, _)| **s == want.scope || **s == canary) {
            say(format!("scope {scope} revision {}: {}", p.revision, p.reason));
        }
        match (report.applied.get(&canary), want.canary) {
            (None, true) => say(format!("has not applied its canary scope {canary}")),
            (Some(a), false) => say(format!("still has its canary scope {canary} (revision {})", a.revision)),
            _ => {}
        }
        let revision = report.applied.get(want.scope).map(|a| a.revision);
        if let Some(r) = want.revision.filter(|r| revision != Some(*r)) {
            say(format!(
                "has scope {} at revision {}, not {r}",
                want.scope,
                revision.map_or("none".into(), |r| r.to_string())
            ));
        }
        let mode = report.daemon.isolation.as_deref().unwrap_or("?");
        if mode != want.mode {
            say(format!("reports isolation {mode}, not {}", want.mode));
        }
        let dropped = &report.daemon.dropped;
        if let Some(max) = want.max_dropped.filter(|max| dropped.inbound + dropped.outbound > *max) {
            say(format!(
                "dropped {} packets (in {}, out {}) since it applied, more than --max-drop-rise {max}",
                dropped.inbound + dropped.outbound,
                dropped.inbound,
                dropped.outbound
            ));
        }
    }
    problems
}

/// Waits, at most `wait`, until `done` holds of the fleet (read again at
/// each report written); the fleet as last read.
async fn wait_for(client: &mut Client, wait: Duration, done: impl Fn(&Fleet) -> bool) -> anyhow::Result<Fleet> {
    let deadline = tokio::time::Instant::now() + wait;
    // Watching before reading: no report written in between is missed.
    let mut watch = client.watch(REPORT, Some(WatchOptions::new().with_prefix())).await.context("watch")?;
    loop {
        let fleet = commands::fleet(client).await?;
        if done(&fleet) {
            return Ok(fleet);
        }
        match tokio::time::timeout_at(deadline, watch.message()).await {
            Err(_) => return Ok(fleet),
            Ok(message) => {
                message.context("watch")?.context("etcd ended the watch")?;
            }
        }
    }
}

/// Waits for `hosts` to report what `want` says; says how many did.
async fn settle(client: &mut Client, wait: Duration, hosts: &[String], want: &Want<'_>) -> anyhow::Result<()> {
    let fleet = wait_for(client, wait, |f| lagging(f, hosts, want).is_empty()).await?;
    let problems = lagging(&fleet, hosts, want);
    let lagging_hosts = hosts.iter().filter(|h| problems.iter().any(|p| p.starts_with(&format!("{h}: ")))).count();
    println!("{} of {} hosts report isolation {}", hosts.len() - lagging_hosts, hosts.len(), want.mode);
    if !problems.is_empty() {
        bail!("after {} s, not every host is there:\n  {}", wait.as_secs(), problems.join("\n  "));
    }
    Ok(())
}

/// A rollout command: its connection, its scope and the scope's rollout.
pub struct Rollout<'a> {
    client: Client,
    publisher: &'a Publisher,
    scope: &'a str,
    selector: Scope,
    /// How long to wait for the hosts to report a change.
    wait: Duration,
    record: Option<Record>,
    /// The rollout key's modification revision when read (0: none).
    mod_revision: i64,
}

impl<'a> Rollout<'a> {
    pub async fn open(etcd: &Etcd, publisher: &'a Publisher, scope: &'a str, wait: Duration) -> anyhow::Result<Self> {
        let selector = Scope::parse(scope).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(!selector.names_hosts(), "scope {scope} names hosts: a rollout's canaries are such scopes");
        let mut client = etcd::connect(etcd).await?;
        let (record, mod_revision) = Record::read(&mut client, scope).await?;
        Ok(Rollout { client, publisher, scope, selector, wait, record, mod_revision })
    }

    /// Starts a rollout: the scope's hosts' mode (they must agree) moves one
    /// step on the canaries; waits for them to report it.
    pub async fn start(mut self, canaries: Canaries) -> anyhow::Result<()> {
        let (scope, wait, publisher) = (self.scope, self.wait, self.publisher);
        let client = &mut self.client;
        if let Some(r) = self.record.filter(|r| r.phase == Phase::Canary) {
            let canaries = r.canaries.join(" ");
            let step = format!("from {} to {} (canaries {canaries})", r.from, r.to);
            bail!("scope {scope} is in the canary phase of a rollout {step}: --complete or --abort it");
        }
        let fleet = commands::fleet(client).await?;
        let hosts = hosts_of(&fleet, &self.selector);
        anyhow::ensure!(!hosts.is_empty(), "no live host has the labels of scope {scope}");
        let mut modes = BTreeMap::<&str, Vec<&str>>::new();
        for host in fleet.hosts.iter().filter(|h| hosts.contains(&h.report.host)) {
            let mode = host.report.daemon.isolation.as_deref().unwrap_or("?");
            modes.entry(mode).or_default().push(&host.report.host);
        }
        let from = match modes.keys().collect::<Vec<_>>()[..] {
            [mode] => mode.to_string(),
            _ => {
                let modes: Vec<String> = modes.iter().map(|(m, h)| format!("{m} ({})", h.join(" "))).collect();
                bail!("the hosts of scope {scope} are not all in one isolation mode: {}", modes.join(", "));
            }
        };
        let steps = STEPS.join(" -> ");
        let to = next_mode(&from)
            .with_context(|| format!("the hosts of scope {scope} are in isolation {from}; a rollout moves {steps}"))?;
        let canaries = match canaries {
            Canaries::Percent(p) => pick(&hosts, p),
            Canaries::Hosts(names) => {
                if let Some(stranger) = names.iter().find(|n| !hosts.contains(n)) {
                    bail!("{stranger} is not a live host of scope {scope} ({})", hosts.join(" "));
                }
                names
            }
        };
        // The record first: a rollout cut short here is still known, and aborted.
        let record =
            Record { from: from.clone(), to: to.to_string(), canaries: canaries.clone(), phase: Phase::Canary };
        Record::write(Some(&record), client, scope, self.mod_revision).await?;
        println!(
            "rollout of scope {scope} from {from} to {to}: canaries {} of its {} hosts",
            canaries.len(),
            hosts.len()
        );
        for host in &canaries {
            let bundle = commands::put(client, publisher, &for_host(scope, host), mode_file(to)).await?;
            println!("published isolation {to} to {host}: scope {} revision {}", bundle.scope, bundle.revision);
        }
        let want = Want { scope, mode: to, revision: None, canary: true, max_dropped: None };
        // A canary that refused its bundle, or whose daemon would not apply it, stays so.
        let refused = |f: &Fleet| {
            let canary = |h: &&super::report::Host| canaries.contains(&h.report.host);
            f.hosts.iter().filter(canary).any(|h| h.report.errors.contains_key(&for_host(scope, &h.report.host)))
        };
        let fleet = wait_for(client, wait, |f| lagging(f, &canaries, &want).is_empty() || refused(f)).await?;
        let problems = lagging(&fleet, &canaries, &want);
        if !problems.is_empty() {
            bail!(
                "the canaries are not all in {to}; the rest of the scope is untouched (--abort goes back):\n  {}",
                problems.join("\n  ")
            );
        }
        println!("every canary reports isolation {to}; watch them, then --complete (or --abort)");
        Ok(())
    }

    /// Completes the canary phase: checks the gate on the canaries' reports,
    /// publishes the mode to the whole scope, withdraws the canaries' bundles,
    /// waits for the scope's hosts.
    pub async fn complete(mut self, max_drop_rise: u64) -> anyhow::Result<()> {
        let (scope, publisher) = (self.scope, self.publisher);
        let client = &mut self.client;
        let Some(mut record) = self.record.filter(|r| r.phase == Phase::Canary) else {
            bail!("scope {scope} has no rollout in its canary phase");
        };
        let fleet = commands::fleet(client).await?;
        let gate = Want { scope, mode: &record.to, revision: None, canary: true, max_dropped: Some(max_drop_rise) };
        let problems = lagging(&fleet, &record.canaries, &gate);
        if !problems.is_empty() {
            bail!(
                "the gate stops the rollout of scope {scope} to {}; nothing changed (--abort goes back):\n  {}",
                record.to,
                problems.join("\n  ")
            );
        }
        println!(
            "gate passed: canaries {} report isolation {}, no error, at most {max_drop_rise} packets dropped",
            record.canaries.join(" "),
            record.to
        );
        let before = Current::read(client, scope).await?.bundle.map(|b| b.files).unwrap_or_default();
        let mut files = before.clone();
        files.extend(mode_file(&record.to));
        let bundle = commands::put(client, publisher, scope, files).await?;
        println!("published isolation {} to scope {scope}: revision {}", record.to, bundle.revision);
        record.phase = Phase::Complete { revision: bundle.revision, before };
        Record::write(Some(&record), client, scope, self.mod_revision).await?;
        withdraw_canaries(client, scope, &record.canaries).await?;
        let hosts = hosts_of(&commands::fleet(client).await?, &self.selector);
        let want = Want { scope, mode: &record.to, revision: Some(bundle.revision), canary: false, max_dropped: None };
        settle(client, self.wait, &hosts, &want).await
    }

    /// Aborts: withdraws the canaries' bundles and, after a completion, puts
    /// the scope's files from before it back as a new revision.
    pub async fn abort(mut self) -> anyhow::Result<()> {
        let (scope, publisher) = (self.scope, self.publisher);
        let client = &mut self.client;
        let Some(record) = self.record else {
            bail!("scope {scope} has no rollout to abort");
        };
        Record::write(None, client, scope, self.mod_revision).await?;
        withdraw_canaries(client, scope, &record.canaries).await?;
        let (hosts, revision) = match record.phase {
            Phase::Canary => {
                println!("scope {scope} itself was not changed: its hosts stay in {}", record.from);
                (record.canaries.clone(), None)
            }
            Phase::Complete { before, .. } => {
                let bundle = commands::put(client, publisher, scope, before).await?;
                println!("published scope {scope}'s files from before the rollout: revision {}", bundle.revision);
                (hosts_of(&commands::fleet(client).await?, &self.selector), Some(bundle.revision))
            }
        };
        let want = Want { scope, mode: &record.from, revision, canary: false, max_dropped: None };
        settle(client, self.wait, &hosts, &want).await
    }
}

async fn withdraw_canaries(client: &mut Client, scope: &str, canaries: &[String]) -> anyhow::Result<()> {
    for host in canaries {
        let canary = for_host(scope, host);
        if let Some(revision) = commands::delete(client, &canary).await? {
            println!("withdrew {host}'s canary scope {canary} (revision {revision})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::report::{self, Daemon, Dropped, Problem, Report};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modes_step_up_to_require() {
        assert_eq!(next_mode("request"), Some("secure-request"));
        assert_eq!(next_mode("secure-request"), Some("require"));
        assert_eq!(next_mode("require"), None);
        assert_eq!(next_mode("off"), None);
        assert_eq!(percent("10%"), Ok(10));
        assert_eq!(percent("100"), Ok(100));
        assert!(percent("0%").is_err() && percent("101%").is_err() && percent("x").is_err());
    }

    #[test]
    fn canaries_are_a_stable_share_of_the_hosts() {
        let hosts: Vec<String> = (1..=20).map(|i| format!("h{i}")).collect();
        let ten = pick(&hosts, 10);
        assert_eq!(ten.len(), 2);
        assert!(ten.iter().all(|h| hosts.contains(h)));
        let mut reversed = hosts.clone();
        reversed.reverse();
        assert_eq!(pick(&reversed, 10), ten, "the order the hosts come in does not matter");
        let half = pick(&hosts, 50);
        assert_eq!(half.len(), 10);
        assert!(ten.iter().all(|h| half.contains(h)), "a larger share holds the smaller one");
        assert_eq!(pick(&hosts[..3], 1).len(), 1, "at least one");
    }

    fn host(name: &str, mode: &str, canary: bool, dropped: u64, error: Option<&str>) -> report::Host {
        let mut applied = BTreeMap::from([("role=web".to_string(), report::Applied { revision: 4, hash: "h".into() })]);
        if canary {
            applied.insert(format!("role=web,host={name}"), report::Applied { revision: 1, hash: "c".into() });
        }
        let errors = error.map(|e| (format!("role=web,host={name}"), Problem { revision: 2, reason: e.into() }));
        let daemon = Daemon {
            isolation: Some(mode.into()),
            dropped: Dropped { inbound: dropped, outbound: 1 },
            ..Daemon::default()
        };
        let report = Report {
            host: name.into(),
            labels: BTreeMap::from([("role".into(), "web".into())]),
            applied,
            removed: BTreeMap::new(),
            errors: errors.into_iter().collect(),
            daemon,
            version: "0".into(),
            time: 0,
        };
        report::Host { live: true, report }
    }

    #[test]
    fn the_gate_names_every_canary_that_holds_it() {
        let fleet = Fleet {
            scopes: BTreeMap::new(),
            failing: BTreeMap::new(),
            offline: Vec::new(),
            hosts: vec![
                host("h1", "secure-request", true, 0, None),
                host("h2", "secure-request", true, 9, None),
                host("h3", "request", false, 0, Some("the policy check failed: x")),
                host("h4", "request", false, 0, None),
            ],
        };
        let gate =
            Want { scope: "role=web", mode: "secure-request", revision: None, canary: true, max_dropped: Some(5) };
        assert!(lagging(&fleet, &names(&["h1"]), &gate).is_empty());
        assert_eq!(
            lagging(&fleet, &names(&["h1", "h2", "h3", "h5"]), &gate),
            [
                "h2: dropped 10 packets (in 9, out 1) since it applied, more than --max-drop-rise 5",
                "h3: scope role=web,host=h3 revision 2: the policy check failed: x",
                "h3: has not applied its canary scope role=web,host=h3",
                "h3: reports isolation request, not secure-request",
                "h5: has never reported",
            ]
        );
        let done = Want { scope: "role=web", mode: "request", revision: Some(5), canary: false, max_dropped: None };
        assert_eq!(
            lagging(&fleet, &names(&["h1", "h4"]), &done),
            [
                "h1: still has its canary scope role=web,host=h1 (revision 1)",
                "h1: has scope role=web at revision 4, not 5",
                "h1: reports isolation secure-request, not request",
                "h4: has scope role=web at revision 4, not 5",
            ]
        );
    }

    #[test]
    fn the_record_reads_back() {
        let record = Record {
            from: "request".into(),
            to: "secure-request".into(),
            canaries: names(&["h1"]),
            phase: Phase::Complete { revision: 3, before: BTreeMap::from([("50-a.yaml".into(), "x".into())]) },
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains(r#""phase":"complete""#), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
    }
}
