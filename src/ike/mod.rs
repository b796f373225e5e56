//! IKE is charon's: Ringfence loads into it, over its VICI socket, the
//! credentials and the connection isolation needs (`conn`), keeps them loaded
//! across charon's restarts, and reads its SAs for `show sas` (`sas`).

pub mod conn;
pub mod failures;
pub mod peers;
pub mod sas;
mod vici;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::compile::GroupPeers;
use crate::policy::isolation::{private_key_file, Isolation};
use crate::xfrm::Xfrm;
use conn::{Credentials, Load};
use failures::{Failures, Log, Reason};
use peers::group_peers;
use vici::Vici;

/// How often to try again while charon's socket cannot be reached.
const RETRY: Duration = Duration::from_secs(1);

/// What the daemon wants charon to hold: nothing (isolation off), or `load`
/// at `socket`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub socket: Option<PathBuf>,
    pub load: Option<Arc<Load>>,
}

/// How loading went, for `show state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    pub socket: Option<PathBuf>,
    /// The connection is loaded into the charon that listens there now.
    pub loaded: bool,
    pub last_error: Option<String>,
    /// Times the connection was loaded (charon restarts count).
    pub loads: u64,
}

/// The socket path of `unix:///path`.
pub fn socket_path(iso: &Isolation) -> PathBuf {
    PathBuf::from(iso.ike_socket.value.trim_start_matches("unix://"))
}

/// Reads the identity's files (the policy check has validated them; the key's
/// ownership and mode are checked again, here where it is read).
pub fn read_credentials(iso: &Isolation) -> Result<Credentials, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let required = |p: &Option<PathBuf>| read(p.as_deref().ok_or("isolation.identity is incomplete")?);
    if let Some(key) = &iso.private_key.value {
        private_key_file(key)?;
    }
    Ok(Credentials {
        ca: required(&iso.ca.value)?,
        certificate: required(&iso.certificate.value)?,
        private_key: required(&iso.private_key.value)?,
        crl: iso.crl.value.as_deref().map(read).transpose()?,
    })
}

#[derive(Deserialize)]
struct Reply {
    success: bool,
    errmsg: Option<String>,
}

async fn command<T: Serialize>(client: &mut Vici, cmd: &str, message: &T) -> Result<(), String> {
    let reply: Reply = client.request(cmd, message).await?;
    if reply.success {
        Ok(())
    } else {
        Err(format!("{cmd}: {}", reply.errmsg.unwrap_or_else(|| "failed".into())))
    }
}

#[derive(Deserialize)]
struct Conns {
    #[serde(default)]
    conns: Vec<String>,
}

/// The names of Ringfence's connections charon holds.
async fn our_conns(client: &mut Vici) -> Result<Vec<String>, String> {
    let loaded: Conns = client.request("get-conns", &()).await?;
    Ok(loaded.conns.into_iter().filter(|n| n.starts_with(conn::CONN)).collect())
}

/// Deletes the kernel's ESP SAs of Ringfence's reqids, when charon holds none
/// of Ringfence's connections and so none of their SAs (Ringfence closes the
/// SAs of a connection before it unloads it). They are left over by a charon
/// that died (SIGKILL, a crash): charon deletes its SAs when it stops, not
/// when it is killed. Left in place, the peers' traffic would keep using SAs
/// negotiated under the old connection (ESP-null where encryption is now
/// required), and no new SA would be negotiated while they last.
fn delete_orphan_sas() {
    match Xfrm::open().and_then(|mut x| x.delete_esp_sas(crate::xfrm::REQIDS)) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(sas = n, "deleted ESP SAs that no charon holds (left by a charon that died)"),
        Err(e) => tracing::warn!("cannot delete the ESP SAs left by a charon that died: {e}"),
    }
}

