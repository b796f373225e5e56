use serde_json::json;

use super::*;

/// `nft -j list set` of a counting set holding `elems` (source, protocol, port, packets).
fn listed(elems: &[(&str, serde_json::Value, u16, u64)]) -> Value {
    let elems: Vec<Value> = elems
        .iter()
        .map(|(a, p, port, n)| json!({ "elem": { "val": { "concat": [a, p, port] }, "counter": { "packets": n, "bytes": 60 * n } } }))
        .collect();
    json!({ "nftables": [
        { "metainfo": { "version": "1.0.6" } },
        { "set": { "family": "inet", "name": "iso_clear4", "table": "ringfence", "elem": elems } }
    ] })
}

fn clear(source: &str, protocol: &str, port: u16) -> Clear {
    Clear { source: source.parse().unwrap(), protocol: protocol.into(), port }
}

#[test]
fn counts_add_up_across_tables_most_first() {
    let mut r = Readiness::default();
    let old = listed(&[("10.0.0.7", json!("tcp"), 22, 3), ("10.0.0.8", json!("icmp"), 0, 1)]);
    r.keep([&old]);
    let now = listed(&[("10.0.0.7", json!("tcp"), 22, 2), ("fd00::9", json!(47), 0, 4)]);
    assert_eq!(
        r.report([&now]),
        [(clear("10.0.0.7", "tcp", 22), 5), (clear("fd00::9", "47", 0), 4), (clear("10.0.0.8", "icmp", 0), 1)]
    );
    assert_eq!(r.report([]).len(), 2, "without the current table: the kept counts");
}

#[test]
fn an_empty_or_absent_set_counts_nothing() {
    let r = Readiness::default();
    assert!(r.report([&listed(&[]), &json!({})]).is_empty());
}
