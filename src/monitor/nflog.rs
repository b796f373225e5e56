//! NFLOG over netlink: bind one group, receive the packets that nftables'
//! `log group N` statements send to it, and decode their IP and transport
//! headers. Mechanism only: it knows nothing of policies or rules.
//!
//! What ulogd2's NFLOG input plugin does, in-process. The kernel queues packets
//! per group and sends them in batches (at most `QTHRESH` packets, or after
//! `FLUSH`); if this socket's receive buffer is full the kernel drops the batch
//! and the next `recv` fails with ENOBUFS, which is counted, not fatal.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{config_request, ConfigCmd, ConfigMode, ConfigNla, PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};

use crate::net::{has_ports, IPPROTO_ICMP, IPPROTO_ICMPV6};

/// Bytes of each packet the kernel copies: an IPv6 header, a few extension
/// headers and the transport ports, never the data.
const COPY_RANGE: u32 = 128;
/// Packets per batch, and the longest a packet waits in the kernel for its
/// batch (the kernel counts in hundredths of a second): a logged packet
/// reaches `monitor` within about 50 ms.
const QTHRESH: u32 = 32;
const FLUSH: Duration = Duration::from_millis(50);
/// The socket's receive buffer: room for some thousand batched packets. The
/// kernel never grows it, so a flood cannot make the daemon hold more.
const RCVBUF: usize = 1 << 20;
/// One `recv`: a batch never exceeds nfnetlink_log's buffer, NLMSG_GOODSIZE (at
/// most 8 KiB) unless NFULA_CFG_NLBUFSIZ raises it, which this reader does not.
const RECV_BUF: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error("cannot open a netfilter netlink socket")]
    Socket(#[source] io::Error),
    #[error("cannot bind NFLOG group {group} (is another program, such as ulogd2, reading it?)")]
    Bind {
        group: u16,
        #[source]
        source: io::Error,
    },
}

/// The headers of a logged packet, as sent (source and destination, not local
/// and remote: the direction is the reader's to know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
}

/// One packet the kernel logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub prefix: String,
    pub in_interface: Option<String>,
    pub out_interface: Option<String>,
    /// Owner of the local socket (outbound packets of local processes).
    pub uid: Option<u32>,
    /// `None` if the copied bytes are not an IPv4 or IPv6 header.
    pub header: Option<Header>,
}

pub struct Nflog {
    socket: TokioSocket,
    buf: Vec<u8>,
}

impl Nflog {
    /// Binds `group` in the current network namespace (only one socket may bind
    /// a group at a time).
    pub async fn bind(group: u16) -> Result<Nflog, NflogError> {
        let mut socket = TokioSocket::new(NETLINK_NETFILTER).map_err(NflogError::Socket)?;
        let s = socket.socket_mut();
        s.bind_auto().map_err(NflogError::Socket)?;
        s.set_rx_buf_sz(RCVBUF).map_err(NflogError::Socket)?;
        let mut nflog = Nflog { socket, buf: Vec::with_capacity(RECV_BUF) };
        let config = vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_RANGE).into(),
            ConfigNla::QThresh(QTHRESH),
            ConfigNla::Timeout(FLUSH.into()),
        ];
        nflog.request(group, config).await.map_err(|source| NflogError::Bind { group, source })?;
        Ok(nflog)
    }

    /// Sends a config request and waits for its acknowledgement.
    async fn request(&mut self, group: u16, nlas: Vec<ConfigNla>) -> io::Result<()> {
        let message = config_request(NetfilterProtoFamily::Unspec, group, nlas);
        let mut out = vec![0; message.header.length as usize];
        message.serialize(&mut out);
        self.socket.send(&out).await?;
        self.buf.clear();
        self.socket.recv(&mut self.buf).await?;
        match NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf) {
            Ok(NetlinkMessage { payload: NetlinkPayload::Error(e), .. }) => match e.code {
                None => Ok(()),
                Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
            },
            Ok(other) => Err(io::Error::other(format!("unexpected answer {other:?}"))),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// The next batch of logged packets. `Err` with ENOBUFS means the kernel
    /// dropped packets because the buffer was full; reading may go on.
    pub async fn recv(&mut self) -> io::Result<Vec<Logged>> {
        self.buf.clear();
        self.socket.recv(&mut self.buf).await?;
        Ok(parse_batch(&self.buf))
    }
}

/// Whether a `recv` error only says that packets were lost.
pub fn is_overrun(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

fn parse_batch(mut bytes: &[u8]) -> Vec<Logged> {
    let mut out = Vec::new();
    while let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(bytes) {
        let len = (message.header.length as usize).next_multiple_of(4);
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
            ..
        }) = message.payload
        {
            out.push(logged(nlas));
        }
        if len == 0 || len >= bytes.len() {
            break;
        }
        bytes = &bytes[len..];
    }
    out
}

