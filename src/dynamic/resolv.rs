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
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{DynState, Entry};
use crate::policy::values::{AddrRange, Keyword};

/// The keywords this source gives values to.
pub const KEYWORDS: &[Keyword] = &[Keyword::Dns];

/// The upstream servers of systemd-resolved's stub.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// Quiet time that ends a burst of file events (an editor's write and rename).
const QUIET: Duration = Duration::from_millis(20);

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
        tracing::warn!("{}:{line}: not a name server address, ignored: {content:?}", path.display());
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
        let addresses = match ip {
            IpAddr::V4(a) => AddrRange::V4(a.into(), a.into()),
            IpAddr::V6(a) => AddrRange::V6(a.into(), a.into()),
        };
        let entry = Entry { interface: None, addresses, source: format!("nameserver in {}", from.display()) };
        state.0.entry((Keyword::Dns, ip.is_ipv4())).or_default().push(entry);
    }
    Ok(state)
}

/// The directories to watch: those of `path`, of its symlink's target now
/// (resolv.conf is usually a symlink, and is replaced by renaming a new file
/// over it), and of the upstream file.
fn watched_dirs(path: &Path, upstream: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        [Some(path.to_path_buf()), std::fs::canonicalize(path).ok(), Some(upstream.to_path_buf())]
            .into_iter()
            .flatten()
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Watches the files `path` leads to; after each burst of changes sends the
/// servers, or keeps the last good ones with a warning. The directories are
/// looked at again after every burst, since resolv.conf may become a symlink
/// into a directory that was not watched before.
pub async fn watch(path: PathBuf, upstream: PathBuf, mut last: DynState, updates: mpsc::Sender<DynState>) {
    let (tick_tx, mut ticks) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |_event| {
        let _ = tick_tx.send(());
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => return tracing::error!("cannot watch {}: {e}; dns no longer follows it", path.display()),
    };
    let mut watched: Vec<PathBuf> = Vec::new();
    loop {
        for dir in watched_dirs(&path, &upstream) {
            // A directory that does not exist (no systemd-resolved) is not watched.
            if !watched.contains(&dir) && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                watched.push(dir);
            }
        }
        if ticks.recv().await.is_none() {
            return;
        }
        while tokio::time::timeout(QUIET, ticks.recv()).await.is_ok_and(|t| t.is_some()) {}
        let read = read(&path, &upstream).map_err(|e| format!("keeping the last dns servers: {e}"));
        if !super::publish(read, &mut last, &updates).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
