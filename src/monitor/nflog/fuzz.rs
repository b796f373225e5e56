//! Fuzzing NFLOG decoding: batches of netlink messages as the kernel sends
//! them (captured from nfnetlink_log, fuzz/README.md), and the IP headers in
//! them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::testutil::fuzz::{corpus, corpus_files, fuzz, run};

/// Netlink lengths and types, NFLOG attribute headers, IP version nibbles and
/// IPv6 extension headers.
const TOKENS: &[&[u8]] = &[
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x10\x00\x00\x00",
    b"\x00\x04",
    b"\x03\x00",
    b"\x02\x00",
    b"\x04\x00\x09\x00",
    b"\x08\x00\x0a\x00x\x00\x00\x00",
    b"\x45",
    b"\x60",
    b"\x00\x08",
    b"\x2c\x00\x00\x01",
    b"\x3c\xff",
    b"\x2b\x00",
    b"\x01\x00",
];

#[test]
fn fuzz_nflog_batches() {
    fuzz("nflog", 5000, corpus(&["fuzz/corpus/nflog"]), TOKENS, |bytes| {
        parse_batch(bytes);
        Ok(())
    });
}

/// A batch reads as its messages read one by one.
#[test]
fn fuzz_nflog_batch_framing() {
    let packets: Vec<Vec<u8>> = corpus_files(&["fuzz/corpus/nflog"])
        .into_iter()
        .filter(|(n, _)| n.starts_with("packet-"))
        .map(|(_, b)| b)
        .collect();
    run("nflog framing", 500, vec(select(packets), 0..12), |messages| {
        let mut batch = Vec::new();
        for m in &messages {
            batch.extend_from_slice(m);
            batch.resize(batch.len().next_multiple_of(4), 0);
        }
        let one_by_one: Vec<Logged> = messages.iter().flat_map(|m| parse_batch(m)).collect();
        prop_assert_eq!(parse_batch(&batch), one_by_one);
        Ok(())
    });
}

/// IPv6 extension headers that `parse_ip` follows to the transport header.
const EXTENSIONS: [u8; 4] = [0, 43, 44, 60];

fn addresses() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(s, d)| (Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into())),
        (any::<u128>(), any::<u128>()).prop_map(|(s, d)| (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())),
    ]
}

/// A header as the kernel would copy it for a first fragment.
fn header() -> impl Strategy<Value = Header> {
    (addresses(), any::<u8>().prop_filter("an extension header", |p| !EXTENSIONS.contains(p)), any::<[u8; 4]>())
        .prop_map(|((src, dst), protocol, t)| {
            let ports = has_ports(protocol);
            let icmp = protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6;
            Header {
                src,
                dst,
                protocol,
                src_port: ports.then(|| u16::from_be_bytes([t[0], t[1]])),
                dst_port: ports.then(|| u16::from_be_bytes([t[2], t[3]])),
                icmp_type: icmp.then_some(t[0]),
            }
        })
}

/// The packet of `h`, IPv6 with a hop-by-hop header if `hop_by_hop`.
fn packet(h: &Header, hop_by_hop: bool, filler: [u8; 4]) -> Vec<u8> {
    let transport = match (h.src_port, h.dst_port, h.icmp_type) {
        (Some(s), Some(d), _) => [s.to_be_bytes(), d.to_be_bytes()].concat(),
        (_, _, Some(t)) => vec![t, 0, 0, 0],
        _ => filler.to_vec(),
    };
    let mut p = match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0x45, 0, 0, 24, 0, 0, 0, 0, 64, h.protocol, 0, 0];
            p.extend(s.octets().into_iter().chain(d.octets()));
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let next = if hop_by_hop { 0 } else { h.protocol };
            let mut p = vec![0x60, 0, 0, 0, 0, 4, next, 64];
            p.extend(s.octets().into_iter().chain(d.octets()));
            if hop_by_hop {
                p.extend([h.protocol, 0, 1, 4, 0, 0, 0, 0]);
            }
            p
        }
        _ => unreachable!("one family"),
    };
    p.extend(transport);
    p
}

#[test]
fn fuzz_ip_headers_read_back() {
    run("ip headers", 3000, (header(), any::<bool>(), any::<[u8; 4]>()), |(h, hop_by_hop, filler)| {
        let p = packet(&h, hop_by_hop, filler);
        prop_assert_eq!(parse_ip(&p), Some(h.clone()));
        // Cut anywhere, it is read as far as it goes, without a panic.
        for n in 0..p.len() {
            parse_ip(&p[..n]);
        }
        Ok(())
    });
}