fn ifname(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index).ok().map(|n| n.to_string_lossy().into_owned())
}

fn logged(nlas: Vec<PacketNla>) -> Logged {
    let mut l = Logged { prefix: String::new(), in_interface: None, out_interface: None, uid: None, header: None };
    for nla in nlas {
        match nla {
            PacketNla::Prefix(p) => l.prefix = p.to_string_lossy().into_owned(),
            PacketNla::IfIndexInDev(i) => l.in_interface = ifname(i),
            PacketNla::IfIndexOutDev(i) => l.out_interface = ifname(i),
            PacketNla::Uid(u) => l.uid = Some(u),
            PacketNla::Payload(p) => l.header = parse_ip(&p),
            _ => {}
        }
    }
    l
}

/// Decodes an IPv4 or IPv6 header and the ports or ICMP type after it. A
/// non-first fragment, or a transport header cut off by the copy range, has none.
pub fn parse_ip(p: &[u8]) -> Option<Header> {
    let (src, dst, protocol, rest): (IpAddr, IpAddr, u8, Option<&[u8]>) = match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let addr = |i: usize| -> Option<IpAddr> {
                Some(Ipv4Addr::from(<[u8; 4]>::try_from(p.get(i..i + 4)?).ok()?).into())
            };
            let fragment_offset = u16::from_be_bytes([*p.get(6)?, *p.get(7)?]) & 0x1fff;
            let rest = if fragment_offset == 0 { p.get(ihl..) } else { None };
            (addr(12)?, addr(16)?, *p.get(9)?, rest)
        }
        6 => {
            let addr = |i: usize| -> Option<IpAddr> {
                Some(Ipv6Addr::from(<[u8; 16]>::try_from(p.get(i..i + 16)?).ok()?).into())
            };
            let (protocol, rest) = skip_ipv6_extensions(*p.get(6)?, p.get(40..));
            (addr(8)?, addr(24)?, protocol, rest)
        }
        _ => return None,
    };
    let mut h = Header { src, dst, protocol, src_port: None, dst_port: None, icmp_type: None };
    if let Some(t) = rest {
        if has_ports(protocol) && t.len() >= 4 {
            h.src_port = Some(u16::from_be_bytes([t[0], t[1]]));
            h.dst_port = Some(u16::from_be_bytes([t[2], t[3]]));
        } else if protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6 {
            h.icmp_type = t.first().copied();
        }
    }
    Some(h)
}

/// Follows hop-by-hop, routing, fragment and destination-options headers to the
/// transport protocol; its header is `None` after a non-first fragment.
fn skip_ipv6_extensions(mut next: u8, mut rest: Option<&[u8]>) -> (u8, Option<&[u8]>) {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DEST_OPTS: u8 = 60;
    while let Some(r) = rest {
        let len = match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => (usize::from(*r.get(1).unwrap_or(&0)) + 1) * 8,
            FRAGMENT if r.len() >= 4 && u16::from_be_bytes([r[2], r[3]]) & 0xfff8 != 0 => return (r[0], None),
            FRAGMENT => 8,
            _ => break,
        };
        next = *r.first().unwrap_or(&next);
        rest = r.get(len..);
    }
    (next, rest)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(frag: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, (frag >> 8) as u8, frag as u8, 64, 6, 0, 0];
        p.extend([10, 0, 0, 2, 10, 0, 0, 1]);
        p.extend([0x9c, 0x40, 0x1f, 0x90, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn ipv4_tcp_ports() {
        let h = parse_ip(&v4_tcp(0)).unwrap();
        assert_eq!((h.src, h.dst), ("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()));
        assert_eq!((h.protocol, h.src_port, h.dst_port), (6, Some(40000), Some(8080)));
        let later_fragment = parse_ip(&v4_tcp(0x0010)).unwrap();
        assert_eq!((later_fragment.src_port, later_fragment.dst_port), (None, None));
        assert_eq!(parse_ip(&[0x45, 0]), None);
        assert_eq!(parse_ip(&[]), None);
    }

    #[test]
    fn ipv6_icmp_after_hop_by_hop() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        p.extend("fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend("fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend([58, 0, 1, 4, 0, 0, 0, 0]);
        p.extend([128, 0, 0, 0, 0, 0, 0, 0]);
        let h = parse_ip(&p).unwrap();
        assert_eq!((h.protocol, h.icmp_type, h.src_port), (58, Some(128), None));
        assert_eq!(h.src, "fd00::2".parse::<IpAddr>().unwrap());
    }
}
