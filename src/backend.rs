//! Where a compiled table goes: the kernel through `nft`, or nowhere (tests of
//! the daemon's logic without root).

use serde_json::Value;

use crate::nft::{self, NftError, SetDiff, Table};

pub trait Backend {
    /// Replaces the owned table in one transaction: all of it or nothing.
    fn replace(&mut self, table: &Table) -> Result<(), BackendError>;
    /// Reads the table back and checks it has the shape that was sent.
    fn verify(&self, table: &Table) -> Result<(), BackendError>;
    /// Changes the elements of some sets of the table, in one transaction.
    fn update_sets(&mut self, table: &str, diffs: &[SetDiff]) -> Result<(), BackendError>;
    /// One set of the owned table, with its elements and their counters;
    /// `None` if absent.
    fn read_set(&self, table: &str, set: &str) -> Result<Option<Value>, BackendError>;
    /// Deletes the owned table if present.
    fn delete(&mut self, table: &str) -> Result<(), BackendError>;
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("the table read back after applying does not match: {0}")]
    Verify(String),
}

pub struct NftBackend;

impl Backend for NftBackend {
    fn replace(&mut self, table: &Table) -> Result<(), BackendError> {
        if table.needs_text() {
            return Ok(nft::apply_text(&nft::replace_text(table))?);
        }
        Ok(nft::apply(&table.replace())?)
    }

    fn verify(&self, table: &Table) -> Result<(), BackendError> {
        verify(table, nft::list_table(&table.name, true)?)
    }

    fn update_sets(&mut self, table: &str, diffs: &[SetDiff]) -> Result<(), BackendError> {
        Ok(nft::apply(&nft::UpdateSets { table, diffs })?)
    }

    fn read_set(&self, table: &str, set: &str) -> Result<Option<Value>, BackendError> {
        Ok(nft::list_set(table, set)?)
    }

    fn delete(&mut self, table: &str) -> Result<(), BackendError> {
        Ok(nft::apply(&nft::delete_batch(table))?)
    }
}

/// Reads the table's shape back (without elements) and compares the number of
/// sets, chains and rules with what was sent.
fn verify(table: &Table, listed: Option<Value>) -> Result<(), BackendError> {
    let listed = listed.ok_or_else(|| BackendError::Verify("the table is missing".into()))?;
    let objects = listed["nftables"].as_array().cloned().unwrap_or_default();
    let count = |kind: &str| objects.iter().filter(|o| o.get(kind).is_some()).count();
    let want = (table.sets.len(), table.chains.len(), table.rule_count());
    let got = (count("set"), count("chain"), count("rule"));
    if want == got {
        Ok(())
    } else {
        Err(BackendError::Verify(format!("sent (sets, chains, rules) {want:?}, the kernel has {got:?}")))
    }
}

/// Keeps the tables it was given in memory; for tests.
#[cfg(test)]
#[derive(Default)]
pub struct NoopBackend {
    pub applied: Vec<Table>,
    pub fail_next: bool,
    pub fail_verify: bool,
    /// As if someone had run `nft flush ruleset`.
    pub flushed: bool,
    /// The changes of every `update_sets`.
    pub set_updates: Vec<Vec<SetDiff>>,
}

#[cfg(test)]
impl Backend for NoopBackend {
    fn replace(&mut self, table: &Table) -> Result<(), BackendError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(BackendError::Verify("injected failure".into()));
        }
        self.applied.push(table.clone());
        self.flushed = false;
        Ok(())
    }

    fn verify(&self, _table: &Table) -> Result<(), BackendError> {
        if self.flushed {
            return Err(BackendError::Verify("the table is missing".into()));
        }
        if self.fail_verify {
            return Err(BackendError::Verify("injected failure".into()));
        }
        Ok(())
    }

    fn read_set(&self, _table: &str, _set: &str) -> Result<Option<Value>, BackendError> {
        Ok(None)
    }

    fn delete(&mut self, _table: &str) -> Result<(), BackendError> {
        self.applied.clear();
        Ok(())
    }

    fn update_sets(&mut self, _table: &str, diffs: &[SetDiff]) -> Result<(), BackendError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(BackendError::Verify("injected failure".into()));
        }
        self.set_updates.push(diffs.to_vec());
        Ok(())
    }
}
