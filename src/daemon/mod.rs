//! `ringfence daemon`: apply the policy, then serve the control socket and
//! reload on SIGHUP and on changes to the policy files.
//!
//! The event loop never compiles nor runs `nft`: the engine's thread
//! (`worker`) does, and hands back a snapshot after each change; the loop
//! answers reads from the latest snapshot at once, and keeps charon and the
//! kernel's xfrm policies in step with it. Nor does it wait on netlink for
//! xfrm: isolation's kernel thread (`isolation::kernel`) does that work.

mod control;
mod engine;
pub mod first_contact;
mod isolation;
mod lock;
mod readiness;
mod staged;
mod stats;
mod teardown;
mod views;
mod worker;

pub use control::{write_stream, IntoBlocking};
pub use stats::RuleLines;
pub use views::rule_view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::backend::{Backend, NftBackend};
use crate::compile::TABLE;
use crate::dynamic::follow::{follow, FileSource};
use crate::dynamic::leases::Leases;
use crate::dynamic::resolv::Resolv;
use crate::dynamic::{keyword_names, netlink, resolv, DynState, Update};
use crate::filewatch::FileWatch;
use crate::location;
use crate::metrics;
use crate::monitor::{self, Hub};
use crate::protocol::{Answer, Request, Response};
use crate::units::{Hierarchy, Units};
use control::write_answer;
use engine::{Engine, Outcome, Snapshot, Trigger};
use teardown::{StepError, Teardown};
use views::policy_view;
use worker::{log_applied, Change, Done, Job, Worker};

/// Quiet time after the last file event before reloading, so that an editor's
/// write-rename-chmod or a `cp -r` of many files is one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub struct Options {
    pub dirs: crate::policy::Dirs,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    pub flush_on_exit: bool,
    /// Where the `dns` keyword's servers are read.
    pub resolv_conf: PathBuf,
    /// DHCP lease files or directories of them (`dhcp`, `wins`).
    pub lease_paths: Vec<PathBuf>,
    /// Samba's configuration (`wins`).
    pub smb_conf: PathBuf,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<metrics::Listen>,
}

/// The keywords that follow the kernel's links, addresses and routes
/// (`default-gateway`, `local-subnet`): their values now, then their changes.
pub struct Addresses {
    pub now: DynState,
    pub changes: mpsc::Receiver<Update>,
}

impl Addresses {
    /// The kernel's, over rtnetlink: dumped now, then followed by its events.
    pub async fn kernel() -> Result<Addresses, netlink::NetlinkError> {
        let (now, changes) = netlink::start().await?;
        Ok(Addresses { now, changes })
    }
}

/// `ringfence daemon`: the host's firewall in the calling thread's network
/// namespace, until SIGTERM or SIGINT.
pub async fn host(opts: Options) -> anyhow::Result<()> {
    // Checks that stop a second daemon come before anything touches the kernel.
    let _lock = lock::lock_netns()?;
    // Taken now, so that a stop asked for during the start is not lost.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    run(opts, NftBackend, Addresses::kernel().await?, stop).await
}

