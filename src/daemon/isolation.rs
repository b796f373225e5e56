//! Keeping the kernel's xfrm policies and charon in step with the applied
//! policy's `isolation:` section (and the host's addresses its exemptions
//! name), and what the daemon says about it (`show state`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::first_contact::{FirstContact, Reason, Settings, SoftSa};
use crate::compile::GroupPeers;
use crate::dynamic::DynState;
use crate::ike::{self, conn, Desired, Status};
use crate::policy::Policy;
use crate::protocol::answers::{Fallbacks, IsolationState, IsolationStats};
use crate::xfrm::events::Event;
use crate::xfrm::{self, Action, Xfrm};

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

pub struct Isolation {
    desired: watch::Sender<Desired>,
    status: watch::Receiver<Status>,
    /// The group members among the peers whose SAs this host started.
    pub peers: watch::Receiver<GroupPeers>,
    /// The netlink socket for xfrm policies, in the daemon's network
    /// namespace, opened when first needed (see [`Isolation::xfrm`]).
    xfrm: Option<Xfrm>,
    /// The policies last applied, so that an unchanged list costs nothing.
    applied: Option<Vec<xfrm::Policy>>,
    /// The last xfrm failure, until an apply succeeds.
    xfrm_error: Option<String>,
    /// First contacts: negotiations timed for the fallback, and soft SAs.
    first: FirstContact,
    /// When to look for idle soft SAs next.
    expiry_at: Option<Instant>,
    /// `net.core.xfrm_larval_drop`: 0 (hold) in the modes that fall back.
    larval_drop: Sysctl,
    /// `net.core.xfrm_acq_expires`: short while isolation is on.
    acq_expires: Sysctl,
}

impl Isolation {
    /// Starts the task that talks to charon (it does nothing until a policy
    /// turns isolation on); the negotiations it sees fail go to `failed`.
    pub fn start(failed: mpsc::Sender<(IpAddr, Reason)>) -> Self {
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (status_tx, status) = watch::channel(Status::default());
        let (peers_tx, peers) = watch::channel(GroupPeers::new());
        tokio::spawn(ike::follow(desired_rx, ike::Reports { status: status_tx, failed, peers: peers_tx }));
        Isolation {
            desired,
            status,
            peers,
            xfrm: None,
            applied: None,
            xfrm_error: None,
            first: FirstContact::default(),
            expiry_at: None,
            larval_drop: Sysctl::larval_drop(),
            acq_expires: Sysctl::acq_expires(),
        }
    }

