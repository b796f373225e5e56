//! `ringfence rule add|delete|enable|disable|list`: one-line changes kept in
//! one managed drop-in, `90-local.yaml`, as `ufw allow` or `netsh advfirewall
//! firewall add rule` keep theirs.
//!
//! A change is read, made and checked under an exclusive lock (flock on a
//! hidden file beside the drop-in, which the loader ignores), so that two
//! commands at once both land. The whole resulting policy is loaded and
//! compiled with the new text standing for the file before anything is
//! written; the file is then replaced atomically (write a hidden temporary,
//! fsync, rename), and the daemon is asked to apply.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cli::{PolicyDirs, RuleAdd, RuleCommand, RuleEdit};
use crate::policy::{self, Diagnostics, Dirs, Policy};

/// The file the rule commands own.
pub const MANAGED_FILE: &str = "90-local.yaml";

/// The directory of the managed file when no --policy-dir is given.
const MANAGED_DIR: &str = "/etc/ringfence/policy.d";

/// How long to wait for another rule command to finish its change.
const LOCK_WAIT: Duration = Duration::from_secs(10);

const HEADER: &str = "# Managed by `ringfence rule` (add, delete, enable, disable): it rewrites this\n\
# file, without comments. Rules of your own belong in a file of their own.\n";

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{path}: {op}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: another `ringfence rule` has held the lock for {LOCK_WAIT:?}; try again")]
    Locked(String),
    #[error(
        "{path} is not a file `ringfence rule` wrote ({source}); fix it by hand or move its content to another file"
    )]
    NotManaged {
        path: String,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{0} is a symlink (a mask?); the managed drop-in must be a plain file")]
    Symlink(String),
    #[error("{shadow} overrides {managed} (a later directory wins): the change would have no effect")]
    Shadowed { shadow: String, managed: String },
    #[error("a rule named {name:?} is already defined at {place}")]
    Exists { name: String, place: String },
    #[error("rule {name:?} is defined at {place}, not in the managed {managed}: {}", elsewhere_hint(place))]
    Elsewhere { name: String, place: String, managed: String },
    #[error("no rule named {name:?} in {managed}")]
    Missing { name: String, managed: String },
    #[error("refused, nothing written: the policy would be invalid:\n{0}")]
    Invalid(Diagnostics),
    #[error("cannot render the managed drop-in")]
    Render(#[source] serde_saphyr::ser::Error),
}

/// What to do about a rule of another file: the embedded default has no file to edit.
fn elsewhere_hint(place: &str) -> &'static str {
    if place.starts_with("<embedded>/") {
        "it is the default layer's; override or mask 00-default.yaml (docs/policy.md)"
    } else {
        "edit that file"
    }
}

/// A value written as a number or as text (`443` or `"8000-8080"`, `tcp` or `6`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Word {
    Number(i64),
    Text(String),
}

impl Word {
    fn of(s: &str) -> Word {
        s.parse().map_or_else(|_| Word::Text(s.to_string()), Word::Number)
    }
}

/// The managed file: rules only, in the policy format.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Managed {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    rules: Vec<ManagedRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ManagedRule {
    name: String,
    direction: String,
    action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<Word>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    services: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    local_ports: Vec<Word>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remote_ports: Vec<Word>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remote_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    local_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    icmp_types: Vec<Word>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
}

impl ManagedRule {
    fn from_args(a: &RuleAdd) -> ManagedRule {
        let words = |l: &[String]| l.iter().map(|s| Word::of(s)).collect();
        ManagedRule {
            name: a.name.clone(),
            direction: a.direction.clone(),
            action: a.action.clone(),
            protocol: a.protocol.as_deref().map(Word::of),
            services: a.services.clone(),
            local_ports: words(&a.local_ports),
            remote_ports: words(&a.remote_ports),
            remote_addresses: a.remote_addresses.clone(),
            local_addresses: a.local_addresses.clone(),
            interfaces: a.interfaces.clone(),
            profiles: a.profiles.clone(),
            icmp_types: words(&a.icmp_types),
            log: a.log.then_some(true),
            enabled: a.disabled.then_some(false),
        }
    }
}

/// The directories of the policy a command changes, and its managed drop-in:
/// those given with --policy-dir (the drop-in in the last one), else those the
/// daemon reads (the drop-in in /etc/ringfence/policy.d if it reads that,
/// else in the last one), else the default ones.
fn target(socket: &Path, p: &PolicyDirs) -> (Dirs, PathBuf) {
    if !p.dirs.is_empty() || !p.services.service_dirs.is_empty() {
        return (p.resolve(), managed_path(&p.resolve()));
    }
    let daemon = crate::client::call(socket, &crate::protocol::Request::State).ok().and_then(|state| {
        let dirs = |key: &str| serde_json::from_value::<Vec<PathBuf>>(state[key].clone()).ok();
        Some(Dirs { policy: dirs("policy-dirs")?, services: dirs("services-dirs")?, ..p.resolve() })
    });
    let dirs = daemon.unwrap_or_else(|| p.resolve());
    let path = managed_path(&dirs);
    (dirs, path)
}

fn managed_path(dirs: &Dirs) -> PathBuf {
    let etc = Path::new(MANAGED_DIR);
    let dir = if dirs.policy.iter().any(|d| d == etc) { Some(etc) } else { dirs.policy.last().map(PathBuf::as_path) };
    dir.unwrap_or(etc).join(MANAGED_FILE)
}

