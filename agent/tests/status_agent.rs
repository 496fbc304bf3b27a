//! End-to-end tests of `/v1/status/*` and `/v1/agent/{self,members,leave}` from Consul's
//! documentation of those endpoints.

mod common;

use std::time::Duration;

use common::{eventually, Agent, AgentBuilder, EXIT_TIMEOUT};
use serde_json::{json, Value};

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn status_leader_is_this_servers_rpc_address() {
    let a = Agent::dev().await;
    let r = a.get("/v1/status/leader").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(a.server_addr()));
}

#[tokio::test]
async fn status_peers_lists_this_server() {
    let a = Agent::dev().await;
    let r = a.get("/v1/status/peers").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!([a.server_addr()]));
}

#[tokio::test]
async fn agent_self_has_consuls_config_and_member_fields() {
    let a = Agent::dev().await;
    let r = a.get("/v1/agent/self").await;
    r.expect_status(200);
    let v = r.json();
    let c = &v["Config"];
    assert_eq!(c["Datacenter"], json!("dc1"), "default datacenter: {v}");
    let node = c["NodeName"].as_str().unwrap_or_default();
    assert!(!node.is_empty(), "Config.NodeName: {v}");
    let id = c["NodeID"].as_str().unwrap_or_default();
    assert!(is_uuid(id), "Config.NodeID is a UUID: {id:?}");
    assert_eq!(c["Server"], json!(true), "-dev is a server: {v}");
    let version = c["Version"].as_str().unwrap_or_default();
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect();
    assert!(
        parts.len() == 3 && parts[0] == 1 && parts[1] >= 10 && parts[2] != u32::MAX,
        "Config.Version is the Consul API version clients gate on (like 1.22.0): {version:?}"
    );
    assert_eq!(
        c["MusterVersion"],
        json!(env!("CARGO_PKG_VERSION")),
        "Config.MusterVersion is Muster's own version"
    );

    let m = &v["Member"];
    assert_eq!(m["Name"], json!(node), "Member.Name is the node name: {m}");
    assert_eq!(m["Addr"], json!("127.0.0.1"), "{m}");
    assert_eq!(
        m["Port"],
        json!(a.ports.serf_lan),
        "Member.Port is serf LAN: {m}"
    );
    assert_eq!(m["Status"], json!(1), "alive is 1: {m}");
    assert!(m["Tags"].is_object(), "Member.Tags: {m}");
}

#[tokio::test]
async fn node_and_datacenter_flags_are_reflected() {
    let a = AgentBuilder::dev()
        .args(["-node", "e2e-node-1", "-datacenter=dc7"])
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("e2e-node-1"));
    assert_eq!(v["Config"]["Datacenter"], json!("dc7"));
    assert_eq!(v["Member"]["Name"], json!("e2e-node-1"));
    assert_eq!(v["Member"]["Tags"]["dc"], json!("dc7"), "{v}");

    let members = a.get("/v1/agent/members").await;
    members.expect_status(200);
    let list = members.json();
    let me = list
        .as_array()
        .expect("members is an array")
        .iter()
        .find(|m| m["Name"] == json!("e2e-node-1"))
        .unwrap_or_else(|| panic!("this node is not in /v1/agent/members: {list}"))
        .clone();
    assert_eq!(me["Tags"]["dc"], json!("dc7"), "{me}");
}

#[tokio::test]
async fn agent_members_lists_this_node_alive() {
    let a = Agent::dev().await;
    let node = a.get("/v1/agent/self").await.json()["Config"]["NodeName"].clone();
    // Gossip may take a moment to list the node itself: bounded retry.
    let me = eventually(Duration::from_secs(10), || async {
        let list = a.get("/v1/agent/members").await.json();
        list.as_array()?.iter().find(|m| m["Name"] == node).cloned()
    })
    .await
    .unwrap_or_else(|| panic!("{node} never appeared in /v1/agent/members"));
    assert_eq!(me["Status"], json!(1), "{me}");
    assert_eq!(me["Addr"], json!("127.0.0.1"), "{me}");
    assert_eq!(me["Port"], json!(a.ports.serf_lan), "{me}");
    assert_eq!(
        me["Tags"]["role"],
        json!("consul"),
        "a server's role tag: {me}"
    );
}

#[tokio::test]
async fn put_agent_leave_makes_the_agent_exit() {
    let mut a = Agent::dev().await;
    let r = a.request("PUT", "/v1/agent/leave", None).await;
    r.expect_status(200);
    match a.wait_exit(EXIT_TIMEOUT).await {
        Some(status) => assert!(status.success(), "a graceful leave exits 0, got {status}"),
        None => a.fail("the agent did not exit after PUT /v1/agent/leave"),
    }
}

#[tokio::test]
async fn agent_leave_is_put_only() {
    let a = Agent::dev().await;
    a.get("/v1/agent/leave").await.expect_status(405);
    // Still serving.
    let v: Value = a.get("/v1/status/leader").await.json();
    assert_eq!(v, json!(a.server_addr()));
}

