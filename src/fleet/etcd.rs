//! The etcd side: the key layout and the connection.
//!
//! Keys (docs/fleet.md):
//! - `/ringfence/v1/policy/<scope>`: the scope's signed bundle (JSON);
//! - `/ringfence/v1/status/<host>`: the host's report under its lease (gone
//!   when the agent stops refreshing it: the host is offline);
//! - `/ringfence/v1/report/<host>`: the same report, durable;
//! - `/ringfence/v1/rollout/<scope>`: the phase of the scope's rollout (read
//!   and written by `fleet rollout` only).

use std::time::Duration;

use anyhow::Context;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use super::config::Etcd;

pub const POLICY: &str = "/ringfence/v1/policy/";
pub const STATUS: &str = "/ringfence/v1/status/";
pub const REPORT: &str = "/ringfence/v1/report/";
pub const ROLLOUT: &str = "/ringfence/v1/rollout/";

/// A client of one member: the first of `etcd.endpoints` that answers,
/// trying them from a random one on (so that agents spread over the
/// cluster). Not one client of all of them: tonic balances requests over
/// every endpoint, dead ones included, and a request sent to a dead member
/// fails. With `require-leader`, a member cut off from the quorum refuses
/// requests and watches instead of serving old data.
pub async fn connect(etcd: &Etcd) -> anyhow::Result<Client> {
    let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&etcd.ca)?))
        .identity(Identity::from_pem(read(&etcd.cert)?, read(&etcd.key)?));
    let options = ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(10))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_require_leader(true);
    anyhow::ensure!(!etcd.endpoints.is_empty(), "no etcd endpoints");
    let start = usize::from(super::random_byte());
    let mut errors = Vec::new();
    for i in 0..etcd.endpoints.len() {
        let endpoint = &etcd.endpoints[(start + i) % etcd.endpoints.len()];
        match member(endpoint, options.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) => errors.push(format!("{endpoint}: {e}")),
        }
    }
    anyhow::bail!("no etcd member answers: {}", errors.join("; "))
}

async fn member(endpoint: &str, options: ConnectOptions) -> Result<Client, etcd_client::Error> {
    let mut client = Client::connect([endpoint], Some(options)).await?;
    client.status().await?;
    Ok(client)
}