/// The daemon on `backend`, with the kernel's `addresses`, until `stop`
/// completes. Its tests give it the no-op backend, addresses of their own
/// and a stop of their own.
pub async fn run<B: Backend + Send + 'static>(
    opts: Options,
    backend: B,
    mut addresses: Addresses,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = control::bind(&opts.socket, opts.socket_group.as_deref())?;
    let metrics_server = match &opts.metrics {
        Some(listen) => Some(metrics::bind(listen).await.context("cannot serve metrics")?),
        None => None,
    };
    let mut engine = Engine::new(opts.dirs.clone(), backend);
    let (failed_tx, mut failed) = mpsc::channel(64);
    let mut isolation = isolation::Isolation::start(failed_tx);
    let mut xfrm_events = xfrm_events();
    // The keywords' values go into the first table, so that it never has empty
    // dynamic sets that the host's configuration would have filled.
    let (updates, mut dynamic) = mpsc::channel::<Update>(4);
    engine.dynamic.replace(netlink::KEYWORDS, std::mem::take(&mut addresses.now));
    // One inotify instance for every file watched (or polling without one).
    let mut files = FileWatch::start();
    let resolver = Resolv { path: opts.resolv_conf.clone(), upstream: PathBuf::from(resolv::RESOLVED_UPSTREAM) };
    start_file_source(&mut engine, &mut files, resolver, &updates);
    let leases = Leases::new(opts.lease_paths.clone(), opts.smb_conf.clone());
    start_file_source(&mut engine, &mut files, leases, &updates);
    let (unit_tx, mut unit_changes) = mpsc::channel::<Units>(4);
    start_units(&mut engine, &mut files, unit_tx);
    // Bound before the first table, so that its first logged packet is read.
    let hub = Arc::new(Hub::default());
    let mut logged = monitor::start(Arc::clone(&hub)).await;
    if let Err(e) = engine.reload(Trigger::Files) {
        let _ = std::fs::remove_file(&opts.socket);
        return Err(e).context("cannot start");
    }
    log_applied(&engine, Outcome::Applied, "started");
    let mut now = Arc::new(engine.snapshot());
    sync(&mut isolation, &now, Change::Applied);
    isolation.settled().await;
    let (worker, mut done) = Worker::start(engine);
    let (setup, setup_rx) = tokio::sync::watch::channel(location::Setup::default());
    let mut judged = location::start(setup_rx);
    follow_location(&setup, &now);

    let (calls_tx, mut calls) = mpsc::channel::<crate::protocol::Call>(64);
    tokio::spawn(control::accept(listener, calls_tx.clone(), Arc::clone(&hub)));
    if let Some(server) = metrics_server {
        tokio::spawn(metrics::serve(server, calls_tx));
    }
    // A directory created later is read on the next reload (SIGHUP), but not
    // watched while inotify is in use.
    let mut policy_changes = files.subscribe(opts.dirs.policy.iter().chain(&opts.dirs.services).cloned().collect());
    let mut hup = signal(SignalKind::hangup())?;
    tokio::pin!(stop);
    notify_systemd("READY=1");

    let mut reload_at: Option<Instant> = None;
    loop {
        let isolation_at = isolation.next_timer().map(Instant::from_std);
        let policy = now.applied.as_ref().map(|a| &*a.policy);
        tokio::select! {
            Some((request, reply)) = calls.recv() => handle(&worker, &isolation, &hub, &files, &now, request, reply),
            Some(packet) = logged.recv() => match (policy, packet.prefix.trim_end() == crate::compile::isolation::HELD_LOG_PREFIX.trim_end()) {
                (Some(p), true) => isolation.held(packet.header.map(|h| h.dst), p),
                _ => hub.record(now.applied.as_ref().map(|a| (&*a.policy, &a.compiled)), packet),
            },
            _ = hup.recv() => worker.send(Job::Reload { trigger: Trigger::Files, why: "SIGHUP", reply: None }),
            Some(event) = xfrm_events.recv() => if let Some(p) = policy {
                isolation.event(event, p, &now.dynamic);
            },
            Some((peer, why)) = failed.recv() => isolation.failed(peer, why),
            Some(stamps) = isolation.stamps.recv() => if let Some(p) = policy {
                isolation.expire(stamps, p, &now.dynamic);
            },
            _ = sleep_until(isolation_at.unwrap_or_else(Instant::now)), if isolation_at.is_some() => if let Some(p) = policy {
                isolation.timer(p, &now.dynamic);
            },
            Some(update) = dynamic.recv() => worker.send(Job::Dynamic(update)),
            Some(update) = addresses.changes.recv() => worker.send(Job::Dynamic(update)),
            Some(j) = judged.recv() => worker.send(Job::Location(j)),
            Ok(()) = isolation.peers.changed() => worker.send(Job::Peers(isolation.peers.borrow_and_update().clone())),
            Some(units) = unit_changes.recv() => worker.send(Job::Units(units)),
            Some(change) = policy_changes.next() => if change.path.is_none_or(|p| p.extension().is_some_and(|x| x == "yaml")) {
                reload_at = Some(Instant::now() + DEBOUNCE);
            },
            _ = sleep_until(reload_at.unwrap_or_else(Instant::now)), if reload_at.is_some() => {
                reload_at = None;
                worker.send(Job::Reload { trigger: Trigger::Files, why: "policy files changed", reply: None });
            }
            next = done.recv() => match next {
                Some(Done { snapshot, change, reply }) => {
                    // The last holder of a snapshot frees its policy and
                    // table: at 100,000 rules, millions of allocations, which
                    // a blocking thread frees instead of the loop.
                    let old = std::mem::replace(&mut now, snapshot);
                    tokio::task::spawn_blocking(move || drop(old));
                    sync(&mut isolation, &now, change);
                    follow_location(&setup, &now);
                    if let Some((client, response)) = reply {
                        isolation.then(move || {
                            let _ = client.send(Answer::Whole(response));
                        });
                    }
                }
                // The engine's thread ended: `stop` below says why.
                None => break,
            },
            () = &mut stop => break,
        }
    }
    notify_systemd("STOPPING=1");
    let mut teardown = Teardown::default();
    teardown.step(match std::fs::remove_file(&opts.socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StepError::Socket { path: opts.socket.clone(), source: e })
        }
        _ => Ok(()),
    });
    // The changes already asked for are made first.
    let mut engine = worker.stop().await;
    // No confirmation can come any more: an unconfirmed change does not outlive
    // the daemon that was to roll it back.
    if engine.pending.is_some() {
        if let Some(outcome) = teardown.step(engine.rollback().map_err(StepError::Rollback)) {
            log_applied(&engine, outcome, "rolled back: stopping before confirmation");
            sync(&mut isolation, &engine.snapshot(), Change::Applied);
        }
    }
    if opts.flush_on_exit {
        teardown.step(isolation.remove_xfrm().await.map_err(StepError::Xfrm));
        teardown.step(engine.backend.delete(TABLE).map_err(|source| StepError::Table { table: TABLE, source }));
    }
    isolation.stop().await;
    teardown.finish()?;
    if opts.flush_on_exit {
        tracing::info!(table = TABLE, "stopped; table deleted (--flush-on-exit)");
    } else {
        tracing::info!(table = TABLE, "stopped; the ruleset stays in force");
    }
    Ok(())
}

