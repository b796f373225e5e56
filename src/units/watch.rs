//! Following the units as they start and stop: the slice directories are
//! watched (a unit's cgroup is made and removed in its slice's), and after
//! each change the hierarchy is read again and the units sent if they differ.
//! A read costs a directory listing per slice: less than the nft
//! transaction that follows it.

use tokio::sync::mpsc;

use super::{Hierarchy, Units};
use crate::filewatch::Subscription;

/// Runs until the daemon stops taking the units. `changes` watches the
/// slices of `now`'s read.
pub async fn follow(hierarchy: Hierarchy, mut now: Units, mut changes: Subscription, units: mpsc::Sender<Units>) {
    while changes.next().await.is_some() {
        match hierarchy.read() {
            Ok((read, slices)) => {
                changes.watch(slices);
                if read != now {
                    now = read.clone();
                    if units.send(read).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!("{:#}; unit rules keep the units read before", anyhow::Error::from(e)),
        }
    }
}
