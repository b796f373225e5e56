//! Stopping: every step is tried whatever failed before it, and every failure
//! is reported, each with its cause (as netavark's `NetavarkErrorList`): a
//! table left behind because the xfrm policies could not be removed, or the
//! reverse, must not be the surprise of the next start.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;

use super::engine::EngineError;
use crate::backend::BackendError;
use crate::xfrm;

/// One step of stopping that failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot remove the control socket {}", .path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot roll back the unconfirmed change")]
    Rollback(#[source] EngineError),
    #[error("cannot remove the xfrm policies (--flush-on-exit)")]
    Xfrm(#[source] xfrm::Error),
    #[error("cannot delete the table {table} (--flush-on-exit)")]
    Table {
        table: &'static str,
        #[source]
        source: BackendError,
    },
}

/// The failures of one teardown, in the order of the steps.
#[derive(Debug, Default)]
pub struct Teardown {
    failed: Vec<StepError>,
}

impl Teardown {
    /// Records how a step went; the next step runs either way.
    pub fn step<T>(&mut self, result: Result<T, StepError>) -> Option<T> {
        result.map_err(|e| self.failed.push(e)).ok()
    }

    pub fn finish(self) -> Result<(), Self> {
        if self.failed.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// `N steps of stopping failed:`, then each failure and its causes on a line.
impl fmt::Display for Teardown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.failed.len();
        write!(f, "{n} step{} of stopping failed:", if n == 1 { "" } else { "s" })?;
        for e in &self.failed {
            write!(f, "\n- {e}")?;
            let mut cause = e.source();
            while let Some(c) = cause {
                write!(f, ": {c}")?;
                cause = c.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Teardown {}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone(what: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, what.to_string())
    }

    #[test]
    fn every_step_runs_and_every_failure_is_reported() {
        let mut t = Teardown::default();
        let mut ran = Vec::new();
        for (i, ok) in [false, true, false].into_iter().enumerate() {
            ran.push(i);
            let result = if ok {
                Ok(i)
            } else {
                Err(StepError::Socket { path: PathBuf::from(format!("/run/{i}.sock")), source: gone("no such file") })
            };
            assert_eq!(t.step(result), ok.then_some(i));
        }
        assert_eq!(ran, [0, 1, 2]);
        let e = t.finish().unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 steps of stopping failed:\n\
             - cannot remove the control socket /run/0.sock: no such file\n\
             - cannot remove the control socket /run/2.sock: no such file"
        );
    }

    #[test]
    fn a_clean_stop_is_ok() {
        let mut t = Teardown::default();
        assert_eq!(t.step(Ok::<_, StepError>(())), Some(()));
        assert!(t.finish().is_ok());
    }
}
