//! Finding and reading policy files: drop-in directories, file safety checks,
//! YAML parsing. A file that is unsafe to trust (world-writable, a symlink out of
//! its directory, too large, not UTF-8) is an error, never silently skipped.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{embedded_path, Diagnostic, Diagnostics, Place};
use super::raw::RawFile;
use super::{validate, Policy};

/// Read in this order; a file in a later directory replaces the file of the same
/// name in an earlier one (systemd drop-in style).
pub const DEFAULT_DIRS: [&str; 3] =
    ["/usr/lib/ringfence/policy.d", "/etc/ringfence/policy.d", "/run/ringfence/policy.d"];

/// The policy that applies when no policy file exists at all.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.yaml");

/// Policy files are small; anything larger is a mistake or an attack on the parser.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Loads, validates and merges every policy file of `dirs`.
/// `dirs_required` makes a missing directory an error (directories named on the
/// command line), instead of an empty one (the default search path).
pub fn load(dirs: &[PathBuf], dirs_required: bool) -> Result<Policy, Diagnostics> {
    let mut diags = Vec::new();
    let files = discover(dirs, dirs_required, &mut diags);
    let mut sources = Vec::new();
    for path in files {
        match read(&path) {
            Ok(text) => sources.push((path, text)),
            Err(d) => diags.push(d),
        }
    }
    if !diags.is_empty() {
        return Err(Diagnostics(diags));
    }
    if sources.is_empty() {
        sources.push((embedded_path(), EMBEDDED_DEFAULT.to_string()));
    }
    load_text(&sources)
}

/// Parses, validates and merges policy texts, in order. Pure: no file access.
pub fn load_text(sources: &[(PathBuf, String)]) -> Result<Policy, Diagnostics> {
    let mut diags = Vec::new();
    let mut parsed = Vec::new();
    for (path, text) in sources {
        let file: Arc<Path> = Arc::from(path.as_path());
        match parse(&file, text) {
            Ok(raw) => parsed.push((file, raw)),
            Err(d) => diags.push(d),
        }
    }
    let policy = validate::merge(&parsed, &mut diags);
    if diags.is_empty() {
        Ok(policy)
    } else {
        Err(Diagnostics(diags))
    }
}

/// The policy files of `dirs`, sorted by file name, later directories winning.
fn discover(dirs: &[PathBuf], dirs_required: bool, diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<std::ffi::OsString, Option<PathBuf>> = BTreeMap::new();
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dirs_required => continue,
            Err(e) => {
                diags.push(whole_file(dir, format!("cannot read policy directory: {e}")));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                // A symlink to /dev/null masks the file of that name, as in systemd.
                let masked = fs::read_link(&path).is_ok_and(|t| t == Path::new("/dev/null"));
                by_name.insert(entry.file_name(), (!masked).then_some(path));
            }
        }
    }
    by_name.into_values().flatten().collect()
}

fn whole_file(path: &Path, message: String) -> Diagnostic {
    Diagnostic::new(Place::file_start(&Arc::from(path)), message)
}

/// Reads one policy file after checking that it is safe to trust.
fn read(path: &Path) -> Result<String, Diagnostic> {
    let err = |m: String| whole_file(path, m);
    let link = fs::symlink_metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if link.file_type().is_symlink() {
        let target = fs::canonicalize(path).map_err(|e| err(format!("is a dangling symlink: {e}")))?;
        let dir = path.parent().and_then(|d| fs::canonicalize(d).ok());
        if dir.as_deref() != target.parent() {
            return Err(err(format!(
                "is a symlink to {}, outside its policy directory; copy the file instead",
                target.display()
            )));
        }
    }
    let file = File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let meta = file.metadata().map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(err(format!(
            "is world-writable (mode {mode:04o}); any user could change the firewall: chmod o-w it"
        )));
    }
    if meta.size() > MAX_FILE_BYTES {
        return Err(err(format!("is {} bytes; policy files are limited to {MAX_FILE_BYTES} bytes", meta.size())));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() as u32 + 1;
        Diagnostic::new(Place::new(&Arc::from(path), line, column), "is not UTF-8 text (invalid byte here)")
    })
}

fn parse(file: &Arc<Path>, text: &str) -> Result<RawFile, Diagnostic> {
    use serde_saphyr::MessageFormatter;
    match serde_saphyr::from_str::<Option<RawFile>>(text) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => {
            let e = e.without_snippet();
            let (line, column) = e.location().map_or((1, 1), |l| (l.line().max(1) as u32, l.column().max(1) as u32));
            let message = serde_saphyr::DefaultMessageFormatter.format_message(e);
            Err(Diagnostic::new(Place::new(file, line, column), message.into_owned()))
        }
    }
}
