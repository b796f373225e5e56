//! Watching files and directories for changes, for the policy directories and
//! the dynamic sources that live in files (resolv.conf, DHCP leases, smb.conf).
//!
//! One inotify instance serves the whole daemon: root's instances are limited
//! (`fs.inotify.max_user_instances`, 128 by default) and shared with every other
//! root process on the host, and a daemon that cannot watch must still keep its
//! sets current. When no instance can be had (inotify_init1(2) fails, EMFILE at
//! the limit), the watched paths are polled every 2 s instead, comparing their
//! stat(2) stamps, inotify is tried again at each poll, and `show state` says
//! which is in use. (The crate `notify`, used before, takes an instance and a
//! thread for each watcher.)
//!
//! A watched file is watched itself, not only through its directory: a file
//! bind-mounted over another (`ip netns exec` does it for resolv.conf) and
//! written in place changes an inode whose directory is not the one watched.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use crate::dynamic::coalesce::Event;

/// How often paths are polled when inotify cannot be had.
pub const POLL: Duration = Duration::from_secs(2);

/// Changes to contents, names and modes; never reads (IN_ACCESS, IN_OPEN),
/// which the daemon's own reads of the files would cause.
const MASK: AddWatchFlags = AddWatchFlags::IN_MODIFY
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF);

/// How the paths are watched now, for `show state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Mode {
    Inotify,
    /// No inotify instance: why not, and the polling interval.
    Polling {
        #[serde(rename = "interval-ms")]
        interval_ms: u64,
        reason: String,
    },
}

/// A change seen by a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The watched file, or the entry of a watched directory, that changed;
    /// `None` when anything may have (inotify's queue overflowed, or watching
    /// resumed after polling).
    pub path: Option<PathBuf>,
    pub event: Event,
}

/// The daemon's watcher. Its paths are watched when `subscribe` or `watch`
/// returns, so that a file read right after is not changed unseen; a task
/// reads the events (or polls) and sends each subscriber its changes.
pub struct FileWatch {
    state: Arc<Mutex<State>>,
    next_id: usize,
}

/// One subscriber's paths and the changes to them.
pub struct Subscription {
    id: usize,
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<Change>,
    changes: mpsc::UnboundedReceiver<Change>,
}

struct State {
    backend: Backend,
    subscribers: HashMap<usize, Subscriber>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Nothing is left half-done by a panic while it is held: each change is one
    // insert or one replacement.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FileWatch {
    /// Starts the watcher's task on the current tokio runtime.
    pub fn start() -> FileWatch {
        let backend = Backend::open();
        if let Backend::Polling { reason, .. } = &backend {
            tracing::warn!("{reason}; polling the policy directories and watched files every {} s", POLL.as_secs());
        }
        let state = Arc::new(Mutex::new(State { backend, subscribers: HashMap::new() }));
        tokio::spawn(run(Arc::downgrade(&state)));
        FileWatch { state, next_id: 0 }
    }

    /// A subscriber watching `paths` (files, or directories with their entries).
    pub fn subscribe(&mut self, paths: Vec<PathBuf>) -> Subscription {
        let (tx, changes) = mpsc::unbounded_channel();
        self.next_id += 1;
        let s = Subscription { id: self.next_id, state: Arc::clone(&self.state), tx, changes };
        s.watch(paths);
        s
    }

    pub fn mode(&self) -> Mode {
        lock(&self.state).backend.mode()
    }
}

impl Subscription {
    /// Watches `paths` from now on, instead of those given before. Paths given
    /// again are watched anew, which follows a file replaced by a new inode.
    /// A path that does not exist is not watched (while polling, its
    /// appearance is a change).
    pub fn watch(&self, paths: Vec<PathBuf>) {
        let mut state = lock(&self.state);
        state.backend.watch(self.id, &paths);
        state.subscribers.insert(self.id, Subscriber { paths, changes: self.tx.clone() });
        let State { backend, subscribers } = &mut *state;
        backend.forget(subscribers);
    }

    /// The next change; `None` once the watcher is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }
}

