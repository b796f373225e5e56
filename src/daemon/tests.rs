//! The daemon's event loop run whole on the no-op backend, without root:
//! requests over its control socket, reloads when policy files change, the
//! kernel's address changes and the resolver's file, and its stop.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{run, Addresses, Options};
use crate::backend::NoopBackend;
use crate::dynamic::{netlink, DynState};
use crate::policy::values::Keyword;
use crate::protocol::Request;
use crate::testutil::{write, TempDir};

const WEB: &str = "rules:\n  - { name: web, direction: in, action: allow, protocol: tcp, local-ports: [80], remote-addresses: [default-gateway] }\n";

fn gateway(last: u8) -> DynState {
    let mut state = DynState::default();
    state.push_host(Keyword::DefaultGateway, IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), "test".into());
    state
}

/// One request as the CLI sends it (the client blocks: on a thread of its own).
async fn call(socket: &Path, request: Request) -> anyhow::Result<Value> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || crate::client::call(&socket, &request)).await.unwrap()
}

/// Asks `request` until its answer satisfies `holds` (a change the loop makes
/// in its own time, seen by the next read after it), for at most 10 s.
async fn until(socket: &Path, request: Request, holds: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call(socket, request.clone()).await;
        match answer {
            Ok(v) if holds(&v) => return v,
            _ if tokio::time::Instant::now() > deadline => panic!("not within 10 s; last answer: {answer:?}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The names of the policy's rules, but for core networking's.
fn rule_names(policy: &Value) -> Vec<&str> {
    let rules = policy["rules"].as_array().into_iter().flatten();
    rules.filter(|r| r["group"].is_null()).filter_map(|r| r["name"].as_str()).collect()
}

/// The elements of a keyword's IPv4 set, as `show sets` lists them.
fn elements<'a>(sets: &'a Value, keyword: &str) -> Vec<&'a str> {
    let set = sets.as_array().into_iter().flatten().find(|s| s["keyword"] == keyword && s["family"] == "ipv4");
    set.into_iter().flat_map(|s| s["elements"].as_array()).flatten().filter_map(|e| e["address"].as_str()).collect()
}

async fn event_loop(d: &TempDir) {
    let policy = d.sub("policy.d");
    std::os::unix::fs::symlink("/dev/null", policy.join("00-default.yaml")).unwrap();
    write(&policy, "10.yaml", WEB);
    std::fs::write(d.0.join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    let socket: PathBuf = d.0.join("sock");
    let opts = Options {
        dirs: crate::policy::Dirs::new(vec![policy.clone()], Vec::new()),
        socket: socket.clone(),
        socket_group: None,
        flush_on_exit: false,
        resolv_conf: d.0.join("resolv.conf"),
        lease_paths: Vec::new(),
        smb_conf: d.0.join("smb.conf"),
        metrics: None,
    };
    let (kernel, changes) = mpsc::channel(4);
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(run(opts, NoopBackend::default(), Addresses { now: gateway(1), changes }, async {
        let _ = stopped.await;
    }));

    // The first table holds the file's rule and the keywords' first values.
    let v = until(&socket, Request::Policy, |v| rule_names(v) == ["web"]).await;
    assert_eq!(v["files"].as_array().map(Vec::len), Some(1), "{}", v["files"]);
    let sets = call(&socket, Request::Sets).await.unwrap();
    assert_eq!(elements(&sets, "default-gateway"), ["192.0.2.1"], "{sets}");
    assert_eq!(elements(&sets, "dns"), ["192.0.2.53"], "{sets}");

    // The kernel's change and the resolver's reach the sets.
    kernel.send((netlink::KEYWORDS, gateway(254))).await.unwrap();
    until(&socket, Request::Sets, |v| elements(v, "default-gateway") == ["192.0.2.254"]).await;
    std::fs::write(d.0.join("resolv.conf"), "nameserver 192.0.2.54\n").unwrap();
    until(&socket, Request::Sets, |v| elements(v, "dns") == ["192.0.2.54"]).await;

    // A new file is applied without a request.
    write(
        &policy,
        "20.yaml",
        "rules:\n  - { name: ssh, direction: in, action: allow, protocol: tcp, local-ports: [22] }\n",
    );
    until(&socket, Request::Policy, |v| rule_names(v) == ["web", "ssh"]).await;

    // A broken file: `apply` says where, and nothing of it is applied.
    write(&policy, "30.yaml", "rules:\n  - { name: bad, direction: sideways, action: allow }\n");
    let refused = call(&socket, Request::Apply { confirm_secs: None }).await.unwrap_err().to_string();
    assert!(refused.contains("30.yaml:2:"), "{refused}");
    assert_eq!(rule_names(&call(&socket, Request::Policy).await.unwrap()), ["web", "ssh"]);
    let unconfirmed = call(&socket, Request::Confirm).await.unwrap_err().to_string();
    assert!(unconfirmed.contains("nothing is waiting for confirmation"), "{unconfirmed}");

    stop.send(()).unwrap();
    daemon.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket is removed at the stop");
}

#[test]
fn the_event_loop_applies_follows_and_answers_on_the_noop_backend() {
    // As root the daemon would bind NFLOG and touch xfrm in the namespace it
    // runs in: the test's thread takes a namespace of its own, which the
    // threads it starts inherit. Without root unshare fails, and then the
    // daemon can change nothing in the host's namespace anyway.
    std::thread::spawn(|| {
        let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET);
        let d = TempDir::new("event-loop");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(event_loop(&d));
    })
    .join()
    .unwrap();
}
