//! The kernel's side of isolation, on a thread of its own that owns the xfrm
//! netlink socket and the two sysctls: the event loop hands it work and never
//! waits on netlink (a dump of thousands of policies, or a kernel slow to
//! answer, delays no read).
//!
//! The work comes in one FIFO queue, done in the order it was asked: a soft
//! SA's clear policy is in the kernel before the kick that releases the
//! packets held for it (docs/isolation.md, First contact), and an `apply`'s
//! client is answered ([`Kernel::then`]) once its policies are in. Desired
//! lists coalesce: an apply takes the newest list sent, so a burst of changes
//! costs one apply.
//!
//! What comes back: the outcome of the last apply, for `show state`, in a
//! watch that the thread updates before it runs what was queued after; and
//! the soft SAs' last-use stamps, as an event that the loop turns into expiry
//! (the stamps are the kernel's, the decision is [`FirstContact`]'s, which
//! the loop owns). `show stats` counts the ESP SAs on its reader's thread,
//! with a socket of its own ([`esp_sas_up`]).
//!
//! [`FirstContact`]: crate::daemon::first_contact::FirstContact

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::xfrm::{self, Action, Dir, Xfrm};

/// The xfrm policies wanted, and whether the mode falls back (packets then
/// wait for an SA rather than being dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub policies: Vec<xfrm::Policy>,
    pub falls_back: bool,
}

/// What the last apply did, for `show state`.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// How many policies are Ringfence's in the kernel, after a success.
    pub policies: Option<usize>,
    /// The last failure, until an apply succeeds.
    pub error: Option<String>,
}

/// The newest use the kernel stamped on each soft SA's policies (Unix
/// seconds), or why they could not be read.
pub type Stamps = Result<BTreeMap<IpAddr, u64>, xfrm::Error>;

enum Command {
    /// Apply the newest [`Want`] sent, if not applied yet.
    Apply,
    Kick,
    /// Read the stamps of these soft SAs' peers.
    LastUsed(BTreeSet<IpAddr>),
    Then(Box<dyn FnOnce() + Send>),
    Remove(oneshot::Sender<Result<(), xfrm::Error>>),
}

/// The newest list sent and not taken by the thread yet: a list sent while
/// another waits replaces it, and needs no [`Command::Apply`] of its own.
#[derive(Default)]
struct Newest(Mutex<Option<Want>>);

impl Newest {
    /// Returns whether the thread must be told (nothing was waiting).
    fn put(&self, want: Want) -> bool {
        self.slot().replace(want).is_none()
    }

    fn take(&self) -> Option<Want> {
        self.slot().take()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Want>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Kernel {
    commands: Sender<Command>,
    newest: Arc<Newest>,
    thread: JoinHandle<()>,
    pub outcome: watch::Receiver<Outcome>,
}

impl Kernel {
    /// Starts the thread; the stamps asked for come in the receiver.
    pub fn start() -> (Kernel, mpsc::UnboundedReceiver<Stamps>) {
        let (commands, queue) = std::sync::mpsc::channel();
        let (outcome_tx, outcome) = watch::channel(Outcome::default());
        let (stamps_tx, stamps) = mpsc::unbounded_channel();
        let newest = Arc::new(Newest::default());
        let slot = Arc::clone(&newest);
        let thread = std::thread::Builder::new()
            .name("xfrm".into())
            .spawn(move || work(queue, &slot, &outcome_tx, &stamps_tx))
            .expect("cannot start the xfrm thread");
        (Kernel { commands, newest, thread, outcome }, stamps)
    }

    fn send(&self, command: Command) {
        // The thread ends only when `stop` drops the sender.
        let _ = self.commands.send(command);
    }

    /// Makes the kernel's policies `want`, after what was asked before. A
    /// list that replaces one still waiting takes its turn.
    pub fn apply(&self, want: Want) {
        if self.newest.put(want) {
            self.send(Command::Apply);
        }
    }

    /// Releases packets that wait for an SA and makes sockets look up their
    /// route again (`Xfrm::kick`).
    pub fn kick(&self) {
        self.send(Command::Kick);
    }

    /// Asks for the stamps of `soft`'s policies; they come as an event.
    pub fn last_used(&self, soft: BTreeSet<IpAddr>) {
        self.send(Command::LastUsed(soft));
    }

    /// Runs `f` on the thread once what was asked before is done.
    pub fn then(&self, f: impl FnOnce() + Send + 'static) {
        self.send(Command::Then(Box::new(f)));
    }

    /// Waits until what was asked before is done.
    pub async fn settled(&self) {
        let (done, wait) = oneshot::channel();
        self.then(move || {
            let _ = done.send(());
        });
        let _ = wait.await;
    }

    /// Removes Ringfence's xfrm policies and puts the sysctls back, after
    /// what was asked before (`--flush-on-exit`).
    pub async fn remove(&self) -> Result<(), xfrm::Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Remove(reply));
        // No answer: the thread ended by a panic, which `stop` passes on.
        answer.await.unwrap_or(Ok(()))
    }

