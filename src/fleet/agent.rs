//! `ringfence fleet agent`: follows the host's scopes in etcd, installs each
//! verified bundle into the fleet layer, asks the daemon to apply, reports.
//!
//! One session: connect, grant the status lease, read every policy key
//! (removing the scopes whose key is gone or no longer matches the host),
//! report, then watch the policy prefix from the revision read (no event is
//! missed between the read and the watch) and refresh the lease, reporting
//! again when the daemon's summary changed. Any failure ends the session; the
//! next starts after a jittered, growing delay.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use tracing::{info, warn};

use super::bundle::Signed;
use super::config;
use super::etcd::{self, POLICY, REPORT, STATUS};
use super::failsafe::Failsafe;
use super::layer::{Applied, InstallError, Layer};
use super::report::{self, Daemon, Problem, Report};
use super::scope::Scope;
use super::sign::{Refusal, Trust};
use crate::protocol::answers::State;
use crate::protocol::Request;

pub struct Agent {
    config: config::Agent,
    trust: Trust,
    layer: Layer,
    applied: Applied,
    errors: BTreeMap<String, Problem>,
    /// The daemon's summary as last read.
    daemon: Daemon,
}

pub async fn run(config: config::Agent) -> anyhow::Result<()> {
    let trust = Trust::load(&config.fleet_ca, config.publisher_ou.clone()).map_err(anyhow::Error::msg)?;
    let layer = Layer::new(&config.state_dir, crate::policy::Dirs::new(config.policy_dirs.clone(), Vec::new()))?;
    let applied = layer.applied()?;
    let mut agent = Agent { config, trust, layer, applied, errors: BTreeMap::new(), daemon: Daemon::default() };
    let mut backoff = Backoff::default();
    loop {
        let e = agent.session(&mut backoff).await.unwrap_err();
        let delay = backoff.next();
        warn!("etcd: {e:#}; connecting again in {} ms", delay.as_millis());
        tokio::time::sleep(delay).await;
    }
}

impl Agent {
    /// Runs until etcd fails.
    async fn session(&mut self, backoff: &mut Backoff) -> anyhow::Result<std::convert::Infallible> {
        let mut client = etcd::connect(&self.config.etcd).await?;
        let lease = client.lease_grant(self.config.status_ttl as i64, None).await.context("lease grant")?.id();
        let (mut keeper, mut keepalives) = client.lease_keep_alive(lease).await.context("lease keep-alive")?;
        let current = client.get(POLICY, Some(GetOptions::new().with_prefix())).await.context("reading policy keys")?;
        let revision = current.header().context("etcd's answer has no header")?.revision();
        let mut present = Vec::new();
        for kv in current.kvs() {
            if let Some(scope) = self.scope_of(kv.key()) {
                self.offer(&scope, kv.value()).await;
                present.push(scope);
            }
        }
        // Errors of scopes gone are moot; a removal that fails says so anew.
        self.errors.retain(|scope, _| present.contains(scope));
        let gone: Vec<String> =
            self.applied.iter().filter(|(s, a)| !a.removed && !present.contains(s)).map(|(s, _)| s.clone()).collect();
        for scope in gone {
            self.remove(&scope).await;
        }
        self.read_daemon().await;
        self.report(&mut client, lease).await?;
        info!("following {POLICY} in etcd from revision {revision}");
        backoff.reset();
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut watch = client.watch(POLICY, Some(options)).await.context("watch")?;
        let mut refresh = tokio::time::interval(self.config.refresh());
        loop {
            tokio::select! {
                message = watch.message() => {
                    let message = message.context("watch")?.context("etcd ended the watch")?;
                    anyhow::ensure!(!message.canceled(), "etcd cancelled the watch: {}", message.cancel_reason());
                    let mut relevant = false;
                    for event in message.events() {
                        let Some((kv, scope)) = event.kv().and_then(|kv| Some((kv, self.scope_of(kv.key())?))) else {
                            continue;
                        };
                        match event.event_type() {
                            EventType::Put => self.offer(&scope, kv.value()).await,
                            EventType::Delete => self.remove(&scope).await,
                        }
                        relevant = true;
                    }
                    if relevant {
                        self.read_daemon().await;
                        self.report(&mut client, lease).await?;
                    }
                }
                _ = refresh.tick() => {
                    keeper.keep_alive().await.context("lease keep-alive")?;
                    let answer = keepalives.message().await.context("lease keep-alive")?;
                    anyhow::ensure!(answer.is_some_and(|a| a.ttl() > 0), "the status lease expired");
                    if self.read_daemon().await {
                        self.report(&mut client, lease).await?;
                    }
                }
            }
        }
    }

