//! The group members among the peers whose SAs this host started. As
//! initiator, charon negotiates under the isolation connection (it learns the
//! peer's identity only during the exchange), so those SAs carry no group's
//! reqid; the peer's authenticated certificate subject says its groups all the
//! same, and the daemon puts its address in the groups' peer sets
//! (`compile::gate`).

use super::conn::{Load, CONN};
use super::sas::IkeSa;
use crate::compile::GroupPeers;

/// IKE_SA states in which the peer is authenticated and its CHILD_SAs live.
const AUTHENTICATED: [&str; 3] = ["ESTABLISHED", "REKEYING", "REKEYED"];

/// The groups' peers among `sas`: the remote address of each authenticated
/// IKE_SA of the isolation connection, in the groups of the connection that
/// its remote identity would get as responder.
pub fn group_peers(load: &Load, sas: &[IkeSa]) -> GroupPeers {
    let mut peers = GroupPeers::new();
    for sa in sas.iter().filter(|sa| sa.name == CONN && sa.state.as_deref().is_some_and(|s| AUTHENTICATED.contains(&s)))
    {
        let (Some(id), Some(Ok(addr))) = (&sa.remote_id, sa.remote_host.as_deref().map(str::parse)) else { continue };
        for group in load.groups_of(id).into_iter().flatten() {
            peers.entry(group.clone()).or_default().insert(addr);
        }
    }
    peers
}

#[cfg(test)]
mod tests;