/// The kernel's events about Ringfence's SAs (ACQUIREs, new SAs), read by a
/// task of their own. On a kernel without xfrm's netlink API nothing comes.
fn xfrm_events() -> mpsc::Receiver<crate::xfrm::events::Event> {
    let (tx, rx) = mpsc::channel(256);
    match crate::xfrm::events::Events::open() {
        Ok(mut events) => {
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(batch) => {
                            for e in batch {
                                if tx.send(e).await.is_err() {
                                    return;
                                }
                            }
                        }
                        // ENOBUFS: some were lost; a lost ACQUIRE's peer gets no
                        // fallback until the next one (charon still negotiates).
                        Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                            tracing::warn!("xfrm events were lost (socket buffer full)")
                        }
                        Err(e) => {
                            return tracing::error!("cannot read xfrm events: {e}; no fallback to clear from now on")
                        }
                    }
                }
            });
        }
        Err(e) => tracing::debug!("no xfrm events ({e}): isolation cannot work on this kernel"),
    }
    rx
}

/// Brings charon and the xfrm policies in step with what the engine changed.
fn sync(isolation: &mut isolation::Isolation, now: &Snapshot, change: Change) {
    let Some(a) = &now.applied else { return };
    match change {
        Change::Applied => isolation.sync(&a.policy, &now.dynamic),
        // Exempt keywords are xfrm policies too.
        Change::Dynamic => isolation.sync_xfrm(&a.policy, &now.dynamic),
        Change::Nothing => {}
    }
}

/// Hands location detection what it needs of the snapshot `now`, if that changed.
fn follow_location(setup: &tokio::sync::watch::Sender<location::Setup>, now: &Snapshot) {
    let next = location::Setup::of(now.applied.as_ref().map(|a| &*a.policy), &now.dynamic);
    setup.send_if_modified(|s| {
        if *s == next {
            false
        } else {
            *s = next;
            true
        }
    });
}

/// Reads a file source for the first table, then follows it. Its files are
/// watched before that read, so that no change after it is missed.
fn start_file_source<B: Backend, S: FileSource>(
    engine: &mut Engine<B>,
    files: &mut FileWatch,
    mut source: S,
    updates: &mpsc::Sender<Update>,
) {
    let changes = files.subscribe(source.paths());
    let first = source.read(std::time::SystemTime::now());
    match &first.state {
        Ok(state) => engine.dynamic.replace(S::KEYWORDS, state.clone()),
        Err(e) => tracing::warn!("{} start empty; {e}", keyword_names(S::KEYWORDS)),
    }
    tokio::spawn(follow(source, first, changes, updates.clone()));
}

