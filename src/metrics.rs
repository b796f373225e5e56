//! The opt-in Prometheus endpoint (`daemon --metrics`): the figures of
//! `show stats` in the text exposition format 0.0.4, over HTTP on a loopback
//! port or on a Unix socket.
//!
//! The HTTP side is a few lines by hand rather than a server crate: it answers
//! one GET per connection with one body, which is all a scraper asks for.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::admission::{self, Accepting, Peer, Permit, Refused};
use crate::daemon::Call;
use crate::protocol::{Request, Response};

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

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, _permit: Permit, calls: mpsc::Sender<Call>) {
    let Ok(Some(head)) = timeout(admission::REQUEST_TIMEOUT, read_head(&mut stream)).await else { return };
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if !head.starts_with("GET ") {
        ("405 Method Not Allowed", String::from("GET only\n"))
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", String::from("metrics are at /metrics\n"))
    } else {
        let (tx, rx) = oneshot::channel();
        match calls.send((Request::Stats, tx)).await {
            Err(_) => ("503 Service Unavailable", String::from("the daemon is stopping\n")),
            Ok(()) => match rx.await {
                Err(_) => ("503 Service Unavailable", String::from("the daemon is stopping\n")),
                // Rendered on a blocking thread, as the socket's reads are.
                Ok(answer) => match tokio::task::spawn_blocking(move || answer.into_response()).await {
                    Ok(Response::Ok(stats)) => ("200 OK", render(&stats)),
                    Ok(Response::Error(e)) => ("500 Internal Server Error", format!("{e}\n")),
                    Err(e) => ("500 Internal Server Error", format!("{e}\n")),
                },
            },
        }
    };
    // The scraper may have gone, or not read in time; nothing to do about it.
    let _ = timeout(admission::WRITE_TIMEOUT, stream.write_all(http(status, &body).as_bytes())).await;
}

fn http(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// One metric family read from an array of `show stats`: each element is a
/// sample labelled with some of its keys.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Where the samples are in the stats: keys, one per level.
    array: &'static [&'static str],
    labels: &'static [&'static str],
    value: &'static str,
}

const RULE_LABELS: &[&str] = &["name", "direction", "action", "source"];
const DEFAULT_LABELS: &[&str] = &["profile", "direction", "verdict"];

const FAMILIES: &[Family] = &[
    Family {
        name: "ringfence_rule_packets_total",
        help: "Packets a rule decided (the first packet of each connection).",
        kind: "counter",
        array: &["rules"],
        labels: RULE_LABELS,
        value: "packets",
    },
    Family {
        name: "ringfence_rule_bytes_total",
        help: "Bytes of the packets a rule decided.",
        kind: "counter",
        array: &["rules"],
        labels: RULE_LABELS,
        value: "bytes",
    },
    Family {
        name: "ringfence_rule_logged_total",
        help: "Packets of a rule with log: true that the daemon read from NFLOG (after the kernel's rate limit).",
        kind: "counter",
        array: &["rules"],
        labels: RULE_LABELS,
        value: "logged",
    },
    Family {
        name: "ringfence_default_packets_total",
        help: "Packets a profile's default decided.",
        kind: "counter",
        array: &["defaults"],
        labels: DEFAULT_LABELS,
        value: "packets",
    },
    Family {
        name: "ringfence_default_bytes_total",
        help: "Bytes of the packets a profile's default decided.",
        kind: "counter",
        array: &["defaults"],
        labels: DEFAULT_LABELS,
        value: "bytes",
    },
    Family {
        name: "ringfence_default_logged_total",
        help: "Packets dropped by a profile's default that the daemon read from NFLOG (settings.log-dropped).",
        kind: "counter",
        array: &["defaults"],
        labels: DEFAULT_LABELS,
        value: "logged",
    },
    Family {
        name: "ringfence_dynamic_set_elements",
        help: "Addresses in a keyword's dynamic set.",
        kind: "gauge",
        array: &["dynamic-sets"],
        labels: &["set", "keyword", "family"],
        value: "elements",
    },
    Family {
        name: "ringfence_isolation_fallbacks_total",
        help: "First contacts that went on in clear (soft SAs), by why no SA came up in time.",
        kind: "counter",
        array: &["isolation", "fallbacks"],
        labels: &["reason"],
        value: "count",
    },
    Family {
        name: "ringfence_isolation_clear_inbound_total",
        help: "New connections in clear from secure subnets, which secure-request would refuse (request and boundary modes), by protocol and port.",
        kind: "counter",
        array: &["isolation", "clear-inbound"],
        labels: &["protocol", "port"],
        value: "connections",
    },
];

