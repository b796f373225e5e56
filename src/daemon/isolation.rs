//! Keeping charon in step with the applied policy's `isolation:` section, and
//! what the daemon says about it (`show state`, `show sas`).

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::ike::{self, conn, Desired, Status};
use crate::policy::Policy;

/// The static reqid of Ringfence's CHILD_SA: charon's child and the xfrm
/// policies' outbound templates must name the same.
pub const REQID: u32 = 0x5246;

pub struct Isolation {
    desired: watch::Sender<Desired>,
    status: watch::Receiver<Status>,
}

impl Isolation {
    /// Starts the task that talks to charon (it does nothing until a policy
    /// turns isolation on).
    pub fn start() -> Self {
        let (desired, desired_rx) = watch::channel(Desired::default());
        let (status_tx, status) = watch::channel(Status::default());
        tokio::spawn(ike::follow(desired_rx, status_tx));
        Isolation { desired, status }
    }

    /// After an apply or a reload: what charon must hold now. The credential
    /// files are read again, so a reload picks up a renewed certificate.
    pub fn sync(&self, policy: &Policy) {
        let iso = &policy.isolation;
        let desired = if iso.enabled() {
            match ike::read_credentials(iso) {
                Ok(creds) => {
                    Desired { socket: Some(ike::socket_path(iso)), load: Some(Arc::new(conn::load(iso, creds, REQID))) }
                }
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

    /// For `show state`.
    pub fn view(&self, policy: Option<&Policy>) -> Value {
        let status = self.status.borrow();
        json!({
            "mode": policy.map(|p| p.isolation.mode.value),
            "ike": *status,
        })
    }
}