    /// The xfrm socket, opened the first time; `None` on a kernel without
    /// xfrm's netlink API (no CONFIG_XFRM_USER: the socket's protocol is not
    /// supported), which can hold no policy or SA of Ringfence's: the firewall
    /// works there, isolation cannot.
    fn xfrm(&mut self) -> Result<Option<&mut Xfrm>, xfrm::Error> {
        if self.xfrm.is_none() {
            match Xfrm::open() {
                Ok(x) => self.xfrm = Some(x),
                Err(xfrm::Error::Open(e)) if e.raw_os_error() == Some(nix::errno::Errno::EPROTONOSUPPORT as i32) => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.xfrm.as_mut())
    }

    /// After an apply or a reload: the xfrm policies, and what charon must
    /// hold. The credential files are read again, so a reload picks up a
    /// renewed certificate.
    pub fn sync(&mut self, policy: &Policy, dynamic: &DynState) {
        let iso = &policy.isolation;
        let idle = Duration::from_secs(iso.idle_timeout.value);
        self.first.configure(Settings { enabled: iso.falls_back(), fallback: iso.fallback.value, idle });
        self.sync_xfrm(policy, dynamic);
        let desired = if iso.enabled() {
            match ike::read_credentials(iso) {
                Ok(creds) => Desired {
                    socket: Some(ike::socket_path(iso)),
                    load: Some(Arc::new(conn::load(iso, &policy.group_connections, creds))),
                },
                Err(e) => return tracing::error!("isolation: {e}; charon keeps what it has"),
            }
        } else {
            Desired::default()
        };
        self.desired.send_if_modified(|d| {
            let changed = *d != desired;
            *d = desired;
            changed
        });
    }

    /// The xfrm policies for the policy and the host's addresses now (a
    /// change of an exempt keyword's addresses changes them).
    pub fn sync_xfrm(&mut self, policy: &Policy, dynamic: &DynState) {
        let desired = xfrm::policies(&policy.isolation, dynamic, &self.first.soft_peers());
        // Held in the modes that fall back, where every held peer gets an SA
        // or a soft SA within `fallback`. In the require modes a peer that
        // never answers would stay at the head of the policy's queue, and
        // the queue is released only when its head can be (up to 100 s):
        // there the first packets are dropped until the SA exists, as the
        // kernel does by default, and TCP's retransmission finds the SA.
        self.larval_drop.set(!desired.is_empty() && policy.isolation.falls_back());
        self.acq_expires.set(!desired.is_empty());
        if self.applied.as_ref() == Some(&desired) {
            return;
        }
        let result = match self.xfrm() {
            Ok(Some(x)) => x.apply(&desired),
            Ok(None) if desired.is_empty() => Ok(xfrm::kernel::Changes::default()),
            Ok(None) => Err(xfrm::Error::Unsupported),
            Err(e) => Err(e),
        };
        match result {
            Ok(c) => {
                if c.added + c.updated + c.removed > 0 {
                    tracing::info!(added = c.added, updated = c.updated, removed = c.removed, "xfrm policies applied");
                }
                self.applied = Some(desired);
                self.xfrm_error = None;
            }
            Err(e) => {
                tracing::error!("xfrm policies: {e}");
                // Unknown now: the next sync applies the whole list again.
                self.applied = None;
                self.xfrm_error = Some(e.to_string());
            }
        }
    }

    /// A kernel event about Ringfence's SAs.
    pub fn event(&mut self, event: Event, policy: &Policy, dynamic: &DynState) {
        match event {
            Event::Acquire { peer } => self.first.acquire(peer, Instant::now()),
            Event::SaUp { src, dst } => {
                if self.first.sa_up(src, dst) {
                    tracing::info!(peer = %src, other = %dst, "SA up: the soft SA ends, traffic moves to ESP");
                    self.sync_xfrm(policy, dynamic);
                }
                self.kick();
            }
        }
    }

    /// A packet to `peer` left no SA's way (the held-flow log of
    /// `compile::isolation`): it waits for one if Ringfence's policies want
    /// ESP for that peer (not an exemption, not a soft SA).
    pub fn held(&mut self, peer: Option<IpAddr>, policy: &Policy) {
        let Some(peer) = peer.filter(|_| policy.isolation.falls_back()) else { return };
        if self.applied.as_deref().and_then(|all| xfrm::outbound(all, peer)).is_some_and(|p| p.action != Action::Clear)
        {
            self.first.acquire(peer, Instant::now());
        }
    }

    /// charon gave up negotiating with `peer`.
    pub fn failed(&mut self, peer: IpAddr, why: Reason) {
        tracing::info!(%peer, reason = why.as_str(), "IKE negotiation failed");
        self.first.failed(peer, why);
    }

    /// When [`Self::timer`] has work (a fallback, or a look for idle soft
    /// SAs), if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        self.first.next_deadline().into_iter().chain(self.expiry_at).min()
    }

    /// Runs what is due: fallbacks, then the idle check.
    pub fn timer(&mut self, policy: &Policy, dynamic: &DynState) {
        let now = Instant::now();
        let fell_back = self.first.due(now, SystemTime::now());
        for (peer, reason) in &fell_back {
            tracing::info!(%peer, reason = reason.as_str(), "no SA in time: soft SA, in clear");
        }
        let mut changed = !fell_back.is_empty();
        if self.expiry_at.is_some_and(|at| at <= now) {
            changed |= self.expire();
        }
        self.expiry_at =
            self.first.expiry_check().map(|every| self.expiry_at.filter(|at| *at > now).unwrap_or(now + every));
        if changed {
            self.sync_xfrm(policy, dynamic);
            self.kick();
        }
    }

