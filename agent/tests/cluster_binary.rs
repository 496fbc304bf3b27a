//! The real `muster` binary as a single server: the server RPC listens on `-server-port`, the
//! operator endpoints and CLI describe the one-server Raft configuration. (Multi-server clusters
//! of real processes need gossip to find each other; `cluster.rs` runs them in-process.)

mod common;

use common::{run_muster, AgentBuilder, CLI_TIMEOUT};

/// `muster operator raft <sub> -http-addr=.. <args>` (the harness's `cli` puts the address
/// after two words; `operator raft` has three).
async fn operator(a: &common::Agent, sub: &str, args: &[&str]) -> common::Output {
    let mut full: Vec<String> = vec![
        "operator".into(),
        "raft".into(),
        sub.into(),
        format!("-http-addr={}", a.http_addr()),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    run_muster(&full, None, CLI_TIMEOUT).await
}

#[tokio::test]
async fn a_bootstrapped_server_serves_rpc_and_the_operator_raft_commands() {
    let a = AgentBuilder::server().start().await;
    // The server RPC port accepts connections.
    tokio::net::TcpStream::connect(a.server_addr())
        .await
        .expect("the server RPC port listens");

    let conf = a.get("/v1/operator/raft/configuration").await.json();
    let servers = conf["Servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1, "{conf}");
    assert_eq!(servers[0]["Address"], a.server_addr().as_str());
    assert_eq!(servers[0]["Leader"], true);
    assert_eq!(servers[0]["Voter"], true);
    assert_eq!(servers[0]["ProtocolVersion"], "3");

    let out = operator(&a, "list-peers", &[]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("Node "), "{out}");
    assert!(lines[1].contains(&a.server_addr()), "{out}");
    assert!(lines[1].contains(" leader "), "{out}");

    // Removing a peer that is not there fails and changes nothing.
    let out = operator(&a, "remove-peer", &["-address", "10.1.2.3:8300"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("not found"), "{out}");
    let out = operator(&a, "remove-peer", &[]).await;
    out.expect_code(1);
    let r = a.delete("/v1/operator/raft/peer").await;
    r.expect_status(400);
    assert_eq!(
        a.get("/v1/status/peers").await.json(),
        serde_json::json!([a.server_addr()])
    );
}