    /// The scope of a policy key, if it is one of this host's.
    fn scope_of(&self, key: &[u8]) -> Option<String> {
        let scope = std::str::from_utf8(key).ok()?.strip_prefix(POLICY)?;
        Scope::parse(scope).ok().filter(|s| s.matches(&self.config.labels)).map(|_| scope.to_string())
    }

    /// Takes the bundle of one of this host's scopes.
    async fn offer(&mut self, scope: &str, value: &[u8]) {
        let outcome = self.take(scope, value).await;
        self.outcome(scope, outcome);
    }

    /// Records the outcome of a change of `scope`: its error, or none.
    fn outcome(&mut self, scope: &str, outcome: Result<(), Problem>) {
        match outcome {
            Ok(()) => {
                self.errors.remove(scope);
            }
            Err(problem) => {
                warn!("scope {scope}: revision {}: {}", problem.revision, problem.reason);
                self.errors.insert(scope.to_string(), problem);
            }
        }
    }

    /// Takes the files of `scope` out of the layer (its key was deleted, or
    /// it no longer matches the host), checked as a bundle is, and asks the
    /// daemon to apply.
    async fn remove(&mut self, scope: &str) {
        let Some(revision) = self.applied.get(scope).filter(|a| !a.removed).map(|a| a.revision) else {
            // Never applied (refused, say): nothing to take out, nothing to report.
            self.errors.remove(scope);
            return;
        };
        let problem = |reason: String| Problem { revision, reason: format!("cannot remove the scope: {reason}") };
        let outcome = match self.change(|layer, applied, failsafe| layer.remove(applied, scope, failsafe)).await {
            Ok(()) => {
                info!("scope {scope}: revision {revision} removed from {}", self.layer.dir.display());
                Ok(())
            }
            Err(reason) => Err(problem(reason)),
        };
        self.outcome(scope, outcome);
    }

    async fn take(&mut self, scope: &str, value: &[u8]) -> Result<(), Problem> {
        let signed: Signed = serde_json::from_slice(value)
            .map_err(|e| Problem { revision: 0, reason: Refusal::Malformed(e.to_string()).to_string() })?;
        let bundle = &signed.bundle;
        let problem = |reason: String| Problem { revision: bundle.revision, reason };
        let applied = self.applied.get(scope);
        if applied.is_some_and(|a| !a.removed && a.revision == bundle.revision && a.hash == bundle.hash()) {
            return Ok(());
        }
        self.trust.verify(scope, &signed, applied.map_or(0, |a| a.revision)).map_err(|r| problem(r.to_string()))?;
        self.change(|layer, applied, failsafe| layer.install(applied, bundle, failsafe)).await.map_err(problem)?;
        info!("scope {scope}: revision {} written to {}", bundle.revision, self.layer.dir.display());
        Ok(())
    }

