//! Three-server clusters in one process: each server is a real `Agent` with its own bind address
//! (127.0.0.1 … 127.0.0.3), HTTP listener, server RPC listener and data dir; they talk over real
//! TCP. The membership view gossip will produce is fed by the test instead.
//!
//! Every wait is bounded; nothing asserts on how fast something happened.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use muster_agent::membership::{MemberInfo, MemberSet, MemberStatus};
use muster_agent::server::{self_member, Agent};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// One server's fixed identity: survives restarts.
#[derive(Clone)]
struct Spec {
    name: String,
    ip: IpAddr,
    node_id: String,
    dir: PathBuf,
    rpc_port: u16,
    expect: Option<u32>,
    /// A client agent (no `-server`).
    client: bool,
}

struct Server {
    agent: Arc<Agent>,
    tasks: JoinSet<()>,
    token: CancellationToken,
    http: SocketAddr,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    async fn stop(mut self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        self.agent.stop().await;
    }
}

fn config(spec: &Spec) -> muster_agent::config::Config {
    let mut args: Vec<String> = [
        "-bind",
        &spec.ip.to_string(),
        "-client",
        &spec.ip.to_string(),
        "-data-dir",
        &spec.dir.display().to_string(),
        "-node",
        &spec.name,
        "-node-id",
        &spec.node_id,
        "-server-port",
        &spec.rpc_port.to_string(),
        "-dns-port",
        "-1",
        // The test feeds the membership view itself: no gossip.
        "-serf-lan-port",
        "-1",
        "-log-level",
        "warn",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !spec.client {
        args.push("-server".into());
    }
    if let Some(n) = spec.expect {
        args.push("-bootstrap-expect".into());
        args.push(n.to_string());
    }
    let mut c = muster_agent::config::from_agent_args(args).expect("config");
    c.raft.raft_multiplier = 1;
    // Small enough that a server joining late needs a snapshot.
    c.raft.snapshot_threshold = 32;
    c.raft.trailing_logs = 8;
    c
}

/// Picks a free RPC port on `ip`.
async fn free_port(ip: IpAddr) -> u16 {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

async fn start(spec: &Spec, view: watch::Receiver<MemberSet>) -> Server {
    let c = config(spec);
    let http = TcpListener::bind(SocketAddr::new(spec.ip, 0))
        .await
        .expect("bind http");
    let http_addr = http.local_addr().expect("addr");
    // A just-stopped server's port may take a moment to be free again.
    let mut rpc = None;
    for _ in 0..if spec.client { 0 } else { 100 } {
        match TcpListener::bind(SocketAddr::new(spec.ip, spec.rpc_port)).await {
            Ok(l) => {
                rpc = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(rpc.is_some() || spec.client, "bind rpc");
    let token = CancellationToken::new();
    let (agent, tasks) = Agent::start_cluster(
        c,
        vec![http],
        Default::default(),
        rpc,
        Some(view),
        token.clone(),
    )
    .await
    .expect("start agent");
    Server {
        agent,
        tasks,
        token,
        http: http_addr,
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    specs: Vec<Spec>,
    view: watch::Sender<MemberSet>,
    servers: Vec<Option<Server>>,
    http: reqwest::Client,
}

impl Cluster {
    /// `n` servers with `-bootstrap-expect n`, all alive in the view.
    async fn start(n: usize) -> Cluster {
        Cluster::with_clients(n, 0).await
    }

    /// `n` servers and `clients` client agents (after the servers, from 127.0.0.n+1).
    async fn with_clients(n: usize, clients: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut specs = Vec::new();
        for i in 0..n + clients {
            let ip: IpAddr = format!("127.0.0.{}", i + 1).parse().expect("ip");
            specs.push(Spec {
                name: format!("s{}", i + 1),
                ip,
                node_id: uuid::Uuid::new_v4().to_string(),
                dir: dir.path().join(format!("s{}", i + 1)),
                rpc_port: free_port(ip).await,
                expect: (i < n).then_some(n as u32),
                client: i >= n,
            });
        }
        let members: Vec<MemberInfo> = specs
            .iter()
            .map(|s| self_member(&config(s), &s.node_id))
            .collect();
        let (view, rx) = watch::channel(Arc::new(members));
        let mut servers = Vec::new();
        for s in &specs {
            servers.push(Some(start(s, rx.clone()).await));
        }
        Cluster {
            _dir: dir,
            specs,
            view,
            servers,
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .build()
                .expect("client"),
        }
    }

    fn server(&self, i: usize) -> &Server {
        self.servers[i].as_ref().expect("server running")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Server)> {
        self.servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    /// Waits until every running server names the same leader, a running one; its index.
    async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let leaders: Vec<Option<u64>> = self
                .running()
                .filter(|(i, _)| !self.specs[*i].client)
                .map(|(_, s)| s.agent.raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) {
                    if let Some((i, _)) = self
                        .running()
                        .find(|(i, s)| !self.specs[*i].client && s.agent.raft_id == *l)
                    {
                        return i;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn follower(&self, leader: usize) -> usize {
        self.running()
            .map(|(i, _)| i)
            .find(|i| *i != leader && !self.specs[*i].client)
            .expect("a follower")
    }

    async fn put(&self, i: usize, key: &str, value: &str) -> Result<(), String> {
        let r = self
            .http
            .put(self.server(i).url(&format!("/v1/kv/{key}")))
            .body(value.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().await.map_err(|e| e.to_string())?;
        if status.is_success() && body.trim() == "true" {
            Ok(())
        } else {
            Err(format!("{status}: {body}"))
        }
    }

    /// The raw value of `key` read on server `i` with `query` (e.g. `"stale"`), None if 404.
    async fn get(&self, i: usize, key: &str, query: &str) -> Option<String> {
        let r = self
            .http
            .get(self.server(i).url(&format!("/v1/kv/{key}?raw&{query}")))
            .send()
            .await
            .expect("get");
        if r.status() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "GET {key} on s{}: {:?}", i + 1, r);
        Some(r.text().await.expect("body"))
    }

    async fn get_json(&self, i: usize, path: &str) -> Value {
        let r = self
            .http
            .get(self.server(i).url(path))
            .send()
            .await
            .expect("get");
        assert!(r.status().is_success(), "GET {path}: {:?}", r.status());
        r.json().await.expect("json")
    }

    async fn stop(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            s.stop().await;
        }
    }

    async fn restart(&mut self, i: usize) {
        self.stop(i).await;
        let s = start(&self.specs[i], self.view.subscribe()).await;
        self.servers[i] = Some(s);
    }

    async fn shutdown(mut self) {
        for i in 0..self.servers.len() {
            self.stop(i).await;
        }
    }

    /// Starts one more server (the next loopback address) and adds it to the view.
    async fn add_server(&mut self) -> usize {
        let i = self.specs.len();
        let ip: IpAddr = format!("127.0.0.{}", i + 1).parse().expect("ip");
        let spec = Spec {
            name: format!("s{}", i + 1),
            ip,
            node_id: uuid::Uuid::new_v4().to_string(),
            dir: self._dir.path().join(format!("s{}", i + 1)),
            rpc_port: free_port(ip).await,
            expect: self.specs[0].expect,
            client: false,
        };
        let member = self_member(&config(&spec), &spec.node_id);
        self.view.send_modify(|set| {
            let mut v = (**set).clone();
            v.push(member);
            *set = Arc::new(v);
        });
        let server = start(&spec, self.view.subscribe()).await;
        self.specs.push(spec);
        self.servers.push(Some(server));
        i
    }

    fn set_status(&self, i: usize, status: MemberStatus) {
        let spec = &self.specs[i];
        self.view.send_modify(|set| {
            let mut v = (**set).clone();
            for m in v.iter_mut() {
                if m.node_id() == Some(spec.node_id.as_str()) {
                    m.status = status;
                }
            }
            *set = Arc::new(v);
        });
    }
}

/// Polls `f` until it returns true, at most [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_expect_forms_one_cluster_and_followers_forward() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.follower(leader);

    // Every server names the same leader and three peers, with real RPC addresses.
    let leader_addr = format!("{}:{}", c.specs[leader].ip, c.specs[leader].rpc_port);
    for (i, _) in c.running() {
        let l = c.get_json(i, "/v1/status/leader").await;
        assert_eq!(l, Value::String(leader_addr.clone()));
        let peers = c.get_json(i, "/v1/status/peers").await;
        assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    }

    // A write on a follower is committed by the leader and readable everywhere.
    c.put(follower, "greeting", "hello").await.expect("put");
    for (i, _) in c.running() {
        assert_eq!(c.get(i, "greeting", "").await.as_deref(), Some("hello"));
        assert_eq!(
            c.get(i, "greeting", "consistent").await.as_deref(),
            Some("hello")
        );
    }
    // Stale reads converge.
    for (i, _) in c.running() {
        eventually("stale read on every server", || async {
            c.get(i, "greeting", "stale").await.as_deref() == Some("hello")
        })
        .await;
    }
    let r = c
        .http
        .get(c.server(follower).url("/v1/kv/greeting?stale"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.headers()
            .get("X-Consul-KnownLeader")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert!(r.headers().get("X-Consul-LastContact").is_some());

    // The operator's view: one leader, three voters, names and addresses.
    let conf = c
        .get_json(follower, "/v1/operator/raft/configuration")
        .await;
    let servers = conf["Servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 3, "{conf}");
    assert_eq!(
        servers.iter().filter(|s| s["Leader"] == true).count(),
        1,
        "{conf}"
    );
    assert!(servers.iter().all(|s| s["Voter"] == true), "{conf}");
    for (spec, s) in c.specs.iter().zip(servers) {
        assert_eq!(s["Node"], spec.name.as_str());
        assert_eq!(s["ID"], spec.node_id.as_str());
        assert_eq!(
            s["Address"],
            format!("{}:{}", spec.ip, spec.rpc_port).as_str()
        );
        assert_eq!(s["ProtocolVersion"], "3");
        // Asked on a follower, answered by the leader, which knows how far each server got.
        assert!(s["LastIndex"].as_u64().is_some_and(|i| i > 0), "{conf}");
    }
    // `?stale` is this follower's own view: the same servers.
    let stale = c
        .get_json(follower, "/v1/operator/raft/configuration?stale")
        .await;
    assert_eq!(
        stale["Servers"].as_array().map(Vec::len),
        Some(3),
        "{stale}"
    );

    // A service registered with a follower server reaches the catalog (anti-entropy forwards).
    let r = c
        .http
        .put(c.server(follower).url("/v1/agent/service/register"))
        .body(r#"{"Name":"api","Port":9090}"#)
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success(), "{:?}", r.text().await);
    eventually("the follower's service in the catalog", || async {
        let v = c.get_json(leader, "/v1/catalog/service/api").await;
        v.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["Node"] == c.specs[follower].name.as_str())
    })
    .await;

    // The CLI prints one leader and two followers.
    let (code, out, err) = cli(&[
        "operator",
        "raft",
        "list-peers",
        "-http-addr",
        &c.server(follower).http.to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("Node"), "{out}");
    assert!(
        lines[0].contains("ID") && lines[0].contains("RaftProtocol"),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(
        lines.iter().filter(|l| l.contains(" leader ")).count(),
        1,
        "{out}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains(" follower ")).count(),
        2,
        "{out}"
    );
    for spec in &c.specs {
        assert!(out.contains(&spec.node_id), "{out}");
    }

    c.shutdown().await;
}

/// Runs the `muster` CLI in-process; (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input: &[u8] = &[];
    let code = {
        let mut ui = muster_agent::cli::Ui::new(&mut out, &mut err, &mut input);
        muster_agent::cli::run(args.iter().map(|s| s.to_string()).collect(), &mut ui).await
    };
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_query_on_a_follower_wakes_on_a_write_elsewhere() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.follower(leader);
    c.put(leader, "watched", "v1").await.expect("put");
    let r = c
        .http
        .get(c.server(follower).url("/v1/kv/watched"))
        .send()
        .await
        .expect("get");
    let index: u64 = r
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("index");
    let url = c
        .server(follower)
        .url(&format!("/v1/kv/watched?index={index}&wait=20s&raw"));
    let http = c.http.clone();
    let blocked = tokio::spawn(async move { http.get(url).send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "the blocking query returned early");
    c.put(leader, "watched", "v2").await.expect("put");
    let body = tokio::time::timeout(WAIT, blocked)
        .await
        .expect("woken")
        .expect("task")
        .expect("request");
    assert_eq!(body, "v2");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_loss_elects_a_new_leader_and_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;

    // Eight writers through both followers, concurrently (so writes are group-committed and
    // some are in flight at the leader when it stops); the leader is stopped in the middle.
    let followers: Vec<String> = c
        .running()
        .filter(|(i, _)| *i != leader)
        .map(|(_, s)| s.url("/v1/kv/loop"))
        .collect();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = JoinSet::new();
    for w in 0..8usize {
        let base = followers[w % followers.len()].clone();
        let http = c.http.clone();
        let progress = progress.clone();
        writers.spawn(async move {
            let mut acked = Vec::new();
            let mut failed = 0;
            for i in 0..30 {
                let key = format!("{w}-{i:03}");
                let r = http
                    .put(format!("{base}/{key}"))
                    .body(key.clone())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => acked.push(key),
                    _ => failed += 1,
                }
                progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (acked, failed)
        });
    }
    eventually("writes under way", || async {
        progress.load(std::sync::atomic::Ordering::Relaxed) >= 60
    })
    .await;
    c.stop(leader).await;
    let mut acked = Vec::new();
    let mut failed = 0;
    while let Some(done) = writers.join_next().await {
        let (a, f) = done.expect("writer");
        acked.extend(a);
        failed += f;
    }
    let new_leader = c.leader().await;
    assert_ne!(new_leader, leader);
    assert!(
        acked.len() >= 160,
        "only {} writes acknowledged ({failed} failed)",
        acked.len()
    );
    for (s, _) in c.running() {
        for key in &acked {
            assert_eq!(
                c.get(s, &format!("loop/{key}"), "").await.as_ref(),
                Some(key),
                "acknowledged write {key} missing on s{}",
                s + 1
            );
        }
    }

    // The old leader comes back as a follower and catches up.
    c.restart(leader).await;
    let l = c.leader().await;
    assert_ne!(
        l, leader,
        "the restarted server should rejoin as a follower"
    );
    let last = acked.last().expect("acked").clone();
    eventually("the old leader catches up", || async {
        c.get(leader, &format!("loop/{last}"), "stale")
            .await
            .as_ref()
            == Some(&last)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_restart_keeps_the_data() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    for i in 0..20 {
        c.put((leader + i) % 3, &format!("keep/{i}"), &format!("v{i}"))
            .await
            .expect("put");
    }
    for i in 0..3 {
        c.stop(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    c.leader().await;
    for s in 0..3 {
        for i in 0..20 {
            assert_eq!(
                c.get(s, &format!("keep/{i}"), "").await,
                Some(format!("v{i}"))
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remove_peer_and_dead_server_cleanup() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let follower = c.follower(leader);
    let other = (0..3)
        .find(|i| *i != leader && *i != follower)
        .expect("third");

    // remove-peer by address, asked on a follower: forwarded to the leader.
    let addr = format!("{}:{}", c.specs[other].ip, c.specs[other].rpc_port);
    let (code, out, err) = cli(&[
        "operator",
        "raft",
        "remove-peer",
        "-http-addr",
        &c.server(follower).http.to_string(),
        "-address",
        &addr,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("Removed peer with address \"{addr}\""));
    eventually("two peers left", || async {
        c.get_json(leader, "/v1/status/peers")
            .await
            .as_array()
            .map(Vec::len)
            == Some(2)
    })
    .await;
    // Unknown peers are an error; no parameter is a 400.
    let r = c
        .http
        .delete(
            c.server(leader)
                .url("/v1/operator/raft/peer?address=10.0.0.1:8300"),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 500);
    let r = c
        .http
        .delete(c.server(leader).url("/v1/operator/raft/peer"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 400);

    // The removed server is still alive in the view: the leader adds it back (learner, then
    // voter).
    eventually("the alive server is added back", || async {
        c.get_json(leader, "/v1/status/peers")
            .await
            .as_array()
            .map(Vec::len)
            == Some(3)
    })
    .await;

    // A server that fails is removed by the leader (two healthy voters stay a quorum).
    c.stop(other).await;
    c.set_status(other, MemberStatus::Failed);
    eventually("the failed server is removed", || async {
        c.get_json(leader, "/v1/status/peers")
            .await
            .as_array()
            .map(Vec::len)
            == Some(2)
    })
    .await;
    // Writes still commit with two voters.
    c.put(follower, "after", "cleanup").await.expect("put");
    assert_eq!(c.get(leader, "after", "").await.as_deref(), Some("cleanup"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_agent_forwards_writes_reads_blocking_queries_and_its_services() {
    let c = Cluster::with_clients(3, 1).await;
    let client = 3;
    let leader = c.leader().await;

    // A write on the client is committed by the servers and read back everywhere.
    c.put(client, "from/client", "hi").await.expect("put");
    for i in 0..4 {
        assert_eq!(c.get(i, "from/client", "").await.as_deref(), Some("hi"));
    }
    // Status comes from the servers.
    let leader_addr = format!("{}:{}", c.specs[leader].ip, c.specs[leader].rpc_port);
    assert_eq!(
        c.get_json(client, "/v1/status/leader").await,
        Value::String(leader_addr)
    );

    // A blocking query through the client is woken by a write on a server.
    let r = c
        .http
        .get(c.server(client).url("/v1/kv/from/client"))
        .send()
        .await
        .expect("get");
    let index: u64 = r
        .headers()
        .get("X-Consul-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("index");
    let url = c
        .server(client)
        .url(&format!("/v1/kv/from/client?index={index}&wait=20s&raw"));
    let http = c.http.clone();
    let blocked = tokio::spawn(async move { http.get(url).send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "the blocking query returned early");
    c.put(leader, "from/client", "changed").await.expect("put");
    let body = tokio::time::timeout(WAIT, blocked)
        .await
        .expect("woken")
        .expect("task")
        .expect("request");
    assert_eq!(body, "changed");

    // A service registered with the client agent reaches the catalog through anti-entropy,
    // and the client's own agent endpoints answer locally.
    let r = c
        .http
        .put(c.server(client).url("/v1/agent/service/register"))
        .body(r#"{"Name":"web","Port":8080}"#)
        .send()
        .await
        .expect("register");
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let services = c.get_json(client, "/v1/agent/services").await;
    assert!(services.get("web").is_some(), "{services}");
    eventually("the client's service in the servers' catalog", || async {
        let v = c.get_json(leader, "/v1/catalog/service/web").await;
        v.as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["Node"] == c.specs[client].name.as_str())
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_joining_late_gets_a_snapshot_and_becomes_a_voter() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    // Enough writes for snapshots and log compaction on every server.
    for i in 0..200 {
        c.put(leader, &format!("early/{i:03}"), &i.to_string())
            .await
            .expect("put");
    }
    let newcomer = c.add_server().await;
    eventually("the newcomer is a voter", || async {
        let conf = c.get_json(leader, "/v1/operator/raft/configuration").await;
        conf["Servers"]
            .as_array()
            .is_some_and(|s| s.len() == 4 && s.iter().all(|s| s["Voter"] == true))
    })
    .await;
    // It never bootstrapped a cluster of its own: it follows the same leader.
    assert_eq!(c.leader().await, leader);
    for i in [0, 99, 199] {
        assert_eq!(
            c.get(newcomer, &format!("early/{i:03}"), "").await,
            Some(i.to_string())
        );
    }
    let m = c.server(newcomer).agent.raft.metrics().borrow().clone();
    assert!(
        m.snapshot.is_some(),
        "the newcomer should have been sent a snapshot"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_cannot_acknowledge_a_write() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    c.put(leader, "before", "1").await.expect("put");
    for i in 0..3 {
        if i != leader {
            c.stop(i).await;
        }
    }
    // The lone server cannot commit: the write fails (bounded), and so does a consistent read.
    let err = c
        .put(leader, "lost", "x")
        .await
        .expect_err("a minority acknowledged a write");
    assert!(err.starts_with("500"), "{err}");
    let r = c
        .http
        .get(c.server(leader).url("/v1/kv/before?consistent"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 500);
    // Stale reads still answer from what it has.
    assert_eq!(c.get(leader, "before", "stale").await.as_deref(), Some("1"));
    c.shutdown().await;
}

/// Keeps accepting connections on `listener` and never reads or answers: a SIGSTOPped server
/// (its kernel still completes TCP handshakes).
fn never_answer(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_agent_reads_around_a_server_that_does_not_answer() {
    let c = Cluster::with_clients(3, 1).await;
    let client = 3;
    let leader = c.leader().await;
    c.put(leader, "around/key", "v").await.expect("put");

    // A fourth "server" in the view, alive, of this datacenter, that never answers. It has no
    // node id, so Raft leaves it alone; only the client agent's forwarding meets it.
    let stuck_listener = TcpListener::bind("127.0.0.5:0").await.expect("bind");
    let stuck_addr = stuck_listener.local_addr().expect("addr");
    let stuck = never_answer(stuck_listener);
    c.view.send_modify(|set| {
        let mut v = (**set).clone();
        let mut m = v
            .iter()
            .find(|m| m.is_server())
            .cloned()
            .expect("a server member");
        m.name = "stuck".into();
        m.addr = stuck_addr.ip();
        m.tags.remove(muster_agent::membership::tags::ID);
        m.tags.remove(muster_agent::membership::tags::EXPECT);
        m.tags.insert(
            muster_agent::membership::tags::PORT.into(),
            stuck_addr.port().to_string(),
        );
        v.push(m);
        *set = Arc::new(v);
    });
    assert_eq!(c.server(client).agent.server_addrs().len(), 4);

    // Blocking queries with a short wait: the one sent to the stuck server first gives up
    // after its wait and a margin (not the 10 minutes a blocking query may last) and is answered
    // by another server. Each returns; the bound is generous, not a timing assertion.
    let index = {
        let r = c
            .http
            .get(c.server(client).url("/v1/kv/around/key"))
            .send()
            .await
            .expect("get");
        assert!(r.status().is_success(), "{r:?}");
        r.headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("index")
    };
    for round in 0..4 {
        let started = std::time::Instant::now();
        let r = c
            .http
            .get(
                c.server(client)
                    .url(&format!("/v1/kv/around/key?index={index}&wait=2s&raw")),
            )
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("blocking GET {round}: {e}"));
        assert_eq!(r.status(), 200, "blocking GET {round}");
        assert_eq!(r.text().await.expect("body"), "v");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "blocking GET {round} took {:?}",
            started.elapsed()
        );
    }
    // Plain reads keep answering from the others.
    for round in 0..4 {
        let r = c
            .http
            .get(c.server(client).url("/v1/kv/around/key?raw"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {round}: {e}"));
        assert_eq!(r.status(), 200, "GET {round}");
        assert_eq!(r.text().await.expect("body"), "v");
    }
    // The stuck server was tried (and is now tried last).
    assert!(c.server(client).agent.rpc.is_slow(&stuck_addr.to_string()));
    stuck.abort();
    c.shutdown().await;
}

impl Cluster {
    /// Waits until every running server has applied its cluster's id; that id.
    async fn cluster_id(&self) -> u128 {
        let mut id = None;
        eventually("every server has the cluster id", || {
            let ids: Vec<Option<u128>> = self
                .running()
                .filter(|(i, _)| !self.specs[*i].client)
                .map(|(_, s)| s.agent.store.read().cluster_id)
                .collect();
            let agreed = ids
                .first()
                .copied()
                .flatten()
                .filter(|first| ids.iter().all(|x| *x == Some(*first)));
            id = agreed;
            async move { agreed.is_some() }
        })
        .await;
        id.expect("cluster id")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_refuses_raft_calls_from_another_cluster_and_calls_from_another_dc() {
    use muster_agent::rpc::{Identity, Pool, RpcError, RpcRequest};
    let a = Cluster::start(3).await;
    let b = Cluster::start(1).await;
    let a_leader = a.leader().await;
    let b_leader = b.leader().await;
    let a_id = a.cluster_id().await;
    let b_id = b.cluster_id().await;
    assert_ne!(a_id, b_id, "two clusters, two ids");
    a.put(a_leader, "cluster", "a").await.expect("put on A");
    let a_term = a
        .server(a_leader)
        .agent
        .raft
        .metrics()
        .borrow()
        .current_term;
    let a_follower = a.follower(a_leader);
    let addr = |c: &Cluster, i: usize| format!("{}:{}", c.specs[i].ip, c.specs[i].rpc_port);

    // B's leader claims leadership at a much higher term to A's follower, and asks A's leader
    // for its vote. Unchecked, the follower would take B's leader as its own and A's leader
    // would step down at the next answer; both are refused before openraft sees them.
    let b_agent = &b.server(b_leader).agent;
    let b_pool = &b_agent.rpc;
    let heartbeat = RpcRequest::AppendEntries(openraft::raft::AppendEntriesRequest {
        vote: openraft::Vote::new_committed(a_term + 100, b_agent.raft_id),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    });
    let vote = RpcRequest::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(a_term + 100, b_agent.raft_id),
        b_agent.raft.metrics().borrow().last_applied,
    ));
    for (to, request) in [(a_follower, heartbeat), (a_leader, vote)] {
        let kind = request.kind();
        match b_pool
            .call(&addr(&a, to), request, Duration::from_secs(10))
            .await
        {
            Err(RpcError::Remote(_, why)) => {
                assert!(why.contains("another cluster"), "{kind}: {why}")
            }
            other => panic!("{kind} from cluster B answered {other:?}"),
        }
    }
    // A keeps its leader, its term and its data, and still commits writes.
    assert_eq!(a.leader().await, a_leader);
    for (_, s) in a.running() {
        let m = s.agent.raft.metrics().borrow().clone();
        assert_eq!(m.current_term, a_term, "a server of A moved to B's term");
        assert_eq!(m.current_leader, Some(a.server(a_leader).agent.raft_id));
    }
    a.put(a_leader, "cluster", "still a")
        .await
        .expect("put on A");
    for i in 0..3 {
        assert_eq!(a.get(i, "cluster", "").await.as_deref(), Some("still a"));
    }
    // B is unharmed too.
    assert_eq!(b.leader().await, b_leader);
    b.put(b_leader, "cluster", "b").await.expect("put on B");

    // A caller from another datacenter (a client agent of dc2, say) is refused, whatever it asks.
    let dc2 = Pool::new();
    dc2.set_identity(Arc::new(|| Identity {
        datacenter: "dc2".into(),
        cluster: None,
    }));
    match dc2
        .call(
            &addr(&a, a_leader),
            RpcRequest::NodeView { node: "s1".into() },
            Duration::from_secs(10),
        )
        .await
    {
        Err(RpcError::Remote(_, why)) => assert!(why.contains("datacenter"), "{why}"),
        other => panic!("a call from dc2 answered {other:?}"),
    }

    // B's server shows up in A's pool (same datacenter, gossiping together): A's leader asks
    // who it is before adding it as a learner, and leaves it out.
    let mut stranger = self_member(&config(&b.specs[0]), &b.specs[0].node_id);
    stranger.name = "b-s1".into();
    a.view.send_modify(|set| Arc::make_mut(set).push(stranger));
    let b_raft_id = b.server(0).agent.raft_id;
    // Several reconcile rounds (one a second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_, s) in a.running() {
        let m = s.agent.raft.metrics().borrow().clone();
        assert!(
            m.membership_config
                .membership()
                .get_node(&b_raft_id)
                .is_none(),
            "A's Raft configuration took in B's server: {:?}",
            m.membership_config
        );
    }
    a.put(a_leader, "cluster", "a again")
        .await
        .expect("put on A");
    assert_eq!(b.leader().await, b_leader);
    a.shutdown().await;
    b.shutdown().await;
}
