//! The kernel's routes and addresses over rtnetlink: the values of
//! `default-gateway` and `local-subnet`. Events only say that something changed;
//! after each burst of them the whole state is read again, so the result is
//! exact however many events were coalesced or lost (a full socket drops them).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::NetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup, RouteMessageBuilder};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::coalesce::{Coalesce, Event};
use super::{DynState, Entry, Update};
use crate::net::AddrRange;
use crate::policy::values::Keyword;

/// The keywords this source gives values to.
pub const KEYWORDS: &[Keyword] = &[Keyword::DefaultGateway, Keyword::LocalSubnet];

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open an rtnetlink socket")]
    Socket(#[source] std::io::Error),
    #[error("reading links, addresses and routes over rtnetlink failed")]
    Dump(#[source] rtnetlink::Error),
}

type Events = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, netlink_sys::SocketAddr)>;

/// The keywords' values now, and a queue of their changes, read and followed
/// on a thread of its own with its own runtime: with 10,000 addresses each
/// dump takes milliseconds to parse, which would otherwise be taken from the
/// daemon's event loop (a current-thread runtime). The thread ends when the
/// queue's receiver is dropped.
pub async fn start() -> Result<(DynState, mpsc::Receiver<Update>), NetlinkError> {
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let (updates, changes) = mpsc::channel(4);
    let follow = move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let runtime = match runtime {
            Ok(rt) => rt,
            Err(e) => {
                let _ = first_tx.send(Err(NetlinkError::Socket(e)));
                return;
            }
        };
        runtime.block_on(async move {
            let connected = async {
                let (handle, events) = connect()?;
                let now = read(&handle).await?;
                Ok((handle, events, now))
            };
            match connected.await {
                Ok((handle, events, now)) => {
                    if first_tx.send(Ok(now.clone())).is_ok() {
                        watch(handle, events, now, updates).await;
                    }
                }
                Err(e) => _ = first_tx.send(Err(e)),
            }
        });
    };
    std::thread::Builder::new().name("rtnetlink".into()).spawn(follow).map_err(NetlinkError::Socket)?;
    let now = first.await.map_err(|_| NetlinkError::Socket(std::io::Error::other("the rtnetlink thread ended")))??;
    Ok((now, changes))
}

/// Opens a socket for queries and one subscribed to link, address and route
/// events (their tasks run on the current tokio runtime).
pub(crate) fn connect() -> Result<(Handle, Events), NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
    tokio::spawn(conn);
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ];
    let (conn, _, events) = rtnetlink::new_multicast_connection(&groups).map_err(NetlinkError::Socket)?;
    tokio::spawn(conn);
    Ok((handle, events))
}

/// Reads links, addresses and routes (of every routing table) now.
pub async fn read(handle: &Handle) -> Result<DynState, NetlinkError> {
    let links: Vec<LinkMessage> = handle.link().get().execute().try_collect().await.map_err(NetlinkError::Dump)?;
    let addresses: Vec<AddressMessage> =
        handle.address().get().execute().try_collect().await.map_err(NetlinkError::Dump)?;
    let mut routes: Vec<RouteMessage> = Vec::new();
    for query in [RouteMessageBuilder::<Ipv4Addr>::new().build(), RouteMessageBuilder::<Ipv6Addr>::new().build()] {
        let mut dump = handle.route().get(query).execute();
        while let Some(route) = dump.try_next().await.map_err(NetlinkError::Dump)? {
            routes.push(route);
        }
    }
    Ok(state_from(&links, &addresses, &routes))
}

