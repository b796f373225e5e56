//! Running `nft -j`: one process per transaction, the batch streamed to its stdin.

use std::io::{BufWriter, Read, Write};
use std::process::{ChildStdin, Command, Stdio};

use serde::Serialize;
use serde_json::Value;

use super::FAMILY;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft (is the nftables package installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("cannot send the batch to nft")]
    Write(#[source] std::io::Error),
    #[error("nft rejected the batch: {0}")]
    Rejected(String),
    #[error("nft printed JSON that cannot be read")]
    Output(#[source] serde_json::Error),
}

/// Runs one batch as a single transaction: all of it is committed or none.
pub fn apply(batch: &impl Serialize) -> Result<(), NftError> {
    run(&["-j", "-f", "-"], |w| serde_json::to_writer(w, batch).map_err(std::io::Error::from))
}

/// Runs one batch in nft's text syntax (see `text`), as [`apply`] does.
pub fn apply_text(batch: &str) -> Result<(), NftError> {
    run(&["-f", "-"], |w| w.write_all(batch.as_bytes()))
}

fn run(args: &[&str], write: impl FnOnce(&mut BufWriter<ChildStdin>) -> std::io::Result<()>) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let written = child.stdin.take().map(|stdin| {
        let mut w = BufWriter::with_capacity(1 << 16, stdin);
        write(&mut w).and_then(|_| w.flush())
    });
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(NftError::Spawn)?;
    if !status.success() {
        return Err(NftError::Rejected(stderr.trim().to_string()));
    }
    if let Some(Err(e)) = written {
        return Err(NftError::Write(e));
    }
    Ok(())
}

/// The table `inet NAME` as `nft -j` lists it; `None` if it does not exist.
/// `terse` leaves out set elements, which is what a check of the table's shape
/// needs: nft 1.0.6 honours `-t` for `list ruleset` but still fetches every
/// element for `list table` (seconds for 100,000), so the terse form lists the
/// ruleset and keeps this table's objects.
pub fn list_table(name: &str, terse: bool) -> Result<Option<Value>, NftError> {
    let args: &[&str] = if terse { &["-j", "-t", "list", "ruleset"] } else { &["-j", "list", "table", FAMILY, name] };
    let Some(listing) = list(args)? else { return Ok(None) };
    let ours = |o: &&Value| {
        let (kind, body) = match o.as_object().and_then(|m| m.iter().next()) {
            Some(entry) => entry,
            None => return false,
        };
        let table = if kind == "table" { &body["name"] } else { &body["table"] };
        body["family"] == FAMILY && table == name
    };
    let objects: Vec<Value> = listing["nftables"].as_array().into_iter().flatten().filter(ours).cloned().collect();
    if !objects.iter().any(|o| o.get("table").is_some()) {
        return Ok(None);
    }
    Ok(Some(serde_json::json!({ "nftables": objects })))
}

/// `nft -j list set` of one set of the table `table`, with its elements;
/// `None` if the table or set is absent.
pub fn list_set(table: &str, set: &str) -> Result<Option<Value>, NftError> {
    list(&["-j", "list", "set", FAMILY, table, set])
}

/// `nft ARGS`' JSON output; `None` if what it lists is absent.
fn list(args: &[&str]) -> Result<Option<Value>, NftError> {
    let out = Command::new("nft").args(args).output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Rejected(stderr.trim().to_string()));
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(NftError::Output)
}
