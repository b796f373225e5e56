//! The loop shared by the sources that live in files (resolv.conf, DHCP leases,
//! smb.conf): inotify on their directories, a burst of events coalesced into one
//! read, and a read at a given time even if no file changes (a lease expires).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{keyword_names, publish, DynState, Update};
use crate::policy::values::Keyword;

/// Quiet time that ends a burst of file events (an editor's write and rename,
/// a DHCP client truncating and rewriting its lease file).
const QUIET: Duration = Duration::from_millis(20);

/// Whether an inotify event says that something changed. Opening and reading
/// a file are events too (`Access`); counting them would make every read of
/// the source, the daemon's own included, start the next read.
pub fn is_change(event: &notify::Result<notify::Event>) -> bool {
    event.as_ref().is_ok_and(|e| !matches!(e.kind, EventKind::Access(_)))
}

/// A source of keyword values read from files.
pub trait FileSource: Send + 'static {
    /// The keywords it gives values to.
    const KEYWORDS: &'static [Keyword];
    /// The directories to watch now. Asked again after every read, since a file
    /// may become a symlink into, or a directory may appear in, a place not
    /// watched before.
    fn dirs(&self) -> Vec<PathBuf>;
    /// Reads the files. `Err` says why there is no usable answer; the last one
    /// published is then kept.
    fn read(&mut self, now: SystemTime) -> Read;
}

/// What one read gives.
pub struct Read {
    pub state: Result<DynState, String>,
    /// When to read again even if no file changes (the next lease expiry).
    pub again_at: Option<SystemTime>,
}

/// Publishes the source's values after each burst of changes to its files and
/// at the times its reads ask for. `first` is the read the daemon started with.
pub async fn follow<S: FileSource>(mut source: S, first: Read, updates: mpsc::Sender<Update>) {
    let (tick_tx, mut ticks) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event| {
        if is_change(&event) {
            let _ = tick_tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            let names = keyword_names(S::KEYWORDS);
            return tracing::error!("cannot watch files with inotify: {e}; {names} no longer follow the host");
        }
    };
    let mut last = first.state.unwrap_or_default();
    let mut again_at = first.again_at;
    let mut watched: Vec<PathBuf> = Vec::new();
    loop {
        for dir in source.dirs() {
            // A directory that does not exist is not watched (yet).
            if !watched.contains(&dir) && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
                watched.push(dir);
            }
        }
        let wait = again_at.map(|t: SystemTime| t.duration_since(SystemTime::now()).unwrap_or_default());
        tokio::select! {
            tick = ticks.recv() => {
                if tick.is_none() {
                    return;
                }
                while tokio::time::timeout(QUIET, ticks.recv()).await.is_ok_and(|t| t.is_some()) {}
            }
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
        let read = source.read(SystemTime::now());
        again_at = read.again_at;
        if !publish(S::KEYWORDS, read.state, &mut last, &updates).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
