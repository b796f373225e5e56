//! Reads from nf_tables over netlink, for the daemon's answers: whether the
//! table exists, and the counters of a set's elements, summed by the
//! elements' comment tags. Neither runs `nft`, which a large transaction in
//! progress holds up, and whose listing of a large set is slow:
//! `nft -j list table` prints every element of a 100,000-element set as JSON,
//! which takes `nft` seconds and its reader hundreds of megabytes; the dump
//! costs the kernel tens of milliseconds, and its messages are read one
//! receive buffer at a time and never kept. The messages are decoded here by
//! hand, as no netlink crate of ours knows nf_tables.

use std::collections::HashMap;
use std::io;

use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::{Socket, SocketAddr};

/// Packets and bytes.
pub type Counter = (u64, u64);

/// linux/netfilter/nfnetlink.h and nf_tables.h.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_INET: u8 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 10;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// libnftnl's user data TLV for an element's comment (nftables writes it
/// with its terminating NUL).
const NFTNL_UDATA_SET_ELEM_COMMENT: u8 = 0;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Larger than any part of a dump (the kernel's limit is 32 KiB).
const DUMP_BUFFER: usize = 64 * 1024;
/// The flags in the top bits of an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Whether the kernel has `table` (family inet): NFT_MSG_GETTABLE.
pub fn table_exists(table: &str) -> io::Result<bool> {
    let mut found = false;
    let get = request(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_ACK, &[(NFTA_TABLE_NAME, table)]);
    match exchange(&get, |_| found = true) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
        Ok(()) => Ok(found),
    }
}

/// Adds the counters of `set`'s elements in `table` (family inet) to `sums`,
/// by the number in each element's comment; elements without one (a dynamic
/// set's) are left out. A set the kernel does not have adds nothing.
pub fn add_set_counters(table: &str, set: &str, sums: &mut HashMap<u32, Counter>) -> io::Result<()> {
    let dump = request(
        NFT_MSG_GETSETELEM,
        NLM_F_REQUEST | NLM_F_DUMP,
        &[(NFTA_SET_ELEM_LIST_TABLE, table), (NFTA_SET_ELEM_LIST_SET, set)],
    );
    match exchange(&dump, |body| add_message(body, sums)) {
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => Ok(()),
        result => result,
    }
}

/// Sends `message` and passes the body (after its nfgenmsg) of each answer to
/// `each`, until the kernel's acknowledgement or the dump's end; an error the
/// kernel answers is returned as such.
fn exchange(message: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    socket.send(message, 0)?;
    // The kernel fills each part of a dump up to the size of the reader's
    // last receive buffer (at most 32 KiB), and walks a hash set from its
    // start again for every part: a small buffer (recv_from_full peeks with
    // none) makes 100,000 elements take seconds instead of a tenth of one.
    let mut data = Vec::with_capacity(DUMP_BUFFER);
    loop {
        data.clear();
        socket.recv(&mut data, 0)?;
        let mut rest = &data[..];
        while rest.len() >= 16 {
            let len = (u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize).clamp(16, rest.len());
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            let flags = u16::from_ne_bytes([rest[6], rest[7]]);
            let body = &rest[16..len];
            rest = &rest[align(len).min(rest.len())..];
            if flags & NLM_F_DUMP_INTR != 0 {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "the table changed during the dump"));
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = body.get(0..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap_or_default()));
                    return match -code {
                        0 => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e)),
                    };
                }
                _ => each(body.get(4..).unwrap_or_default()),
            }
        }
    }
}

/// An nf_tables request of type `message` whose attributes are names.
fn request(message: u16, flags: u16, names: &[(u16, &str)]) -> Vec<u8> {
    let mut m = vec![0; 16];
    // nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian).
    m.extend([NFPROTO_INET, 0, 0, 0]);
    for &(kind, name) in names {
        let len = 4 + name.len() + 1;
        m.extend((len as u16).to_ne_bytes());
        m.extend(kind.to_ne_bytes());
        m.extend(name.as_bytes());
        m.push(0);
        m.resize(align(m.len()), 0);
    }
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | message).to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes in `data`: (type without its flags, payload).
fn attrs(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = (u16::from_ne_bytes([data[0], data[1]]) as usize).clamp(4, data.len());
        let kind = u16::from_ne_bytes([data[2], data[3]]) & NLA_TYPE_MASK;
        let payload = &data[4..len];
        data = &data[align(len).min(data.len())..];
        Some((kind, payload))
    })
}

fn be32(b: &[u8]) -> u32 {
    b.try_into().map_or(0, u32::from_be_bytes)
}

fn be64(b: &[u8]) -> u64 {
    b.try_into().map_or(0, u64::from_be_bytes)
}

/// One NEWSETELEM message of the dump (after its nfgenmsg).
fn add_message(body: &[u8], sums: &mut HashMap<u32, Counter>) {
    let elements = attrs(body).filter(|&(k, _)| k == NFTA_SET_ELEM_LIST_ELEMENTS);
    for elem in elements.flat_map(|(_, list)| attrs(list)).filter(|&(k, _)| k == NFTA_LIST_ELEM) {
        if let Some((tag, counter)) = element(elem.1) {
            let sum = sums.entry(tag).or_default();
            *sum = (sum.0 + counter.0, sum.1 + counter.1);
        }
    }
}

