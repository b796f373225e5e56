//! Watching the policy and services directories (inotify, through `notify`): any change to a
//! `.yaml` file there sends a tick; the daemon debounces ticks into one reload.

use std::path::PathBuf;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the directories that exist now; returns the watcher, which stops
/// watching when dropped. A directory created later is read on the next reload
/// (SIGHUP) but not watched.
pub fn watch<'a>(
    dirs: impl Iterator<Item = &'a PathBuf>,
    ticks: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = crate::dynamic::follow::is_change(&event)
            && event.is_ok_and(|e| e.paths.iter().any(|p| p.extension().is_some_and(|x| x == "yaml")));
        if relevant {
            let _ = ticks.send(());
        }
    })?;
    for dir in dirs.filter(|d| d.is_dir()) {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