/// Single figures: name, help, type, path in the stats.
const SCALARS: &[(&str, &str, &str, &[&str])] = &[
    ("ringfence_applies_total", "Rulesets applied since the daemon started.", "counter", &["applies"]),
    ("ringfence_last_apply_seconds", "How long the last apply took.", "gauge", &["last-apply-seconds"]),
    (
        "ringfence_isolation_sas_up",
        "ESP security associations of Ringfence's IPsec connection in the kernel (one each way per CHILD_SA).",
        "gauge",
        &["isolation", "sas-up"],
    ),
    (
        "ringfence_isolation_soft_sas",
        "Peers reached in clear for now because no SA came up in time (soft SAs).",
        "gauge",
        &["isolation", "soft-sas"],
    ),
    ("ringfence_monitor_logged_total", "Logged packets read from NFLOG.", "counter", &["monitor", "totals", "logged"]),
    (
        "ringfence_monitor_unattributed_total",
        "Logged packets whose rule could not be named.",
        "counter",
        &["monitor", "totals", "unattributed"],
    ),
    (
        "ringfence_monitor_overruns_total",
        "Times the kernel dropped NFLOG messages for a full socket buffer.",
        "counter",
        &["monitor", "totals", "overruns"],
    ),
    (
        "ringfence_monitor_queue_drops_total",
        "Logged packets dropped because the daemon was behind.",
        "counter",
        &["monitor", "totals", "queue-drops"],
    ),
    ("ringfence_monitor_subscribers", "Live ringfence monitor connections.", "gauge", &["monitor", "subscribers"]),
];

fn escape(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The stats of `show stats --json` in Prometheus' text format.
pub fn render(stats: &Value) -> String {
    let mut o = String::new();
    let mut stats = stats.clone();
    stats["last-apply-seconds"] = serde_json::json!(stats["last-apply-ms"].as_f64().unwrap_or(0.0) / 1000.0);
    for (name, help, kind, path) in SCALARS {
        let v = path.iter().fold(&stats, |v, k| &v[*k]);
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", v.as_f64().unwrap_or(0.0));
    }
    for f in FAMILIES {
        let _ = writeln!(o, "# HELP {} {}\n# TYPE {} {}", f.name, f.help, f.name, f.kind);
        let samples = f.array.iter().fold(&stats, |v, k| &v[*k]);
        for sample in samples.as_array().into_iter().flatten() {
            let labels: Vec<String> = f.labels.iter().map(|l| format!("{l}=\"{}\"", escape(&sample[*l]))).collect();
            let _ = writeln!(o, "{}{{{}}} {}", f.name, labels.join(","), sample[f.value].as_f64().unwrap_or(0.0));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listen_addresses() {
        assert_eq!("unix:/run/rf.metrics".parse(), Ok(Listen::Unix("/run/rf.metrics".into())));
        assert_eq!("localhost:9477".parse(), Ok(Listen::Tcp("127.0.0.1:9477".parse().unwrap())));
        assert_eq!("[::1]:9477".parse(), Ok(Listen::Tcp("[::1]:9477".parse().unwrap())));
        assert!("0.0.0.0:9477".parse::<Listen>().unwrap_err().contains("not a loopback"));
        assert!("9477".parse::<Listen>().is_err());
    }

    #[test]
    fn renders_labels_escaped() {
        let stats = json!({
            "applies": 3, "last-apply-ms": 12.5,
            "rules": [{ "name": "a \"b\"", "direction": "in", "action": "block", "source": "x.yaml:3:5", "packets": 7, "bytes": 420, "logged": 2 }],
            "isolation": {
                "sas-up": 0, "soft-sas": 1, "fallbacks": [{ "reason": "auth-failed", "count": 2 }],
                "clear-inbound": [{ "protocol": "tcp", "port": 22, "connections": 5 }]
            },
            "monitor": { "totals": { "logged": 2 }, "subscribers": 1 },
        });
        let text = render(&stats);
        assert!(text.contains("ringfence_applies_total 3\n"));
        assert!(text.contains("ringfence_last_apply_seconds 0.0125\n"));
        assert!(text.contains(
            "ringfence_rule_packets_total{name=\"a \\\"b\\\"\",direction=\"in\",action=\"block\",source=\"x.yaml:3:5\"} 7\n"
        ));
        assert!(text.contains("# TYPE ringfence_monitor_subscribers gauge\nringfence_monitor_subscribers 1\n"));
        assert!(text.contains("ringfence_isolation_soft_sas 1\n"));
        assert!(text.contains("ringfence_isolation_fallbacks_total{reason=\"auth-failed\"} 2\n"));
        assert!(text.contains("ringfence_isolation_clear_inbound_total{protocol=\"tcp\",port=\"22\"} 5\n"));
    }
}
