//! One daemon per network namespace. The table name is fixed, so two daemons in
//! one namespace would replace each other's table; the second must stop before
//! it touches anything.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the per-namespace lock files live.
const RUN_DIR: &str = "/run/ringfence";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot take the namespace lock {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another ringfence daemon (pid {pid}) manages this network namespace (lock {path})")]
    Held { pid: String, path: PathBuf },
}

/// Takes the lock of the calling thread's network namespace, named by the
/// namespace's inode; held until the returned guard is dropped (or the process
/// dies: flock locks die with their holder, so a SIGKILLed daemon leaves none).
pub fn lock_netns() -> Result<Flock<File>, LockError> {
    let ns = fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()).unwrap_or(0);
    let path = Path::new(RUN_DIR).join(format!("netns-{ns}.lock"));
    let io = |source| LockError::Io { path: path.clone(), source };
    fs::create_dir_all(RUN_DIR).map_err(io)?;
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Held { pid: pid.trim().to_string(), path });
        }
    };
    lock.set_len(0).map_err(io)?;
    lock.rewind().map_err(io)?;
    writeln!(lock, "{}", std::process::id()).map_err(io)?;
    Ok(lock)
}