/// The inotify instance, as tokio needs it to wait for its events.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

enum Backend {
    Inotify {
        fd: Arc<AsyncFd<InotifyFd>>,
        /// The paths each watch was added for (several paths may lead to one inode).
        paths: HashMap<WatchDescriptor, Vec<PathBuf>>,
    },
    Polling {
        reason: String,
        /// Each subscriber's stamps at the last poll.
        stamps: BTreeMap<usize, Stamps>,
    },
}

impl Backend {
    fn open() -> Backend {
        let opened = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)
            // SAFETY: the descriptor is the one the `Inotify` owns; it stays open
            // until the `AsyncFd` drops it with the `Inotify`, and `as_raw_fd`
            // always returns it.
            .and_then(|i| unsafe { AsyncFd::register(InotifyFd(i)) }.map_err(std::io::Error::from));
        match opened {
            Ok(fd) => Backend::Inotify { fd: Arc::new(fd), paths: HashMap::new() },
            Err(e) => {
                let reason = format!("no inotify instance: {e}");
                Backend::Polling { reason, stamps: BTreeMap::new() }
            }
        }
    }

    /// The inotify instance, if that is how paths are watched.
    fn fd(&self) -> Option<Arc<AsyncFd<InotifyFd>>> {
        match self {
            Backend::Inotify { fd, .. } => Some(Arc::clone(fd)),
            Backend::Polling { .. } => None,
        }
    }

    fn mode(&self) -> Mode {
        match self {
            Backend::Inotify { .. } => Mode::Inotify,
            Backend::Polling { reason, .. } => {
                Mode::Polling { interval_ms: POLL.as_millis() as u64, reason: reason.clone() }
            }
        }
    }

    /// Starts watching one subscriber's paths (again).
    fn watch(&mut self, id: usize, paths: &[PathBuf]) {
        match self {
            Backend::Inotify { fd, paths: watched } => {
                for path in paths {
                    // ENOENT: not there (yet); the subscriber asks again after its next read.
                    if let Ok(wd) = fd.get_ref().0.add_watch(path.as_path(), MASK) {
                        let list = watched.entry(wd).or_default();
                        if !list.contains(path) {
                            list.push(path.clone());
                        }
                    }
                }
            }
            // Stamps already taken are kept: a change between the last poll
            // and now is then seen at the next poll (and a path new to the list
            // is a change, at worst one read more).
            Backend::Polling { stamps, .. } => {
                stamps.entry(id).or_insert_with(|| Stamps::of(paths));
            }
        }
    }

    /// Stops watching what no subscriber asks for any more.
    fn forget(&mut self, subscribers: &HashMap<usize, Subscriber>) {
        if let Backend::Inotify { fd, paths } = self {
            let wanted = |p: &PathBuf| subscribers.values().any(|s| s.paths.contains(p));
            paths.retain(|wd, list| {
                list.retain(wanted);
                if list.is_empty() {
                    let _ = fd.get_ref().0.rm_watch(*wd);
                }
                !list.is_empty()
            });
        }
    }
}

struct Subscriber {
    paths: Vec<PathBuf>,
    changes: mpsc::UnboundedSender<Change>,
}

impl Subscriber {
    fn send(&self, path: Option<PathBuf>, event: Event) {
        let _ = self.changes.send(Change { path, event });
    }
}

/// Reads the events, or polls, until the watcher and its subscriptions are gone.
async fn run(state: Weak<Mutex<State>>) {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(fd) = state.upgrade().and_then(|s| lock(&s).backend.fd()) else {
            poll.tick().await;
            let Some(state) = state.upgrade() else { return };
            let State { backend, subscribers } = &mut *lock(&state);
            poll_once(backend, subscribers);
            continue;
        };
        let ready = fd.readable().await.map(|mut guard| guard.clear_ready());
        let Some(state) = state.upgrade() else { return };
        let State { backend, subscribers } = &mut *lock(&state);
        match ready.and_then(|()| read_all(&fd.get_ref().0)) {
            Ok(events) => dispatch(backend, subscribers, events),
            Err(e) => {
                let reason = format!("reading inotify events failed: {e}");
                tracing::warn!("{reason}; polling every {} s", POLL.as_secs());
                *backend = polling(reason, subscribers);
                // What changed since the last event read is not known.
                subscribers.values().for_each(|s| s.send(None, Event::Complete));
            }
        }
    }
}

