//! systemd units' cgroups, for rules with `units:`: where the cgroup2
//! hierarchy is, which units are running in it (name, cgroup id, path), read
//! again whenever a slice directory changes.
//!
//! A unit's cgroup is `<slice>/<unit>`, made when the unit starts and removed
//! when it stops; its id (the inode number of the directory, which is what
//! the kernel keeps on every socket) is new at every start. System units are
//! read: the children of the root and of every slice below it, down to
//! [`MAX_LEVEL`]; a service's own subtree is not (a user's units, under
//! `user@UID.service`, are that service's).

pub mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::nft::CgroupPaths;

/// Where nft looks for cgroups: it reads a cgroup as a path below this.
pub const NFT_ROOT: &str = "/sys/fs/cgroup";

/// The deepest level a unit is looked up at (the root is 0,
/// `system.slice/nginx.service` is 2, a template's instance in its slice
/// `system.slice/system-getty.slice/getty@tty1.service` 3). Each level is one
/// lookup of each set of unit rules, for new connections only. The kernel
/// counts levels from the root of the whole hierarchy; a daemon in a cgroup
/// namespace takes a deeper cgroup for the root, and misses the units below
/// level 4 of the real one (docs/policy.md says so).
pub const MAX_LEVEL: u8 = 4;

/// The unit types that have a cgroup (see `policy::units`).
const SUFFIXES: [&str; 6] = [".service", ".socket", ".scope", ".slice", ".mount", ".swap"];

#[derive(Debug, thiserror::Error)]
pub enum UnitsError {
    #[error("cannot read /proc/self/mountinfo")]
    Mountinfo(#[source] io::Error),
    #[error(
        "this host has no cgroup v2 hierarchy (cgroup2 is not mounted), so unit rules cannot match; \
         boot with the unified hierarchy (systemd.unified_cgroup_hierarchy=1)"
    )]
    NoCgroup2,
    #[error("cgroup2 is mounted at {0}, outside {NFT_ROOT}, where nft looks for cgroups")]
    Elsewhere(PathBuf),
    #[error("cannot read the cgroup directory {0}")]
    Read(PathBuf, #[source] io::Error),
}

/// One running unit's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitCgroup {
    pub id: u64,
    /// Below [`NFT_ROOT`] (`unified/system.slice/nginx.service` on a host
    /// that mounts cgroup v1 controllers beside it).
    pub path: String,
}

/// The running units by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units(pub BTreeMap<String, UnitCgroup>);

impl Units {
    /// The cgroup ids of `names` that are running, and their paths.
    pub fn of<'a>(&'a self, names: &'a [String]) -> impl Iterator<Item = &'a UnitCgroup> + 'a {
        names.iter().filter_map(|n| self.0.get(n))
    }

    /// The paths of the cgroup ids in `ids`.
    pub fn paths(&self, ids: impl Iterator<Item = u64>) -> CgroupPaths {
        let by_id: BTreeMap<u64, &str> = self.0.values().map(|u| (u.id, u.path.as_str())).collect();
        ids.filter_map(|id| by_id.get(&id).map(|p| (id, p.to_string()))).collect()
    }
}

/// The cgroup2 mount point, from /proc/self/mountinfo: the first mount of
/// type cgroup2 whose root is the hierarchy's root.
pub fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (fields, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = fields.split(' ').collect();
        (after.split(' ').next() == Some("cgroup2") && fields.get(3) == Some(&"/"))
            .then(|| fields.get(4).map(|p| PathBuf::from(unescape(p))))?
    })
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The hierarchy's directory and its path below [`NFT_ROOT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub dir: PathBuf,
    pub below_nft_root: String,
}

impl Hierarchy {
    pub fn find() -> Result<Hierarchy, UnitsError> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(UnitsError::Mountinfo)?;
        let dir = mount_point(&mountinfo).ok_or(UnitsError::NoCgroup2)?;
        let below = dir.strip_prefix(NFT_ROOT).map_err(|_| UnitsError::Elsewhere(dir.clone()))?;
        let below_nft_root = below.to_string_lossy().into_owned();
        Ok(Hierarchy { dir, below_nft_root })
    }

    /// Every system unit's cgroup, and the slice directories read (those to
    /// watch).
    pub fn read(&self) -> Result<(Units, Vec<PathBuf>), UnitsError> {
        let mut units = Units::default();
        let mut slices = vec![self.dir.clone()];
        let mut i = 0;
        while let Some(dir) = slices.get(i).cloned() {
            i += 1;
            let level = dir.strip_prefix(&self.dir).map_or(0, |p| p.components().count()) as u8 + 1;
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // A slice removed since its parent was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound && i > 1 => continue,
                Err(e) => return Err(UnitsError::Read(dir, e)),
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() || !SUFFIXES.iter().any(|s| name.ends_with(s)) {
                    continue;
                }
                let path = Path::new(&self.below_nft_root).join(dir.strip_prefix(&self.dir).unwrap_or(Path::new("")));
                let path = path.join(&name).to_string_lossy().into_owned();
                units.0.insert(name.clone(), UnitCgroup { id: meta.ino(), path });
                if name.ends_with(".slice") && level < MAX_LEVEL {
                    slices.push(entry.path());
                }
            }
        }
        Ok((units, slices))
    }
}

#[cfg(test)]
mod tests;
