use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::compile::compile;
use crate::dynamic::DynState;
use crate::policy::load_text;

/// `nft -j list table` after loading `batch` (`-j` for JSON) in a network
/// namespace of its own, without the handles, which count differently.
fn loaded(batch: &str, json: bool) -> Value {
    let load = if json { "nft -j -f -" } else { "nft -f -" };
    let script = format!("{load} && nft -j list table inet ringfence");
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let objects = listed["nftables"].as_array_mut().unwrap();
    objects.retain(|o| o.get("metainfo").is_none());
    for o in objects.iter_mut() {
        if let Some(body) = o.as_object_mut().and_then(|m| m.values_mut().next()).and_then(Value::as_object_mut) {
            body.remove("handle");
        }
    }
    listed
}

#[test]
#[ignore = "needs root: run by integration/run-all.sh (--include-ignored)"]
fn every_golden_table_loads_the_same_from_text_as_from_json() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root.join("policies/examples")).unwrap().map(|e| e.unwrap().path()).collect();
    files.push(root.join("policies/default.yaml"));
    let mut policies: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            (f, text)
        })
        .collect();
    // What the shipped policies do not say: address ranges, wildcard
    // interfaces, users, logging, keywords.
    policies.push((PathBuf::from("more.yaml"), "rules:\n\
        - { name: a, direction: in, action: allow, protocol: tcp, local-ports: [\"1000-2000\"], remote-addresses: [\"192.0.2.10-192.0.2.20\", \"2001:db8::1-2001:db8::9\"], interfaces: [\"eth*\", wlan0], log: true }\n\
        - { name: b, direction: out, action: block, users: [0], protocol: udp, remote-addresses: [local-subnet, dns] }\n".into()));
    for (f, text) in policies {
        let p = load_text(&[(PathBuf::from(f.file_name().unwrap()), text)]).unwrap_or_else(|d| panic!("{d}"));
        let table = compile(&p, &DynState::default()).unwrap_or_else(|d| panic!("{d}")).table;
        let json = serde_json::to_string(&table.replace()).unwrap();
        let (text, json) = (loaded(&super::replace(&table), false), loaded(&json, true));
        let objects = |v: &Value| v["nftables"].as_array().unwrap().iter().map(Value::to_string).collect::<Vec<_>>();
        for (t, j) in objects(&text).iter().zip(objects(&json).iter()) {
            assert_eq!(t, j, "{}", f.display());
        }
        assert_eq!(text, json, "{}", f.display());
    }
}
