//! The loop shared by the sources that live in files (resolv.conf, DHCP leases,
//! smb.conf): the daemon's file watch on their files and directories, the
//! events that concern them coalesced into reads (`coalesce`), and a read at a
//! given time even if no file changes (a lease expires).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::coalesce::Coalesce;
use super::{publish, DynState, Update};
use crate::filewatch::Subscription;
use crate::policy::values::Keyword;

/// A source of keyword values read from files.
pub trait FileSource: Send + 'static {
    /// The keywords it gives values to.
    const KEYWORDS: &'static [Keyword];
    /// The files and directories to watch now. Asked again after every read,
    /// since a file may become a symlink into, or a directory may appear in, a
    /// place not watched before, and a file replaced by a rename is a new inode.
    fn paths(&self) -> Vec<PathBuf>;
    /// Whether a change to `path` (a watched file or an entry of a watched
    /// directory) may change what `read` gives: editors' and DHCP clients'
    /// temporary files next to the real ones do not.
    fn concerns(&self, path: &Path) -> bool;
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

/// Publishes the source's values after changes to its files and at the times
/// its reads ask for. `first` is the read the daemon started with, made after
/// `changes` began to watch `source.paths()`.
pub async fn follow<S: FileSource>(
    mut source: S,
    first: Read,
    mut changes: Subscription,
    updates: mpsc::Sender<Update>,
) {
    let mut last = first.state.unwrap_or_default();
    let mut again_at = first.again_at;
    let mut coalesce = Coalesce::default();
    loop {
        // The next expiry, on the monotonic clock.
        let expiry = again_at.map(|t| Instant::now() + t.duration_since(SystemTime::now()).unwrap_or_default());
        let due = coalesce.due().into_iter().chain(expiry).min();
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return };
                let now = Instant::now();
                if !change.path.as_deref().is_none_or(|p| source.concerns(p)) || !coalesce.event(now, change.event) {
                    continue;
                }
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
        }
        coalesce.read_at(Instant::now());
        // Watched before the read: a change after it is not missed.
        changes.watch(source.paths());
        let read = source.read(SystemTime::now());
        again_at = read.again_at;
        if !publish(S::KEYWORDS, read.state, &mut last, &updates).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
