//! `ringfence fleet agent`: follows the host's scopes in etcd, installs each
//! verified bundle into the fleet layer, asks the daemon to apply, reports.
//!
//! One session: connect, grant the status lease, read every policy key,
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
        for kv in current.kvs() {
            self.offer(kv.key(), kv.value()).await;
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
                    for event in message.events().iter().filter(|e| e.event_type() == EventType::Put) {
                        if let Some(kv) = event.kv() {
                            relevant |= self.offer(kv.key(), kv.value()).await;
                        }
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

    /// Takes the bundle under `key` if it is one of this host's scopes;
    /// whether it was.
    async fn offer(&mut self, key: &[u8], value: &[u8]) -> bool {
        let Some(scope) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(POLICY)) else {
            return false;
        };
        match Scope::parse(scope) {
            Ok(s) if s.matches(&self.config.labels) => {}
            _ => return false,
        }
        let scope = scope.to_string();
        match self.take(&scope, value).await {
            Ok(()) => {
                self.errors.remove(&scope);
            }
            Err(problem) => {
                warn!("scope {scope}: revision {}: {}", problem.revision, problem.reason);
                self.errors.insert(scope, problem);
            }
        }
        true
    }

    async fn take(&mut self, scope: &str, value: &[u8]) -> Result<(), Problem> {
        let signed: Signed = serde_json::from_slice(value)
            .map_err(|e| Problem { revision: 0, reason: Refusal::Malformed(e.to_string()).to_string() })?;
        let bundle = &signed.bundle;
        let problem = |reason: String| Problem { revision: bundle.revision, reason };
        let applied = self.applied.get(scope);
        if applied.is_some_and(|a| a.revision == bundle.revision && a.hash == bundle.hash()) {
            return Ok(());
        }
        self.trust.verify(scope, &signed, applied.map_or(0, |a| a.revision)).map_err(|r| problem(r.to_string()))?;
        let failsafe = Failsafe::now(&self.config)
            .await
            .map_err(|e| problem(format!("the failsafe cannot tell the host's paths to etcd and SSH: {e:#}")))?;
        self.applied = self.layer.install(&self.applied, bundle, &failsafe).map_err(|e| match e {
            InstallError::Refused(r) => problem(r.to_string()),
            InstallError::Io(e) => problem(format!("cannot write the fleet layer: {e:#}")),
        })?;
        info!("scope {scope}: revision {} written to {}", bundle.revision, self.layer.dir.display());
        let socket = self.config.socket.clone();
        let apply =
            tokio::task::spawn_blocking(move || crate::client::call(&socket, &Request::Apply { confirm_secs: None }));
        match apply.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(problem(format!("the daemon did not apply it: {e:#}"))),
            Err(e) => Err(problem(format!("the daemon did not apply it: {e}"))),
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
        let applied = self
            .applied
            .iter()
            .map(|(s, a)| (s.clone(), report::Applied { revision: a.revision, hash: a.hash.clone() }))
            .collect();
        Report {
            host: self.config.host.clone(),
            labels: self.config.labels.clone(),
            applied,
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
