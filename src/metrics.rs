//! The opt-in Prometheus endpoint (`daemon --metrics`): the figures of
//! `show stats` in the text exposition format 0.0.4, over HTTP on a loopback
//! port or on a Unix socket.
//!
//! The HTTP side is a few lines by hand rather than a server crate: it answers
//! one GET per connection with one body, which is all a scraper asks for. The
//! daemon writes the body from its snapshot straight into the socket, on a
//! thread of the connection's, as the rules are read: at 100,000 rules no
//! copy of the stats, as JSON or as text, is held whole.

use std::fmt::Display;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::admission::{self, Accepting, Peer, Permit, Refused};
use crate::compile::staged::Would;
use crate::daemon::{write_stream, IntoBlocking, RuleLines};
use crate::protocol::answers::{DefaultStats, RuleStats, Stats};
use crate::protocol::{Answer, Call, Request, Response};

const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Where to listen: `unix:/PATH`, or a loopback `ADDRESS:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let q = crate::policy::text::Quoted(s);
        if let Some(path) = s.strip_prefix("unix:") {
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr = s
            .replace("localhost:", "127.0.0.1:")
            .parse()
            .map_err(|_| format!("{q} is neither unix:/PATH nor ADDRESS:PORT"))?;
        // Counters name rules and addresses: not for other hosts to read.
        if !addr.ip().is_loopback() {
            return Err(format!("{q} is not a loopback address (127.0.0.1, [::1]); metrics are served locally only"));
        }
        Ok(Listen::Tcp(addr))
    }
}

pub enum Server {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Binds the endpoint. A Unix socket gets mode 0660 (root and its group); a
/// stale one is replaced, a live one (another daemon's) is an error.
pub async fn bind(listen: &Listen) -> std::io::Result<Server> {
    match listen {
        Listen::Tcp(addr) => Ok(Server::Tcp(TcpListener::bind(addr).await?)),
        Listen::Unix(path) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another daemon serves metrics at {}", path.display()),
                ));
            }
            if path.exists() {
                std::fs::remove_file(path)?;
            }
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
            Ok(Server::Unix(listener))
        }
    }
}

/// Accepts scrapers within the limits of [`crate::admission`] (a TCP peer
/// counts in the total only: TCP carries no credentials to read).
pub async fn serve(server: Server, calls: mpsc::Sender<Call>) {
    let mut accepting = Accepting::new("metrics endpoint");
    loop {
        // A refused scraper gets a 503 if its socket's buffer takes it at once.
        match &server {
            Server::Tcp(l) => {
                let Some((stream, _)) = accepting.next(l.accept().await).await else { continue };
                match accepting.admit(Peer::Unknown) {
                    Ok(permit) => _ = tokio::spawn(answer(stream, permit, calls.clone())),
                    Err(why) => _ = stream.try_write(refusal(&why).as_bytes()),
                }
            }
            Server::Unix(l) => {
                let Some((stream, _)) = accepting.next(l.accept().await).await else { continue };
                match accepting.admit(Peer::of_unix(&stream)) {
                    Ok(permit) => _ = tokio::spawn(answer(stream, permit, calls.clone())),
                    Err(why) => _ = stream.try_write(refusal(&why).as_bytes()),
                }
            }
        }
    }
}

fn refusal(why: &Refused) -> String {
    http("503 Service Unavailable", &format!("{why}\n"))
}

async fn answer<S>(mut stream: S, _permit: Permit, calls: mpsc::Sender<Call>)
where
    S: AsyncRead + AsyncWrite + IntoBlocking + Unpin,
{
    let Ok(Some(head)) = timeout(admission::REQUEST_TIMEOUT, read_head(&mut stream)).await else { return };
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if !head.starts_with("GET ") {
        ("405 Method Not Allowed", String::from("GET only\n"))
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", String::from("metrics are at /metrics\n"))
    } else {
        let (tx, rx) = oneshot::channel();
        let answer = match calls.send((Request::Metrics, tx)).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        match answer {
            None => ("503 Service Unavailable", String::from("the daemon is stopping\n")),
            // The whole response, written on a thread as the socket's reads are.
            Some(Answer::Stream(writer) | Answer::Bulk(writer)) => {
                _ = write_stream(stream, writer, true).await;
                return;
            }
            Some(Answer::Whole(Response::Error(e))) => ("500 Internal Server Error", format!("{e}\n")),
            Some(Answer::Whole(Response::Ok(_))) => {
                ("500 Internal Server Error", String::from("the daemon's answer is not metrics\n"))
            }
        }
    };
    // The scraper may have gone, or not read in time; nothing to do about it.
    let _ = timeout(admission::WRITE_TIMEOUT, stream.write_all(http(status, &body).as_bytes())).await;
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The request line and headers, up to the blank line.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST_BYTES {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// The response to a scrape: the stats in the text format, written as the
/// rules are read, without a Content-Length (in HTTP/1.0 the body ends when
/// the connection closes); or why there are none.
pub fn respond(w: &mut dyn Write, stats: Result<Stats<RuleLines>, String>) -> io::Result<()> {
    match stats {
        Ok(stats) => {
            write!(w, "HTTP/1.0 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nConnection: close\r\n\r\n")?;
            render(w, &stats)
        }
        Err(e) => w.write_all(http("500 Internal Server Error", &format!("{e}\n")).as_bytes()),
    }
}

/// A family's name and help.
type Help = (&'static str, &'static str);

/// A sample's figure in a family of the rules' counters, or of the defaults'.
type RuleFigure = fn(&RuleStats<'_>) -> u64;
type DefaultFigure = fn(&DefaultStats) -> u64;

/// The rules' counter families: name and help, and the figure.
const RULE_FAMILIES: [(Help, RuleFigure); 3] = [
    (("ringfence_rule_packets_total", "Packets a rule decided (the first packet of each connection)."), |r| r.packets),
    (("ringfence_rule_bytes_total", "Bytes of the packets a rule decided."), |r| r.bytes),
    (
        (
            "ringfence_rule_logged_total",
            "Packets of a rule with log: true that the daemon read from NFLOG (after the kernel's rate limit).",
        ),
        |r| r.logged,
    ),
];

/// The profiles' defaults' counter families.
const DEFAULT_FAMILIES: [(Help, DefaultFigure); 3] = [
    (("ringfence_default_packets_total", "Packets a profile's default decided."), |d| d.count.packets),
    (("ringfence_default_bytes_total", "Bytes of the packets a profile's default decided."), |d| d.count.bytes),
    (
        (
            "ringfence_default_logged_total",
            "Packets dropped by a profile's default that the daemon read from NFLOG (settings.log-dropped).",
        ),
        |d| d.logged,
    ),
];

const SET_ELEMENTS: Help = ("ringfence_dynamic_set_elements", "Addresses in a keyword's dynamic set.");
const FALLBACKS: Help = (
    "ringfence_isolation_fallbacks_total",
    "First contacts that went on in clear (soft SAs), by why no SA came up in time.",
);
const STAGED: Help = (
    "ringfence_staged_decisions_total",
    "New connections a staged rule would have decided otherwise (would: block or allow), since the table was replaced.",
);
const CLEAR_INBOUND: Help = (
    "ringfence_isolation_clear_inbound_total",
    "New connections in clear from secure subnets, which secure-request would refuse (request and boundary modes), by protocol and port.",
);

const INTERFACE_PROFILE: Help = (
    "ringfence_interface_profile",
    "The profile of each interface (1), and why: a pattern, detection, or the default (public).",
);
const LOCATION_DECIDED: Help = (
    "ringfence_location_decided_timestamp_seconds",
    "When location detection reached its state for an interface (domain, not-domain; undecided is absent).",
);

/// The stats of `show stats` in Prometheus' text format: single figures,
/// then each family of labelled samples.
pub fn render(w: &mut dyn Write, stats: &Stats<RuleLines>) -> io::Result<()> {
    let (iso, m) = (&stats.isolation, &stats.monitor);
    let scalars: [(&str, &str, &str, &dyn Display); 9] = [
        ("ringfence_applies_total", "Rulesets applied since the daemon started.", "counter", &stats.applies),
        ("ringfence_last_apply_seconds", "How long the last apply took.", "gauge", &(stats.last_apply_ms / 1000.0)),
        (
            "ringfence_isolation_sas_up",
            "ESP security associations of Ringfence's IPsec connection in the kernel (one each way per CHILD_SA).",
            "gauge",
            &iso.sas_up.unwrap_or(0),
        ),
        (
            "ringfence_isolation_soft_sas",
            "Peers reached in clear for now because no SA came up in time (soft SAs).",
            "gauge",
            &iso.soft_sas,
        ),
        ("ringfence_monitor_logged_total", "Logged packets read from NFLOG.", "counter", &m.totals.logged),
        (
            "ringfence_monitor_unattributed_total",
            "Logged packets whose rule could not be named.",
            "counter",
            &m.totals.unattributed,
        ),
        (
            "ringfence_monitor_overruns_total",
            "Times the kernel dropped NFLOG messages for a full socket buffer.",
            "counter",
            &m.totals.overruns,
        ),
        (
            "ringfence_monitor_queue_drops_total",
            "Logged packets dropped because the daemon was behind.",
            "counter",
            &m.totals.queue_drops,
        ),
        ("ringfence_monitor_subscribers", "Live ringfence monitor connections.", "gauge", &m.subscribers),
    ];
    for (name, help, kind, value) in scalars {
        writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}")?;
    }
    for (help, figure) in RULE_FAMILIES {
        family(w, help, "counter", stats.rules.iter().filter(|r| r.staged.is_none()), |r| {
            let labels = labels(&[
                ("name", &r.name),
                ("direction", &r.direction.as_str()),
                ("action", &r.action.as_str()),
                ("source", &r.source),
            ]);
            (labels, figure(r))
        })?;
    }
    for (help, figure) in DEFAULT_FAMILIES {
        family(w, help, "counter", &stats.defaults, |d| {
            let labels = labels(&[
                ("profile", &d.profile.as_str()),
                ("direction", &d.direction.as_str()),
                ("verdict", &d.count.verdict.as_str()),
            ]);
            (labels, figure(d))
        })?;
    }
    let staged = stats.rules.iter().filter_map(|r| Some((r.staged?, r)));
    family(w, STAGED, "counter", staged, |(would, r)| {
        let would = match would {
            Would::Block => "block",
            Would::Allow => "allow",
        };
        (labels(&[("rule", &r.name), ("would", &would)]), r.packets)
    })?;
    family(w, SET_ELEMENTS, "gauge", &stats.dynamic_sets, |s| {
        let labels = labels(&[("set", &s.set), ("keyword", &s.keyword.as_str()), ("family", &s.family.as_str())]);
        (labels, s.elements as u64)
    })?;
    family(w, INTERFACE_PROFILE, "gauge", &stats.interfaces, |i| {
        (labels(&[("interface", &i.interface), ("profile", &i.profile.as_str()), ("source", &i.source.as_str())]), 1)
    })?;
    let decided = stats.interfaces.iter().filter_map(|i| {
        let d = i.detection.as_ref()?;
        let at = jiff::Timestamp::from_str(d.detected_at.as_deref()?).ok()?;
        Some((&i.interface, d.state, at.as_second().max(0) as u64))
    });
    family(w, LOCATION_DECIDED, "gauge", decided, |(interface, state, at)| {
        (labels(&[("interface", interface), ("state", &state.as_str())]), *at)
    })?;
    family(w, FALLBACKS, "counter", &iso.fallbacks, |f| (labels(&[("reason", &f.reason.as_str())]), f.count))?;
    family(w, CLEAR_INBOUND, "counter", iso.clear_inbound.iter().flatten(), |c| {
        (labels(&[("protocol", &c.protocol), ("port", &c.port)]), c.connections)
    })
}

/// Writes one family: its HELP and TYPE, then a sample of each item, with
/// the labels and the figure that `sample` gives.
fn family<T>(
    w: &mut dyn Write,
    (name, help): Help,
    kind: &str,
    items: impl IntoIterator<Item = T>,
    sample: impl Fn(&T) -> (String, u64),
) -> io::Result<()> {
    writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}")?;
    for item in items {
        let (labels, value) = sample(&item);
        writeln!(w, "{name}{labels} {value}")?;
    }
    Ok(())
}

/// `{name="value",...}`, the values escaped.
fn labels(pairs: &[(&str, &dyn Display)]) -> String {
    let pairs: Vec<String> =
        pairs.iter().map(|(name, value)| format!("{name}=\"{}\"", escape(&value.to_string()))).collect();
    format!("{{{}}}", pairs.join(","))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!("unix:/run/rf.metrics".parse(), Ok(Listen::Unix("/run/rf.metrics".into())));
        assert_eq!("localhost:9477".parse(), Ok(Listen::Tcp("127.0.0.1:9477".parse().unwrap())));
        assert_eq!("[::1]:9477".parse(), Ok(Listen::Tcp("[::1]:9477".parse().unwrap())));
        assert!("0.0.0.0:9477".parse::<Listen>().unwrap_err().contains("not a loopback"));
        assert!("9477".parse::<Listen>().is_err());
    }
}
