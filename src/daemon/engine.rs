//! The daemon's state machine, free of sockets and signals: load, compile,
//! apply, confirm, roll back. Every change goes through `apply_policy`, so a
//! policy that fails anywhere leaves the running table exactly as it was.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Backend, BackendError};
use crate::compile::{self, Compiled};
use crate::policy::{self, Diagnostics, Policy};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the policy has errors; the running ruleset is unchanged:\n{0}")]
    Policy(Diagnostics),
    #[error("applying the ruleset failed; the running ruleset is unchanged")]
    Apply(#[source] BackendError),
    #[error("nothing is waiting for confirmation")]
    NothingToConfirm,
    #[error("an apply is waiting for confirmation; run `ringfence confirm` or wait for the rollback first")]
    ConfirmPending,
}

/// What is in the kernel now, and where it came from.
pub struct Applied {
    pub policy: Policy,
    pub compiled: Compiled,
    pub at: SystemTime,
}

/// An apply that rolls back to `previous` at `deadline` unless confirmed.
pub struct Pending {
    previous: Policy,
    pub deadline: Instant,
}

pub struct Engine<B: Backend> {
    pub dirs: Vec<PathBuf>,
    pub dirs_required: bool,
    pub backend: B,
    pub applied: Option<Applied>,
    pub pending: Option<Pending>,
    /// How many times a ruleset was applied.
    pub generation: u64,
    pub last_apply: Duration,
    /// The last failed reload, cleared by the next success.
    pub last_error: Option<String>,
}

impl<B: Backend> Engine<B> {
    pub fn new(dirs: Vec<PathBuf>, dirs_required: bool, backend: B) -> Self {
        Engine {
            dirs,
            dirs_required,
            backend,
            applied: None,
            pending: None,
            generation: 0,
            last_apply: Duration::ZERO,
            last_error: None,
        }
    }

    /// Reads and applies the policy files. With `confirm`, the previous policy
    /// comes back after that long unless `confirm()` is called.
    pub fn reload(&mut self, confirm: Option<Duration>) -> Result<(), EngineError> {
        if self.pending.is_some() {
            return Err(EngineError::ConfirmPending);
        }
        let result = policy::load(&self.dirs, self.dirs_required)
            .map_err(EngineError::Policy)
            .and_then(|policy| self.apply_policy(policy));
        match result {
            Ok(previous) => {
                self.last_error = None;
                if let (Some(wait), Some(previous)) = (confirm, previous) {
                    self.pending = Some(Pending { previous, deadline: Instant::now() + wait });
                }
                Ok(())
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    pub fn confirm(&mut self) -> Result<(), EngineError> {
        self.pending.take().map(|_| ()).ok_or(EngineError::NothingToConfirm)
    }

    /// Re-applies the policy from before the unconfirmed apply.
    pub fn rollback(&mut self) -> Result<(), EngineError> {
        let pending = self.pending.take().ok_or(EngineError::NothingToConfirm)?;
        self.apply_policy(pending.previous).map(|_| ())
    }

    /// Compiles and applies `policy`; returns the policy it replaced.
    fn apply_policy(&mut self, policy: Policy) -> Result<Option<Policy>, EngineError> {
        let compiled = compile::compile(&policy).map_err(EngineError::Policy)?;
        let start = Instant::now();
        self.backend.replace(&compiled.table).map_err(EngineError::Apply)?;
        self.last_apply = start.elapsed();
        self.generation += 1;
        let previous = self.applied.replace(Applied { policy, compiled, at: SystemTime::now() });
        Ok(previous.map(|a| a.policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::NoopBackend;
    use std::fs;

    fn engine(dir: &std::path::Path) -> Engine<NoopBackend> {
        Engine::new(vec![dir.to_path_buf()], true, NoopBackend::default())
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    const ONE_RULE: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n";
    const TWO_RULES: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80] }\n  - { name: dns, direction: in, action: allow, protocol: udp, local-ports: [53] }\n";

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ringfence-engine-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_bad_policy_changes_nothing() {
        let d = tempdir("bad");
        write(&d, "10.yaml", ONE_RULE);
        let mut e = engine(&d);
        e.reload(None).unwrap();
        write(&d, "20.yaml", "rules:\n  - { name: x, direction: in, action: allow, protocol: tcp, local-ports: [70000] }\n");
        let err = e.reload(None).unwrap_err();
        assert!(err.to_string().contains("20.yaml:2:"), "{err}");
        assert_eq!(e.backend.applied.len(), 1);
        assert_eq!(e.generation, 1);
        assert!(e.last_error.as_deref().unwrap().contains("70000 is not a port"));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_apply_keeps_the_old_state() {
        let d = tempdir("fail");
        write(&d, "10.yaml", ONE_RULE);
        let mut e = engine(&d);
        e.reload(None).unwrap();
        write(&d, "10.yaml", TWO_RULES);
        e.backend.fail_next = true;
        assert!(matches!(e.reload(None), Err(EngineError::Apply(_))));
        assert_eq!(e.applied.as_ref().unwrap().policy.rules.len(), 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn confirm_and_rollback() {
        let d = tempdir("confirm");
        write(&d, "10.yaml", ONE_RULE);
        let mut e = engine(&d);
        e.reload(None).unwrap();
        let first = e.backend.applied[0].clone();

        write(&d, "10.yaml", TWO_RULES);
        e.reload(Some(Duration::from_secs(60))).unwrap();
        assert!(matches!(e.reload(None), Err(EngineError::ConfirmPending)));
        e.rollback().unwrap();
        assert_eq!(e.backend.applied.last(), Some(&first), "rollback restores the previous table exactly");
        assert_eq!(e.applied.as_ref().unwrap().policy.rules.len(), 1);

        e.reload(Some(Duration::from_secs(60))).unwrap();
        e.confirm().unwrap();
        assert!(matches!(e.confirm(), Err(EngineError::NothingToConfirm)));
        assert_eq!(e.applied.as_ref().unwrap().policy.rules.len(), 2);
        fs::remove_dir_all(d).unwrap();
    }
}