/// Sends the new state after events that changed it: read at the first event
/// of a burst, and once per window for the rest (`coalesce`).
async fn watch(handle: Handle, mut events: Events, mut last: DynState, updates: mpsc::Sender<Update>) {
    let mut coalesce = Coalesce::default();
    loop {
        let due = coalesce.due();
        tokio::select! {
            event = events.next() => match event {
                // Each event is the kernel's state after a whole change.
                Some(_) if coalesce.event(Instant::now(), Event::Complete) => {}
                Some(_) => continue,
                None => break,
            },
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
        }
        coalesce.read_at(Instant::now());
        let read =
            read(&handle).await.map_err(|e| format!("keeping the last default-gateway and local-subnet values: {e:#}"));
        if !super::publish(KEYWORDS, read, &mut last, &updates).await {
            return;
        }
    }
    tracing::error!("the rtnetlink event socket closed; default-gateway and local-subnet no longer follow the host");
}

/// The keywords' values from a dump. Pure.
pub fn state_from(links: &[LinkMessage], addresses: &[AddressMessage], routes: &[RouteMessage]) -> DynState {
    let names: HashMap<u32, &str> = links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((l.header.index, n.as_str())),
                _ => None,
            })
        })
        .collect();
    let name = |index: u32| names.get(&index).map_or_else(|| format!("#{index}"), |n| n.to_string());
    let mut state = DynState::default();
    let mut push = |keyword, entry: Entry| {
        let v4 = entry.addresses.is_v4();
        let list = state.values.entry((keyword, v4)).or_insert_with(Vec::new);
        if !list.contains(&entry) {
            list.push(entry);
        }
    };
    for a in addresses {
        let interface = name(a.header.index);
        // Loopback traffic is always allowed; its subnet means nothing here.
        if interface == "lo" {
            continue;
        }
        // IFA_ADDRESS is the prefix's address (the peer's on point-to-point links).
        let Some(addr) = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        }) else {
            continue;
        };
        let addresses = subnet(addr, a.header.prefix_len);
        let source = format!("address {addr}/{} on {interface}", a.header.prefix_len);
        push(Keyword::LocalSubnet, Entry { interface: Some(interface), addresses, source });
    }
    for r in routes {
        if r.header.destination_prefix_length != 0 || r.header.kind != RouteType::Unicast {
            continue;
        }
        let table = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        });
        let table = table.unwrap_or(r.header.table as u32);
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let mut hops: Vec<(Option<u32>, &[RouteAttribute])> = vec![(oif, &r.attributes)];
        for attr in &r.attributes {
            if let RouteAttribute::MultiPath(nexthops) = attr {
                hops.extend(nexthops.iter().map(|h| (Some(h.interface_index), h.attributes.as_slice())));
            }
        }
        for (oif, attrs) in hops {
            for attr in attrs {
                let gateway = match attr {
                    RouteAttribute::Gateway(RouteAddress::Inet(a)) => IpAddr::V4(*a),
                    RouteAttribute::Gateway(RouteAddress::Inet6(a)) => IpAddr::V6(*a),
                    _ => continue,
                };
                let via = oif.map(|i| format!(" on {}", name(i))).unwrap_or_default();
                let source = format!("default route in table {table} via {gateway}{via}");
                push(Keyword::DefaultGateway, Entry { interface: None, addresses: subnet(gateway, 128), source });
            }
        }
    }
    for list in state.values.values_mut() {
        list.sort();
    }
    state
}

/// The prefix of `len` bits that holds `addr` (a host address if `len` is the
/// full length or more).
fn subnet(addr: IpAddr, len: u8) -> AddrRange {
    fn bounds(v: u128, len: u32, bits: u32) -> (u128, u128) {
        let host = bits - len.min(bits);
        let mask = if host == 128 { u128::MAX } else { (1u128 << host) - 1 };
        (v & !mask, v | mask)
    }
    match addr {
        IpAddr::V4(a) => {
            let (lo, hi) = bounds(u32::from(a) as u128, len as u32, 32);
            AddrRange::V4(lo as u32, hi as u32)
        }
        IpAddr::V6(a) => {
            let (lo, hi) = bounds(u128::from(a), len as u32, 128);
            AddrRange::V6(lo, hi)
        }
    }
}

#[cfg(test)]
mod tests;
