//! Keeping the kernel's xfrm policies and charon in step with the applied
//! policy's `isolation:` section (and the host's addresses its exemptions
//! name), and what the daemon says about it (`show state`). The event loop
//! owns this and decides; the netlink work is done by [`kernel`]'s thread.

mod kernel;

pub use kernel::esp_sas_up;

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
use crate::xfrm::{self, Action};
use kernel::{Kernel, Stamps, Want};

pub struct Isolation {
    desired: watch::Sender<Desired>,
    status: watch::Receiver<Status>,
    /// The group members among the peers whose SAs this host started.
    pub peers: watch::Receiver<GroupPeers>,
    /// The kernel's side: xfrm policies and sysctls, on a thread of its own.
    kernel: Kernel,
    /// The stamps asked of the kernel's side (`Kernel::last_used`).
    pub stamps: mpsc::UnboundedReceiver<Stamps>,
    /// The policies last sent to the kernel's side, so that an unchanged
    /// list costs nothing.
    sent: Option<Want>,
    /// First contacts: negotiations timed for the fallback, and soft SAs.
    first: FirstContact,
    /// When to look for idle soft SAs next.
    expiry_at: Option<Instant>,
}

impl Isolation {
    /// Starts the task that talks to charon (it does nothing until a policy
    /// turns isolation on); the negotiations it sees fail go to `failed`.
    pub fn start(failed: mpsc::Sender<(IpAddr, Reason)>) -> Self {
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (status_tx, status) = watch::channel(Status::default());
        let (peers_tx, peers) = watch::channel(GroupPeers::new());
        tokio::spawn(ike::follow(desired_rx, ike::Reports { status: status_tx, failed, peers: peers_tx }));
        let (kernel, stamps) = Kernel::start();
        Isolation {
            desired,
            status,
            peers,
            kernel,
            stamps,
            sent: None,
            first: FirstContact::default(),
            expiry_at: None,
        }
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
        let want = Want {
            policies: xfrm::policies(&policy.isolation, dynamic, &self.first.soft_peers()),
            falls_back: policy.isolation.falls_back(),
        };
        // After a failure the state is unknown: the whole list goes again.
        if self.sent.as_ref() == Some(&want) && self.kernel.outcome.borrow().error.is_none() {
            return;
        }
        self.sent = Some(want.clone());
        self.kernel.apply(want);
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
                self.kernel.kick();
            }
        }
    }

    /// A packet to `peer` left no SA's way (the held-flow log of
    /// `compile::isolation`): it waits for one if Ringfence's policies want
    /// ESP for that peer (not an exemption, not a soft SA).
    pub fn held(&mut self, peer: Option<IpAddr>, policy: &Policy) {
        let Some(peer) = peer.filter(|_| policy.isolation.falls_back()) else { return };
        if self.sent.as_ref().and_then(|w| xfrm::outbound(&w.policies, peer)).is_some_and(|p| p.action != Action::Clear)
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

    /// Runs what is due: fallbacks, then asking for the stamps that the
    /// idle check needs ([`Self::expire`]).
    pub fn timer(&mut self, policy: &Policy, dynamic: &DynState) {
        let now = Instant::now();
        let fell_back = self.first.due(now, SystemTime::now());
        for (peer, reason) in &fell_back {
            tracing::info!(%peer, reason = reason.as_str(), "no SA in time: soft SA, in clear");
        }
        if self.expiry_at.is_some_and(|at| at <= now) {
            self.kernel.last_used(self.first.soft_peers());
        }
        self.expiry_at =
            self.first.expiry_check().map(|every| self.expiry_at.filter(|at| *at > now).unwrap_or(now + every));
        if !fell_back.is_empty() {
            self.changed_soft_sas(policy, dynamic);
        }
    }

    /// The soft SAs' stamps came: ends those with no traffic for
    /// `lifetimes.idle`.
    pub fn expire(&mut self, stamps: Stamps, policy: &Policy, dynamic: &DynState) {
        // Unknown: all stay until the next look.
        let last_used = match stamps {
            Ok(last_used) => last_used,
            Err(e) => return tracing::warn!("cannot read the soft SAs' last use: {e}"),
        };
        if self.first.expire(&last_used, SystemTime::now()) {
            tracing::info!("soft SAs idle for lifetimes.idle ended: the next packet tries IPsec again");
            self.changed_soft_sas(policy, dynamic);
        }
    }

    /// Soft SAs began or ended: their clear policies change, then the packets
    /// that wait for an SA are released and sockets look up their route
    /// again, in that order (the kernel's side keeps it).
    fn changed_soft_sas(&mut self, policy: &Policy, dynamic: &DynState) {
        self.sync_xfrm(policy, dynamic);
        self.kernel.kick();
    }

    /// The soft SAs now, for `show sas`.
    pub fn soft_sas(&self) -> Vec<SoftSa> {
        self.first.soft_sas()
    }

    /// Runs `f` once the kernel's side has done what was asked before: an
    /// `apply`'s client is answered when its xfrm policies are in.
    pub fn then(&self, f: impl FnOnce() + Send + 'static) {
        self.kernel.then(f);
    }

    /// Waits until the kernel's side has done what was asked so far.
    pub async fn settled(&self) {
        self.kernel.settled().await;
    }

    /// Removes Ringfence's xfrm policies (`--flush-on-exit`).
    pub async fn remove_xfrm(&self) -> Result<(), xfrm::Error> {
        self.kernel.remove().await
    }

    /// Ends the kernel's side once it has done what was asked.
    pub async fn stop(self) {
        self.kernel.stop().await;
    }

    /// For `show stats`. The kernel's ESP SAs ([`esp_sas_up`]) and the
    /// readiness counts (`clear-inbound`) are the snapshot's reader's to add.
    pub fn stats(&self, policy: Option<&Policy>) -> IsolationStats {
        IsolationStats {
            mode: policy.map(|p| p.isolation.mode.value),
            sas_up: None,
            soft_sas: self.first.soft_peers().len(),
            fallbacks: self.first.fallbacks().map(|(reason, count)| Fallbacks { reason, count }).collect(),
            error: None,
            charon_loaded: self.status.borrow().loaded,
            clear_inbound: None,
        }
    }

    /// For `show state`.
    pub fn view(&self, policy: Option<&Policy>) -> IsolationState {
        let kernel = self.kernel.outcome.borrow();
        IsolationState {
            mode: policy.map(|p| p.isolation.mode.value),
            xfrm_policies: kernel.policies,
            xfrm_error: kernel.error.clone(),
            ike: self.status.borrow().clone(),
        }
    }
}
