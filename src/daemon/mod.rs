//! `ringfence daemon`: apply the policy, then serve the control socket and
//! reload on SIGHUP and on changes to the policy files.

mod control;
mod engine;
pub mod first_contact;
mod isolation;
mod lock;
mod readiness;
mod stats;
mod teardown;
mod views;

pub use views::rule_view;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use crate::backend::{Backend, NftBackend};
use crate::compile::TABLE;
use crate::dynamic::follow::{follow, FileSource};
use crate::dynamic::leases::Leases;
use crate::dynamic::resolv::Resolv;
use crate::dynamic::{keyword_names, netlink, resolv, DynState, Update};
use crate::filewatch::FileWatch;
use crate::metrics;
use crate::monitor::{self, Hub};
use crate::policy::values::Keyword;
use crate::protocol::{Request, Response};
pub use control::Call;
use engine::{Engine, Outcome, Trigger};
use teardown::{StepError, Teardown};
use views::policy_view;

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

pub async fn run(opts: Options) -> anyhow::Result<()> {
    // Checks that stop a second daemon come before anything touches the kernel.
    let _lock = lock::lock_netns()?;
    let listener = control::bind(&opts.socket, opts.socket_group.as_deref())?;
    let metrics_server = match &opts.metrics {
        Some(listen) => Some(metrics::bind(listen).await.context("cannot serve metrics")?),
        None => None,
    };
    let mut engine = Engine::new(opts.dirs.clone(), NftBackend);
    let (failed_tx, mut failed) = mpsc::channel(64);
    let mut isolation = isolation::Isolation::start(failed_tx);
    let mut xfrm_events = xfrm_events();
    // The keywords' values go into the first table, so that it never has empty
    // dynamic sets that the host's configuration would have filled.
    let (updates, mut dynamic) = mpsc::channel::<Update>(4);
    let (netlink, events) = netlink::connect()?;
    let from_kernel = netlink::read(&netlink).await?;
    engine.dynamic.replace(netlink::KEYWORDS, from_kernel.clone());
    tokio::spawn(netlink::watch(netlink, events, from_kernel, updates.clone()));
    // One inotify instance for every file watched (or polling without one).
    let mut files = FileWatch::start();
    let resolver = Resolv { path: opts.resolv_conf.clone(), upstream: PathBuf::from(resolv::RESOLVED_UPSTREAM) };
    start_file_source(&mut engine, &mut files, resolver, &updates);
    let leases = Leases::new(opts.lease_paths.clone(), opts.smb_conf.clone());
    start_file_source(&mut engine, &mut files, leases, &updates);
    // Bound before the first table, so that its first logged packet is read.
    let hub = Arc::new(Hub::default());
    let mut logged = monitor::start(Arc::clone(&hub)).await;
    if let Err(e) = engine.reload(Trigger::Files) {
        let _ = std::fs::remove_file(&opts.socket);
        return Err(e).context("cannot start");
    }
    applied(&engine, &mut isolation, Outcome::Applied, "started");

    let (calls_tx, mut calls) = mpsc::channel::<control::Call>(64);
    tokio::spawn(control::accept(listener, calls_tx.clone(), Arc::clone(&hub)));
    if let Some(server) = metrics_server {
        tokio::spawn(metrics::serve(server, calls_tx));
    }
    // A directory created later is read on the next reload (SIGHUP), but not
    // watched while inotify is in use.
    let mut policy_changes = files.subscribe(opts.dirs.policy.iter().chain(&opts.dirs.services).cloned().collect());
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    notify_systemd("READY=1");

    let mut reload_at: Option<Instant> = None;
    loop {
        let rollback_at = engine.pending.as_ref().map(|p| Instant::from_std(p.deadline));
        let isolation_at = isolation.next_timer().map(Instant::from_std);
        tokio::select! {
            Some((request, reply)) = calls.recv() => match request {
                // charon answers on its own socket, in its own time.
                Request::Sas => {
                    let policy = engine.applied.as_ref().map(|a| &a.policy).filter(|p| p.isolation.enabled());
                    let socket = policy.map(|p| crate::ike::socket_path(&p.isolation));
                    let groups = policy.map_or_else(Default::default, |p| {
                        p.group_connections.iter().map(|g| (crate::ike::conn::group_conn_name(g), g.groups.iter().cloned().collect())).collect()
                    });
                    let (peers, soft) = (engine.peers.clone(), isolation.soft_sas());
                    let clear = engine.readiness().as_deref().map(readiness::per_source);
                    tokio::spawn(async move { let _ = reply.send(views::sas(socket, groups, peers, soft, clear).await); });
                }
                request => {
                    let _ = reply.send(handle(&mut engine, &mut isolation, &hub, &files, request));
                }
            },
            Some(packet) = logged.recv() => match (&engine.applied, packet.prefix.trim_end() == crate::compile::isolation::HELD_LOG_PREFIX.trim_end()) {
                (Some(a), true) => isolation.held(packet.header.map(|h| h.dst), &a.policy),
                _ => hub.record(engine.applied.as_ref().map(|a| (&a.policy, &a.compiled)), packet),
            },
            _ = hup.recv() => reload(&mut engine, &mut isolation, "SIGHUP"),
            Some(event) = xfrm_events.recv() => if let Some(a) = &engine.applied {
                isolation.event(event, &a.policy, &engine.dynamic);
            },
            Some((peer, why)) = failed.recv() => isolation.failed(peer, why),
            _ = sleep_until(isolation_at.unwrap_or_else(Instant::now)), if isolation_at.is_some() => if let Some(a) = &engine.applied {
                isolation.timer(&a.policy, &engine.dynamic);
            },
            Some((keywords, part)) = dynamic.recv() => update_dynamic(&mut engine, &mut isolation, keywords, part),
            Ok(()) = isolation.peers.changed() => {
                let peers = isolation.peers.borrow_and_update().clone();
                match engine.update_peers(peers) {
                    Ok(0) => {}
                    Ok(sets) => tracing::info!(sets, "group peer sets updated"),
                    Err(e) => tracing::error!("updating the group peer sets failed; they keep their previous elements: {e:#}"),
                }
            }
            Some(change) = policy_changes.next() => if change.path.is_none_or(|p| p.extension().is_some_and(|x| x == "yaml")) {
                reload_at = Some(Instant::now() + DEBOUNCE);
            },
            _ = sleep_until(reload_at.unwrap_or_else(Instant::now)), if reload_at.is_some() => {
                reload_at = None;
                reload(&mut engine, &mut isolation, "policy files changed");
            }
            _ = sleep_until(rollback_at.unwrap_or_else(Instant::now)), if rollback_at.is_some() => {
                match engine.rollback() {
                    Ok(outcome) => applied(&engine, &mut isolation, outcome, "rolled back: not confirmed in time"),
                    Err(e) => tracing::error!("rollback failed: {e:#}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
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
    // No confirmation can come any more: an unconfirmed change does not outlive
    // the daemon that was to roll it back.
    if engine.pending.is_some() {
        if let Some(outcome) = teardown.step(engine.rollback().map_err(StepError::Rollback)) {
            applied(&engine, &mut isolation, outcome, "rolled back: stopping before confirmation");
        }
    }
    if opts.flush_on_exit {
        teardown.step(isolation.remove_xfrm().map_err(StepError::Xfrm));
        teardown.step(engine.backend.delete(TABLE).map_err(|source| StepError::Table { table: TABLE, source }));
    }
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

/// After a successful apply or reload: logs it, and brings charon in step.
fn applied<B: Backend>(engine: &Engine<B>, isolation: &mut isolation::Isolation, outcome: Outcome, why: &str) {
    let Some(a) = &engine.applied else { return };
    isolation.sync(&a.policy, &engine.dynamic);
    let (files, rules, sets, elements) =
        (a.policy.files.len(), a.policy.rules.len(), a.compiled.table.sets.len(), a.compiled.table.element_count());
    match outcome {
        Outcome::Applied => tracing::info!(
            trigger = why,
            generation = engine.generation,
            files,
            rules,
            sets,
            elements,
            apply_ms = engine.last_apply.as_millis() as u64,
            "policy applied"
        ),
        Outcome::Unchanged => tracing::info!(
            trigger = why,
            generation = engine.generation,
            files,
            rules,
            "policy reloaded; the table is unchanged"
        ),
    }
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

/// Takes one source's new values of its keywords.
fn update_dynamic<B: Backend>(
    engine: &mut Engine<B>,
    isolation: &mut isolation::Isolation,
    keywords: &[Keyword],
    part: DynState,
) {
    let mut state = engine.dynamic.clone();
    state.replace(keywords, part);
    match engine.update_dynamic(state) {
        Ok(0) => {}
        Ok(sets) => tracing::info!(sets, "dynamic sets updated"),
        Err(e) => tracing::error!("updating the dynamic sets failed; they keep their previous elements: {e:#}"),
    }
    // Exempt keywords are xfrm policies too.
    if let Some(a) = &engine.applied {
        isolation.sync_xfrm(&a.policy, &engine.dynamic);
    }
}

fn reload<B: Backend>(engine: &mut Engine<B>, isolation: &mut isolation::Isolation, why: &str) {
    match engine.reload(Trigger::Files) {
        Ok(outcome) => applied(engine, isolation, outcome, why),
        Err(e) => tracing::error!("reload ({why}) failed: {e:#}"),
    }
}

fn handle<B: Backend>(
    engine: &mut Engine<B>,
    isolation: &mut isolation::Isolation,
    hub: &Hub,
    files: &FileWatch,
    request: Request,
) -> Response {
    let answer = match request {
        Request::State => views::state(engine).map(|mut v| {
            v["isolation"] = isolation.view(engine.applied.as_ref().map(|a| &a.policy));
            v["file-watch"] = json!(files.mode());
            v
        }),
        // The event loop answers it without waiting (see `run`).
        Request::Sas => Err("show sas is answered by the event loop".into()),
        Request::Rules => views::rules(engine),
        Request::Profiles => views::profiles(engine),
        Request::Policy => Ok(engine.applied.as_ref().map_or(json!(null), |a| policy_view(&a.policy))),
        Request::Sets => Ok(views::sets(engine)),
        Request::Stats => stats::stats(engine, hub, isolation),
        // Served by the connection's task (`control::serve`), never queued.
        Request::Monitor { .. } => Err("monitor is a stream".into()),
        Request::Explain { direction, packet } => match &engine.applied {
            Some(a) => crate::explain::explain(&a.policy, &a.compiled, direction, &packet).map(|x| json!(x)),
            None => Ok(json!(null)),
        },
        Request::Apply { confirm_secs } => {
            let confirm = confirm_secs.map(Duration::from_secs);
            let why = if confirm.is_some() { "apply, waiting for confirmation" } else { "apply" };
            match engine.reload(Trigger::Request { confirm }) {
                Ok(outcome) => {
                    applied(engine, isolation, outcome, why);
                    Ok(json!({ "generation": engine.generation, "confirm-secs": confirm_secs }))
                }
                Err(e) => {
                    tracing::error!("{why} failed: {e:#}");
                    Err(format!("{e:#}"))
                }
            }
        }
        Request::Confirm => engine
            .confirm()
            .map(|()| {
                tracing::info!("apply confirmed");
                json!({ "confirmed": true })
            })
            .map_err(|e| e.to_string()),
    };
    match answer {
        Ok(v) => Response::Ok(v),
        Err(e) => Response::Error(e),
    }
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
