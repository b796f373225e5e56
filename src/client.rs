//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::ops::ControlFlow;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::protocol::{Request, Response};

/// Applying 100,000 rules takes seconds; anything much longer is a hung daemon.
const TIMEOUT: Duration = Duration::from_secs(120);

pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Value> {
    let stream = send(socket, request)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    answer(&mut BufReader::new(&stream))
}

/// Asks `request` and reads the answer as a `T` (one of `protocol::answers`).
pub fn ask<T: serde::de::DeserializeOwned>(socket: &Path, request: &Request) -> anyhow::Result<T> {
    serde_json::from_value(call(socket, request)?).context("the daemon's answer cannot be read")
}

/// Sends a request that keeps the connection (`monitor`), and gives every line
/// after the answer (JSON, as the daemon wrote it) to `each` until the daemon
/// closes it or `each` says to stop.
pub fn stream(
    socket: &Path,
    request: &Request,
    mut each: impl FnMut(&str) -> anyhow::Result<ControlFlow<()>>,
) -> anyhow::Result<()> {
    let stream = send(socket, request)?;
    let mut reader = BufReader::new(&stream);
    // The daemon streams even when it cannot read what it would stream (the
    // NFLOG group is taken): say so rather than wait in silence.
    if let Some(e) = answer(&mut reader)?["error"].as_str() {
        eprintln!("ringfence: warning: the daemon is not reading logged packets: {e}");
    }
    let mut line = String::new();
    while reader.read_line(&mut line).context("reading from the daemon failed")? > 0 {
        if each(line.trim_end())?.is_break() {
            break;
        }
        line.clear();
    }
    Ok(())
}

fn send(socket: &Path, request: &Request) -> anyhow::Result<UnixStream> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "reading state needs root or the group given to the daemon's --socket-group"
        } else {
            "is `ringfence daemon` running? see --socket"
        };
        anyhow!("cannot reach the daemon at {} ({hint}): {e}", socket.display())
    })?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    if let Err(e) = (&stream).write_all(&line) {
        // A daemon that turns a connection away (too many) answers and closes
        // before reading: its reason is in the socket, and says more.
        return Err(refusal(&stream).unwrap_or_else(|| anyhow::Error::new(e).context("cannot send the request")));
    }
    Ok(stream)
}

/// The error the daemon sent unasked, if it did.
fn refusal(stream: &UnixStream) -> Option<anyhow::Error> {
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    match serde_json::from_str::<Response>(&line).ok()? {
        Response::Error(e) => Some(anyhow!(e)),
        Response::Ok(_) => None,
    }
}

fn answer(reader: &mut impl BufRead) -> anyhow::Result<Value> {
    let mut answer = String::new();
    reader.read_line(&mut answer).context("no answer from the daemon")?;
    match serde_json::from_str::<Response>(&answer).context("the daemon's answer cannot be read")? {
        Response::Ok(v) => Ok(v),
        Response::Error(e) => Err(anyhow!(e)),
    }
}
