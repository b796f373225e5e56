//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::protocol::{Request, Response};

/// Applying 100,000 rules takes seconds; anything much longer is a hung daemon.
const TIMEOUT: Duration = Duration::from_secs(120);

pub fn call(socket: &Path, request: &Request) -> anyhow::Result<Value> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            "reading state needs root or the group given to the daemon's --socket-group"
        } else {
            "is `ringfence daemon` running? see --socket"
        };
        anyhow!("cannot reach the daemon at {} ({hint}): {e}", socket.display())
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    (&stream).write_all(&line).context("cannot send the request")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).context("no answer from the daemon")?;
    match serde_json::from_str::<Response>(&answer).context("the daemon's answer cannot be read")? {
        Response::Ok(v) => Ok(v),
        Response::Error(e) => Err(anyhow!(e)),
    }
}
