//! The cluster as users run it: real `muster agent` processes on 127.0.0.1 … 127.0.0.8, each
//! with its own `-bind`, `-client`, ports and `-data-dir` — three servers formed by
//! `-bootstrap-expect 3` and five client agents, all joined by `-retry-join` through gossip.
//! Checked through `/v1/agent/members`, `muster members`, `muster operator raft list-peers`,
//! `dig` against the DNS interface (of servers and of client agents), and KV reads and writes through clients and servers; then
//! the faults: a client's `leave` (left) and `kill -9` (failed), the leader killed during a
//! write loop (a new leader, no acknowledged write lost), the leader stopped (SIGSTOP) past the
//! election timeout and continued, and every server restarted (the data stays).
//!
//! Every wait is bounded; nothing asserts on how fast the cluster settles.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, run_muster, Agent, AgentBuilder, CLI_TIMEOUT};

/// Generous bounds for a loaded 2-core machine running eight agents.
const SETTLE: Duration = Duration::from_secs(90);

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

async fn server(n: u8, join: Option<&str>) -> Agent {
    server_builder(n, join).start().await
}

/// `server`, not started yet.
fn server_builder(n: u8, join: Option<&str>) -> AgentBuilder {
    let mut args = vec![
        "-node".to_string(),
        format!("s{n}"),
        "-bootstrap-expect".into(),
        "3".into(),
        "-retry-interval".into(),
        "1s".into(),
        "-log-level".into(),
        "info".into(),
    ];
    if let Some(j) = join {
        args.extend(["-retry-join".to_string(), j.to_string()]);
    }
    AgentBuilder::cluster_server(ip(n)).args(args)
}

async fn client(n: u8, join: &str) -> Agent {
    AgentBuilder::client(ip(n))
        .args([
            "-node".to_string(),
            format!("c{n}"),
            "-retry-join".into(),
            join.to_string(),
            "-retry-interval".into(),
            "1s".into(),
        ])
        .start()
        .await
}

/// `name → (status, role)` as `/v1/agent/members` on `a` says.
async fn members(a: &Agent) -> BTreeMap<String, (u64, String)> {
    let body = a.get("/v1/agent/members").await.json();
    body.as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap_or_default().to_string(),
                (
                    m["Status"].as_u64().unwrap_or(0),
                    m["Tags"]["role"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

/// `muster operator raft list-peers` against `a`: (node, state, voter) per line.
async fn list_peers(a: &Agent) -> Vec<(String, String, String)> {
    let out = run_muster(
        &[
            "operator".into(),
            "raft".into(),
            "list-peers".into(),
            format!("-http-addr={}", a.http_addr()),
        ],
        None,
        CLI_TIMEOUT,
    )
    .await;
    if out.code != Some(0) {
        return Vec::new();
    }
    out.stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(3)?.to_string(),
                f.get(4)?.to_string(),
            ))
        })
        .collect()
}

/// The leader's server address as `a` reports it ("" when none).
async fn leader_of(a: &Agent) -> String {
    let r = a.get("/v1/status/leader").await;
    if r.status != 200 {
        return String::new();
    }
    r.json().as_str().unwrap_or_default().to_string()
}

/// Waits until every agent in `agents` agrees on a leader among `servers`; answers its index
/// in `servers`.
async fn agreed_leader(servers: &[Agent], watchers: &[&Agent]) -> Option<usize> {
    eventually(SETTLE, || async {
        let mut seen = None;
        for a in watchers {
            let l = leader_of(a).await;
            if l.is_empty() || seen.as_ref().is_some_and(|s| *s != l) {
                return None;
            }
            seen = Some(l);
        }
        let l = seen?;
        servers.iter().position(|s| s.server_addr() == l)
    })
    .await
}

async fn dig_a(server: &Agent, name: &str) -> Vec<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("dig")
            .args([
                &format!(
                    "@{}",
                    server.http_addr().split(':').next().unwrap_or("127.0.0.1")
                ),
                "-p",
                &server.ports.dns.to_string(),
                "+short",
                "+time=2",
                "+tries=2",
                name,
                "A",
            ])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let Ok(Ok(out)) = out else {
        return Vec::new();
    };
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