    /// Waits for the work asked so far, then ends the thread. A panic of the
    /// thread goes on in the caller's.
    pub async fn stop(self) {
        drop(self.commands);
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

fn work(
    queue: Receiver<Command>,
    newest: &Newest,
    outcome: &watch::Sender<Outcome>,
    stamps: &mpsc::UnboundedSender<Stamps>,
) {
    let mut side = Side::default();
    for command in queue {
        match command {
            Command::Apply => {
                if let Some(want) = newest.take() {
                    outcome.send_replace(side.apply(&want));
                }
            }
            Command::Kick => {
                if let Err(e) = side.with_xfrm(Xfrm::kick) {
                    tracing::warn!("{e}: held packets wait for the queue's timer");
                }
            }
            Command::LastUsed(soft) => {
                let _ = stamps.send(side.with_xfrm(Xfrm::last_used).map(|s| last_use(s, &soft)));
            }
            Command::Then(f) => f(),
            Command::Remove(reply) => {
                side.larval_drop.set(false);
                side.acq_expires.set(false);
                let _ = reply.send(side.with_xfrm(|x| x.remove_all().map(drop)));
            }
        }
    }
}

/// The newest stamp on each of `soft`'s clear policies (in and out).
fn last_use(stamps: Vec<(xfrm::Policy, u64)>, soft: &BTreeSet<IpAddr>) -> BTreeMap<IpAddr, u64> {
    let mut last_used: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for (p, used) in stamps {
        let remote = if p.dir == Dir::Out { p.selector.dst } else { p.selector.src };
        if p.action == Action::Clear && soft.contains(&remote.addr) {
            let t = last_used.entry(remote.addr).or_default();
            *t = (*t).max(used);
        }
    }
    last_used
}

/// The xfrm socket, in the daemon's network namespace (`None` on a kernel
/// without xfrm's netlink API: no CONFIG_XFRM_USER, the socket's protocol is
/// not supported). Such a kernel can hold no policy or SA of Ringfence's: the
/// firewall works there, isolation cannot.
fn open() -> Result<Option<Xfrm>, xfrm::Error> {
    match Xfrm::open() {
        Ok(x) => Ok(Some(x)),
        Err(xfrm::Error::Open(e)) if e.raw_os_error() == Some(nix::errno::Errno::EPROTONOSUPPORT as i32) => Ok(None),
        Err(e) => Err(e),
    }
}

/// For `show stats`: the kernel's ESP SAs of Ringfence's connections (one
/// each way per CHILD_SA), counted now with a socket of the caller's.
pub fn esp_sas_up() -> Result<usize, xfrm::Error> {
    open()?.map_or(Ok(0), |mut x| x.esp_sas(xfrm::REQIDS).map(|s| s.len()))
}

/// The thread's state.
struct Side {
    /// Opened when first needed, and again after a failure to open.
    xfrm: Option<Xfrm>,
    /// `net.core.xfrm_larval_drop`: 0 (hold) in the modes that fall back.
    larval_drop: Sysctl,
    /// `net.core.xfrm_acq_expires`: short while isolation is on.
    acq_expires: Sysctl,
}

impl Default for Side {
    fn default() -> Self {
        Side { xfrm: None, larval_drop: Sysctl::larval_drop(), acq_expires: Sysctl::acq_expires() }
    }
}

impl Side {
    fn xfrm(&mut self) -> Result<Option<&mut Xfrm>, xfrm::Error> {
        if self.xfrm.is_none() {
            self.xfrm = open()?;
        }
        Ok(self.xfrm.as_mut())
    }

    /// Runs `f` on the kernel's xfrm state; a kernel without xfrm's netlink
    /// API holds none of Ringfence's, and `f` has nothing to do there.
    fn with_xfrm<T: Default>(&mut self, f: impl FnOnce(&mut Xfrm) -> Result<T, xfrm::Error>) -> Result<T, xfrm::Error> {
        self.xfrm()?.map_or(Ok(T::default()), f)
    }

    fn apply(&mut self, want: &Want) -> Outcome {
        let desired = &want.policies;
        // Held in the modes that fall back, where every held peer gets an SA
        // or a soft SA within `fallback`. In the require modes a peer that
        // never answers would stay at the head of the policy's queue, and
        // the queue is released only when its head can be (up to 100 s):
        // there the first packets are dropped until the SA exists, as the
        // kernel does by default, and TCP's retransmission finds the SA.
        self.larval_drop.set(!desired.is_empty() && want.falls_back);
        self.acq_expires.set(!desired.is_empty());
        let result = match self.xfrm() {
            Ok(Some(x)) => x.apply(desired),
            Ok(None) if desired.is_empty() => Ok(xfrm::kernel::Changes::default()),
            Ok(None) => Err(xfrm::Error::Unsupported),
            Err(e) => Err(e),
        };
        match result {
            Ok(c) => {
                if c.added + c.updated + c.removed > 0 {
                    tracing::info!(added = c.added, updated = c.updated, removed = c.removed, "xfrm policies applied");
                }
                Outcome { policies: Some(desired.len()), error: None }
            }
            Err(e) => {
                tracing::error!("xfrm policies: {e}");
                Outcome { policies: None, error: Some(e.to_string()) }
            }
        }
    }
}

/// A sysctl of the daemon's network namespace that isolation sets while it is
/// on, and puts back as it found it afterwards. Both below apply to every
/// IPsec user of the namespace (docs/isolation.md).
struct Sysctl {
    path: &'static str,
    value: &'static str,
    /// What it was before isolation set it, while it is set.
    was: Option<String>,
}

impl Sysctl {
    /// What a packet with no SA yet does at a `required` template: 1 (the
    /// kernel's default) drops it, 0 holds it in the policy's queue until the
    /// SA exists (one queue per policy, released only when its first packet
    /// can be sent).
    fn larval_drop() -> Sysctl {
        Sysctl { path: "/proc/sys/net/core/xfrm_larval_drop", value: "0", was: None }
    }

    /// How long (s) the larval state of an ACQUIRE lasts: while it does, the
    /// kernel raises no new ACQUIRE for that peer (30 by default). Short, so
    /// that a negotiation aborted for want of an answer (`ike::Stale`) is
    /// started afresh by the next packet.
    fn acq_expires() -> Sysctl {
        Sysctl { path: "/proc/sys/net/core/xfrm_acq_expires", value: "3", was: None }
    }

    fn set(&mut self, on: bool) {
        let result = match (&self.was, on) {
            (None, true) => std::fs::read_to_string(self.path).and_then(|was| {
                std::fs::write(self.path, self.value)?;
                self.was = Some(was);
                Ok(())
            }),
            (Some(was), false) => std::fs::write(self.path, was).map(|()| self.was = None),
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!("cannot set {}: {e}", self.path);
        }
    }
}

#[cfg(test)]
mod tests;