/// Reads the running units for the first table, then follows them. The
/// root's directory is watched before the first read and every slice after
/// it, then read again, so that no unit that starts meanwhile is missed.
fn start_units<B: Backend>(engine: &mut Engine<B>, files: &mut FileWatch, units: mpsc::Sender<Units>) {
    let hierarchy = match Hierarchy::find() {
        Ok(h) => h,
        Err(e) => {
            engine.hierarchy = Err(e.to_string());
            return;
        }
    };
    let changes = files.subscribe(vec![hierarchy.dir.clone()]);
    let read = hierarchy.read().and_then(|(_, slices)| {
        changes.watch(slices);
        hierarchy.read()
    });
    match read {
        Ok((now, slices)) => {
            changes.watch(slices);
            engine.units = now.clone();
            engine.hierarchy = Ok(hierarchy.clone());
            tokio::spawn(crate::units::watch::follow(hierarchy, now, changes, units));
        }
        Err(e) => engine.hierarchy = Err(format!("{:#}", anyhow::Error::from(e))),
    }
}

/// Answers a request: a change goes to the engine's thread (which answers
/// through `done`), a read is answered from the snapshot `now`.
fn handle<B: Backend + Send + 'static>(
    worker: &Worker<B>,
    isolation: &isolation::Isolation,
    hub: &Arc<Hub>,
    files: &FileWatch,
    now: &Arc<Snapshot>,
    request: Request,
    reply: oneshot::Sender<Answer>,
) {
    let policy = now.applied.as_ref().map(|a| &*a.policy);
    let snapshot = Arc::clone(now);
    let answer = match request {
        Request::Apply { confirm_secs } => {
            let confirm = confirm_secs.map(Duration::from_secs);
            let why = if confirm.is_some() { "apply, waiting for confirmation" } else { "apply" };
            return worker.send(Job::Reload { trigger: Trigger::Request { confirm }, why, reply: Some(reply) });
        }
        Request::Confirm => return worker.send(Job::Confirm(reply)),
        // charon answers on its own socket, in its own time.
        Request::Sas => {
            let soft = isolation.soft_sas();
            tokio::spawn(async move {
                let sas = views::sas(snapshot, soft).await;
                let _ = reply.send(read(move |w| write_answer(w, sas)));
            });
            return;
        }
        Request::State => {
            let (part, changing, watch) = (isolation.view(policy), worker.queued(), files.mode());
            read(move |w| write_answer(w, views::state(&snapshot, part, changing, watch)))
        }
        Request::Stats => {
            let (part, hub) = (isolation.stats(policy), Arc::clone(hub));
            Answer::Bulk(Box::new(move |w| write_answer(w, stats::read(&snapshot, &hub, part))))
        }
        Request::Metrics => {
            let (part, hub) = (isolation.stats(policy), Arc::clone(hub));
            Answer::Bulk(Box::new(move |w| metrics::respond(w, stats::read(&snapshot, &hub, part))))
        }
        Request::Rules => Answer::Bulk(Box::new(move |w| write_answer(w, views::rules(&snapshot)))),
        Request::Profiles => read(move |w| write_answer(w, views::profiles(&snapshot))),
        Request::Policy => Answer::Bulk(Box::new(move |w| {
            write_answer(w, Ok(snapshot.applied.as_ref().map(|a| policy_view(&a.policy))))
        })),
        Request::Sets => read(move |w| write_answer(w, Ok(views::sets(&snapshot)))),
        Request::Staged => read(move |w| write_answer(w, staged::read(&snapshot))),
        Request::Explain { direction, packet, staged } => read(move |w| {
            let Some(a) = snapshot.applied.as_ref() else { return write_answer(w, Ok(None::<()>)) };
            if staged {
                write_answer(w, crate::explain::explain_staged(&a.policy, &a.compiled, direction, &packet))
            } else {
                write_answer(w, crate::explain::explain(&a.policy, &a.compiled, direction, &packet))
            }
        }),
        // Served by the connection's task (`control::serve`), never queued.
        Request::Monitor { .. } => Answer::Whole(Response::Error("monitor is a stream".into())),
    };
    let _ = reply.send(answer);
}

fn read(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send + 'static) -> Answer {
    Answer::Stream(Box::new(write))
}

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests;