pub fn run(socket: &Path, command: RuleCommand) -> anyhow::Result<ExitCode> {
    let (name, edit, change): (String, RuleEdit, Change) = match command {
        RuleCommand::List { names, json, policy } => return list(target(socket, &policy), names, json),
        RuleCommand::Add(a) => (a.name.clone(), a.edit.clone(), Change::Add(Box::new(ManagedRule::from_args(&a)))),
        RuleCommand::Delete { name, edit } => (name, edit, Change::Delete),
        RuleCommand::Enable { name, edit } => (name, edit, Change::Enable(true)),
        RuleCommand::Disable { name, edit } => (name, edit, Change::Enable(false)),
    };
    let (dirs, path) = target(socket, &edit.policy);
    let done = edit_managed(&dirs, &path, &name, change)?;
    println!("{done} rule {name:?} in {}", path.display());
    if edit.no_apply {
        return Ok(ExitCode::SUCCESS);
    }
    match crate::apply(socket, edit.confirm) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("ringfence: written but not applied: {e:#}");
            Ok(ExitCode::FAILURE)
        }
    }
}

enum Change {
    Add(Box<ManagedRule>),
    Delete,
    Enable(bool),
}

/// Makes the change under the lock; returns what was done, for the message.
fn edit_managed(dirs: &Dirs, path: &Path, name: &str, change: Change) -> Result<&'static str, RuleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let shown = path.display().to_string();
    check_not_shadowed(dirs, dir)?;
    let _lock = lock(dir)?;
    let mut managed = read_managed(path)?;
    let at = managed.rules.iter().position(|r| r.name == name);
    // Where the rule is when it is not in the managed file, from the policy
    // in force on disk (if that loads at all).
    let elsewhere = || {
        policy::load(dirs)
            .ok()
            .and_then(|p: Policy| p.rules.into_iter().find(|r| r.name == name && !r.core).map(|r| r.place.to_string()))
    };
    let done = match (change, at) {
        (Change::Add(_), Some(_)) => {
            return Err(RuleError::Exists { name: name.into(), place: shown });
        }
        (Change::Add(rule), None) => {
            if let Some(place) = elsewhere() {
                return Err(RuleError::Exists { name: name.into(), place });
            }
            managed.rules.push(*rule);
            "added"
        }
        (_, None) => {
            return Err(match elsewhere() {
                Some(place) => RuleError::Elsewhere { name: name.into(), place, managed: shown },
                None => RuleError::Missing { name: name.into(), managed: shown },
            })
        }
        (Change::Delete, Some(i)) => {
            managed.rules.remove(i);
            "deleted"
        }
        (Change::Enable(on), Some(i)) => {
            // `enabled: true` is the default: written only as false.
            managed.rules[i].enabled = (!on).then_some(false);
            if on {
                "enabled"
            } else {
                "disabled"
            }
        }
    };
    managed.version = Some(1);
    let text = format!("{HEADER}{}", serde_saphyr::to_string(&managed).map_err(RuleError::Render)?);
    let policy = policy::load_replacing(dirs, path, &text).map_err(RuleError::Invalid)?;
    crate::compile::compile(&policy, &crate::dynamic::DynState::default()).map_err(RuleError::Invalid)?;
    write_atomically(path, &text)?;
    Ok(done)
}

/// A file of the managed name in a later directory would win over ours.
fn check_not_shadowed(dirs: &Dirs, dir: &Path) -> Result<(), RuleError> {
    let later = dirs.policy.iter().skip_while(|d| d.as_path() != dir).skip(1);
    for d in later {
        let shadow = d.join(MANAGED_FILE);
        if fs::symlink_metadata(&shadow).is_ok() {
            let managed = dir.join(MANAGED_FILE).display().to_string();
            return Err(RuleError::Shadowed { shadow: shadow.display().to_string(), managed });
        }
    }
    Ok(())
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RuleError + 'a {
    move |source| RuleError::Io { op, path: path.display().to_string(), source }
}

fn lock(dir: &Path) -> Result<nix::fcntl::Flock<fs::File>, RuleError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join(format!(".{MANAGED_FILE}.lock"));
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("cannot open the lock file", &path))?;
    let start = Instant::now();
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < LOCK_WAIT => {
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(RuleError::Locked(path.display().to_string())),
            Err((_, e)) => return Err(io("cannot lock", &path)(e.into())),
        }
    }
}

fn read_managed(path: &Path) -> Result<Managed, RuleError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Managed::default()),
        Err(e) => return Err(io("cannot read", path)(e)),
        Ok(m) if m.file_type().is_symlink() => return Err(RuleError::Symlink(path.display().to_string())),
        Ok(_) => {}
    }
    let text = fs::read_to_string(path).map_err(io("cannot read", path))?;
    serde_saphyr::from_str::<Option<Managed>>(&text)
        .map(Option::unwrap_or_default)
        .map_err(|source| RuleError::NotManaged { path: path.display().to_string(), source: Box::new(source) })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), RuleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Hidden and not `.yaml`: neither the loader nor the daemon's watcher reads it.
    let tmp = dir.join(format!(".{MANAGED_FILE}.tmp"));
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io("cannot write", &tmp))?;
    f.write_all(text.as_bytes()).map_err(io("cannot write", &tmp))?;
    // The mode a policy file must have, whatever the umask made of it.
    f.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io("cannot set the mode of", &tmp))?;
    f.sync_all().map_err(io("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("cannot replace", path))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("cannot sync", dir))
}

fn list((dirs, path): (Dirs, PathBuf), names: bool, json: bool) -> anyhow::Result<ExitCode> {
    if names {
        // For shell completion: quiet and quick, the managed file only.
        for rule in read_managed(&path).map(|m| m.rules).unwrap_or_default() {
            println!("{}", rule.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let policy = policy::load(&dirs)?;
    let rules: Vec<_> = policy.rules.iter().map(crate::daemon::rule_view).collect();
    crate::print(json, &rules, |r| crate::show::rules(r))
}

#[cfg(test)]
mod tests;