/// An element's tag and counter; `None` for an interval's end (which carries
/// neither) or an element without a numeric comment.
fn element(data: &[u8]) -> Option<(u32, Counter)> {
    let (mut tag, mut counter) = (None, (0, 0));
    for (kind, payload) in attrs(data) {
        match kind {
            NFTA_SET_ELEM_FLAGS if be32(payload) & NFT_SET_ELEM_INTERVAL_END != 0 => return None,
            NFTA_SET_ELEM_USERDATA => tag = comment(payload).and_then(|c| c.parse().ok()),
            NFTA_SET_ELEM_EXPR => counter = expr_counter(payload).unwrap_or(counter),
            NFTA_SET_ELEM_EXPRESSIONS => {
                if let Some(c) = attrs(payload).find_map(|(_, e)| expr_counter(e)) {
                    counter = c;
                }
            }
            _ => {}
        }
    }
    Some((tag?, counter))
}

/// The comment in libnftnl's user data TLVs (type, length, value).
fn comment(mut udata: &[u8]) -> Option<&str> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == NFTNL_UDATA_SET_ELEM_COMMENT {
            return std::str::from_utf8(value).ok().map(|s| s.trim_end_matches('\0'));
        }
        udata = &udata[2 + len..];
    }
    None
}

/// (packets, bytes) if `expr` is a counter.
fn expr_counter(expr: &[u8]) -> Option<Counter> {
    let mut is_counter = false;
    let mut counter = None;
    for (kind, payload) in attrs(expr) {
        match kind {
            NFTA_EXPR_NAME => is_counter = payload.strip_suffix(b"\0").unwrap_or(payload) == b"counter",
            NFTA_EXPR_DATA => {
                let (mut packets, mut bytes) = (0, 0);
                for (k, v) in attrs(payload) {
                    match k {
                        NFTA_COUNTER_PACKETS => packets = be64(v),
                        NFTA_COUNTER_BYTES => bytes = be64(v),
                        _ => {}
                    }
                }
                counter = Some((packets, bytes));
            }
            _ => {}
        }
    }
    counter.filter(|_| is_counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        v.extend(kind.to_ne_bytes());
        v.extend(payload);
        v.resize(align(v.len()), 0);
        v
    }

    fn counter(packets: u64, bytes: u64) -> Vec<u8> {
        let data = [nla(NFTA_COUNTER_BYTES, &bytes.to_be_bytes()), nla(NFTA_COUNTER_PACKETS, &packets.to_be_bytes())];
        [nla(NFTA_EXPR_NAME, b"counter\0"), nla(NFTA_EXPR_DATA | 0x8000, &data.concat())].concat()
    }

    fn elem(tag: &str, flags: u32, expr: Vec<u8>) -> Vec<u8> {
        let mut udata = vec![NFTNL_UDATA_SET_ELEM_COMMENT, tag.len() as u8 + 1];
        udata.extend(tag.as_bytes());
        udata.push(0);
        let attrs = [nla(NFTA_SET_ELEM_FLAGS, &flags.to_be_bytes()), nla(NFTA_SET_ELEM_USERDATA, &udata), expr];
        nla(NFTA_LIST_ELEM | 0x8000, &attrs.concat())
    }

    #[test]
    fn counters_are_summed_by_tag_and_interval_ends_are_left_out() {
        let elems = [
            elem("7", 0, nla(NFTA_SET_ELEM_EXPR | 0x8000, &counter(2, 100))),
            elem("7", 0, nla(NFTA_SET_ELEM_EXPRESSIONS | 0x8000, &nla(NFTA_LIST_ELEM | 0x8000, &counter(3, 50)))),
            elem("7", NFT_SET_ELEM_INTERVAL_END, nla(NFTA_SET_ELEM_EXPR, &counter(1000, 1000))),
            elem("9", 0, nla(NFTA_SET_ELEM_EXPR, &counter(1, 1))),
            elem("not a tag", 0, nla(NFTA_SET_ELEM_EXPR, &counter(1, 1))),
        ];
        let body =
            [nla(NFTA_SET_ELEM_LIST_TABLE, b"ringfence\0"), nla(NFTA_SET_ELEM_LIST_ELEMENTS | 0x8000, &elems.concat())];
        let mut sums = HashMap::new();
        add_message(&body.concat(), &mut sums);
        assert_eq!(sums, HashMap::from([(7, (5, 150)), (9, (1, 1))]));
    }

    #[test]
    fn the_request_names_the_table_and_set() {
        let r = request(
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_DUMP,
            &[(NFTA_SET_ELEM_LIST_TABLE, "ringfence"), (NFTA_SET_ELEM_LIST_SET, "s0")],
        );
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize, r.len());
        let names: Vec<_> = attrs(&r[20..]).collect();
        assert_eq!(names, [(NFTA_SET_ELEM_LIST_TABLE, &b"ringfence\0"[..]), (NFTA_SET_ELEM_LIST_SET, &b"s0\0"[..])]);
    }
}
