//! Finding and reading policy files: drop-in directories, file safety checks,
//! YAML parsing. A file that is unsafe to trust (world-writable, a symlink out of
//! its directory, too large, not UTF-8) is an error, never silently skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::diag::{embedded_path, Diagnostic, Diagnostics, Place};
use super::raw::{LocalPolicy, RawFile};
use super::text::clip_quoted;
use super::{validate, Policy};

/// Read in this order; a file in a later directory replaces the file of the same
/// name in an earlier one (systemd drop-in style). The fleet layer, written by
/// `ringfence fleet agent` (docs/fleet.md), comes after the package's files and
/// before the administrator's: local /etc and /run files still override it.
pub const DEFAULT_DIRS: [&str; 4] = [
    "/usr/lib/ringfence/policy.d",
    "/var/lib/ringfence/fleet/policy.d",
    "/etc/ringfence/policy.d",
    "/run/ringfence/policy.d",
];

/// The default policy, the bottom layer of every policy: it stands for the
/// packaged `/usr/lib/ringfence/policy.d/00-default.yaml` (the same file), so
/// it is in force even where the package's copy is missing.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.yaml");

/// The file name of the default layer: a file of this name in a policy
/// directory replaces the default, a mask of it removes it.
pub const DEFAULT_FILE: &str = "00-default.yaml";

/// Where the default layer came from, for `show policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "path", rename_all = "kebab-case")]
pub enum DefaultLayer {
    /// The copy built into the binary (no file of its name exists).
    Embedded,
    /// A file of its name: the package's copy or an administrator's override.
    File(PathBuf),
    /// Masked (a symlink to /dev/null): the policy has no default layer.
    Masked(PathBuf),
    /// Texts given without one ([`load_text`] in tests and tools).
    Absent,
}

impl DefaultLayer {
    /// The default layer among texts given in merge order.
    fn of(sources: &[(PathBuf, String)]) -> DefaultLayer {
        match sources.iter().rev().find(|(p, _)| p.file_name().is_some_and(|n| n == DEFAULT_FILE)) {
            None => DefaultLayer::Absent,
            Some((p, _)) if *p == embedded_path() => DefaultLayer::Embedded,
            Some((p, _)) => DefaultLayer::File(p.clone()),
        }
    }
}

/// The core networking group: rules that keep IPv4 and IPv6 working whatever
/// the policy says, unless `settings.core-networking: false`. Not a layer: no
/// file replaces it.
pub const CORE_NETWORKING: &str = include_str!("../../policies/core-networking.yaml");

/// Where messages place the core networking rules.
fn core_path() -> PathBuf {
    PathBuf::from("<embedded>/core-networking.yaml")
}

/// Where the policy and the services catalogue are read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dirs {
    pub policy: Vec<PathBuf>,
    pub services: Vec<PathBuf>,
    /// Directories named on the command line must exist; the default ones may not.
    pub policy_required: bool,
    pub services_required: bool,
}

impl Dirs {
    /// The given directories, or the default ones where none are given.
    pub fn new(policy: Vec<PathBuf>, services: Vec<PathBuf>) -> Dirs {
        let or_default = |given: Vec<PathBuf>, default: &[&str]| {
            if given.is_empty() {
                (default.iter().map(PathBuf::from).collect(), false)
            } else {
                (given, true)
            }
        };
        let (policy, policy_required) = or_default(policy, &DEFAULT_DIRS);
        let (services, services_required) = or_default(services, &super::services::DEFAULT_DIRS);
        Dirs { policy, services, policy_required, services_required }
    }
}

/// Policy files are small; anything larger is a mistake or an attack on the parser.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Loads, validates and merges every policy file of `dirs`, with the services
/// catalogue of its services directories. A required directory that is
/// missing is an error; a default one is taken as empty.
pub fn load(dirs: &Dirs) -> Result<Policy, Diagnostics> {
    load_layers(dirs, None)
}

/// As [`load`], with `text` standing for the file `path` of one of the policy
/// directories, whether it exists or not: a change checked before it is written.
pub fn load_replacing(dirs: &Dirs, path: &Path, text: &str) -> Result<Policy, Diagnostics> {
    load_layers(dirs, Some((path, text)))
}