    /// Ends the soft SAs with no traffic for `lifetimes.idle`, as the kernel's
    /// stamps on their policies tell.
    fn expire(&mut self) -> bool {
        let soft = self.first.soft_peers();
        let stamps = self.with_kernel(Xfrm::last_used);
        let mut last_used: BTreeMap<IpAddr, u64> = BTreeMap::new();
        match stamps {
            Ok(stamps) => {
                for (p, used) in stamps {
                    let remote = if p.dir == xfrm::Dir::Out { p.selector.dst } else { p.selector.src };
                    if p.action == Action::Clear && soft.contains(&remote.addr) {
                        let t = last_used.entry(remote.addr).or_default();
                        *t = (*t).max(used);
                    }
                }
            }
            Err(e) => {
                // Unknown: all stay until the next look.
                tracing::warn!("cannot read the soft SAs' last use: {e}");
                return false;
            }
        }
        let ended = self.first.expire(&last_used, SystemTime::now());
        if ended {
            tracing::info!("soft SAs idle for lifetimes.idle ended: the next packet tries IPsec again");
        }
        ended
    }

    /// Releases packets that wait for an SA and makes sockets look up their
    /// route again (`Xfrm::kick`): after an SA came up, and after soft SAs
    /// began or ended.
    fn kick(&mut self) {
        if let Err(e) = self.with_kernel(Xfrm::kick) {
            tracing::warn!("{e}: held packets wait for the queue's timer");
        }
    }

    /// The soft SAs now, for `show sas`.
    pub fn soft_sas(&self) -> Vec<SoftSa> {
        self.first.soft_sas()
    }

    /// Removes Ringfence's xfrm policies (`--flush-on-exit`).
    pub fn remove_xfrm(&mut self) -> Result<(), xfrm::Error> {
        self.larval_drop.set(false);
        self.acq_expires.set(false);
        self.with_kernel(|x| x.remove_all().map(drop))
    }

    /// Runs `f` on the kernel's xfrm state; a kernel without xfrm's netlink
    /// API holds none of Ringfence's, and `f` has nothing to do there.
    fn with_kernel<T: Default>(
        &mut self,
        f: impl FnOnce(&mut Xfrm) -> Result<T, xfrm::Error>,
    ) -> Result<T, xfrm::Error> {
        self.xfrm()?.map_or(Ok(T::default()), f)
    }

    /// For `show stats`: the kernel's ESP SAs of Ringfence's connections (one
    /// each way per CHILD_SA), counted now. The readiness counts
    /// (`clear-inbound`) are the snapshot's reader's to add.
    pub fn stats(&mut self, policy: Option<&Policy>) -> IsolationStats {
        let sas = self.with_kernel(|x| x.esp_sas(xfrm::REQIDS).map(|s| s.len())).map_err(|e| e.to_string());
        IsolationStats {
            mode: policy.map(|p| p.isolation.mode.value),
            sas_up: sas.as_ref().ok().copied(),
            soft_sas: self.first.soft_peers().len(),
            fallbacks: self.first.fallbacks().map(|(reason, count)| Fallbacks { reason, count }).collect(),
            error: sas.err(),
            charon_loaded: self.status.borrow().loaded,
            clear_inbound: None,
        }
    }

    /// For `show state`.
    pub fn view(&self, policy: Option<&Policy>) -> IsolationState {
        IsolationState {
            mode: policy.map(|p| p.isolation.mode.value),
            xfrm_policies: self.applied.as_ref().map(Vec::len),
            xfrm_error: self.xfrm_error.clone(),
            ike: self.status.borrow().clone(),
        }
    }
}
