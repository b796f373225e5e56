//! The daemon's state machine, free of sockets and signals: load, compile,
//! apply, confirm, roll back. Every change goes through `apply_policy`, so a
//! policy that fails anywhere leaves the running table exactly as it was.
//!
//! The confirmation window: `apply --confirm D` records the policy in force as
//! the baseline and arms a deadline. Every change applied inside the window, by
//! that request or by edited files, rolls back to the baseline at the deadline
//! unless `confirm` comes first. After a rollback the files still hold the change,
//! so automatic reloads refuse that exact policy until the files are edited again
//! or an explicit `apply` forces it.
//!
//! The engine runs on a thread of its own (`worker`): after every change it
//! publishes a [`Snapshot`], from which the daemon answers reads while the next
//! change is being applied.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::readiness::{self, Clear, Readiness};
use crate::backend::{Backend, BackendError};
use crate::compile::{self, Compiled, GroupPeers};
use crate::dynamic::DynState;
use crate::location::Judgements;
use crate::nft::{Set, SetDiff};
use crate::policy::{self, Diagnostics, Policy};
use crate::units::{Hierarchy, Units};

/// How soon a failed rollback is tried again.
const ROLLBACK_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the policy has errors; the running ruleset is unchanged:\n{0}")]
    Policy(Diagnostics),
    #[error("applying the ruleset failed; the running ruleset is unchanged")]
    Apply(#[source] BackendError),
    #[error("the ruleset was applied, but reading it back failed")]
    Verify(#[source] BackendError),
    #[error("the policy has unit rules, which this host cannot enforce; the running ruleset is unchanged: {0}")]
    Units(String),
    #[error("nothing is waiting for confirmation")]
    NothingToConfirm,
    #[error(
        "the policy files still hold the change that was rolled back for lack of confirmation; \
         edit them, or force them with `ringfence apply`"
    )]
    RolledBack,
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP or edited policy files.
    Files,
    /// `ringfence apply [--confirm D]`.
    Request { confirm: Option<Duration> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The policy compiled to the table already in force: nothing was sent, and
    /// the counters keep counting.
    Unchanged,
}

/// What is in the kernel now, and where it came from. Shared with the
/// snapshots; a copy shares the policy and the sets' elements.
#[derive(Clone)]
pub struct Applied {
    pub policy: Arc<Policy>,
    pub compiled: Compiled,
    pub at: SystemTime,
}

/// An open confirmation window.
pub struct Pending {
    baseline: Arc<Policy>,
    pub deadline: Instant,
}

/// The engine's state as readers see it: published after every change.
pub struct Snapshot {
    pub applied: Option<Arc<Applied>>,
    pub dynamic: DynState,
    pub generation: u64,
    pub last_apply: Duration,
    pub last_error: Option<String>,
    /// When the open confirmation window closes.
    pub confirm_deadline: Option<Instant>,
    pub dirs: policy::Dirs,
    pub peers: GroupPeers,
    /// Location detection's judgements, as the location sets hold them.
    pub location: Judgements,
    readiness: Arc<Readiness>,
}

impl Snapshot {
    /// Every readiness count so far, most first, while the table in force
    /// counts (isolation in `request` or `boundary`); `None` otherwise. Lists
    /// the kernel's counting sets with `nft`: call it off the event loop. Read
    /// during an apply, it may count the replaced table's connections twice
    /// or not at all, until the next snapshot.
    pub fn readiness(&self) -> Option<Vec<(Clear, u64)>> {
        let table = &self.applied.as_ref()?.compiled.table;
        readiness::counts_in(table).then(|| self.readiness.report(&readiness::list(table, crate::nft::list_set)))
    }
}

pub struct Engine<B: Backend> {
    pub dirs: policy::Dirs,
    pub backend: B,
    pub applied: Option<Arc<Applied>>,
    pub pending: Option<Pending>,
    /// The policy the last rollback removed.
    rolled_back: Option<Arc<Policy>>,
    /// The current values of the address keywords.
    pub dynamic: DynState,
    /// The group members among the peers whose SAs this host started.
    pub peers: GroupPeers,
    /// The cgroup2 hierarchy, or why there is none to match units in.
    pub hierarchy: Result<Hierarchy, String>,
    /// The running units, as last read.
    pub units: Units,
    /// Location detection's judgements of the interfaces.
    pub location: Judgements,
    /// The clear connections counted by the tables replaced so far.
    readiness: Arc<Readiness>,
    /// How many times a ruleset was applied.
    pub generation: u64,
    pub last_apply: Duration,
    /// The last failed reload, cleared by the next success.
    pub last_error: Option<String>,
}