/// Every event queued now. Readiness was cleared before: what comes after the
/// last read wakes the task again.
fn read_all(inotify: &Inotify) -> std::io::Result<Vec<InotifyEvent>> {
    let mut all = Vec::new();
    loop {
        match inotify.read_events() {
            Ok(events) => all.extend(events),
            Err(nix::errno::Errno::EAGAIN) => return Ok(all),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A polling backend with every subscriber's stamps taken now.
fn polling(reason: String, subscribers: &HashMap<usize, Subscriber>) -> Backend {
    let stamps = subscribers.iter().map(|(id, s)| (*id, Stamps::of(&s.paths))).collect();
    Backend::Polling { reason, stamps }
}

/// Sends each inotify event to the subscribers of its watch's paths.
fn dispatch(backend: &mut Backend, subscribers: &HashMap<usize, Subscriber>, events: Vec<InotifyEvent>) {
    let Backend::Inotify { paths, .. } = backend else { return };
    for e in events {
        if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            subscribers.values().for_each(|s| s.send(None, Event::Complete));
            continue;
        }
        // Content written but the file still open, or a new name still empty.
        let event = if e.mask.intersects(AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE) {
            Event::Partial
        } else {
            Event::Complete
        };
        let watched =
            if e.mask.contains(AddWatchFlags::IN_IGNORED) { paths.remove(&e.wd) } else { paths.get(&e.wd).cloned() };
        for path in watched.unwrap_or_default() {
            let changed = e.name.as_ref().map_or_else(|| path.clone(), |n| path.join(n));
            for s in subscribers.values().filter(|s| s.paths.contains(&path)) {
                s.send(Some(changed.clone()), event);
            }
        }
    }
}

/// One poll: tries inotify again first; if it comes, every path is watched
/// and every subscriber told that anything may have changed meanwhile.
/// Otherwise sends the changes since the last poll.
fn poll_once(backend: &mut Backend, subscribers: &HashMap<usize, Subscriber>) {
    let retry = Backend::open();
    if let Backend::Inotify { .. } = retry {
        tracing::info!("inotify instance obtained: watching files again instead of polling");
        *backend = retry;
        for (id, s) in subscribers {
            backend.watch(*id, &s.paths);
            s.send(None, Event::Complete);
        }
        return;
    }
    let Backend::Polling { stamps, .. } = backend else { return };
    for (id, s) in subscribers {
        let now = Stamps::of(&s.paths);
        let before = stamps.insert(*id, now.clone()).unwrap_or_default();
        for path in before.changed(&now) {
            s.send(Some(path), Event::Complete);
        }
    }
}

/// What stat(2) says of a file, enough to see that it changed: a write
/// changes the mtime and ctime, a replacement the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The stamps of some paths and of their entries if they are directories;
/// `None` for a path that does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stamps(BTreeMap<PathBuf, Option<Stamp>>);

impl Stamps {
    fn of(paths: &[PathBuf]) -> Stamps {
        let stamp = |p: &Path| {
            std::fs::metadata(p).ok().map(|m| Stamp {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            })
        };
        let mut stamps = BTreeMap::new();
        for path in paths {
            stamps.insert(path.clone(), stamp(path));
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                stamps.insert(entry.path(), stamp(&entry.path()));
            }
        }
        Stamps(stamps)
    }

    /// The paths whose stamps differ, or that are in only one of the two.
    fn changed(&self, now: &Stamps) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.0.keys().chain(now.0.keys()).cloned().collect();
        paths.sort();
        paths.dedup();
        paths.retain(|p| self.0.get(p) != now.0.get(p));
        paths
    }
}

#[cfg(test)]
mod tests;
