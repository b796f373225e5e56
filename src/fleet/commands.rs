//! The admin commands: `fleet publish`, `fleet withdraw`, `fleet diff` and
//! `fleet status` (`fleet rollout` is in `rollout`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};

use super::bundle::{files_of, Bundle, Signed};
use super::config::Etcd;
use super::etcd::{self, POLICY, REPORT, STATUS};
use super::report::{Fleet, Report};
use super::scope::Scope;
use super::sign::Publisher;

/// Checks DIR as `ringfence check --policy-dir DIR` does, signs its files as
/// the scope's next revision and writes them, unless another publish of the
/// scope came between the read and the write. Returns the published bundle.
///
/// The next revision is one more than the highest of the bundle in etcd and
/// the revisions hosts report applied: after an older bundle was put back (a
/// replay the hosts refused), the next publish is still newer than theirs.
pub async fn publish(etcd: &Etcd, publisher: &Publisher, scope: &str, dir: &Path) -> anyhow::Result<Bundle> {
    Scope::parse(scope).map_err(anyhow::Error::msg)?;
    let dirs = crate::policy::Dirs::new(vec![dir.to_path_buf()], Vec::new());
    if let Err(diags) = crate::policy::load(&dirs).and_then(|p| crate::compile::compile(&p, &Default::default())) {
        bail!("the policy of {} does not pass `check`:\n{diags}", dir.display());
    }
    let files = files_of(dir)?;
    put(&mut etcd::connect(etcd).await?, publisher, scope, files).await
}

/// Signs `files` as the scope's next revision and writes them, unless
/// another publish of the scope came between the read and the write.
pub async fn put(
    client: &mut etcd_client::Client,
    publisher: &Publisher,
    scope: &str,
    files: BTreeMap<String, String>,
) -> anyhow::Result<Bundle> {
    let current = Current::read(client, scope).await?;
    let bundle = Bundle { scope: scope.to_string(), revision: current.next, time: super::now(), files };
    let signed = publisher.sign(bundle.clone())?;
    let key = format!("{POLICY}{scope}");
    let txn = Txn::new()
        .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, current.mod_revision)])
        .and_then([TxnOp::put(key.as_str(), serde_json::to_vec(&signed)?, None)]);
    if !client.txn(txn).await.context("writing the bundle")?.succeeded() {
        bail!("another publish of scope {scope} came first; run this one again");
    }
    Ok(bundle)
}

/// `fleet withdraw`: deletes the scope's key; its hosts take its files out
/// of their layer. Returns the revision withdrawn (none: no such key).
pub async fn withdraw(etcd: &Etcd, scope: &str) -> anyhow::Result<Option<u64>> {
    Scope::parse(scope).map_err(anyhow::Error::msg)?;
    delete(&mut etcd::connect(etcd).await?, scope).await
}

/// Deletes a scope's key; the revision of the bundle it held.
pub async fn delete(client: &mut etcd_client::Client, scope: &str) -> anyhow::Result<Option<u64>> {
    let key = format!("{POLICY}{scope}");
    let deleted = client.delete(key, Some(DeleteOptions::new().with_prev_key())).await.context("deleting")?;
    deleted
        .prev_kvs()
        .first()
        .map(|kv| {
            let signed: Signed = serde_json::from_slice(kv.value()).context("the deleted key held no bundle")?;
            Ok(signed.bundle.revision)
        })
        .transpose()
}

/// `fleet diff`: what publishing DIR to `scope` would change, rendered.
pub async fn diff(etcd: &Etcd, scope: &str, dir: &Path) -> anyhow::Result<String> {
    Scope::parse(scope).map_err(anyhow::Error::msg)?;
    let files = files_of(dir)?;
    let current = Current::read(&mut etcd::connect(etcd).await?, scope).await?;
    Ok(super::diff::render(scope, current.bundle.as_ref(), current.next, &files))
}

/// A scope's bundle in etcd now, and the revision its next publish takes.
pub struct Current {
    pub bundle: Option<Bundle>,
    /// The policy key's modification revision (0: no key).
    mod_revision: i64,
    next: u64,
}

impl Current {
    pub async fn read(client: &mut etcd_client::Client, scope: &str) -> anyhow::Result<Current> {
        let key = format!("{POLICY}{scope}");
        let current = client.get(key.as_str(), None).await.context("reading the scope's bundle")?;
        let (bundle, mod_revision) = match current.kvs().first() {
            None => (None, 0),
            Some(kv) => {
                let signed: Signed =
                    serde_json::from_slice(kv.value()).with_context(|| format!("{key} holds no bundle"))?;
                (Some(signed.bundle), kv.mod_revision())
            }
        };
        let reports = reports(client).await?;
        let applied = reports
            .iter()
            .filter_map(|r| r.applied.get(scope).map(|a| a.revision).or(r.removed.get(scope).copied()))
            .max()
            .unwrap_or(0);
        let next = bundle.as_ref().map_or(0, |b| b.revision).max(applied) + 1;
        Ok(Current { bundle, mod_revision, next })
    }
}

/// Every host's durable report, with whether its status key is live.
pub async fn status(etcd: &Etcd) -> anyhow::Result<Fleet> {
    fleet(&mut etcd::connect(etcd).await?).await
}

pub async fn fleet(client: &mut etcd_client::Client) -> anyhow::Result<Fleet> {
    let reports = reports(client).await?;
    let keys_only = Some(GetOptions::new().with_prefix().with_keys_only());
    let live = client.get(STATUS, keys_only).await.context("reading status keys")?;
    let live: Vec<String> =
        live.kvs().iter().filter_map(|kv| Some(kv.key_str().ok()?.strip_prefix(STATUS)?.to_string())).collect();
    Ok(Fleet::new(reports, &live))
}

/// Every host's durable report.
async fn reports(client: &mut etcd_client::Client) -> anyhow::Result<Vec<Report>> {
    let reports = client.get(REPORT, Some(GetOptions::new().with_prefix())).await.context("reading reports")?;
    reports
        .kvs()
        .iter()
        .map(|kv| {
            serde_json::from_slice::<Report>(kv.value()).with_context(|| format!("{:?} is no report", kv.key_str()))
        })
        .collect()
}