/// Loads credentials and connections; closes the SAs of Ringfence's
/// connections (`ours`, loaded now) that are no longer wanted and unloads them.
async fn load(client: &mut Vici, ours: &[String], load: Option<&Load>) -> Result<(), String> {
    let wanted = |name: &String| load.is_some_and(|l| l.conns.contains_key(name));
    for name in ours.iter().filter(|n| !wanted(n)) {
        #[derive(Serialize)]
        struct Unload<'a> {
            name: &'a str,
        }
        close_sas(client, name).await?;
        command(client, "unload-conn", &Unload { name }).await?;
    }
    let Some(load) = load else { return Ok(()) };
    for cert in &load.certs {
        command(client, "load-cert", cert).await?;
    }
    command(client, "load-key", &load.key).await?;
    command(client, "load-conn", &load.conns).await
}

/// Closes the SAs of Ringfence's connection `name`, so that new ones follow
/// the connection as it is now: SAs negotiated under an older mode (ESP-null
/// where encryption is now required) or for an older group pattern would
/// otherwise live until they expire.
async fn close_sas(client: &mut Vici, name: &str) -> Result<(), String> {
    terminate(client, &Terminate { ike: Some(name), ike_id: None, timeout: -1 }).await?;
    tracing::info!(conn = name, "isolation connection changed: its IKE SAs are closed");
    Ok(())
}

#[derive(Serialize)]
struct Terminate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ike: Option<&'a str>,
    #[serde(rename = "ike-id", skip_serializing_if = "Option::is_none")]
    ike_id: Option<&'a str>,
    /// Do not wait for the peers' answers.
    timeout: i32,
}

/// Closes the IKE SAs `which` names; no SA to close is no error.
async fn terminate(client: &mut Vici, which: &Terminate<'_>) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Terminated {
        success: bool,
        #[serde(default)]
        matches: u32,
        errmsg: Option<String>,
    }
    let t: Terminated = client.request("terminate", which).await?;
    if t.success || t.matches == 0 {
        Ok(())
    } else {
        Err(format!("terminate: {}", t.errmsg.unwrap_or_else(|| "failed".into())))
    }
}

/// Closes the IKE SAs that peers started under another connection than the
/// one charon would give them now (a group's pattern changed, or a group was
/// added or removed): they negotiate again, and get the reqid of their groups
/// as they are now. SAs this host started are left alone: as initiator,
/// charon always uses the isolation connection.
async fn regroup(client: &mut Vici, load: &Load, closed: &[String]) -> Result<(), String> {
    for sa in sas::list(client).await? {
        let (Some(id), Some(uniqueid)) = (&sa.remote_id, &sa.uniqueid) else { continue };
        if !sa.name.starts_with(conn::CONN) || closed.contains(&sa.name) || sa.initiator.as_deref() == Some("yes") {
            continue;
        }
        let now = load.conn_for(id);
        if now != sa.name {
            terminate(client, &Terminate { ike: None, ike_id: Some(uniqueid), timeout: -1 }).await?;
            tracing::info!(peer = %id, was = %sa.name, now, "the peer's groups changed: its IKE SA is closed");
        }
    }
    Ok(())
}

/// Connects to charon at `socket` and makes it hold `load`. `before`: what
/// was loaded into this charon before; the SAs of the connections that
/// changed since are closed, and those of peers whose groups changed.
async fn sync(socket: &Path, load: Option<&Load>, before: Option<&Load>) -> Result<Vici, String> {
    let mut client = Vici::connect(socket).await?;
    let ours = our_conns(&mut client).await?;
    // (Before loading: once loaded, a trap may already be negotiating.)
    if ours.is_empty() {
        delete_orphan_sas();
    }
    self::load(&mut client, &ours, load).await?;
    let Some((now, before)) = load.zip(before).filter(|(now, before)| now.conns != before.conns) else {
        return Ok(client);
    };
    let changed: Vec<String> = now
        .conns
        .iter()
        .filter(|(name, conn)| before.conns.get(*name).is_some_and(|b| b != *conn))
        .map(|(name, _)| name.clone())
        .collect();
    for name in &changed {
        close_sas(&mut client, name).await?;
    }
    regroup(&mut client, now, &changed).await?;
    Ok(client)
}

