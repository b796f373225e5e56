//! A probe's name, resolved through the DNS servers of the interface being
//! judged, with queries that leave through it (SO_BINDTODEVICE): the host's
//! resolver (systemd-resolved, nscd, a cache) would answer from whichever
//! link it prefers, and say nothing of the one being judged.
//!
//! One A query (then AAAA if it had no address) over UDP, written here
//! rather than with a DNS crate: the message is a fixed header and one
//! question, the answer is read for its A/AAAA records only, and no crate
//! for it is in the tree. Nothing in the answer is trusted beyond an address
//! to try: an address an attacker gives still has to pass the certificate
//! check, so CNAME chains and TTLs are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
/// A server on the link answers in milliseconds; one that has not in a
/// second (gone, or not reachable through this link) makes way for the next.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The addresses of `name` from the first of `servers` that gives some.
pub async fn resolve(name: &str, servers: &[IpAddr], ifname: &str) -> Result<Vec<IpAddr>, String> {
    if servers.is_empty() {
        return Err(format!("no DNS server for {ifname} to resolve {name}"));
    }
    let mut errors = Vec::new();
    for &server in servers {
        for qtype in [TYPE_A, TYPE_AAAA] {
            let asked = tokio::time::timeout(SERVER_TIMEOUT, ask(name, qtype, server, ifname)).await;
            match asked.unwrap_or_else(|_| Err("no answer within 1s".into())) {
                Ok(addrs) if !addrs.is_empty() => return Ok(addrs),
                Ok(_) => {}
                Err(e) => {
                    errors.push(format!("{server}: {e}"));
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        let asked: Vec<String> = servers.iter().map(ToString::to_string).collect();
        Err(format!("{name} has no address (asked {})", asked.join(", ")))
    } else {
        Err(format!("cannot resolve {name}: {}", errors.join("; ")))
    }
}

async fn ask(name: &str, qtype: u16, server: IpAddr, ifname: &str) -> Result<Vec<IpAddr>, String> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(|e| format!("cannot open a socket: {e}"))?;
    super::bind_to_device(&socket, ifname)?;
    // connect(): the kernel drops datagrams from any other address.
    socket.connect((server, 53)).await.map_err(|e| e.to_string())?;
    let id = random_id();
    let query = query(id, name, qtype)?;
    socket.send(&query).await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Another id is a late answer to nothing of ours: wait for ours.
        if let Some(answer) = parse(&buf[..n], id, &query[12..])? {
            return Ok(answer);
        }
    }
}

fn random_id() -> u16 {
    let mut id = [0u8; 2];
    // Without randomness the id is only a guessable 0, which the certificate
    // check makes harmless.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    u16::from_be_bytes(id)
}

/// A query with recursion desired for one name.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name} is not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// The addresses in an answer to the query `id` whose question is
/// `question`; `None` for a message that is not that answer.
pub fn parse(msg: &[u8], id: u16, question: &[u8]) -> Result<Option<Vec<IpAddr>>, String> {
    let short = || "a truncated answer".to_string();
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id || msg[2] & 0x80 == 0 {
        return Ok(None);
    }
    let at = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]);
    if at(4) != 1 || !msg.get(12..12 + question.len()).is_some_and(|q| q.eq_ignore_ascii_case(question)) {
        return Ok(None);
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Ok(Some(Vec::new())),
        rcode => return Err(format!("the server answered with error {rcode}")),
    }
    let mut i = 12 + question.len();
    let mut addrs = Vec::new();
    for _ in 0..at(6) {
        i = skip_name(msg, i).ok_or_else(short)?;
        if msg.len() < i + 10 {
            return Err(short());
        }
        let (rtype, class, len) = (at(i), at(i + 2), at(i + 8) as usize);
        let data = msg.get(i + 10..i + 10 + len).ok_or_else(short)?;
        match (rtype, class, data.len()) {
            (TYPE_A, CLASS_IN, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(data).expect("4 bytes"))),
            (TYPE_AAAA, CLASS_IN, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(data).expect("16 bytes"))),
            _ => {}
        }
        i += 10 + len;
    }
    Ok(Some(addrs))
}

/// The index after a name at `i`: labels up to a zero or a compression pointer.
fn skip_name(msg: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *msg.get(i)? as usize;
        match len {
            0 => return Some(i + 1),
            l if l & 0xc0 == 0xc0 => return (i + 2 <= msg.len()).then_some(i + 2),
            l => i += 1 + l,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, question: &[u8], rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x81, 0x80 | rcode, 0, 1, 0, records.len() as u8, 0, 0, 0, 0]);
        m.extend_from_slice(question);
        for (rtype, data) in records {
            // A pointer to the question's name.
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, data.len() as u8]);
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn an_answer_gives_its_addresses() {
        let q = query(7, "dc.corp.test", TYPE_A).unwrap();
        assert_eq!(&q[12..], b"\x02dc\x04corp\x04test\x00\x00\x01\x00\x01");
        let cname: &[u8] = b"\x02dc\x00";
        let a = answer(7, &q[12..], 0, &[(5, cname), (TYPE_A, &[10, 0, 0, 1]), (TYPE_A, &[10, 0, 0, 2])]);
        let addrs = parse(&a, 7, &q[12..]).unwrap().unwrap();
        assert_eq!(addrs, [IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])]);
    }

    #[test]
    fn other_answers_are_not_ours_and_errors_are_errors() {
        let q = query(7, "dc.corp.test", TYPE_A).unwrap();
        let a = answer(8, &q[12..], 0, &[(TYPE_A, &[10, 0, 0, 1])]);
        assert_eq!(parse(&a, 7, &q[12..]).unwrap(), None);
        let other = query(7, "xx.corp.test", TYPE_A).unwrap();
        let a = answer(7, &other[12..], 0, &[(TYPE_A, &[10, 0, 0, 1])]);
        assert_eq!(parse(&a, 7, &q[12..]).unwrap(), None);
        assert_eq!(parse(&answer(7, &q[12..], 3, &[]), 7, &q[12..]).unwrap(), Some(Vec::new()));
        assert!(parse(&answer(7, &q[12..], 2, &[]), 7, &q[12..]).unwrap_err().contains("error 2"));
        let mut cut = answer(7, &q[12..], 0, &[(TYPE_A, &[10, 0, 0, 1])]);
        cut.truncate(cut.len() - 2);
        assert!(parse(&cut, 7, &q[12..]).unwrap_err().contains("truncated"));
    }
}