impl<B: Backend> Engine<B> {
    pub fn new(dirs: policy::Dirs, backend: B) -> Self {
        Engine {
            dirs,
            backend,
            applied: None,
            pending: None,
            rolled_back: None,
            dynamic: DynState::default(),
            peers: GroupPeers::default(),
            hierarchy: Err("the cgroup2 hierarchy was not looked for".into()),
            units: Units::default(),
            location: Judgements::default(),
            readiness: Arc::default(),
            generation: 0,
            last_apply: Duration::ZERO,
            last_error: None,
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            applied: self.applied.clone(),
            dynamic: self.dynamic.clone(),
            generation: self.generation,
            last_apply: self.last_apply,
            last_error: self.last_error.clone(),
            confirm_deadline: self.pending.as_ref().map(|p| p.deadline),
            dirs: self.dirs.clone(),
            peers: self.peers.clone(),
            location: self.location.clone(),
            readiness: Arc::clone(&self.readiness),
        }
    }

    /// Reads the policy files and applies them.
    pub fn reload(&mut self, trigger: Trigger) -> Result<Outcome, EngineError> {
        let result = self.reload_inner(trigger);
        match &result {
            Ok(_) => self.last_error = None,
            Err(e) => self.last_error = Some(format!("{e:#}")),
        }
        result
    }

    fn reload_inner(&mut self, trigger: Trigger) -> Result<Outcome, EngineError> {
        let policy = Arc::new(policy::load(&self.dirs).map_err(EngineError::Policy)?);
        let confirm = match trigger {
            Trigger::Files if self.rolled_back.as_ref() == Some(&policy) => return Err(EngineError::RolledBack),
            Trigger::Files => return self.apply_policy(policy, false),
            Trigger::Request { confirm } => confirm,
        };
        // An explicit request is the administrator's word: it lifts the rollback
        // guard, and it applies even a policy that compiles to the same table.
        self.rolled_back = None;
        let Some(wait) = confirm else { return self.apply_policy(policy, true) };
        let baseline = match self.pending.take() {
            Some(open) => open.baseline,
            None => Arc::clone(self.applied.as_ref().map_or(&policy, |a| &a.policy)),
        };
        let outcome = self.apply_policy(policy, true);
        // Even if this apply failed, earlier changes in the window still wait
        // for confirmation.
        if outcome.is_ok() || self.applied.as_ref().is_some_and(|a| a.policy != baseline) {
            self.pending = Some(Pending { baseline, deadline: Instant::now() + wait });
        }
        outcome
    }

    /// Takes new values of the address keywords: only the elements of the sets
    /// that changed are replaced, in one transaction; rules are not touched.
    /// Returns how many sets changed.
    pub fn update_dynamic(&mut self, state: DynState) -> Result<usize, EngineError> {
        self.dynamic = state;
        let Some(applied) = &self.applied else { return Ok(0) };
        self.write_sets(applied.compiled.dynamic_updates(&self.dynamic))
    }

    /// Takes the peers of each group whose SAs this host started, as
    /// `update_dynamic` takes the keywords' values.
    pub fn update_peers(&mut self, peers: GroupPeers) -> Result<usize, EngineError> {
        self.peers = peers;
        let Some(applied) = &self.applied else { return Ok(0) };
        self.write_sets(applied.compiled.peer_updates(&self.peers))
    }

    /// Takes the running units: only the elements of the unit rules' sets
    /// change, as `update_dynamic`.
    pub fn update_units(&mut self, units: Units) -> Result<usize, EngineError> {
        self.units = units;
        let Some(applied) = &self.applied else { return Ok(0) };
        self.write_sets(applied.compiled.unit_updates(&applied.policy, &self.units))
    }

    /// Takes location detection's judgements, as `update_dynamic` takes the
    /// keywords' values.
    pub fn update_location(&mut self, judged: Judgements) -> Result<usize, EngineError> {
        self.location = judged;
        let Some(applied) = &self.applied else { return Ok(0) };
        self.write_sets(applied.compiled.location_updates(&self.location))
    }

