//! Finding and reading policy files: drop-in directories, file safety checks,
//! YAML parsing. A file that is unsafe to trust (world-writable, a symlink out of
//! its directory, too large, not UTF-8) is an error, never silently skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{embedded_path, Diagnostic, Diagnostics, Place};
use super::raw::RawFile;
use super::text::clip_quoted;
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
    for path in &files {
        match read(path) {
            Ok(text) => sources.push((path.clone(), text)),
            Err(d) => diags.push(d),
        }
    }
    if files.is_empty() {
        sources.push((embedded_path(), EMBEDDED_DEFAULT.to_string()));
    }
    // Report the readable files' problems too, so that one run shows them all.
    match load_text(&sources) {
        Ok(policy) => {
            super::isolation::check_identity(&policy.isolation, &mut diags);
            if diags.is_empty() {
                Ok(policy)
            } else {
                Err(Diagnostics(diags))
            }
        }
        Err(more) => {
            diags.extend(more.0);
            Err(Diagnostics(diags))
        }
    }
}

/// Parses, validates and merges policy texts, in order. Pure: no file access.
pub fn load_text(sources: &[(PathBuf, String)]) -> Result<Policy, Diagnostics> {
    let mut diags = Vec::new();
    let mut merger = validate::Merger::new();
    for (path, text) in sources {
        let file: Arc<Path> = Arc::from(path.as_path());
        match parse(&file, text) {
            Ok(raw) => merger.add(&file, &raw, &mut diags),
            Err(d) => diags.push(d),
        }
    }
    let policy = merger.finish(sources.iter().map(|(p, _)| p.clone()).collect(), &mut diags);
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
        if let Ok(meta) = fs::metadata(dir) {
            if meta.permissions().mode() & 0o002 != 0 {
                diags.push(whole_file(
                    dir,
                    "policy directory is world-writable: any user could add a policy; chmod o-w it".into(),
                ));
            }
        }
        for entry in entries.flatten() {
            let path = entry.path();
            // Hidden files are editors' locks and backups (Emacs `.#x.yaml`), not policy.
            let hidden = entry.file_name().as_encoded_bytes().first() == Some(&b'.');
            if !hidden && path.extension().is_some_and(|e| e == "yaml") {
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
        let target = fs::canonicalize(path).map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::ELOOP as i32 => err("is a symlink loop".into()),
            _ => err(format!("is a dangling symlink: {e}")),
        })?;
        let dir = path.parent().and_then(|d| fs::canonicalize(d).ok());
        if dir.as_deref() != target.parent() {
            return Err(err(format!(
                "is a symlink to {}, which is not in the same policy directory; copy the file instead",
                target.display()
            )));
        }
    }
    // Check the type before opening: opening a FIFO would block until a writer came.
    let meta = fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let meta = file.metadata().map_err(|e| err(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".into()));
    }
    check_ownership(&meta).map_err(err)?;
    if meta.size() > MAX_FILE_BYTES {
        return Err(err(format!("is {} bytes; policy files are limited to {MAX_FILE_BYTES} bytes", meta.size())));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| err(format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() as u32 + 1;
        Diagnostic::new(Place::new(&Arc::from(path), line, column), "is not UTF-8 text (invalid byte here)")
    })
}

/// Only root (or whoever runs this, for `check` on one's own files) may be able
/// to change what the firewall does.
fn check_ownership(meta: &fs::Metadata) -> Result<(), String> {
    let mode = meta.permissions().mode() & 0o7777;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "is owned by uid {}, not root; only root may change the firewall: chown root it",
            meta.uid()
        ));
    }
    if mode & 0o002 != 0 {
        return Err(format!("is world-writable (mode {mode:04o}); any user could change the firewall: chmod o-w it"));
    }
    if mode & 0o020 != 0 && meta.gid() != 0 {
        return Err(format!("is writable by group {} (mode {mode:04o}); chmod g-w it", meta.gid()));
    }
    Ok(())
}

fn parse(file: &Arc<Path>, text: &str) -> Result<RawFile, Diagnostic> {
    use serde_saphyr::MessageFormatter;
    // YAML 1.2 booleans only: `no` is a string here, never `false`. Merge keys
    // (`<<: *defaults`) and tags other than YAML's own (`!!python/object`,
    // `!secret`) are refused where they are written: a policy means what it
    // says, with no YAML 1.1 inheritance for a reviewer to expand in their head.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        merge_keys: serde_saphyr::MergeKeyPolicy::Error,
        reject_unsupported_tags: true,
    };
    match serde_saphyr::from_str_with_options::<Option<RawFile>>(text, options) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => {
            let e = e.without_snippet();
            let (line, column) = e.location().map_or((1, 1), |l| (l.line().max(1) as u32, l.column().max(1) as u32));
            let message = serde_saphyr::DefaultMessageFormatter.format_message(e);
            Err(Diagnostic::new(Place::new(file, line, column), clip_quoted(&humanize(&message))))
        }
    }
}

/// The YAML library's wording, rephrased where it speaks to programmers rather
/// than to the administrator who wrote the file.
fn humanize(m: &str) -> String {
    if let Some(key) = m.strip_prefix("duplicate mapping key: ").and_then(|rest| rest.split(',').next()) {
        return format!("the key `{key}` is given twice in this mapping");
    }
    if m.starts_with("multiple YAML documents detected") {
        return "a policy file holds one YAML document; remove the second `---` or split the file".into();
    }
    if let Some(tag) = m.strip_prefix("unsupported tag ") {
        return format!("the tag {tag} is not allowed in a policy file (YAML tags are refused)");
    }
    if m.starts_with("YAML merge keys are not allowed") {
        return "a YAML merge key (`<<`) is not allowed in a policy file: write the keys out".into();
    }
    if m.starts_with("cannot deserialize null into") {
        return "has no value".into();
    }
    let rephrased = match m {
        "expected sequence start" => "expected a list (`[a, b]` or `- a` lines)",
        "expected mapping start" => "expected a mapping (`key: value` lines)",
        "expected string scalar" => "expected a single value, found a list or a mapping",
        "externally tagged enum expected scalar or mapping" => "expected a single word, found a list or a mapping",
        "recursion limit exceeded" => "nested too deeply for a policy file",
        "invalid u32" => "expected a whole number",
        other => other,
    };
    rephrased.to_string()
}