#[tokio::test]
async fn sighup_reloads_and_does_not_stop_the_agent() {
    // Consul reloads its configuration on SIGHUP; `systemctl reload` sends it.
    let mut a = Agent::dev().await;
    a.kv_put("hup/k", "v").await;
    a.signal(nix::sys::signal::Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(status) = a.try_exited() {
        a.fail(&format!("the agent exited on SIGHUP: {status}"));
    }
    assert_eq!(a.kv_value("hup/k").await.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_agent() {
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut a = Agent::dev().await;
        a.signal(sig);
        if a.wait_exit(EXIT_TIMEOUT).await.is_none() {
            a.fail(&format!("the agent did not exit on {sig}"));
        }
    }
}

#[tokio::test]
async fn sigterm_with_blocked_queries_still_exits() {
    // Blocking queries may be held for up to 10 minutes; a stop must not wait for them.
    let mut a = Agent::dev().await;
    a.kv_put("held/k", "v").await;
    let idx = a.get("/v1/kv/held/k").await.index();
    let mut held = Vec::new();
    for _ in 0..5 {
        let client = a.client();
        let url = format!("{}/v1/kv/held/k?index={idx}&wait=5m", a.base_url());
        held.push(tokio::spawn(async move {
            let _ = common::send(&client, "GET", &url, None, Duration::from_secs(400)).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal(nix::sys::signal::Signal::SIGTERM);
    if a.wait_exit(EXIT_TIMEOUT).await.is_none() {
        a.fail("the agent did not exit on SIGTERM while blocking queries were held");
    }
    for h in held {
        h.abort();
    }
}

#[tokio::test]
async fn leave_with_blocked_queries_still_exits() {
    let mut a = Agent::dev().await;
    a.kv_put("held/k", "v").await;
    let idx = a.get("/v1/kv/held/k").await.index();
    let client = a.client();
    let url = format!("{}/v1/kv/held/k?index={idx}&wait=5m", a.base_url());
    let held = tokio::spawn(async move {
        let _ = common::send(&client, "GET", &url, None, Duration::from_secs(400)).await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.request("PUT", "/v1/agent/leave", None)
        .await
        .expect_status(200);
    if a.wait_exit(EXIT_TIMEOUT).await.is_none() {
        a.fail("the agent did not exit after a leave while a blocking query was held");
    }
    held.abort();
}

/// `muster monitor` follows the agent's log at a level of its own, in text or JSON, and says so
/// when the agent goes away; a bad level is a 400.
#[tokio::test]
async fn monitor_streams_the_log_and_ends_with_the_agent() {
    use std::process::Stdio;
    let mut a = Agent::dev().await;
    let r = a.get("/v1/agent/monitor?loglevel=bogus").await;
    r.expect_status(400);
    assert_eq!(r.text().trim(), "Unknown log level: bogus");

    let dir = tempfile::tempdir().expect("tmp");
    let spawn = |extra: &[&str], name: &str| {
        let out = dir.path().join(name);
        let child = tokio::process::Command::new(common::MUSTER)
            .arg("monitor")
            .arg(format!("-http-addr={}", a.http_addr()))
            .args(extra)
            .env_remove("CONSUL_HTTP_ADDR")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn muster monitor");
        (child, out)
    };
    let (mut text, text_out) = spawn(&["-log-level=debug"], "text.out");
    let (mut json, json_out) = spawn(&["-log-json"], "json.out");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    // A reload logs one info line; repeat it until both monitors (attached at some point) saw it.
    let seen = eventually(Duration::from_secs(20), || {
        let a = &a;
        let (t, j) = (read(&text_out), read(&json_out));
        async move {
            let done = t.contains("[INFO]  muster_agent::server: reloaded service and check")
                && j.lines().any(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| {
                        v["@level"] == "info"
                            && v["@message"] == "reloaded service and check definitions"
                            && v["@module"] == "muster_agent::server"
                            && v["@timestamp"].is_string()
                    })
                });
            if !done {
                a.put("/v1/agent/reload", "").await.expect_status(200);
            }
            done.then_some(())
        }
    })
    .await;
    assert!(
        seen.is_some(),
        "the monitors never showed the reload\n--- text ---\n{}\n--- json ---\n{}",
        read(&text_out),
        read(&json_out)
    );
    // The text monitor asked for debug, more than the agent's own info: it gets debug lines.
    assert!(read(&text_out).contains("[DEBUG]"), "{}", read(&text_out));
    // Every JSON line is one object.
    for line in read(&json_out).lines() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "{line}");
    }

    // The agent stops: each monitor says the remote side ended, and exits 1.
    a.terminate().await;
    for (child, out) in [(&mut text, &text_out), (&mut json, &json_out)] {
        let status = tokio::time::timeout(EXIT_TIMEOUT, child.wait())
            .await
            .expect("the monitor exits when the agent stops")
            .expect("wait");
        assert_eq!(status.code(), Some(1));
        assert!(
            read(out).contains("Remote side ended the monitor!"),
            "{}",
            read(out)
        );
    }
}