    /// Replaces the elements of the applied table's sets named as `updates`
    /// with theirs, in one transaction.
    fn write_sets(&mut self, updates: Vec<Set>) -> Result<usize, EngineError> {
        let Some(applied) = &self.applied else { return Ok(0) };
        if updates.is_empty() {
            return Ok(0);
        }
        let compiled = &applied.compiled;
        let diffs: Vec<SetDiff> = updates.iter().map(|new| SetDiff::between(compiled.set(&new.name), new)).collect();
        self.backend.update_sets(&compiled.table.name, &diffs).map_err(EngineError::Apply)?;
        let changed = updates.len();
        // Snapshots may still hold the old sets: the new state is a copy
        // (which shares the elements of the sets that did not change).
        let mut next = Applied::clone(applied);
        next.compiled.replace_sets(updates);
        self.applied = Some(Arc::new(next));
        Ok(changed)
    }

    /// The readiness counts of the table in force, which its replacement
    /// starts anew.
    fn keep_readiness(&mut self) {
        let Some(applied) = &self.applied else { return };
        let listed = readiness::list(&applied.compiled.table, |t, s| self.backend.read_set(t, s));
        Arc::make_mut(&mut self.readiness).keep(&listed);
    }

    pub fn confirm(&mut self) -> Result<(), EngineError> {
        self.pending.take().map(|_| ()).ok_or(EngineError::NothingToConfirm)
    }

    /// Re-applies the baseline of the open window. If that fails, the window
    /// stays open and the rollback is tried again `ROLLBACK_RETRY` later.
    pub fn rollback(&mut self) -> Result<Outcome, EngineError> {
        let pending = self.pending.take().ok_or(EngineError::NothingToConfirm)?;
        let removed = self.applied.as_ref().map(|a| a.policy.clone());
        match self.apply_policy(Arc::clone(&pending.baseline), true) {
            Ok(outcome) => {
                self.rolled_back = removed;
                Ok(outcome)
            }
            Err(e) => {
                self.pending = Some(Pending { baseline: pending.baseline, deadline: Instant::now() + ROLLBACK_RETRY });
                Err(e)
            }
        }
    }

    /// Compiles and applies `policy`. Unless `force`, a policy that compiles to
    /// the table in force is not sent again, so its counters keep counting; the
    /// kernel is still asked, since someone may have flushed the ruleset.
    fn apply_policy(&mut self, policy: Arc<Policy>, force: bool) -> Result<Outcome, EngineError> {
        if let (Err(why), Some(_)) = (&self.hierarchy, policy.unit_rule()) {
            return Err(EngineError::Units(why.clone()));
        }
        let mut compiled = self.compile(&policy)?;
        if let Some(current) = &self.applied {
            if !force && current.compiled.table == compiled.table && self.backend.verify(&compiled.table).is_ok() {
                // The policy's places may still have moved.
                self.applied = Some(Arc::new(Applied { policy, compiled, at: current.at }));
                return Ok(Outcome::Unchanged);
            }
        }
        self.keep_readiness();
        let start = Instant::now();
        let mut replaced = self.backend.replace(&compiled.table);
        // nft reads a cgroup by its path: a unit that stopped since the units
        // were read fails the batch. Read them again, and try once more.
        if replaced.is_err() && compiled.table.needs_text() && self.read_units() {
            compiled = self.compile(&policy)?;
            replaced = self.backend.replace(&compiled.table);
        }
        replaced.map_err(EngineError::Apply)?;
        self.last_apply = start.elapsed();
        self.generation += 1;
        // From here the kernel has the new table, whatever the read-back says.
        let applied = self.applied.insert(Arc::new(Applied { policy, compiled, at: SystemTime::now() }));
        self.backend.verify(&applied.compiled.table).map_err(EngineError::Verify)?;
        Ok(Outcome::Applied)
    }

    fn compile(&self, policy: &Policy) -> Result<Compiled, EngineError> {
        let mut compiled =
            compile::compile_with_units(policy, &self.dynamic, &self.units).map_err(EngineError::Policy)?;
        compiled.replace_sets(compiled.peer_updates(&self.peers));
        compiled.replace_sets(compiled.location_updates(&self.location));
        Ok(compiled)
    }

    /// Reads the running units; whether they changed.
    fn read_units(&mut self) -> bool {
        match self.hierarchy.as_ref().map(Hierarchy::read) {
            Ok(Ok((units, _))) if units != self.units => {
                self.units = units;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
