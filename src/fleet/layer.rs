//! The fleet layer directory and what the agent applied into it.
//!
//! Every applied scope's files are written together into one directory that
//! the daemon reads as a policy layer (docs/fleet.md: between /usr/lib and
//! /etc). A new bundle is written into a fresh staging directory with the
//! files of the other scopes, fsynced, checked with the daemon's policy
//! directories (the staging directory standing for the layer), then swapped
//! for the layer in one `renameat2(RENAME_EXCHANGE)`: the daemon never reads
//! a half-written layer, and a refused bundle leaves the layer untouched.
//! The layer persists, so a rebooted daemon applies the last good fleet
//! policy before etcd is reachable.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use serde::{Deserialize, Serialize};

use super::bundle::Bundle;
use super::failsafe::Failsafe;
use super::scope::layer_order;
use super::sign::Refusal;
use crate::policy::{FleetOrigin, FLEET_MANIFEST};

/// One scope as applied, or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AppliedScope {
    pub revision: u64,
    pub hash: String,
    pub files: BTreeMap<String, String>,
    /// The scope's key was deleted, or no longer matches the host: its files
    /// are gone, its revision is kept so that its old bundles stay replays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// The scopes whose files are in the layer, and the removed ones (the state
/// file `applied.json`).
pub type Applied = BTreeMap<String, AppliedScope>;

pub struct Layer {
    /// The directory the daemon reads.
    pub dir: PathBuf,
    state_dir: PathBuf,
    /// The daemon's policy directories, `dir` among them.
    daemon: crate::policy::Dirs,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}")]
    Refused(Refusal),
    #[error("cannot write the fleet layer")]
    Io(#[source] anyhow::Error),
}

impl Layer {
    /// The layer `STATE_DIR/policy.d`, checked with the daemon's directories
    /// `daemon`, which must include it.
    pub fn new(state_dir: &Path, daemon: crate::policy::Dirs) -> anyhow::Result<Layer> {
        let dir = state_dir.join("policy.d");
        anyhow::ensure!(
            daemon.policy.contains(&dir),
            "the daemon's policy directories ({}) do not include the fleet layer {}",
            daemon.policy.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            dir.display()
        );
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        Ok(Layer { dir, state_dir: state_dir.to_path_buf(), daemon })
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join("applied.json")
    }

    /// What was applied before (nothing on a new host).
    pub fn applied(&self) -> anyhow::Result<Applied> {
        match fs::read(self.state_file()) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", self.state_file().display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Applied::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.state_file().display())),
        }
    }

    /// Writes `applied` with `bundle` in its scope's place into the layer, if
    /// the daemon's policy with that layer passes `check` and keeps the
    /// failsafe's paths open; returns the new state.
    pub fn install(&self, applied: &Applied, bundle: &Bundle, failsafe: &Failsafe) -> Result<Applied, InstallError> {
        let mut next = applied.clone();
        let scope = AppliedScope {
            revision: bundle.revision,
            hash: bundle.hash(),
            files: bundle.files.clone(),
            removed: false,
        };
        next.insert(bundle.scope.clone(), scope);
        self.commit(next, failsafe)
    }

    /// Takes `scope`'s files out of the layer, on the same conditions as
    /// [`Layer::install`] (removing a scope that opens SSH may cut it);
    /// returns the new state, where the scope is kept as removed.
    pub fn remove(&self, applied: &Applied, scope: &str, failsafe: &Failsafe) -> Result<Applied, InstallError> {
        let mut next = applied.clone();
        if let Some(s) = next.get_mut(scope) {
            s.files.clear();
            s.removed = true;
        }
        self.commit(next, failsafe)
    }

    /// Stages `next`, checks it, swaps it in and records it.
    fn commit(&self, next: Applied, failsafe: &Failsafe) -> Result<Applied, InstallError> {
        let staging = self.state_dir.join("policy.d.new");
        let io = InstallError::Io;
        write_layer(&staging, &next).map_err(io)?;
        if let Err(refusal) = self.check(&staging, failsafe) {
            let _ = fs::remove_dir_all(&staging);
            return Err(InstallError::Refused(refusal));
        }
        self.swap(&staging).map_err(io)?;
        let json = serde_json::to_vec_pretty(&next).map_err(|e| io(e.into()))?;
        write_synced(&self.state_dir.join("applied.json.new"), &json, 0o600).map_err(io)?;
        fs::rename(self.state_dir.join("applied.json.new"), self.state_file()).map_err(|e| io(e.into()))?;
        sync_dir(&self.state_dir).map_err(io)?;
        Ok(next)
    }

    /// The daemon's policy with `staging` in the layer's place, loaded and
    /// compiled as `ringfence check` does (with the host's keyword values),
    /// then the failsafe's paths explained through it (and, if it drops one,
    /// through the policy with the layer as it is).
    fn check(&self, staging: &Path, failsafe: &Failsafe) -> Result<(), Refusal> {
        let compile = |layer: &Path| {
            let mut dirs = self.daemon.clone();
            dirs.policy =
                dirs.policy.iter().map(|d| if *d == self.dir { layer.to_path_buf() } else { d.clone() }).collect();
            crate::policy::load(&dirs)
                .and_then(|pol| crate::compile::compile(&pol, &failsafe.dynamic).map(|c| (pol, c)))
                .map_err(|diags| diags.to_string().trim_end().to_string())
        };
        let (policy, compiled) = compile(staging).map_err(Refusal::Check)?;
        failsafe.check(&policy, &compiled, || compile(&self.dir).ok()).map_err(Refusal::Failsafe)
    }

    fn swap(&self, staging: &Path) -> anyhow::Result<()> {
        if self.dir.exists() {
            renameat2(AT_FDCWD, staging, AT_FDCWD, &self.dir, RenameFlags::RENAME_EXCHANGE)
                .with_context(|| format!("cannot exchange {} and {}", staging.display(), self.dir.display()))?;
            // `staging` now holds the previous layer.
            fs::remove_dir_all(staging).with_context(|| format!("cannot remove {}", staging.display()))?;
        } else {
            fs::rename(staging, &self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        }
        sync_dir(&self.state_dir)
    }
}

