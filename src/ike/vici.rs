//! The VICI transport: charon's packets over its Unix socket, the messages in
//! them encoded by `serde_vici`.
//!
//! Written here rather than taken from `rsvici` 0.1.5, whose connection task
//! never ends once charon closes the socket: it keeps reading EOF in a loop (a
//! spinning task per charon restart) and never tells its client. Ringfence
//! needs exactly that moment to load again into the new charon.
//!
//! A packet is a 32-bit big-endian length, then a type, then (for named types)
//! a one-byte length and a name, then the message.
//!
//! Every connect, write and read has a deadline ([`TIMEOUT`]): a charon that
//! accepts and never answers (hung, or stopped with SIGSTOP) must not stall
//! the task that talks to it for ever. [`Vici::event`] alone waits without
//! one: charon sends an event when something happens, which may be never.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

const CMD_REQUEST: u8 = 0;
const CMD_RESPONSE: u8 = 1;
const CMD_UNKNOWN: u8 = 2;
const EVENT_REGISTER: u8 = 3;
const EVENT_UNREGISTER: u8 = 4;
const EVENT_CONFIRM: u8 = 5;
const EVENT_UNKNOWN: u8 = 6;
const EVENT: u8 = 7;

/// The elements of a message: section start and end, a key and its value,
/// list start, item and end.
const SECTION_START: u8 = 1;
const SECTION_END: u8 = 2;
const KEY_VALUE: u8 = 3;
const LIST_START: u8 = 4;
const LIST_ITEM: u8 = 5;
const LIST_END: u8 = 6;

/// charon's own limit on a packet.
const MAX_PACKET: usize = 512 * 1024;

/// charon nests sections a few levels deep (`list-sa`: the IKE SA, its
/// `child-sas`, each CHILD SA). `serde_vici` recurses once per level, also
/// through sections it skips, so a packet of 512 KiB of section starts would
/// overflow the stack before any type could refuse it.
const MAX_DEPTH: usize = 16;

/// How long charon may take to accept a connection, take a packet or send the
/// next one. Its answers are local and quick (`terminate` is sent without
/// waiting for peers); a `list-sas` of many SAs comes as many packets, each
/// within this time.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to charon.
#[derive(Debug, thiserror::Error)]
pub enum ViciError {
    #[error("cannot connect to charon at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("charon at {} is not answering: {what} took more than {} s", path.display(), TIMEOUT.as_secs())]
    Timeout { path: PathBuf, what: String },
    #[error("{what}: writing to charon")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: reading from charon")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: charon sent a packet of {len} bytes")]
    PacketSize { what: String, len: usize },
    #[error("{what}: cannot encode the message")]
    Encode {
        what: String,
        #[source]
        source: serde_vici::Error,
    },
    #[error("{what}: cannot decode charon's message")]
    Decode {
        what: String,
        #[source]
        source: serde_vici::Error,
    },
    #[error("{0}: charon does not know this command")]
    UnknownCommand(String),
    #[error("charon does not know the event {0}")]
    UnknownEvent(String),
    #[error("{what}: charon's message nests sections more than {MAX_DEPTH} deep")]
    TooDeep { what: String },
    #[error("{what}: unexpected packet type {kind} from charon")]
    Unexpected { what: String, kind: u8 },
}

/// The message and its causes on one line, for the callers that keep errors
/// as text (`show state`'s `isolation.ike.last-error`).
impl From<ViciError> for String {
    fn from(e: ViciError) -> String {
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        text
    }
}

pub struct Vici {
    stream: UnixStream,
    path: PathBuf,
}

