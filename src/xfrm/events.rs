//! What the kernel says about SAs as it happens (`ip xfrm monitor acquire
//! sa`): an ACQUIRE when a packet needs an SA of Ringfence's that does not
//! exist yet (charon, listening to the same group, starts negotiating), and a
//! new or updated SA. The daemon's first-contact logic
//! (`daemon::first_contact`) times the negotiation from the ACQUIRE and ends
//! it at the SA.
//!
//! ACQUIREs come from the XFRMNLGRP_ACQUIRE multicast group, SAs from
//! XFRMNLGRP_SA (XFRM_MSG_NEWSA and XFRM_MSG_UPDSA: charon adds the outbound
//! SA and updates the inbound one that its SPI allocation left larval).

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_xfrm::{Address, XfrmMessage, AF_INET, IPPROTO_ESP, XFRMNLGRP_ACQUIRE, XFRMNLGRP_SA};
use netlink_sys::{protocols::NETLINK_XFRM, AsyncSocket, AsyncSocketExt, TokioSocket};

use super::{BAND, REQIDS};

/// One event about Ringfence's SAs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A packet to `peer` waits for an SA that charon is asked to negotiate.
    Acquire { peer: IpAddr },
    /// An ESP SA of Ringfence's reqids between the two addresses is up.
    SaUp { src: IpAddr, dst: IpAddr },
}

pub struct Events {
    socket: TokioSocket,
    buf: Vec<u8>,
}

impl Events {
    /// Subscribes, in the current network namespace.
    pub fn open() -> io::Result<Events> {
        let mut socket = TokioSocket::new(NETLINK_XFRM)?;
        let s = socket.socket_mut();
        s.bind_auto()?;
        s.add_membership(XFRMNLGRP_ACQUIRE)?;
        s.add_membership(XFRMNLGRP_SA)?;
        Ok(Events { socket, buf: Vec::with_capacity(64 * 1024) })
    }

    /// The events of the next batch the kernel sends. `Err` with ENOBUFS
    /// means some were lost (the socket's buffer was full); reading may go on.
    pub async fn recv(&mut self) -> io::Result<Vec<Event>> {
        self.buf.clear();
        self.socket.recv(&mut self.buf).await?;
        Ok(parse(&self.buf))
    }
}

fn parse(mut bytes: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(m) = NetlinkMessage::<XfrmMessage>::deserialize(bytes) else { break };
        let len = (m.header.length as usize).clamp(1, bytes.len());
        bytes = &bytes[len..];
        if let NetlinkPayload::InnerMessage(m) = m.payload {
            out.extend(event(m));
        }
    }
    out
}

fn event(m: XfrmMessage) -> Option<Event> {
    match m {
        // Only for Ringfence's policies: an ACQUIRE carries the policy that
        // raised it, and Ringfence's are those of its priority band.
        XfrmMessage::Acquire(a) if BAND.contains(&a.acquire.policy.priority) => {
            let family = a.acquire.policy.selector.family;
            Some(Event::Acquire { peer: ip(&a.acquire.id.daddr, family)? })
        }
        XfrmMessage::AddSa(sa) | XfrmMessage::UpdateSa(sa) => {
            let i = &sa.user_sa_info;
            let up = i.id.proto == IPPROTO_ESP && i.id.spi != 0 && REQIDS.contains(&i.reqid);
            up.then_some(Event::SaUp { src: ip(&i.saddr, i.family)?, dst: ip(&i.id.daddr, i.family)? })
        }
        _ => None,
    }
}

fn ip(a: &Address, family: u16) -> Option<IpAddr> {
    match family {
        AF_INET => Some(a.to_ipv4().into()),
        netlink_packet_xfrm::AF_INET6 => Some(a.to_ipv6().into()),
        _ => None,
    }
}
