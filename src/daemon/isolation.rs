//! Keeping the kernel's xfrm policies and charon in step with the applied
//! policy's `isolation:` section (and the host's addresses its exemptions
//! name), and what the daemon says about it (`show state`).

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::dynamic::DynState;
use crate::ike::{self, conn, Desired, Status};
use crate::policy::Policy;
use crate::xfrm::{self, Xfrm};

pub struct Isolation {
    desired: watch::Sender<Desired>,
    status: watch::Receiver<Status>,
    /// The netlink socket for xfrm policies, in the daemon's network
    /// namespace, opened when first needed (see [`Isolation::xfrm`]).
    xfrm: Option<Xfrm>,
    /// The policies last applied, so that an unchanged list costs nothing.
    applied: Option<Vec<xfrm::Policy>>,
    /// The last xfrm failure, until an apply succeeds.
    xfrm_error: Option<String>,
}

impl Isolation {
    /// Starts the task that talks to charon (it does nothing until a policy
    /// turns isolation on).
    pub fn start() -> Self {
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (status_tx, status) = watch::channel(Status::default());
        tokio::spawn(ike::follow(desired_rx, status_tx));
        Isolation { desired, status, xfrm: None, applied: None, xfrm_error: None }
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
        self.sync_xfrm(policy, dynamic);
        let iso = &policy.isolation;
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
        let desired = xfrm::policies(&policy.isolation, dynamic);
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

    /// Removes Ringfence's xfrm policies (`--flush-on-exit`).
    pub fn remove_xfrm(&mut self) -> Result<(), xfrm::Error> {
        self.xfrm()?.map_or(Ok(()), |x| x.remove_all().map(drop))
    }

    /// For `show stats`: the kernel's ESP SAs of Ringfence's connections (one
    /// each way per CHILD_SA), counted now.
    pub fn stats(&mut self, policy: Option<&Policy>) -> Value {
        let sas = self
            .xfrm()
            .and_then(|x| x.map_or(Ok(0), |x| x.esp_sas(xfrm::REQIDS).map(|s| s.len())))
            .map_err(|e| e.to_string());
        json!({
            "mode": policy.map(|p| p.isolation.mode.value),
            "sas-up": sas.as_ref().ok(),
            "error": sas.err(),
            "charon-loaded": self.status.borrow().loaded,
        })
    }

    /// For `show state`.
    pub fn view(&self, policy: Option<&Policy>) -> Value {
        let status = self.status.borrow();
        json!({
            "mode": policy.map(|p| p.isolation.mode.value),
            "xfrm-policies": self.applied.as_ref().map(Vec::len),
            "xfrm-error": self.xfrm_error,
            "ike": *status,
        })
    }
}
