//! Fleet policy on etcd (docs/fleet.md): signed bundles of policy files per
//! scope, an agent per host that verifies them and writes them into a policy
//! layer of the daemon (and takes a withdrawn scope's out), status reports,
//! and phased rollouts of the isolation mode.

pub mod agent;
pub mod bundle;
pub mod commands;
pub mod config;
pub mod diff;
pub mod etcd;
pub mod failsafe;
pub mod layer;
pub mod report;
pub mod rollout;
pub mod scope;
pub mod sign;

/// Where the agent keeps its state and the fleet layer (`policy.d` in it).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ringfence/fleet";

/// A random byte, for jitter (0 if the system has no randomness to give).
pub fn random_byte() -> u8 {
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    byte[0]
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
