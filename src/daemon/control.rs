//! The control socket: a Unix stream socket, one JSON request and one JSON
//! response per connection. Its own task accepts connections within the limits
//! of [`crate::admission`]; each connection's task parses the request and checks
//! the peer (SO_PEERCRED); the daemon's loop answers, one request at a time,
//! at once: a read with a snapshot of the engine's state, which the
//! connection's task renders and writes on a blocking thread as it goes.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::admission::{self, Accepting, Peer, Permit};
use crate::monitor::{line, Hub};
use crate::protocol::{Answer, Call, Request, Response, Writer};
use serde::Serialize;

/// Requests are small; a longer line is not a request.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// The nice value of a thread writing a [`Answer::Bulk`].
const BULK_NICE: i32 = 10;

/// Writes `{"ok": BODY}`, the body serialized as it is written, or
/// `{"error": ...}`.
pub fn write_answer<T: Serialize>(w: &mut dyn Write, body: Result<T, String>) -> io::Result<()> {
    match body {
        Ok(body) => {
            w.write_all(b"{\"ok\":")?;
            serde_json::to_writer(&mut *w, &body)?;
            w.write_all(b"}\n")
        }
        Err(e) => w.write_all(&line(&Response::Error(e))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the control socket {path}")]
    Bind {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("another daemon is serving {0}")]
    InUse(String),
    #[error("no group named {0:?}")]
    NoGroup(String),
}

/// Binds the socket: mode 0660, owned by root and `group` (which may then read
/// state; only root may change anything). A stale socket file is replaced; a
/// live one is an error, so two daemons never fight over one path.
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind { path: path.display().to_string(), source };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse(path.display().to_string()));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    if let Some(name) = group {
        let gid = nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .ok_or_else(|| ControlError::NoGroup(name.to_string()))?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(|e| err(e.into()))?;
    }
    Ok(listener)
}

/// Accepts connections for as long as the daemon runs, each served by a task
/// of its own (never on the daemon's loop).
pub async fn accept(listener: UnixListener, calls: mpsc::Sender<Call>, hub: Arc<Hub>) {
    let mut accepting = Accepting::new("control socket");
    loop {
        let Some((stream, _)) = accepting.next(listener.accept().await).await else { continue };
        let peer = Peer::of_unix(&stream);
        match accepting.admit(peer) {
            Ok(permit) => {
                tokio::spawn(serve(stream, peer, permit, calls.clone(), Arc::clone(&hub)));
            }
            // A fresh socket's buffer takes one short line; if it does not, the
            // client learns from the closed connection alone.
            Err(why) => _ = stream.try_write(&line(&Response::Error(why.to_string()))),
        }
    }
}

/// Serves one connection: read a request, check the peer may send it, hand it
/// to the daemon's loop, write the answer. A `monitor` request (read-only, so
/// open to --socket-group) keeps the connection and streams events instead.
/// The permit is held until the connection ends.
async fn serve(stream: UnixStream, peer: Peer, _permit: Permit, calls: mpsc::Sender<Call>, hub: Arc<Hub>) {
    let (read, mut write) = stream.into_split();
    let mut request = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let got = match timeout(admission::REQUEST_TIMEOUT, reader.read_line(&mut request)).await {
        Ok(got) => got,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no request within {} s", admission::REQUEST_TIMEOUT.as_secs()),
        )),
    };
    if let Ok(Request::Monitor { backlog }) = serde_json::from_str::<Request>(&request) {
        // The request is one line and the client sends nothing after it, so
        // the reader holds no buffered bytes.
        return hub.stream(reader.into_inner().into_inner(), write, backlog).await;
    }
    let stopping = || Answer::Whole(Response::Error("the daemon is stopping".into()));
    let answer = match got {
        Err(e) => Answer::Whole(Response::Error(format!("cannot read the request: {e}"))),
        Ok(_) => match serde_json::from_str::<Request>(&request) {
            Err(e) => Answer::Whole(Response::Error(format!("not a request: {e}"))),
            Ok(req) if req.mutates() && peer != Peer::Root => {
                Answer::Whole(Response::Error("permission denied: only root may change the firewall".into()))
            }
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                match calls.send((req, tx)).await {
                    Ok(()) => rx.await.unwrap_or_else(|_| stopping()),
                    Err(_) => stopping(),
                }
            }
        },
    };
    // The client may have gone, or not read in time; nothing to do about it.
    let (writer, bulk) = match answer {
        Answer::Whole(response) => {
            let _ = timeout(admission::WRITE_TIMEOUT, write.write_all(&line(&response))).await;
            return;
        }
        Answer::Stream(writer) => (writer, false),
        Answer::Bulk(writer) => (writer, true),
    };
    if let Ok(socket) = reader.into_inner().into_inner().reunite(write) {
        _ = write_stream(socket, writer, bulk).await;
    }
}