impl Vici {
    pub async fn connect(path: &Path) -> Result<Self, ViciError> {
        let connecting = UnixStream::connect(path);
        let timed_out = || ViciError::Timeout { path: path.to_path_buf(), what: "connecting".into() };
        let stream = timeout(TIMEOUT, connecting)
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| ViciError::Connect { path: path.to_path_buf(), source })?;
        Ok(Vici { stream, path: path.to_path_buf() })
    }

    fn timed_out(&self, what: &str) -> ViciError {
        ViciError::Timeout { path: self.path.clone(), what: what.to_string() }
    }

    async fn send(&mut self, kind: u8, name: &str, message: &[u8]) -> Result<(), ViciError> {
        let bytes = name.as_bytes();
        let mut packet = Vec::with_capacity(6 + bytes.len() + message.len());
        packet.extend_from_slice(&((2 + bytes.len() + message.len()) as u32).to_be_bytes());
        packet.push(kind);
        packet.push(bytes.len() as u8);
        packet.extend_from_slice(bytes);
        packet.extend_from_slice(message);
        match timeout(TIMEOUT, self.stream.write_all(&packet)).await {
            Err(_) => Err(self.timed_out(name)),
            Ok(written) => written.map_err(|source| ViciError::Write { what: name.to_string(), source }),
        }
    }

    /// The next packet: its type, and the rest (name and message). `what`
    /// names the command or event waited for, in errors.
    async fn recv(&mut self, what: &str) -> Result<(u8, Vec<u8>), ViciError> {
        match timeout(TIMEOUT, self.read_packet(what)).await {
            Err(_) => Err(self.timed_out(what)),
            Ok(packet) => packet,
        }
    }

    async fn read_packet(&mut self, what: &str) -> Result<(u8, Vec<u8>), ViciError> {
        let read = |source| ViciError::Read { what: what.to_string(), source };
        let len = self.stream.read_u32().await.map_err(read)? as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(ViciError::PacketSize { what: what.to_string(), len });
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await.map_err(read)?;
        let kind = body.remove(0);
        Ok((kind, body))
    }

    /// One command and its response.
    pub async fn request<T: Serialize, U: DeserializeOwned>(&mut self, cmd: &str, message: &T) -> Result<U, ViciError> {
        let encoded = encode(cmd, message)?;
        self.send(CMD_REQUEST, cmd, &encoded).await?;
        loop {
            match self.recv(cmd).await? {
                (CMD_RESPONSE, body) => return decode(cmd, &body),
                (CMD_UNKNOWN, _) => return Err(ViciError::UnknownCommand(cmd.to_string())),
                // An event of an earlier stream, late: not ours.
                (EVENT, _) => continue,
                (kind, _) => return Err(ViciError::Unexpected { what: cmd.to_string(), kind }),
            }
        }
    }

    /// A command whose answer comes as `event` packets before the response
    /// (`list-sas` and `list-sa`): registers for the event, sends the command,
    /// collects the events, unregisters.
    pub async fn stream<T: Serialize, U: DeserializeOwned>(
        &mut self,
        cmd: &str,
        event: &str,
        message: &T,
    ) -> Result<Vec<U>, ViciError> {
        self.register(EVENT_REGISTER, event).await?;
        let encoded = encode(cmd, message)?;
        self.send(CMD_REQUEST, cmd, &encoded).await?;
        let mut out = Vec::new();
        loop {
            match self.recv(cmd).await? {
                (EVENT, body) => {
                    let name_len = usize::from(*body.first().unwrap_or(&0));
                    let message = body.get(1 + name_len..).unwrap_or_default();
                    out.push(decode(event, message)?);
                }
                (CMD_RESPONSE, _) => break,
                (CMD_UNKNOWN, _) => return Err(ViciError::UnknownCommand(cmd.to_string())),
                (kind, _) => return Err(ViciError::Unexpected { what: cmd.to_string(), kind }),
            }
        }
        self.register(EVENT_UNREGISTER, event).await?;
        Ok(out)
    }

    async fn register(&mut self, kind: u8, event: &str) -> Result<(), ViciError> {
        self.send(kind, event, &[]).await?;
        match self.recv(event).await? {
            (EVENT_CONFIRM, _) => Ok(()),
            (EVENT_UNKNOWN, _) => Err(ViciError::UnknownEvent(event.to_string())),
            (kind, _) => Err(ViciError::Unexpected { what: event.to_string(), kind }),
        }
    }

    /// Registers for `event`: charon then sends one packet for each, until
    /// the connection closes.
    pub async fn subscribe(&mut self, event: &str) -> Result<(), ViciError> {
        self.register(EVENT_REGISTER, event).await
    }

    /// The name and message of the next event subscribed to, however long it
    /// takes; `None` once charon closed the connection (it stopped or restarted).
    pub async fn event(&mut self) -> Option<(String, Vec<u8>)> {
        loop {
            match self.read_packet("an event").await {
                Ok((EVENT, body)) => {
                    let name_len = usize::from(*body.first()?);
                    let name = String::from_utf8_lossy(body.get(1..1 + name_len)?).into_owned();
                    return Some((name, body.get(1 + name_len..)?.to_vec()));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

fn encode<T: Serialize>(cmd: &str, message: &T) -> Result<Vec<u8>, ViciError> {
    serde_vici::to_vec(message).map_err(|source| ViciError::Encode { what: cmd.to_string(), source })
}

/// Decodes a message of charon's (`what` names it in errors).
pub fn decode<U: DeserializeOwned>(what: &str, body: &[u8]) -> Result<U, ViciError> {
    if nesting(body) > MAX_DEPTH {
        return Err(ViciError::TooDeep { what: what.to_string() });
    }
    serde_vici::from_slice(body).map_err(|source| ViciError::Decode { what: what.to_string(), source })
}

/// How deep the sections of a message nest, as far as it is well formed (the
/// decoder reports what is not). Each element is its type, then a name of a
/// one-byte length (all but items and ends), then a value of a two-byte length
/// (key-values and items).
fn nesting(message: &[u8]) -> usize {
    let (mut depth, mut deepest, mut rest) = (0, 0, message);
    while let Some((&kind, tail)) = rest.split_first() {
        let (named, valued) = match kind {
            SECTION_START => {
                depth += 1;
                deepest = deepest.max(depth);
                (true, false)
            }
            SECTION_END => {
                depth -= usize::from(depth > 0);
                (false, false)
            }
            KEY_VALUE => (true, true),
            LIST_START => (true, false),
            LIST_ITEM => (false, true),
            LIST_END => (false, false),
            _ => break,
        };
        rest = tail;
        if named {
            let Some(tail) = rest.first().and_then(|&len| rest.get(1 + usize::from(len)..)) else { break };
            rest = tail;
        }
        if valued {
            let len = rest.get(..2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])));
            let Some(tail) = len.and_then(|len| rest.get(2 + len..)) else { break };
            rest = tail;
        }
    }
    deepest
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// A socket that accepts and never answers, as a hung charon.
    fn hung(dir: &TempDir) -> (PathBuf, std::os::unix::net::UnixListener) {
        let path = dir.0.join("charon.vici");
        (path.clone(), std::os::unix::net::UnixListener::bind(&path).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_charon_that_never_answers_times_out() {
        let dir = TempDir::new("vici-hung");
        let (path, _listener) = hung(&dir);
        let mut client = Vici::connect(&path).await.unwrap();
        let t0 = tokio::time::Instant::now();
        let e = client.request::<_, serde::de::IgnoredAny>("get-conns", &()).await.unwrap_err();
        assert!(matches!(&e, ViciError::Timeout { what, .. } if what == "get-conns"), "{e:?}");
        assert_eq!(t0.elapsed(), TIMEOUT);
        let text = String::from(e);
        assert_eq!(text, format!("charon at {} is not answering: get-conns took more than 10 s", path.display()));
    }

    #[tokio::test]
    async fn errors_keep_their_cause_as_text() {
        let dir = TempDir::new("vici-absent");
        let e = Vici::connect(&dir.0.join("none.vici")).await.err().unwrap();
        assert!(matches!(e, ViciError::Connect { .. }));
        let text = String::from(e);
        assert!(text.starts_with("cannot connect to charon at "), "{text}");
        assert!(text.ends_with(": No such file or directory (os error 2)"), "{text}");
    }

    /// Found by fuzzing (`fuzz.rs`): this overflowed the stack.
    #[test]
    fn sections_nested_too_deep_are_refused_before_decoding() {
        let section = |depth: usize| {
            let mut m = b"\x01\x04conn".repeat(depth);
            m.extend(b"\x03\x03msg\x00\x02hi");
            m.extend(std::iter::repeat_n(SECTION_END, depth));
            m
        };
        let e = decode::<serde::de::IgnoredAny>("list-sa", &section(170_000)).unwrap_err();
        assert!(matches!(e, ViciError::TooDeep { .. }), "{e:?}");
        assert_eq!(e.to_string(), "list-sa: charon's message nests sections more than 16 deep");
        assert!(decode::<serde::de::IgnoredAny>("list-sa", &section(MAX_DEPTH)).is_ok());
        let deep_log = [b"\x03\x03msg\x00\x02hi".as_slice(), &section(100_000)].concat();
        assert!(decode::<crate::ike::failures::Log>("log", &deep_log).is_err());
    }

    #[tokio::test]
    async fn a_packet_too_large_is_refused_before_it_is_read() {
        let dir = TempDir::new("vici-large");
        let (path, listener) = hung(&dir);
        let mut client = Vici::connect(&path).await.unwrap();
        let (mut charon, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut charon, &(MAX_PACKET as u32 + 1).to_be_bytes()).unwrap();
        let e = client.request::<_, serde::de::IgnoredAny>("version", &()).await.unwrap_err();
        assert!(matches!(e, ViciError::PacketSize { len, .. } if len == MAX_PACKET + 1), "{e:?}");
    }
}
