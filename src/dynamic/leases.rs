//! The `dhcp` and `wins` keywords: the servers of the host's DHCP leases, as the
//! DHCP clients record them in their lease files (`formats` says which), and
//! the `wins server` of smb.conf; and the name servers of each lease's link
//! (`DynState::link_dns`).
//!
//! Lease files are read whole after every change in their directories, and
//! again when the next lease expires. A file that cannot be parsed (caught
//! while its client rewrites it, or cut short) keeps its last good leases; so
//! does a directory that disappears. A file that is removed takes its leases
//! with it: that is how networkd and dhcpcd drop a lease.

mod formats;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::follow::{FileSource, Read};
use super::DynState;
use crate::policy::values::Keyword;
use formats::Lease;

/// Where the DHCP clients of the common distributions keep their leases.
pub const DEFAULT_LEASE_PATHS: &[&str] = &[
    "/var/lib/dhcp",             // ISC dhclient on Debian and Ubuntu
    "/var/lib/dhclient",         // ISC dhclient on Fedora and RHEL
    "/run/systemd/netif/leases", // systemd-networkd
    "/var/lib/NetworkManager",   // NetworkManager (internal client or dhclient)
    "/var/lib/dhcpcd",           // dhcpcd 9 and later
];
pub const DEFAULT_SMB_CONF: &str = "/etc/samba/smb.conf";

/// Larger files are not read: a dhclient database of hundreds of leases is
/// some 100 KB.
const MAX_FILE: u64 = 1 << 20;

pub struct Leases {
    /// Lease files, or directories of them.
    paths: Vec<PathBuf>,
    smb_conf: PathBuf,
    /// The last whole read of each lease file.
    good: BTreeMap<PathBuf, Vec<Lease>>,
    smb_good: Vec<Ipv4Addr>,
    /// The last warning about each path, so that each state is reported once.
    warned: BTreeMap<PathBuf, String>,
}

impl Leases {
    pub fn new(paths: Vec<PathBuf>, smb_conf: PathBuf) -> Self {
        Leases { paths, smb_conf, good: BTreeMap::new(), smb_good: Vec::new(), warned: BTreeMap::new() }
    }

    fn warn(&mut self, path: &Path, what: String) {
        if self.warned.get(path) != Some(&what) {
            tracing::warn!("{}: {what}", path.display());
            self.warned.insert(path.to_path_buf(), what);
        }
    }

    fn read_leases(&mut self) {
        let mut files = BTreeMap::new();
        for path in self.paths.clone() {
            match lease_files(&path) {
                Ok(list) => {
                    self.warned.remove(&path);
                    for file in list {
                        let leases = match read_file(&file) {
                            Ok(leases) => {
                                self.warned.remove(&file);
                                leases
                            }
                            Err(e) => {
                                self.warn(&file, format!("keeping its last good leases: {e}"));
                                self.good.get(&file).cloned().unwrap_or_default()
                            }
                        };
                        files.insert(file, leases);
                    }
                }
                // Most of the default places do not exist on a given host.
                Err(e) if e.kind() == ErrorKind::NotFound && !self.good.keys().any(|f| f.starts_with(&path)) => {}
                Err(e) => {
                    self.warn(&path, format!("keeping the leases last read there: {e}"));
                    files.extend(
                        self.good
                            .range(path.clone()..)
                            .take_while(|(f, _)| f.starts_with(&path))
                            .map(|(f, l)| (f.clone(), l.clone())),
                    );
                }
            }
        }
        // Warnings about files that are gone are forgotten with them.
        self.warned.retain(|p, _| files.contains_key(p) || self.paths.contains(p) || *p == self.smb_conf);
        self.good = files;
    }

    fn read_smb_conf(&mut self) {
        let path = self.smb_conf.clone();
        let read = match std::fs::read_to_string(&path) {
            Ok(text) => formats::smb_wins(&text),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        };
        match read {
            Ok(servers) => {
                self.warned.remove(&path);
                self.smb_good = servers;
            }
            Err(e) => self.warn(&path, format!("keeping the last wins servers: {e}")),
        }
    }
}

impl FileSource for Leases {
    const KEYWORDS: &'static [Keyword] = &[Keyword::Dhcp, Keyword::Wins];

    /// The lease directories, the lease files and smb.conf themselves (a file
    /// bind-mounted over another and written in place changes an inode whose
    /// directory is elsewhere) and their directories; a directory that does
    /// not exist (yet) is seen appearing from its parent.
    fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .paths
            .iter()
            .chain([&self.smb_conf])
            .flat_map(|p| {
                if p.is_dir() {
                    vec![p.clone()]
                } else {
                    p.parent().into_iter().chain([p.as_path()]).map(Path::to_path_buf).collect()
                }
            })
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// A lease path itself, a lease file in a lease directory, smb.conf.
    fn concerns(&self, path: &Path) -> bool {
        let in_dir = |dir: &PathBuf| {
            path.parent() == Some(dir.as_path()) && path.file_name().and_then(|n| n.to_str()).is_some_and(is_lease_file)
        };
        path == self.smb_conf || self.paths.iter().any(|p| p == path || in_dir(p))
    }

    fn read(&mut self, now: SystemTime) -> Read {
        self.read_leases();
        self.read_smb_conf();
        let mut state = DynState::default();
        let mut again_at: Option<SystemTime> = None;
        for (file, lease) in self.good.iter().flat_map(|(f, leases)| leases.iter().map(move |l| (f, l))) {
            if let Some(t) = lease.expires {
                if t <= now {
                    continue;
                }
                again_at = Some(again_at.map_or(t, |a| a.min(t)));
            }
            let of = format!("of the lease of {} in {}", lease.interface, file.display());
            state.push_host(Keyword::Dhcp, lease.server.into(), format!("server {of}"));
            for &wins in &lease.wins {
                state.push_host(Keyword::Wins, wins.into(), format!("WINS server (option 44) {of}"));
            }
            if !lease.dns.is_empty() {
                let servers = state.link_dns.entry(link_name(&lease.interface)).or_default();
                for dns in lease.dns.iter().map(|&a| IpAddr::from(a)) {
                    if !servers.contains(&dns) {
                        servers.push(dns);
                    }
                }
            }
        }
        for &wins in &self.smb_good {
            state.push_host(Keyword::Wins, wins.into(), format!("wins server in {}", self.smb_conf.display()));
        }
        Read { state: Ok(state), again_at }
    }
}

/// The name of a lease's interface. networkd's leases name it by its index,
/// looked up now: the link exists while networkd keeps its lease file. One
/// that is gone keeps the index, which names no interface.
fn link_name(interface: &str) -> String {
    formats::link_index(interface)
        .and_then(|i| nix::net::if_::if_indextoname(i).ok()?.into_string().ok())
        .unwrap_or_else(|| interface.to_string())
}

/// `*.lease`, `*.leases`, or networkd's files named after a link's index.
fn is_lease_file(name: &str) -> bool {
    name.ends_with(".lease") || name.ends_with(".leases") || name.bytes().all(|b| b.is_ascii_digit())
}

/// The lease files at `path`: the file itself, or those in the directory.
fn lease_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_lease_file))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> Result<Vec<Lease>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    // A FIFO would block the daemon's reader forever.
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    formats::parse(&name, &bytes, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH))
}

#[cfg(test)]
mod tests;