/// A connection's socket, made blocking for a thread to write into, each
/// write bounded by the write timeout.
pub trait IntoBlocking {
    fn into_blocking(self) -> io::Result<Box<dyn Write + Send>>;
}

impl IntoBlocking for UnixStream {
    fn into_blocking(self) -> io::Result<Box<dyn Write + Send>> {
        let socket = self.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_write_timeout(Some(admission::WRITE_TIMEOUT))?;
        Ok(Box::new(socket))
    }
}

impl IntoBlocking for tokio::net::TcpStream {
    fn into_blocking(self) -> io::Result<Box<dyn Write + Send>> {
        let socket = self.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_write_timeout(Some(admission::WRITE_TIMEOUT))?;
        Ok(Box::new(socket))
    }
}

/// Runs `writer` on a thread of its own, straight into the socket; at nice
/// [`BULK_NICE`] if `bulk`. The thread is not tokio's blocking pool's, which
/// would keep the lowered priority for the next blocking task.
pub async fn write_stream(socket: impl IntoBlocking, writer: Writer, bulk: bool) -> io::Result<()> {
    let socket = socket.into_blocking()?;
    let (done, written) = oneshot::channel();
    std::thread::Builder::new().name("answer".into()).spawn(move || {
        if bulk {
            lower_priority();
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 16, socket);
        let _ = done.send(writer(&mut out).and_then(|()| out.flush()));
    })?;
    written.await.map_err(io::Error::other)?
}

/// Lowers the calling thread's priority to nice [`BULK_NICE`]. On Linux a
/// nice value belongs to a thread, not to the process: setpriority(2) with
/// PRIO_PROCESS and a thread id changes that thread alone (see its NOTES).
/// A failure leaves the thread at its priority, which only costs latency.
fn lower_priority() {
    let tid = nix::unistd::gettid().as_raw() as nix::libc::id_t;
    // SAFETY: setpriority takes integers only and touches no memory of ours.
    let _ = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid, BULK_NICE) };
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::admission::Limits;

    /// The answer the daemon's side writes to a client that sends `sent`
    /// and then nothing, with time paused (it advances when all tasks wait).
    async fn answer_to(sent: &[u8]) -> (String, std::time::Duration) {
        let (mut client, daemon) = UnixStream::pair().unwrap();
        let permit = Limits::new(1, 1).admit(Peer::Uid(1000)).unwrap();
        let (calls, mut queue) = mpsc::channel::<Call>(1);
        tokio::spawn(async move {
            while let Some((_, reply)) = queue.recv().await {
                let _ = reply.send(Answer::Whole(Response::Ok(serde_json::json!("state"))));
            }
        });
        let t0 = tokio::time::Instant::now();
        tokio::spawn(serve(daemon, Peer::Uid(1000), permit, calls, Arc::new(Hub::default())));
        client.write_all(sent).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        (answer, t0.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_dropped_after_the_request_timeout() {
        let (answer, took) = answer_to(b"").await;
        assert_eq!(answer, "{\"error\":\"cannot read the request: no request within 10 s\"}\n");
        assert_eq!(took, admission::REQUEST_TIMEOUT);
        // Half a request is no request either.
        let (answer, took) = answer_to(b"{\"request\":").await;
        assert!(answer.contains("no request within 10 s"), "{answer}");
        assert_eq!(took, admission::REQUEST_TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_answered_at_once_and_mutations_need_root() {
        let (answer, took) = answer_to(b"{\"request\":\"state\"}\n").await;
        assert_eq!((answer.as_str(), took), ("{\"ok\":\"state\"}\n", std::time::Duration::ZERO));
        let (answer, _) = answer_to(b"{\"request\":\"confirm\"}\n").await;
        assert_eq!(answer, "{\"error\":\"permission denied: only root may change the firewall\"}\n");
    }
}
