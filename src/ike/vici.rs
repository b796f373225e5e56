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

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const CMD_REQUEST: u8 = 0;
const CMD_RESPONSE: u8 = 1;
const CMD_UNKNOWN: u8 = 2;
const EVENT_REGISTER: u8 = 3;
const EVENT_UNREGISTER: u8 = 4;
const EVENT_CONFIRM: u8 = 5;
const EVENT_UNKNOWN: u8 = 6;
const EVENT: u8 = 7;

/// charon's own limit on a packet.
const MAX_PACKET: usize = 512 * 1024;

pub struct Vici {
    stream: UnixStream,
}

impl Vici {
    pub async fn connect(path: &std::path::Path) -> Result<Self, String> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| format!("cannot connect to charon at {}: {e}", path.display()))?;
        Ok(Vici { stream })
    }

    async fn send(&mut self, kind: u8, name: &str, message: &[u8]) -> Result<(), String> {
        let name = name.as_bytes();
        let mut packet = Vec::with_capacity(6 + name.len() + message.len());
        packet.extend_from_slice(&((2 + name.len() + message.len()) as u32).to_be_bytes());
        packet.push(kind);
        packet.push(name.len() as u8);
        packet.extend_from_slice(name);
        packet.extend_from_slice(message);
        self.stream.write_all(&packet).await.map_err(|e| format!("writing to charon: {e}"))
    }

    /// The next packet: its type, and the rest (name and message).
    async fn recv(&mut self) -> Result<(u8, Vec<u8>), String> {
        let len = self.stream.read_u32().await.map_err(|e| format!("reading from charon: {e}"))? as usize;
        if len == 0 || len > MAX_PACKET {
            return Err(format!("charon sent a packet of {len} bytes"));
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await.map_err(|e| format!("reading from charon: {e}"))?;
        let kind = body.remove(0);
        Ok((kind, body))
    }

    /// One command and its response.
    pub async fn request<T: Serialize, U: DeserializeOwned>(&mut self, cmd: &str, message: &T) -> Result<U, String> {
        let encoded = serde_vici::to_vec(message).map_err(|e| format!("{cmd}: {e}"))?;
        self.send(CMD_REQUEST, cmd, &encoded).await?;
        loop {
            match self.recv().await? {
                (CMD_RESPONSE, body) => return serde_vici::from_slice(&body).map_err(|e| format!("{cmd}: {e}")),
                (CMD_UNKNOWN, _) => return Err(format!("{cmd}: charon does not know this command")),
                // An event of an earlier stream, late: not ours.
                (EVENT, _) => continue,
                (kind, _) => return Err(format!("{cmd}: unexpected packet type {kind} from charon")),
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
    ) -> Result<Vec<U>, String> {
        self.register(EVENT_REGISTER, event).await?;
        let encoded = serde_vici::to_vec(message).map_err(|e| format!("{cmd}: {e}"))?;
        self.send(CMD_REQUEST, cmd, &encoded).await?;
        let mut out = Vec::new();
        loop {
            match self.recv().await? {
                (EVENT, body) => {
                    let name_len = usize::from(*body.first().unwrap_or(&0));
                    let message = body.get(1 + name_len..).unwrap_or_default();
                    out.push(serde_vici::from_slice(message).map_err(|e| format!("{event}: {e}"))?);
                }
                (CMD_RESPONSE, _) => break,
                (CMD_UNKNOWN, _) => return Err(format!("{cmd}: charon does not know this command")),
                (kind, _) => return Err(format!("{cmd}: unexpected packet type {kind} from charon")),
            }
        }
        self.register(EVENT_UNREGISTER, event).await?;
        Ok(out)
    }

    async fn register(&mut self, kind: u8, event: &str) -> Result<(), String> {
        self.send(kind, event, &[]).await?;
        match self.recv().await? {
            (EVENT_CONFIRM, _) => Ok(()),
            (EVENT_UNKNOWN, _) => Err(format!("charon does not know the event {event}")),
            (kind, _) => Err(format!("{event}: unexpected packet type {kind} from charon")),
        }
    }

    /// Registers for `event`: charon then sends one packet for each, until
    /// the connection closes.
    pub async fn subscribe(&mut self, event: &str) -> Result<(), String> {
        self.register(EVENT_REGISTER, event).await
    }

    /// The message of the next event subscribed to; `None` once charon closed
    /// the connection (it stopped or restarted).
    pub async fn event(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.recv().await {
                Ok((EVENT, body)) => {
                    let name_len = usize::from(*body.first()?);
                    return Some(body.get(1 + name_len..)?.to_vec());
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}