/// Where [`follow`] tells the daemon what it learns from charon.
pub struct Reports {
    /// How loading went.
    pub status: watch::Sender<Status>,
    /// The negotiations with peers that failed (from charon's log).
    pub failed: mpsc::Sender<(std::net::IpAddr, Reason)>,
    /// The group members among the peers whose SAs this host started.
    pub peers: watch::Sender<GroupPeers>,
}

/// Keeps charon holding what `desired` says: loads it when it changes and
/// every time charon (re)appears at the socket, and reports to the daemon.
pub async fn follow(mut desired: watch::Receiver<Desired>, reports: Reports) {
    let Reports { status, failed, peers } = reports;
    // The socket where Ringfence's connection was last loaded, to unload it
    // there when isolation is turned off.
    let mut loaded_at: Option<PathBuf> = None;
    // The connections last loaded into the charon that runs now (`None` after
    // it restarted): when they change, SAs of the old ones are closed.
    let mut loaded: Option<Arc<Load>> = None;
    loop {
        let want = desired.borrow_and_update().clone();
        let socket = want.socket.clone().or_else(|| loaded_at.clone());
        let Some(socket) = socket else {
            if desired.changed().await.is_err() {
                return;
            }
            continue;
        };
        let before = loaded.take();
        let mut client = match sync(&socket, want.load.as_deref(), before.as_deref()).await {
            Ok(client) => client,
            Err(e) => {
                if status.borrow().last_error.as_ref() != Some(&e) {
                    tracing::warn!("{e}; trying again every {}s", RETRY.as_secs());
                }
                status.send_modify(|s| {
                    s.socket = Some(socket.clone());
                    s.loaded = false;
                    s.last_error = Some(e);
                });
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    changed = desired.changed() => if changed.is_err() { return },
                }
                continue;
            }
        };
        loaded_at = want.load.as_ref().map(|_| socket.clone());
        loaded = want.load.clone();
        if want.load.is_some() {
            tracing::info!(socket = %socket.display(), "isolation connection loaded into charon");
        }
        status.send_modify(|s| {
            s.socket = Some(socket.clone());
            s.loaded = want.load.is_some();
            s.last_error = None;
            s.loads += u64::from(want.load.is_some());
        });
        let Some(load) = want.load else {
            // Unloaded: nothing to keep up until the policy asks again.
            peers.send_replace(GroupPeers::new());
            if desired.changed().await.is_err() {
                return;
            }
            continue;
        };
        for event in ["log", "ike-updown", "ike-rekey"] {
            if let Err(e) = client.subscribe(event).await {
                tracing::warn!(
                    "cannot follow charon's {event} events ({e}): fallbacks say timeout, groups lag a second"
                );
            }
        }
        let mut failures = Failures::default();
        // An IKE_SA came up, went down or was rekeyed: look at the SAs now.
        let changed_sas = tokio::sync::Notify::new();
        let closed = async {
            while let Some((event, message)) = client.event().await {
                if event != "log" {
                    changed_sas.notify_one();
                    continue;
                }
                let Ok(log) = vici::decode::<Log>("log", &message) else { continue };
                if let Some(failure) = failures.read(&log) {
                    // (A full queue: the daemon is behind; that peer's fallback says timeout.)
                    let _ = failed.try_send(failure);
                }
            }
        };
        tokio::pin!(closed);
        let mut stale = Stale::default();
        let mut check = tokio::time::interval(STALE_CHECK);
        loop {
            tokio::select! {
                () = &mut closed => {
                    loaded = None;
                    tracing::warn!(socket = %socket.display(), "charon closed its VICI socket; loading again when it is back");
                    status.send_modify(|s| s.loaded = false);
                    peers.send_replace(GroupPeers::new());
                    break;
                }
                changed = desired.changed() => if changed.is_err() { return } else { break },
                () = changed_sas.notified() => survey(&socket, &load, &mut stale, &peers).await,
                _ = check.tick() => survey(&socket, &load, &mut stale, &peers).await,
            }
        }
    }
}