    /// Changes the layer with `change` (given the failsafe's paths now) and
    /// asks the daemon to apply; why not, if it did not.
    async fn change(
        &mut self,
        change: impl FnOnce(&Layer, &Applied, &Failsafe) -> Result<Applied, InstallError>,
    ) -> Result<(), String> {
        let failsafe = Failsafe::now(&self.config)
            .await
            .map_err(|e| format!("the failsafe cannot tell the host's paths to etcd and SSH: {e:#}"))?;
        self.applied = change(&self.layer, &self.applied, &failsafe).map_err(|e| match e {
            InstallError::Refused(r) => r.to_string(),
            InstallError::Io(e) => format!("cannot write the fleet layer: {e:#}"),
        })?;
        let socket = self.config.socket.clone();
        let apply =
            tokio::task::spawn_blocking(move || crate::client::call(&socket, &Request::Apply { confirm_secs: None }));
        match apply.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the daemon did not apply it: {e:#}")),
            Err(e) => Err(format!("the daemon did not apply it: {e}")),
        }
    }

    /// Asks the daemon for its summary (`show state`, `show profiles`, `show
    /// sas`: none lists the rules); whether it changed. A daemon that does
    /// not answer within the refresh interval is reported so: the lease must
    /// be refreshed on time.
    async fn read_daemon(&mut self) -> bool {
        let socket = self.config.socket.clone();
        let ask = move || -> anyhow::Result<Daemon> {
            let state: State = crate::client::ask(&socket, &Request::State)?;
            let profiles = crate::client::ask(&socket, &Request::Profiles)?;
            let sas = crate::client::ask(&socket, &Request::Sas).map_err(|e| format!("{e:#}"));
            Ok(Daemon::from_answers(state.isolation.mode, &profiles, sas))
        };
        let daemon = match tokio::time::timeout(self.config.refresh(), tokio::task::spawn_blocking(ask)).await {
            Ok(Ok(Ok(daemon))) => Ok(daemon),
            Ok(Ok(Err(e))) => Err(format!("{e:#}")),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the daemon did not answer in time".to_string()),
        }
        .unwrap_or_else(|error| Daemon { error: Some(error), ..Daemon::default() });
        let changed = daemon != self.daemon;
        self.daemon = daemon;
        changed
    }

    fn report_value(&self) -> Report {
        let (removed, applied): (Vec<_>, Vec<_>) = self.applied.iter().partition(|(_, a)| a.removed);
        let applied = applied
            .into_iter()
            .map(|(s, a)| (s.clone(), report::Applied { revision: a.revision, hash: a.hash.clone() }));
        Report {
            host: self.config.host.clone(),
            labels: self.config.labels.clone(),
            applied: applied.collect(),
            removed: removed.into_iter().map(|(s, a)| (s.clone(), a.revision)).collect(),
            errors: self.errors.clone(),
            daemon: self.daemon.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            time: super::now(),
        }
    }

    async fn report(&self, client: &mut Client, lease: i64) -> anyhow::Result<()> {
        let json = serde_json::to_vec(&self.report_value())?;
        let host = &self.config.host;
        client.put(format!("{REPORT}{host}"), json.clone(), None).await.context("writing the report")?;
        let options = PutOptions::new().with_lease(lease);
        client.put(format!("{STATUS}{host}"), json, Some(options)).await.context("writing the status")?;
        Ok(())
    }
}

/// Reconnection delays: from 0.5 s doubling up to 10 s, each drawn at random
/// from its upper half so that agents cut off together do not return together.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    fn next(&mut self) -> Duration {
        let ceiling = Self::FIRST.saturating_mul(1 << self.failures.min(8)).min(Self::MAX);
        self.failures += 1;
        ceiling / 2 + ceiling / 2 * u32::from(super::random_byte()) / 255
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.next();
        assert!((Duration::from_millis(250)..=Duration::from_millis(500)).contains(&first), "{first:?}");
        let delays: Vec<_> = (0..10).map(|_| b.next()).collect();
        assert!(delays.iter().all(|d| *d <= Backoff::MAX));
        assert!(delays[9] >= Backoff::MAX / 2);
        b.reset();
        assert!(b.next() <= Duration::from_millis(500));
    }
}
