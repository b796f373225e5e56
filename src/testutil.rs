//! Helpers shared by unit tests.

pub mod fuzz;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ringfence-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// A subdirectory, created.
    pub fn sub(&self, name: &str) -> PathBuf {
        let d = self.0.join(name);
        fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes a policy file with the mode a policy file should have.
pub fn write(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
    fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
}

/// Compares `got` with the golden file at `path`, which `UPDATE_GOLDEN=1`
/// rewrites first; a mismatch fails with a unified diff of the two.
pub fn assert_golden(path: &Path, got: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(path, got).unwrap();
    }
    let want = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if got != want {
        let diff = similar::TextDiff::from_lines(&want, got);
        panic!(
            "{} differs from what the code gives now:\n{}run UPDATE_GOLDEN=1 cargo test and review the diff",
            path.display(),
            diff.unified_diff().context_radius(3).header("golden", "now")
        );
    }
}