/// Looks at charon's SAs: aborts the negotiations that hang, and publishes
/// the groups' peers among those this host started.
async fn survey(socket: &Path, load: &Load, stale: &mut Stale, peers: &watch::Sender<GroupPeers>) {
    let listed = async {
        let mut client = Vici::connect(socket).await?;
        let sas = sas::list(&mut client).await?;
        stale.abort(&mut client, &sas).await?;
        Ok::<_, String>(sas)
    };
    match listed.await {
        Ok(sas) => {
            let now = group_peers(load, &sas);
            peers.send_if_modified(|p| {
                *p != now && {
                    *p = now;
                    true
                }
            });
        }
        Err(e) => tracing::debug!("cannot look at charon's SAs: {e}"),
    }
}

/// How often to look for negotiations that hang.
const STALE_CHECK: Duration = Duration::from_secs(1);

/// How long an IKE_SA this host started may wait for the peer's first answer
/// before it is aborted: a live peer answers IKE_SA_INIT in milliseconds (a
/// second under the test VM's emulation); charon itself would send again
/// after 4 s, then 7.2, 13, 23 and 42 s (its defaults), so a peer that was
/// down and came back would be reached only at the next of those, up to 42 s
/// later. A negotiation the peer answered is never aborted, however slow.
const STALE_AFTER: Duration = Duration::from_secs(3);

/// The host's negotiations under way, by IKE_SA unique id, since first seen.
#[derive(Default)]
struct Stale {
    connecting: std::collections::BTreeMap<String, tokio::time::Instant>,
}

impl Stale {
    /// Aborts the IKE_SAs this host started that have been `CONNECTING`
    /// without any answer from the peer for [`STALE_AFTER`]: the next packet for that peer raises a new ACQUIRE
    /// (the larval state lasts `net.core.xfrm_acq_expires`, which the daemon
    /// shortens) and charon starts afresh, at once, with a peer that may be
    /// back. Without it, charon would ignore those ACQUIREs ("connection
    /// attempt pending") until its own schedule gave up.
    async fn abort(&mut self, client: &mut Vici, sas: &[sas::IkeSa]) -> Result<(), String> {
        let now = tokio::time::Instant::now();
        let mut seen = std::collections::BTreeMap::new();
        for sa in sas {
            let ours = sa.name.starts_with(conn::CONN) && sa.initiator.as_deref() == Some("yes");
            let unanswered = sa.responder_spi.as_deref().is_none_or(|spi| spi.chars().all(|c| c == '0'));
            let (Some(id), true, Some("CONNECTING")) = (&sa.uniqueid, ours && unanswered, sa.state.as_deref()) else {
                continue;
            };
            let since = self.connecting.get(id).copied().unwrap_or(now);
            if now.duration_since(since) >= STALE_AFTER {
                terminate(client, &Terminate { ike: None, ike_id: Some(id), timeout: -1 }).await?;
                tracing::info!(
                    peer = sa.remote_host.as_deref().unwrap_or("?"),
                    "IKE negotiation with no answer aborted: the next packet starts afresh"
                );
            } else {
                seen.insert(id.clone(), since);
            }
        }
        self.connecting = seen;
        Ok(())
    }
}

/// charon's SAs, for `show sas` (a connection of its own, so that a slow
/// charon never holds up the daemon's loop).
pub async fn list_sas(socket: &Path) -> Result<Vec<sas::IkeSa>, String> {
    let mut client = Vici::connect(socket).await?;
    sas::list(&mut client).await
}