/// A fresh `dir` holding the files of every scope of `applied`, in layer
/// order (a later scope's file replaces an earlier one of the same name),
/// and the manifest of where each came from, everything fsynced.
fn write_layer(dir: &Path, applied: &Applied) -> anyhow::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::DirBuilder::new().mode(0o755).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut scopes: Vec<_> = applied.keys().collect();
    scopes.sort_by(|a, b| layer_order(a, b));
    let mut files = BTreeMap::new();
    for scope in scopes {
        let origin = FleetOrigin { scope: scope.clone(), revision: applied[scope].revision };
        files.extend(applied[scope].files.iter().map(|(name, text)| (name, (text, origin.clone()))));
    }
    for (name, (text, _)) in &files {
        write_synced(&dir.join(name), text.as_bytes(), 0o644)?;
    }
    if !files.is_empty() {
        let manifest: BTreeMap<_, _> = files.into_iter().map(|(name, (_, origin))| (name, origin)).collect();
        write_synced(&dir.join(FLEET_MANIFEST), &serde_json::to_vec_pretty(&manifest)?, 0o644)?;
    }
    sync_dir(dir)
}

fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("cannot write {}", path.display()))
}

/// Makes a directory's new and renamed entries durable.
fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(scope: &str, revision: u64, files: &[(&str, &str)]) -> Bundle {
        let files = files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        Bundle { scope: scope.into(), revision, time: 0, files }
    }

    fn layer(root: &Path) -> Layer {
        let state = root.join("fleet");
        let local = root.join("etc");
        fs::create_dir_all(&local).unwrap();
        let dirs = crate::policy::Dirs::new(vec![state.join("policy.d"), local], Vec::new());
        Layer::new(&state, dirs).unwrap()
    }

    const WEB: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n";

    #[test]
    fn scopes_layer_in_order_and_refusals_leave_the_layer_alone() {
        let root = crate::testutil::TempDir::new("fleet-layer");
        let layer = layer(&root.0);
        let applied = layer.applied().unwrap();
        assert!(applied.is_empty());
        let applied =
            layer.install(&applied, &bundle("role=web", 1, &[("50-a.yaml", WEB)]), &Failsafe::default()).unwrap();
        let applied = layer
            .install(&applied, &bundle("all", 4, &[("50-a.yaml", ""), ("10-b.yaml", "")]), &Failsafe::default())
            .unwrap();
        // role=web layers after all: its 50-a.yaml replaces all's.
        assert_eq!(fs::read_to_string(layer.dir.join("50-a.yaml")).unwrap(), WEB);
        assert!(layer.dir.join("10-b.yaml").exists());
        // The daemon's policy names the scope and revision of each file.
        let origins: Vec<(String, String, u64)> = crate::policy::load(&layer.daemon)
            .unwrap()
            .fleet
            .into_iter()
            .map(|(path, o)| (path.file_name().unwrap().to_string_lossy().into_owned(), o.scope, o.revision))
            .collect();
        assert_eq!(origins, [("10-b.yaml".into(), "all".into(), 4), ("50-a.yaml".into(), "role=web".into(), 1)]);
        assert_eq!(layer.applied().unwrap(), applied);
        assert_eq!(applied["all"].revision, 4);

        // A rule whose name another scope's file already uses: `check` refuses.
        let dup = bundle("all", 5, &[("60-dup.yaml", WEB)]);
        let e = layer.install(&applied, &dup, &Failsafe::default()).unwrap_err();
        assert!(matches!(&e, InstallError::Refused(Refusal::Check(m)) if m.contains("60-dup.yaml")), "{e}");
        assert!(!layer.dir.join("60-dup.yaml").exists());
        assert!(!root.0.join("fleet/policy.d.new").exists());
        assert_eq!(layer.applied().unwrap(), applied);
    }

    #[test]
    fn a_removed_scope_leaves_the_layer_and_keeps_its_revision() {
        let root = crate::testutil::TempDir::new("fleet-layer-remove");
        let layer = layer(&root.0);
        let failsafe = Failsafe::default();
        let applied = layer.install(&Applied::new(), &bundle("all", 2, &[("50-a.yaml", "")]), &failsafe).unwrap();
        let applied = layer.install(&applied, &bundle("role=web", 3, &[("50-a.yaml", WEB)]), &failsafe).unwrap();
        let applied = layer.remove(&applied, "role=web", &failsafe).unwrap();
        // all's file of the same name is back in the layer.
        assert_eq!(fs::read_to_string(layer.dir.join("50-a.yaml")).unwrap(), "");
        assert!(applied["role=web"].removed && applied["role=web"].files.is_empty());
        assert_eq!(applied["role=web"].revision, 3);
        assert_eq!(layer.applied().unwrap(), applied);
        let applied = layer.remove(&applied, "all", &failsafe).unwrap();
        assert_eq!(fs::read_dir(&layer.dir).unwrap().count(), 0);
        assert!(applied["all"].removed && applied["all"].revision == 2);
    }

    #[test]
    fn a_bundle_that_clashes_with_local_files_is_refused() {
        let root = crate::testutil::TempDir::new("fleet-layer-local");
        let layer = layer(&root.0);
        crate::testutil::write(&root.0.join("etc"), "50-local.yaml", WEB);
        let e = layer
            .install(&Applied::new(), &bundle("all", 1, &[("50-fleet.yaml", WEB)]), &Failsafe::default())
            .unwrap_err();
        assert!(matches!(&e, InstallError::Refused(Refusal::Check(m)) if m.contains("50-local.yaml")), "{e}");
        assert!(!layer.dir.exists());
    }

    #[test]
    fn a_bundle_that_blocks_a_failsafe_path_is_refused() {
        let root = crate::testutil::TempDir::new("fleet-layer-failsafe");
        let layer = layer(&root.0);
        let ssh = crate::explain::Packet {
            protocol: crate::net::IPPROTO_TCP,
            remote: Some("10.0.0.9".parse().unwrap()),
            local_port: Some(22),
            ..Default::default()
        };
        let path = crate::fleet::failsafe::Connection {
            what: "SSH".into(),
            direction: crate::policy::Direction::In,
            packet: ssh,
        };
        let failsafe = Failsafe { connections: vec![path], dynamic: Default::default() };
        // The embedded default lets SSH in; a fleet rule blocks it.
        let applied = layer.install(&Applied::new(), &bundle("all", 1, &[("50-a.yaml", WEB)]), &failsafe).unwrap();
        let block = "rules:\n  - { name: no-ssh, direction: in, action: block, protocol: tcp, local-ports: [22] }\n";
        let e = layer.install(&applied, &bundle("all", 2, &[("50-a.yaml", block)]), &failsafe).unwrap_err();
        assert!(
            matches!(&e, InstallError::Refused(Refusal::Failsafe(m)) if m.starts_with("it would block SSH: rule no-ssh")),
            "{e}"
        );
        assert_eq!(fs::read_to_string(layer.dir.join("50-a.yaml")).unwrap(), WEB);
        assert_eq!(layer.applied().unwrap(), applied);

        // A host whose own files shut SSH: not the bundles' doing, they apply.
        crate::testutil::write(&root.0.join("etc"), "50-local.yaml", block);
        let next = bundle("all", 3, &[("50-a.yaml", ""), ("60-b.yaml", WEB)]);
        assert_eq!(layer.install(&applied, &next, &failsafe).unwrap()["all"].revision, 3);
    }

    #[test]
    fn the_layer_must_be_one_of_the_daemons_directories() {
        let root = crate::testutil::TempDir::new("fleet-layer-dirs");
        let dirs = crate::policy::Dirs::new(vec![root.0.join("etc")], Vec::new());
        let e = Layer::new(&root.0.join("fleet"), dirs).err().unwrap();
        assert!(e.to_string().contains("do not include the fleet layer"), "{e}");
    }
}