fn load_layers(dirs: &Dirs, replacing: Option<(&Path, &str)>) -> Result<Policy, Diagnostics> {
    let catalogue = super::services::load(&dirs.services, dirs.services_required)?;
    let mut diags = Vec::new();
    let (read_dirs, ignored_dirs) = local_policy_cut(&dirs.policy, replacing);
    // A change in a directory that is not read changes nothing.
    let replacing = replacing.filter(|(path, _)| path.parent().is_some_and(|d| read_dirs.iter().any(|r| r == d)));
    let (layers, default) = discover(read_dirs, dirs.policy_required, replacing.map(|r| r.0), &mut diags);
    let mut sources = Vec::new();
    for layer in layers {
        match layer {
            Entry::Embedded => sources.push((embedded_path(), EMBEDDED_DEFAULT.to_string())),
            Entry::File(path) => match replacing {
                Some((replaced, text)) if replaced == path => sources.push((path, text.to_string())),
                _ => match read(&path) {
                    Ok(text) => sources.push((path, text)),
                    Err(d) => diags.push(d),
                },
            },
            Entry::Masked(_) => {}
        }
    }
    // Report the readable files' problems too, so that one run shows them all.
    match load_text_with(&sources, &catalogue) {
        Ok(mut policy) => {
            if let DefaultLayer::Masked(_) = default {
                policy.default = default;
            }
            policy.settings.ignored_dirs = ignored_dirs.to_vec();
            policy.fleet = fleet_origins(read_dirs, &policy.files);
            super::isolation::check_identity(&policy.isolation, &mut diags);
            super::location::check_ca(&policy.profile(super::ProfileKind::Domain).detect, &mut diags);
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

/// The name of the manifest the fleet agent writes into its layer with the
/// files: for each file, the scope and revision of the bundle it came from.
/// Hidden, so never read as policy.
pub const FLEET_MANIFEST: &str = ".fleet.json";

/// The files of `files` that a manifest of their directory names, with their
/// origin. The manifest is written with the files and swapped in with them,
/// so it names exactly the layer's files; one that cannot be read only leaves
/// them without an origin.
fn fleet_origins(dirs: &[PathBuf], files: &[PathBuf]) -> BTreeMap<PathBuf, super::FleetOrigin> {
    let mut origins = BTreeMap::new();
    for dir in dirs {
        // Read as a policy file is (size, owner, no FIFO), though only shown.
        let Ok(text) = read(&dir.join(FLEET_MANIFEST)) else { continue };
        let Ok(manifest) = serde_json::from_str::<BTreeMap<String, super::FleetOrigin>>(&text) else { continue };
        for (name, origin) in manifest {
            let path = dir.join(name);
            if files.contains(&path) {
                origins.insert(path, origin);
            }
        }
    }
    origins
}

/// Parses, validates and merges policy texts, in order, with the shipped
/// services catalogue. Pure: no file access.
#[cfg(test)]
pub fn load_text(sources: &[(PathBuf, String)]) -> Result<Policy, Diagnostics> {
    load_text_with(sources, &super::services::Catalogue::embedded())
}

/// Parses, validates and merges policy texts, in order, with the services of
/// `catalogue`. Pure: no file access.
fn load_text_with(
    sources: &[(PathBuf, String)],
    catalogue: &super::services::Catalogue,
) -> Result<Policy, Diagnostics> {
    let mut diags = Vec::new();
    let mut merger = validate::Merger::new(catalogue);
    for (path, text) in sources {
        let file: Arc<Path> = Arc::from(path.as_path());
        match parse::<RawFile>(&file, text) {
            Ok(raw) => merger.add(&file, &raw, &mut diags),
            Err(d) => diags.push(d),
        }
    }
    if merger.core_networking() {
        let file: Arc<Path> = Arc::from(core_path().as_path());
        match parse::<RawFile>(&file, CORE_NETWORKING) {
            Ok(raw) => merger.add_core(&file, &raw, &mut diags),
            Err(d) => diags.push(d),
        }
    }
    let mut policy = merger.finish(sources.iter().map(|(p, _)| p.clone()).collect(), &mut diags);
    policy.default = DefaultLayer::of(sources);
    if diags.is_empty() {
        Ok(policy)
    } else {
        Err(Diagnostics(diags))
    }
}

/// The directories to read, and those not read: the ones after the first
/// directory with a file that says `settings.local-policy: ignore` (with
/// `replacing`'s text standing for its file). Only files that name the
/// setting are parsed here, so a policy is parsed once; a file that cannot be
/// read or parsed does not cut (its error comes from the load, if it is read).
fn local_policy_cut<'a>(dirs: &'a [PathBuf], replacing: Option<(&Path, &str)>) -> (&'a [PathBuf], &'a [PathBuf]) {
    let ignores = |path: &Path| {
        let text = match replacing {
            Some((replaced, text)) if replaced == path => text.to_string(),
            _ => match read(path) {
                Ok(text) => text,
                Err(_) => return false,
            },
        };
        text.contains("local-policy")
            && parse::<RawFile>(&Arc::from(path), &text).is_ok_and(|raw| {
                raw.settings.and_then(|s| s.local_policy).is_some_and(|l| l.value == LocalPolicy::Ignore)
            })
    };
    let cut = dirs.iter().position(|dir| {
        let listed = fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path());
        let replaced = replacing.map(|(p, _)| p.to_path_buf()).filter(|p| p.parent() == Some(dir.as_path()));
        let mut paths = listed.chain(replaced);
        paths.any(|p| {
            let name = p.file_name().map_or(&[][..], |n| n.as_encoded_bytes());
            name.first() != Some(&b'.') && name.ends_with(b".yaml") && ignores(&p)
        })
    });
    dirs.split_at(cut.map_or(dirs.len(), |i| i + 1))
}

/// The layers of `dirs` in merge order (masks included, to be skipped), with
/// the embedded default as `00-default.yaml` where no file of that name is,
/// and where the default layer came from. `extra` is a file to take as present
/// (it wins over its name in earlier
/// directories; the caller knows that no later directory has its name).
fn discover(
    dirs: &[PathBuf],
    dirs_required: bool,
    extra: Option<&Path>,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Entry>, DefaultLayer) {
    let mut by_name = discover_files(dirs, dirs_required, "policy", DEFAULT_FILE, diags);
    if let Some((path, name)) = extra.and_then(|p| Some((p, p.file_name()?))) {
        by_name.insert(name.to_owned(), Entry::File(path.to_path_buf()));
    }
    let default = match by_name.get(std::ffi::OsStr::new(DEFAULT_FILE)) {
        Some(Entry::File(path)) => DefaultLayer::File(path.clone()),
        Some(Entry::Masked(path)) => DefaultLayer::Masked(path.clone()),
        Some(Entry::Embedded) | None => DefaultLayer::Embedded,
    };
    (by_name.into_values().collect(), default)
}

/// A drop-in of some name: the file of the latest directory, its mask, or the
/// embedded copy that stands for a file of that name.
pub(super) enum Entry {
    File(PathBuf),
    Masked(PathBuf),
    Embedded,
}

/// The `.yaml` files of `dirs` by name, later directories winning (systemd
/// drop-in style), with the embedded copy as `embedded` where no file of that
/// name exists (so it sorts where the packaged file would); `what` names the
/// directories in messages.
pub(super) fn discover_files(
    dirs: &[PathBuf],
    dirs_required: bool,
    what: &str,
    embedded: &str,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<std::ffi::OsString, Entry> {
    let mut by_name = BTreeMap::new();
    by_name.insert(embedded.into(), Entry::Embedded);
    for dir in dirs {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dirs_required => continue,
            Err(e) => {
                diags.push(whole_file(dir, format!("cannot read {what} directory: {e}")));
                continue;
            }
        };
        if let Ok(meta) = fs::metadata(dir) {
            if meta.permissions().mode() & 0o002 != 0 {
                diags.push(whole_file(
                    dir,
                    format!("{what} directory is world-writable: any user could add a file to it; chmod o-w it"),
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
                by_name.insert(entry.file_name(), if masked { Entry::Masked(path) } else { Entry::File(path) });
            }
        }
    }
    by_name
}

fn whole_file(path: &Path, message: String) -> Diagnostic {
    Diagnostic::new(Place::file_start(&Arc::from(path)), message)
}

/// Reads one policy file after checking that it is safe to trust.
pub(super) fn read(path: &Path) -> Result<String, Diagnostic> {
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

pub(super) fn parse<T: serde::de::DeserializeOwned + Default>(file: &Arc<Path>, text: &str) -> Result<T, Diagnostic> {
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
    match serde_saphyr::from_str_with_options::<Option<T>>(text, options) {
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
