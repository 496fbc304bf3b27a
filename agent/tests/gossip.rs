//! End-to-end tests of LAN gossip membership: real `muster agent` processes, each its own
//! single-server cluster (Raft clustering is tested elsewhere) gossiping on its own loopback
//! address 127.0.0.1 … 127.0.0.4, joined by `-retry-join` and `muster join`. Checked through
//! `/v1/agent/members`, `muster members`, `leave`, `kill -9`, `force-leave`, the leader's
//! `serfHealth` reconcile (health and `?passing`), and `-encrypt` keys from `muster keygen`.
//! Every wait is bounded; nothing asserts on how fast membership settles.

mod common;

use std::time::Duration;

use common::{eventually, run_muster, Agent, AgentBuilder, CLI_TIMEOUT, EXIT_TIMEOUT};
use serde_json::Value;

/// Membership settles within a few gossip rounds; failure detection within seconds. Generous
/// bounds for a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(60);

/// A single-server agent named `name` gossiping on 127.0.0.`ip`.
async fn gossiper(name: &str, ip: u8, extra: &[&str]) -> Agent {
    let mut args = vec![
        "-node".to_string(),
        name.to_string(),
        "-bind".to_string(),
        format!("127.0.0.{ip}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    AgentBuilder::server().args(args).start().await
}

fn gossip_addr(a: &Agent, ip: u8) -> String {
    format!("127.0.0.{ip}:{}", a.ports.serf_lan)
}

/// `name → (status, role)` as `/v1/agent/members` on `a` says.
async fn members(a: &Agent) -> Vec<(String, u64, String)> {
    let body = a.get("/v1/agent/members").await.json();
    let mut out: Vec<(String, u64, String)> = body
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap_or_default().to_string(),
                m["Status"].as_u64().unwrap_or(0),
                m["Tags"]["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn status_of(a: &Agent, node: &str) -> Option<u64> {
    members(a)
        .await
        .into_iter()
        .find(|(n, _, _)| n == node)
        .map(|(_, s, _)| s)
}

/// Waits until `a` sees `node` with `status` (1 alive, 3 left, 4 failed; 0 = absent).
async fn wait_status(a: &mut Agent, node: &str, status: u64, what: &str) {
    let seen = eventually(SETTLE, || async {
        let s = status_of(a, node).await.unwrap_or(0);
        (s == status).then_some(())
    })
    .await;
    if seen.is_none() {
        let m = members(a).await;
        a.fail(&format!(
            "{what}: {node} never reached status {status}; members: {m:?}"
        ));
    }
}

async fn serf_health(a: &Agent, node: &str) -> Option<(String, String)> {
    let body = a.get(&format!("/v1/health/node/{node}")).await.json();
    body.as_array()?
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .map(|c| {
            (
                c["Status"].as_str().unwrap_or_default().to_string(),
                c["Output"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_leave_kill_and_force_leave() {
    let mut a = gossiper("g-a", 1, &[]).await;
    let join_a = gossip_addr(&a, 1);
    let mut b = gossiper("g-b", 2, &["-retry-join", &join_a, "-retry-interval", "1s"]).await;
    let mut c = gossiper("g-c", 3, &["-retry-join", &join_a, "-retry-interval", "1s"]).await;
    let mut d = gossiper("g-d", 4, &[]).await;
    // d joins through the CLI.
    let out = d.cli(&["join", &join_a]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout, "Successfully joined cluster by contacting 1 nodes.\n",
        "{out}"
    );

    // Everybody sees all four alive, as servers.
    let names = ["g-a", "g-b", "g-c", "g-d"];
    for agent in [&mut a, &mut b, &mut c, &mut d] {
        for n in names {
            wait_status(agent, n, 1, "join").await;
        }
        let m = members(agent).await;
        assert!(m.iter().all(|(_, _, role)| role == "consul"), "{m:?}");
    }
    let out = a.cli(&["members"]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("Node "), "{out}");
    for (line, n) in lines[1..].iter().zip(names) {
        assert!(line.starts_with(n), "{out}");
        assert!(line.contains(" alive "), "{out}");
        assert!(line.contains(" server "), "{out}");
    }
    assert!(out.stdout.contains("127.0.0.3:"), "{out}");
    let out = a.cli(&["members", "-detailed"]).await;
    out.expect_code(0);
    assert!(out.stdout.contains("role=consul"), "{out}");
    // -status filters; nothing matching exits 2, as Consul's.
    a.cli(&["members", "-status=failed"]).await.expect_code(2);

    // The leader (a, of its own catalog) registers every member with serfHealth passing.
    // A service on g-c, registered in a's catalog, is passing while g-c is alive.
    let reg = r#"{"Node":"g-c","Address":"127.0.0.3","Service":{"Service":"web","Port":80}}"#;
    a.put("/v1/catalog/register", reg).await.expect_status(200);
    for n in names {
        let ok = eventually(SETTLE, || async {
            serf_health(&a, n)
                .await
                .filter(|(s, _)| s == "passing")
                .map(|_| ())
        })
        .await;
        if ok.is_none() {
            a.fail(&format!("serfHealth of {n} never passing"));
        }
    }
    let passing = a.get("/v1/health/service/web?passing").await.json();
    assert_eq!(passing.as_array().map(Vec::len), Some(1), "{passing}");

    // A graceful leave: left on the others, and deregistered from the leader's catalog.
    let out = b.cli(&["leave"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Graceful leave complete\n", "{out}");
    if b.wait_exit(EXIT_TIMEOUT).await.is_none() {
        b.fail("did not exit after leave");
    }
    for agent in [&mut a, &mut c, &mut d] {
        wait_status(agent, "g-b", 3, "leave").await;
    }
    let gone = eventually(SETTLE, || async {
        let node = a.get("/v1/catalog/node/g-b").await;
        (node.status == 404 || node.json().is_null()).then_some(())
    })
    .await;
    if gone.is_none() {
        a.fail("g-b left but is still in the leader's catalog");
    }

    // kill -9: failed on the others; serfHealth critical on the leader, so g-c's service
    // leaves ?passing.
    c.kill9();
    for agent in [&mut a, &mut d] {
        wait_status(agent, "g-c", 4, "kill").await;
    }
    let critical = eventually(SETTLE, || async {
        serf_health(&a, "g-c")
            .await
            .filter(|(s, _)| s == "critical")
    })
    .await;
    match critical {
        Some((_, output)) => assert_eq!(output, "Agent not live or unreachable"),
        None => a.fail("serfHealth of g-c never critical"),
    }
    let passing = a.get("/v1/health/service/web?passing").await.json();
    assert_eq!(passing, Value::Array(vec![]), "{passing}");
    let all = a.get("/v1/health/service/web").await.json();
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    let out = a.cli(&["members", "-status=failed"]).await;
    out.expect_code(0);
    assert!(out.stdout.contains("g-c"), "{out}");

    // force-leave: an unknown node is an error; a failed one becomes left everywhere, and
    // with -prune disappears.
    let out = a.cli(&["force-leave", "no-such-node"]).await;
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("No node found with name 'no-such-node'"),
        "{out}"
    );
    a.cli(&["force-leave", "g-c"]).await.expect_code(0);
    for agent in [&mut a, &mut d] {
        wait_status(agent, "g-c", 3, "force-leave").await;
    }
    a.cli(&["force-leave", "-prune", "g-c"])
        .await
        .expect_code(0);
    for agent in [&mut a, &mut d] {
        wait_status(agent, "g-c", 0, "force-leave -prune").await;
    }
    // The leader deregisters the pruned node.
    let gone = eventually(SETTLE, || async {
        serf_health(&a, "g-c").await.is_none().then_some(())
    })
    .await;
    if gone.is_none() {
        a.fail("g-c pruned but still in the leader's catalog");
    }
    // The survivors are still alive.
    wait_status(&mut d, "g-a", 1, "after all").await;
    wait_status(&mut a, "g-d", 1, "after all").await;
}

async fn keygen() -> String {
    let out = run_muster(&["keygen".to_string()], None, CLI_TIMEOUT).await;
    out.expect_code(0);
    let key = out.stdout.trim().to_string();
    assert_eq!(key.len(), 44, "{out}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_gossip_refuses_other_keys_and_survives_garbage() {
    let key = keygen().await;
    let other = keygen().await;
    assert_ne!(key, other);
    let mut a = gossiper("e-a", 1, &["-encrypt", &key]).await;
    let mut b = gossiper("e-b", 2, &["-encrypt", &key]).await;
    let c = gossiper("e-c", 3, &["-encrypt", &other]).await;
    let plain = gossiper("e-p", 4, &[]).await;
    let join_a = gossip_addr(&a, 1);

    // Same key: joins.
    b.cli(&["join", &join_a]).await.expect_code(0);
    wait_status(&mut a, "e-b", 1, "same key").await;
    wait_status(&mut b, "e-a", 1, "same key").await;

    // Another key, or none: refused, with an error naming the address.
    for agent in [&c, &plain] {
        let out = agent.cli(&["join", &join_a]).await;
        out.expect_code(1);
        assert!(
            out.stderr
                .contains(&format!("Error joining address '{join_a}'")),
            "{out}"
        );
        assert!(out.stderr.contains("Failed to join any nodes."), "{out}");
        let resp = agent.put(&format!("/v1/agent/join/{join_a}"), "").await;
        assert_eq!(resp.status, 500, "{}", resp.text());
    }

    // Garbage datagrams to the gossip port are dropped; the agent keeps working.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    for junk in [&b""[..], b"\x01", &[0xffu8; 2000][..], &[1u8; 64][..]] {
        let _ = sock.send_to(junk, &join_a);
    }
    let plain_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let _ = plain_sock.send_to(&[0u8; 100], gossip_addr(&plain, 4));

    let m = members(&a).await;
    let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["e-a", "e-b"], "{m:?}");
    assert!(m.iter().all(|(_, s, _)| *s == 1), "{m:?}");
    let m = members(&plain).await;
    assert_eq!(m.len(), 1, "{m:?}");
    // And a bad key is rejected at startup.
    let out = run_muster(
        &[
            "agent".to_string(),
            "-dev".to_string(),
            "-encrypt".to_string(),
            "YWJj".to_string(),
        ],
        None,
        CLI_TIMEOUT,
    )
    .await;
    out.expect_code(1);
    assert!(out.stderr.contains("encrypt has invalid key"), "{out}");
}

#[tokio::test]
async fn retry_join_gives_up_after_retry_max() {
    // A UDP socket that never answers stands for an address with no agent.
    let mute = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let target = mute.local_addr().expect("addr").to_string();
    let mut args: Vec<String> = vec!["agent".into(), "-dev".into()];
    args.extend(common::Ports::free().args());
    args.extend(
        [
            "-retry-join",
            &target,
            "-retry-max",
            "2",
            "-retry-interval",
            "200ms",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let out = run_muster(&args, None, Duration::from_secs(60)).await;
    out.expect_code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("Join cluster failed, will retry"), "{out}");
    assert!(all.contains("max join retry exhausted"), "{out}");
    // Logged once, not per attempt.
    assert_eq!(
        all.matches("Join cluster failed, will retry").count(),
        1,
        "{out}"
    );
}

#[tokio::test]
async fn agent_self_reports_the_pool() {
    let a = gossiper("s-a", 5, &[]).await;
    let body = a.get("/v1/agent/self").await.json();
    let serf = &body["Stats"]["serf_lan"];
    assert_eq!(serf["members"], "1", "{body}");
    assert_eq!(serf["encrypted"], "false", "{body}");
    assert_eq!(body["Member"]["Name"], "s-a", "{body}");
    assert_eq!(body["Member"]["Addr"], "127.0.0.5", "{body}");
    assert_eq!(body["Member"]["Tags"]["role"], "consul", "{body}");
}

/// A client agent (no `-server`) started before anything it could join, then Ctrl-C'd: it
/// joins once the server is up, and the server sees it `left`, not `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_on_a_client_agent_is_a_graceful_leave() {
    let ports = common::Ports::free();
    let server_ports = common::Ports::free();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = format!("127.0.0.1:{}", server_ports.serf_lan);
    let mut args: Vec<String> = ["agent", "-node", "cl-1", "-bind", "127.0.0.6"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-data-dir".to_string(), dir.path().display().to_string()]);
    args.extend(ports.args());
    args.extend(
        ["-retry-join", &seed, "-retry-interval", "1s"]
            .iter()
            .map(|s| s.to_string()),
    );
    let mut client = tokio::process::Command::new(common::MUSTER)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the client agent");
    // The server comes up after the client started retrying.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let serf = server_ports.serf_lan.to_string();
    let mut server = AgentBuilder::server()
        .args(["-node", "cl-server", "-serf-lan-port", &serf])
        .start()
        .await;
    wait_status(&mut server, "cl-1", 1, "client joined").await;
    let m = members(&server).await;
    assert!(
        m.contains(&("cl-1".to_string(), 1, "node".to_string())),
        "{m:?}"
    );

    let pid = client.id().expect("client pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let exited = tokio::time::timeout(EXIT_TIMEOUT, client.wait()).await;
    assert!(
        matches!(exited, Ok(Ok(s)) if s.success()),
        "client did not exit cleanly: {exited:?}"
    );
    wait_status(&mut server, "cl-1", 3, "client Ctrl-C").await;
}

/// User events travel over gossip: fired on one agent, listed on every member that the node
/// filter selects, and on none that it leaves out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_reach_every_member_through_gossip() {
    let mut a = gossiper("ev-a", 5, &[]).await;
    let join_a = gossip_addr(&a, 5);
    let mut b = gossiper(
        "ev-b",
        6,
        &["-retry-join", &join_a, "-retry-interval", "1s"],
    )
    .await;
    let mut c = gossiper(
        "ev-c",
        7,
        &["-retry-join", &join_a, "-retry-interval", "1s"],
    )
    .await;
    for agent in [&mut a, &mut b, &mut c] {
        for n in ["ev-a", "ev-b", "ev-c"] {
            wait_status(agent, n, 1, "join").await;
        }
    }

    // To everybody.
    let fired = a.put("/v1/event/fire/deploy", "v42").await;
    assert_eq!(fired.status, 200, "{}", fired.text());
    let id = fired.json()["ID"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "{}", fired.text());
    for agent in [&mut a, &mut b, &mut c] {
        let seen = eventually(SETTLE, || async {
            let list = agent.get("/v1/event/list?name=deploy").await.json();
            list.as_array()
                .is_some_and(|l| l.iter().any(|e| e["ID"] == id.as_str()))
                .then_some(())
        })
        .await;
        if seen.is_none() {
            agent.fail(&format!("event {id} never listed"));
        }
    }

    // Only to ev-c: ev-b never stores it (checked after ev-c has it, and after a later event
    // to everybody reached ev-b, so gossip had its chance).
    let only_c = b.put("/v1/event/fire/only-c?node=ev-c", "").await;
    assert_eq!(only_c.status, 200, "{}", only_c.text());
    let only_c_id = only_c.json()["ID"].as_str().unwrap_or_default().to_string();
    let later = c.put("/v1/event/fire/later", "").await;
    let later_id = later.json()["ID"].as_str().unwrap_or_default().to_string();
    for (agent, want) in [(&mut c, &only_c_id), (&mut b, &later_id)] {
        let seen = eventually(SETTLE, || async {
            let list = agent.get("/v1/event/list").await.json();
            list.as_array()
                .is_some_and(|l| l.iter().any(|e| e["ID"] == want.as_str()))
                .then_some(())
        })
        .await;
        if seen.is_none() {
            agent.fail(&format!("event {want} never listed"));
        }
    }
    let on_b = b.get("/v1/event/list?name=only-c").await.json();
    assert_eq!(on_b.as_array().map(Vec::len), Some(0), "{on_b}");
    let on_a = a.get("/v1/event/list?name=only-c").await.json();
    assert_eq!(on_a.as_array().map(Vec::len), Some(0), "{on_a}");
}

/// Consul's `leave_on_terminate` and `skip_leave_on_interrupt` decide what a signal does: a
/// client agent told to skip the leave on Ctrl-C just stops (the others see it `failed`), and
/// a server told to leave on SIGTERM leaves (the others see it `left`) — the opposite of
/// their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_on_terminate_and_skip_leave_on_interrupt_choose_what_a_signal_does() {
    let mut server = AgentBuilder::server()
        .config_file("leave.json", r#"{"leave_on_terminate": true}"#)
        .args(["-node", "sig-server"])
        .start()
        .await;
    let join = server.gossip_addr();
    let mut stays = AgentBuilder::client("127.0.0.7".parse().expect("ip"))
        .config_file("skip.json", r#"{"skip_leave_on_interrupt": true}"#)
        .args(["-node", "sig-stays", "-retry-join", &join])
        .start()
        .await;
    let mut watcher = AgentBuilder::client("127.0.0.8".parse().expect("ip"))
        .args(["-node", "sig-watcher", "-retry-join", &join])
        .start()
        .await;
    wait_status(&mut server, "sig-stays", 1, "client joined").await;
    wait_status(&mut watcher, "sig-server", 1, "watcher joined").await;

    stays.signal(nix::sys::signal::Signal::SIGINT);
    assert!(
        stays.wait_exit(EXIT_TIMEOUT).await.is_some(),
        "the client did not stop on SIGINT"
    );
    wait_status(
        &mut server,
        "sig-stays",
        4,
        "Ctrl-C with skip_leave_on_interrupt",
    )
    .await;

    server.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        server.wait_exit(EXIT_TIMEOUT).await.is_some(),
        "the server did not stop on SIGTERM"
    );
    wait_status(
        &mut watcher,
        "sig-server",
        3,
        "SIGTERM with leave_on_terminate",
    )
    .await;
}
