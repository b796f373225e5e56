//! The admin commands: `fleet publish`, `fleet diff` and `fleet status`.

use std::path::Path;

use anyhow::{bail, Context};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

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
    let mut client = etcd::connect(etcd).await?;
    let current = Current::read(&mut client, scope).await?;
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

/// `fleet diff`: what publishing DIR to `scope` would change, rendered.
pub async fn diff(etcd: &Etcd, scope: &str, dir: &Path) -> anyhow::Result<String> {
    Scope::parse(scope).map_err(anyhow::Error::msg)?;
    let files = files_of(dir)?;
    let current = Current::read(&mut etcd::connect(etcd).await?, scope).await?;
    Ok(super::diff::render(scope, current.bundle.as_ref(), current.next, &files))
}

/// A scope's bundle in etcd now, and the revision its next publish takes.
struct Current {
    bundle: Option<Bundle>,
    /// The policy key's modification revision (0: no key).
    mod_revision: i64,
    next: u64,
}

impl Current {
    async fn read(client: &mut etcd_client::Client, scope: &str) -> anyhow::Result<Current> {
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
        let applied = reports.iter().filter_map(|r| Some(r.applied.get(scope)?.revision)).max().unwrap_or(0);
        let next = bundle.as_ref().map_or(0, |b| b.revision).max(applied) + 1;
        Ok(Current { bundle, mod_revision, next })
    }
}

/// Every host's durable report, with whether its status key is live.
pub async fn status(etcd: &Etcd) -> anyhow::Result<Fleet> {
    let mut client = etcd::connect(etcd).await?;
    let reports = reports(&mut client).await?;
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
