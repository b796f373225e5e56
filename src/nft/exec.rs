//! Running `nft -j`: one process per transaction, the batch streamed to its stdin.

use std::io::{BufWriter, Read, Write};
use std::process::{Command, Stdio};

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
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    let written = child.stdin.take().map(|stdin| {
        let mut w = BufWriter::with_capacity(1 << 16, stdin);
        serde_json::to_writer(&mut w, batch).map_err(std::io::Error::from).and_then(|_| w.flush())
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

/// `nft -j list table inet NAME`; `None` if the table does not exist.
/// `terse` leaves out set elements (`nft -t`), which is what a quick check of the
/// table's shape needs.
pub fn list_table(name: &str, terse: bool) -> Result<Option<Value>, NftError> {
    let mut cmd = Command::new("nft");
    cmd.arg("-j");
    if terse {
        cmd.arg("-t");
    }
    let out = cmd.args(["list", "table", FAMILY, name]).output().map_err(NftError::Spawn)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(NftError::Rejected(stderr.trim().to_string()));
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(NftError::Output)
}
