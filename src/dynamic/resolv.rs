//! The `dns` keyword: the name servers of resolv.conf(5).
//!
//! When resolv.conf names only systemd-resolved's stub (127.0.0.53 or
//! 127.0.0.54), the servers that matter are the stub's upstreams, which
//! resolved writes, global and per-link alike, to
//! /run/systemd/resolve/resolv.conf; that file is read instead. Reading the file
//! rather than resolved's D-Bus API keeps the daemon free of a D-Bus client and
//! works the same whichever manager writes resolv.conf.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::follow::{FileSource, Read};
use super::DynState;
use crate::policy::values::Keyword;

/// The upstream servers of systemd-resolved's stub.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The resolver configuration at `path`, and resolved's upstream file.
pub struct Resolv {
    pub path: PathBuf,
    pub upstream: PathBuf,
}

impl FileSource for Resolv {
    const KEYWORDS: &'static [Keyword] = &[Keyword::Dns];

    /// `path` and the upstream file themselves (a bind-mounted resolv.conf
    /// written in place changes an inode whose directory is elsewhere), and
    /// the directories of `path`, of its symlink's target now (resolv.conf is
    /// usually a symlink, and is replaced by renaming a new file over it), and
    /// of the upstream file.
    fn paths(&self) -> Vec<PathBuf> {
        let dirs = [Some(self.path.clone()), std::fs::canonicalize(&self.path).ok(), Some(self.upstream.clone())]
            .into_iter()
            .flatten()
            .filter_map(|p| p.parent().map(Path::to_path_buf));
        let mut paths: Vec<PathBuf> = [self.path.clone(), self.upstream.clone()].into_iter().chain(dirs).collect();
        paths.sort();
        paths.dedup();
        paths
    }

    fn concerns(&self, path: &Path) -> bool {
        path == self.path || path == self.upstream || std::fs::canonicalize(&self.path).is_ok_and(|t| t == path)
    }

    fn read(&mut self, _now: SystemTime) -> Read {
        let state = read(&self.path, &self.upstream).map_err(|e| format!("keeping the last dns servers: {e}"));
        Read { state, again_at: None }
    }
}

/// The name servers of a resolv.conf text, and the lines that are not valid.
pub fn parse(text: &str) -> (Vec<IpAddr>, Vec<(usize, String)>) {
    let mut servers = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // IPv6 link-local servers carry a zone ("fe80::1%eth0"); nft matches the address.
        match words.next().map(|w| w.split('%').next().unwrap_or(w).parse::<IpAddr>()) {
            Some(Ok(ip)) if !servers.contains(&ip) => servers.push(ip),
            Some(Ok(_)) => {}
            _ => bad.push((n + 1, line.to_string())),
        }
    }
    (servers, bad)
}

fn is_stub(ip: &IpAddr) -> bool {
    matches!(ip.to_string().as_str(), "127.0.0.53" | "127.0.0.54")
}

/// Reads the servers that `path` (following symlinks) leads to. `Err` says why
/// there is no usable answer; the caller then keeps the last good one.
pub fn read(path: &Path, upstream: &Path) -> Result<DynState, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (servers, bad) = parse(&text);
    for (line, content) in &bad {
        tracing::warn!(
            "{}:{line}: not a name server address, ignored: {}",
            path.display(),
            crate::policy::text::Quoted(content)
        );
    }
    // No server at all is taken as a broken or half-written file (a writer that
    // truncates, then writes), never as "block all DNS".
    if servers.is_empty() {
        return Err(format!("{} names no valid name server", path.display()));
    }
    let (servers, from) = if !servers.is_empty() && servers.iter().all(is_stub) {
        let text = std::fs::read_to_string(upstream).map_err(|e| {
            format!(
                "{} names only systemd-resolved's stub, and {} cannot be read: {e}",
                path.display(),
                upstream.display()
            )
        })?;
        (parse(&text).0, upstream)
    } else {
        (servers, path)
    };
    let mut state = DynState::default();
    for ip in servers {
        state.push_host(Keyword::Dns, ip, format!("nameserver in {}", from.display()));
    }
    Ok(state)
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
