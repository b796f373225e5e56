use serde_json::json;

use super::counted;

#[test]
fn listed_addresses_and_their_counters() {
    let listed = json!({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"set": {"name": "staged_in_would_block4", "elem": [
            {"elem": {"val": "10.0.0.7", "counter": {"packets": 100, "bytes": 6000}}},
            {"elem": {"val": "fd00::2", "counter": {"packets": 3, "bytes": 180}}},
            {"elem": {"val": "not an address", "counter": {"packets": 1, "bytes": 60}}}
        ]}}
    ]});
    let got: Vec<_> = counted(Some(&listed)).collect();
    assert_eq!(got, vec![("10.0.0.7".parse().unwrap(), 100), ("fd00::2".parse().unwrap(), 3)]);
    assert_eq!(counted(None).count(), 0);
}
