//! Places in policy files, and diagnostics that point at them.
//!
//! Every message a person reads about a policy names `FILE:LINE:COLUMN`, like rustc
//! or `nft -c`, so an editor can jump straight to the offending value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_saphyr::Spanned as S;

/// A position in a policy file (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: Arc<Path>,
    pub line: u32,
    pub column: u32,
}

impl Place {
    pub fn new(file: &Arc<Path>, line: u32, column: u32) -> Self {
        Place { file: Arc::clone(file), line, column }
    }

    /// A place for problems that concern a whole file (size, mode, encoding).
    pub fn file_start(file: &Arc<Path>) -> Self {
        Place::new(file, 1, 1)
    }
}

/// Serialized as `FILE:LINE:COLUMN`, as people and editors read it.
impl Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem found in the policy, for a person to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub place: Place,
    pub message: String,
}

impl Diagnostic {
    pub fn new(place: Place, message: impl Into<String>) -> Self {
        Diagnostic { place, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Where the diagnostics of one file go while it is read.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Arc<Path>,
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    pub(super) fn place<T>(&self, s: &S<T>) -> Place {
        Place::new(self.file, s.referenced.line() as u32, s.referenced.column() as u32)
    }

    pub(super) fn error<T>(&mut self, at: &S<T>, message: impl Into<String>) {
        let place = self.place(at);
        self.diags.push(Diagnostic::new(place, message));
    }

    /// Parses every item of a list, reporting each bad one, and drops duplicates.
    pub(super) fn list<T: PartialEq, U>(
        &mut self,
        key: &str,
        items: &[S<U>],
        parse: impl Fn(&U) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match parse(&item.value) {
                Ok(v) if !out.contains(&v) => out.push(v),
                Ok(_) => {}
                Err(m) => self.error(item, format!("{key}[{i}]: {m}")),
            }
        }
        out.shrink_to_fit();
        out
    }
}

/// Every diagnostic of a policy that failed to load; nothing of it may be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Where the shipped default policy "lives" when no file of its name exists.
pub fn embedded_path() -> PathBuf {
    PathBuf::from("<embedded>/00-default.yaml")
}