async fn stale_value(a: &Agent, key: &str) -> Option<Vec<u8>> {
    let r = a.get(&format!("/v1/kv/{key}?stale&raw")).await;
    (r.status == 200).then_some(r.body.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_five_clients_membership_forwarding_and_faults() {
    // ---- Form the cluster: s1 first, everybody else retry-joins it. ----
    let s1 = server(1, None).await;
    let join = s1.gossip_addr();
    let s2 = server(2, Some(&join)).await;
    let s3 = server(3, Some(&join)).await;
    let mut servers = vec![s1, s2, s3];
    let mut clients = Vec::new();
    for n in 4..=8 {
        clients.push(client(n, &join).await);
    }
    let names: Vec<String> = (1..=3)
        .map(|n| format!("s{n}"))
        .chain((4..=8).map(|n| format!("c{n}")))
        .collect();

    // Everybody sees all eight alive with their role.
    for a in servers.iter_mut().chain(clients.iter_mut()) {
        let ok = eventually(SETTLE, || async {
            let m = members(a).await;
            names
                .iter()
                .all(|n| {
                    let want = if n.starts_with('s') { "consul" } else { "node" };
                    m.get(n).is_some_and(|(s, r)| *s == 1 && r == want)
                })
                .then_some(())
        })
        .await;
        if ok.is_none() {
            let m = members(a).await;
            a.fail(&format!("members never showed all eight alive: {m:?}"));
        }
    }
    let out = clients[0].cli(&["members"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout.lines().count(), 9, "{out}");
    assert!(
        out.stdout.lines().skip(1).all(|l| l.contains(" alive ")),
        "{out}"
    );

    // One leader, two followers, all voters.
    let peers = eventually(SETTLE, || async {
        let p = list_peers(&clients[0]).await;
        let leaders = p.iter().filter(|(_, s, _)| s == "leader").count();
        let followers = p.iter().filter(|(_, s, _)| s == "follower").count();
        (p.len() == 3 && leaders == 1 && followers == 2 && p.iter().all(|(_, _, v)| v == "true"))
            .then_some(p)
    })
    .await;
    let Some(peers) = peers else {
        let p = list_peers(&clients[0]).await;
        servers[0].fail(&format!(
            "list-peers never showed 1 leader + 2 followers: {p:?}"
        ));
    };
    let mut peer_names: Vec<&str> = peers.iter().map(|(n, _, _)| n.as_str()).collect();
    peer_names.sort();
    assert_eq!(peer_names, ["s1", "s2", "s3"]);

    // A write through a client is read back on every server, default and stale.
    clients[1].kv_put("cluster/from-client", "hello").await;
    for s in &servers {
        assert_eq!(
            s.kv_value("cluster/from-client").await.as_deref(),
            Some(&b"hello"[..])
        );
        let stale = eventually(SETTLE, || async {
            stale_value(s, "cluster/from-client")
                .await
                .filter(|v| v == b"hello")
        })
        .await;
        assert!(
            stale.is_some(),
            "stale read on {} never caught up",
            s.http_addr()
        );
    }
    // … and through another client.
    assert_eq!(
        clients[4].kv_value("cluster/from-client").await.as_deref(),
        Some(&b"hello"[..])
    );

    // DNS: the three servers behind consul.service.consul, asked on a server and on a client
    // agent (which has no catalog: a server answers for it).
    for a in [&servers[1], &clients[2]] {
        let want = vec!["127.0.0.1", "127.0.0.2", "127.0.0.3"];
        let got = eventually(SETTLE, || async {
            let got = dig_a(a, "consul.service.consul").await;
            (got == want).then_some(got)
        })
        .await;
        assert!(
            got.is_some(),
            "consul.service.consul on {}: {:?}",
            a.http_addr(),
            dig_a(a, "consul.service.consul").await
        );
    }

    // ---- A client leaves (left), another is killed (failed, serfHealth critical). ----
    let out = clients[4].cli(&["leave"]).await;
    out.expect_code(0);
    clients[3].kill9();
    let settled = eventually(SETTLE, || async {
        let m = members(&servers[0]).await;
        (m.get("c8").map(|x| x.0) == Some(3) && m.get("c7").map(|x| x.0) == Some(4)).then_some(())
    })
    .await;
    if settled.is_none() {
        let m = members(&servers[0]).await;
        servers[0].fail(&format!("c8 never left / c7 never failed: {m:?}"));
    }
    let critical = eventually(SETTLE, || async {
        let checks = servers[1].get("/v1/health/node/c7").await.json();
        checks
            .as_array()?
            .iter()
            .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "critical")
            .then_some(())
    })
    .await;
    assert!(critical.is_some(), "c7's serfHealth never turned critical");

    // ---- The leader killed during a write loop: a new leader, no acknowledged write lost. ----
    let watchers: Vec<&Agent> = servers.iter().collect();
    let Some(old) = agreed_leader(&servers, &watchers).await else {
        servers[0].fail("the servers never agreed on a leader");
    };
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let writer = {
        let acked = acked.clone();
        let url = clients[0].base_url();
        let http = clients[0].client();
        tokio::spawn(async move {
            for i in 0..u64::MAX {
                let key = format!("loop/{i:06}");
                let value = format!("v{i}");
                let sent = http
                    .put(format!("{url}/v1/kv/{key}"))
                    .body(value.clone())
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                if let Ok(r) = sent {
                    if r.status().is_success() && r.text().await.is_ok_and(|t| t.trim() == "true") {
                        if let Ok(mut a) = acked.lock() {
                            a.push((key, value));
                        }
                    }
                }
            }
        })
    };
    let acked_before = eventually(SETTLE, || async {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        (n >= 20).then_some(n)
    })
    .await;
    assert!(
        acked_before.is_some(),
        "the write loop acknowledged nothing"
    );
    servers[old].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new_leader = eventually(SETTLE, || async {
        let mut seen = None;
        for &i in &survivors {
            let l = leader_of(&servers[i]).await;
            if l.is_empty() || l == servers[old].server_addr() {
                return None;
            }
            if seen.as_ref().is_some_and(|s| *s != l) {
                return None;
            }
            seen = Some(l);
        }
        seen
    })
    .await;
    assert!(
        new_leader.is_some(),
        "no new leader after killing the old one"
    );
    // The killed server leaves consul.service.consul (its serfHealth is critical).
    let mut want: Vec<String> = survivors
        .iter()
        .map(|i| ip(*i as u8 + 1).to_string())
        .collect();
    want.sort();
    let dropped = eventually(SETTLE, || async {
        let got = dig_a(&clients[0], "consul.service.consul").await;
        (got == want).then_some(())
    })
    .await;
    assert!(
        dropped.is_some(),
        "the killed server stayed in consul.service.consul: {:?}",
        dig_a(&clients[0], "consul.service.consul").await
    );
    // Writes are acknowledged again after the failover.
    let after_failover = acked.lock().map(|a| a.len()).unwrap_or(0);
    let more = eventually(SETTLE, || async {
        let n = acked.lock().map(|a| a.len()).unwrap_or(0);
        (n >= after_failover + 20).then_some(n)
    })
    .await;
    assert!(more.is_some(), "no write acknowledged after the failover");
    writer.abort();
    let acked: Vec<(String, String)> = acked.lock().map(|a| a.clone()).unwrap_or_default();
    for &i in &survivors {
        for (key, want) in &acked {
            let got = servers[i].kv_value(key).await;
            assert_eq!(
                got.as_deref(),
                Some(want.as_bytes()),
                "acknowledged {key} on {}",
                servers[i].http_addr()
            );
        }
    }

    // The killed server comes back and catches up (it rejoins through `muster join`).
    servers[old].restart().await;
    let peer = survivors[0];
    let out = servers[old]
        .cli(&["join", &servers[peer].gossip_addr()])
        .await;
    out.expect_code(0);
    let last = acked.last().map(|(k, _)| k.clone()).unwrap_or_default();
    let caught_up = eventually(SETTLE, || async {
        stale_value(&servers[old], &last).await.map(|_| ())
    })
    .await;
    assert!(caught_up.is_some(), "the restarted server never caught up");

    // ---- The leader stopped past the election timeout: others elect; it steps down. ----
    // First the restarted server is a voter again (a learner cannot help elect).
    let voters = eventually(SETTLE, || async {
        let p = list_peers(&servers[peer]).await;
        (p.len() == 3
            && p.iter().all(|(_, _, v)| v == "true")
            && p.iter().filter(|(_, s, _)| s == "leader").count() == 1)
            .then_some(())
    })
    .await;
    assert!(
        voters.is_some(),
        "the restarted server never became a voter again: {:?}",
        list_peers(&servers[peer]).await
    );
    let watchers: Vec<&Agent> = servers.iter().collect();
    let Some(stopped) = agreed_leader(&servers, &watchers).await else {
        servers[0].fail("no agreed leader before SIGSTOP");
    };
    servers[stopped].signal(nix::sys::signal::Signal::SIGSTOP);
    let others: Vec<usize> = (0..3).filter(|i| *i != stopped).collect();
    let elected = eventually(SETTLE, || async {
        let a = leader_of(&servers[others[0]]).await;
        let b = leader_of(&servers[others[1]]).await;
        (!a.is_empty() && a == b && a != servers[stopped].server_addr()).then_some(())
    })
    .await;
    // Continue it whatever happened, so a failure does not leave a stopped process.
    if elected.is_none() {
        servers[stopped].signal(nix::sys::signal::Signal::SIGCONT);
        servers[stopped].fail("no new leader while the old one was stopped");
    }
    // A client agent sends to the servers gossip sees alive: once the stopped one is failed
    // (a stopped process still accepts TCP connections, so before that a request sent to it
    // would hang until its timeout), writes through the client go to the new leader.
    let stopped_name = format!("s{}", stopped + 1);
    let noticed = eventually(SETTLE, || async {
        let m = members(&clients[0]).await;
        (m.get(&stopped_name).map(|x| x.0) == Some(4)).then_some(())
    })
    .await;
    if noticed.is_none() {
        servers[stopped].signal(nix::sys::signal::Signal::SIGCONT);
        servers[stopped].fail("the client never saw the stopped server as failed");
    }
    clients[0].kv_put("cluster/while-stopped", "yes").await;
    servers[stopped].signal(nix::sys::signal::Signal::SIGCONT);
    let rejoined = eventually(SETTLE, || async {
        let l = leader_of(&servers[stopped]).await;
        let v = stale_value(&servers[stopped], "cluster/while-stopped").await;
        (l != servers[stopped].server_addr() && !l.is_empty() && v.as_deref() == Some(b"yes"))
            .then_some(())
    })
    .await;
    assert!(
        rejoined.is_some(),
        "the continued server did not step down and catch up"
    );

    // ---- Every server restarted: the data stays. ----
    for s in servers.iter_mut() {
        s.kill9();
    }
    for s in servers.iter_mut() {
        s.restart().await;
    }
    // They find each other again: each joins the others explicitly (their gossip state went).
    let addrs: Vec<String> = servers.iter().map(Agent::gossip_addr).collect();
    for s in &servers {
        let mut args = vec!["join"];
        args.extend(addrs.iter().map(String::as_str));
        s.cli(&args).await;
    }
    let watchers: Vec<&Agent> = servers.iter().collect();
    assert!(
        agreed_leader(&servers, &watchers).await.is_some(),
        "no leader after restarting every server"
    );
    for s in &servers {
        let v = eventually(SETTLE, || async {
            s.kv_value("cluster/from-client")
                .await
                .filter(|v| v == b"hello")
        })
        .await;
        assert!(
            v.is_some(),
            "data lost on {} after a full restart",
            s.http_addr()
        );
        assert!(
            s.kv_value(&last).await.is_some(),
            "{last} lost on {}",
            s.http_addr()
        );
    }
    drop(clients);
    drop(servers);
}

/// Scaling down with `leave`, one server at a time, as Consul's docs tell operators to: a
/// follower leaves, then the leader. Each is out of the Raft configuration before it stops
/// (the follower waits for the leader to remove it; the leader removes itself first), so the
/// last server is alone in the configuration, leads, and keeps the data. Were either to stop
/// while still a voter, the last server would have no quorum and refuse every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_servers_one_at_a_time_keeps_the_last_one_writable() {
    let fast = r#"{"performance": {"raft_multiplier": 1}}"#;
    let start = |n: u8, join: Option<&str>| server_builder(n, join).config_file("fast.json", fast);
    let s1 = start(1, None).start().await;
    let join = s1.gossip_addr();
    let s2 = start(2, Some(&join)).start().await;
    let s3 = start(3, Some(&join)).start().await;
    let mut servers = vec![s1, s2, s3];
    let Some(leader) = agreed_leader(&servers, &servers.iter().collect::<Vec<_>>()).await else {
        servers[0].fail("the three servers never agreed on a leader");
    };
    let voters = eventually(SETTLE, || async {
        let p = list_peers(&servers[leader]).await;
        (p.len() == 3 && p.iter().all(|(_, _, v)| v == "true")).then_some(())
    })
    .await;
    assert!(
        voters.is_some(),
        "never three voters: {:?}",
        list_peers(&servers[leader]).await
    );
    servers[leader]
        .put("/v1/kv/scale/before", "kept")
        .await
        .expect_status(200);

    // A follower leaves: the leader removes it before it stops.
    let follower = (0..3).find(|i| *i != leader).unwrap_or_default();
    servers[follower].cli(&["leave"]).await.expect_code(0);
    assert!(
        servers[follower]
            .wait_exit(Duration::from_secs(30))
            .await
            .is_some(),
        "s{} did not stop after leave",
        follower + 1
    );
    let p = list_peers(&servers[leader]).await;
    assert_eq!(
        p.len(),
        2,
        "the follower that left is still in the configuration: {p:?}"
    );

    // Then the leader leaves: it removes itself, the last server takes over alone.
    let last = (0..3)
        .find(|i| *i != leader && *i != follower)
        .unwrap_or_default();
    servers[leader].cli(&["leave"]).await.expect_code(0);
    assert!(
        servers[leader]
            .wait_exit(Duration::from_secs(30))
            .await
            .is_some(),
        "the leader did not stop after leave"
    );
    let alone = eventually(SETTLE, || async {
        let p = list_peers(&servers[last]).await;
        (p.len() == 1 && p[0].1 == "leader").then_some(p)
    })
    .await;
    if alone.is_none() {
        let p = list_peers(&servers[last]).await;
        servers[last].fail(&format!("the last server is not alone and leading: {p:?}"));
    }
    let s = &servers[last];
    s.put("/v1/kv/scale/after", "written")
        .await
        .expect_status(200);
    assert_eq!(s.get("/v1/kv/scale/before?raw").await.text(), "kept");
    assert_eq!(s.get("/v1/kv/scale/after?raw").await.text(), "written");
}
