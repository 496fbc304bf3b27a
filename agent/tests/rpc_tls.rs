//! TLS on the server RPC (`tls.internal_rpc`), end to end with real `muster agent` processes
//! and certificates made by the `openssl` CLI (`common/certs.rs`): three servers with
//! `verify_incoming`, `verify_outgoing` and `verify_server_hostname` form a cluster and serve a
//! client agent; a server without TLS is refused; a certificate for another name is refused
//! with `verify_server_hostname` and accepted without it; a certificate of another CA is
//! refused either way.
//!
//! Every wait is bounded; nothing asserts on how fast anything settles.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{eventually, Agent, AgentBuilder, Pki};
use serde_json::Value;

/// Generous bounds for a loaded 2-core machine.
const SETTLE: Duration = Duration::from_secs(25);

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// The CA, and signed by it: `srv` (server and client auth, `server.dc1.consul`, what Consul's
/// `consul tls cert create -server` makes), `wrongname` (the same for `server.dc2.consul`),
/// `agent` (client auth, for client agents); `rogue` for `server.dc1.consul` signed by the CA
/// nobody trusts.
fn pki(dir: &std::path::Path) -> Pki {
    let pki = Pki::new(dir);
    let both = "serverAuth,clientAuth";
    pki.leaf("srv", both, Some("DNS:server.dc1.consul,IP:127.0.0.1"));
    pki.leaf("wrongname", both, Some("DNS:server.dc2.consul"));
    pki.leaf("agent", "clientAuth", None);
    pki.leaf_signed_by("other-ca", "rogue", both, Some("DNS:server.dc1.consul"));
    pki
}

/// An HCL `tls` block: the CA in `tls.defaults`, `cert` (a leaf of `pki`, or none) and `extra`
/// in `tls.internal_rpc`.
fn rpc_tls(pki: &Pki, cert: Option<&str>, extra: &str) -> String {
    let cert = cert
        .map(|c| {
            format!(
                "cert_file = \"{}\"\n    key_file = \"{}\"",
                pki.path(&format!("{c}.pem")),
                pki.path(&format!("{c}.key"))
            )
        })
        .unwrap_or_default();
    format!(
        "tls {{\n  defaults {{\n    ca_file = \"{ca}\"\n  }}\n  internal_rpc {{\n    {cert}\n    \
         {extra}\n  }}\n}}\nlimits {{\n  rpc_handshake_timeout = \"2s\"\n}}\n",
        ca = pki.path("ca.pem"),
    )
}

const VERIFY_ALL: &str =
    "verify_incoming = true\n    verify_outgoing = true\n    verify_server_hostname = true";

fn named(builder: AgentBuilder, name: &str, join: Option<&str>) -> AgentBuilder {
    let mut args = vec![
        "-node".to_string(),
        name.to_string(),
        "-retry-interval".into(),
        "1s".into(),
        "-log-level".into(),
        "info".into(),
    ];
    if let Some(j) = join {
        args.extend(["-retry-join".to_string(), j.to_string()]);
    }
    builder.args(args)
}

/// `-bootstrap-expect 3` server `s<n>` on 127.0.0.n with `tls` as its config.
fn server(n: u8, join: Option<&str>, tls: &str) -> AgentBuilder {
    named(AgentBuilder::cluster_server(ip(n)), &format!("s{n}"), join)
        .args(["-bootstrap-expect", "3"])
        .config_file("tls.hcl", tls)
}

/// `(node, voter, leader)` of the Raft configuration as `a` reports it.
async fn raft_servers(a: &Agent) -> Vec<(String, bool, bool)> {
    let resp = a.get("/v1/operator/raft/configuration").await;
    if resp.status != 200 {
        return Vec::new();
    }
    let body = resp.json();
    body["Servers"]
        .as_array()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["Node"].as_str().unwrap_or_default().to_string(),
                s["Voter"].as_bool().unwrap_or(false),
                s["Leader"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Whether `a` lists `node` as an alive member.
async fn sees_alive(a: &Agent, node: &str) -> bool {
    let body: Value = a.get("/v1/agent/members").await.json();
    body.as_array().is_some_and(|ms| {
        ms.iter()
            .any(|m| m["Name"].as_str() == Some(node) && m["Status"].as_u64() == Some(1))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_mutual_tls_form_a_cluster_and_refuse_a_plaintext_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let tls = rpc_tls(&pki, Some("srv"), VERIFY_ALL);

    let s1 = server(1, None, &tls).start().await;
    let join = s1.gossip_addr();
    let s2 = server(2, Some(&join), &tls).start().await;
    let s3 = server(3, Some(&join), &tls).start().await;
    let servers = [s1, s2, s3];

    // Three voters and a leader: Raft itself (votes, appends) ran over mutual TLS.
    let formed = eventually(SETTLE, || async {
        let peers = raft_servers(&servers[0]).await;
        (peers.len() == 3 && peers.iter().all(|p| p.1) && peers.iter().any(|p| p.2))
            .then_some(peers)
    })
    .await;
    if formed.is_none() {
        let peers = raft_servers(&servers[0]).await;
        let mut s1 = servers.into_iter().next().expect("s1");
        s1.fail(&format!("no 3-voter cluster over TLS: {peers:?}"));
    }

    // A client agent presenting its certificate forwards a write; every server reads it.
    let agent_tls = rpc_tls(&pki, Some("agent"), "verify_server_hostname = true");
    let c4 = named(AgentBuilder::client(ip(4)), "c4", Some(&join))
        .config_file("tls.hcl", &agent_tls)
        .start()
        .await;
    let written = eventually(SETTLE, || async {
        let r = c4.put("/v1/kv/tls/from-client", "over tls").await;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(
        written.is_some(),
        "the client agent could not write through the servers\n{}",
        c4.report()
    );
    for s in &servers {
        assert_eq!(
            s.kv_value("tls/from-client").await.as_deref(),
            Some(&b"over tls"[..]),
            "on {}",
            s.http_addr()
        );
    }

    // A server without TLS joins the gossip pool, but its plaintext RPC is refused and the
    // leader cannot reach it over TLS: it never becomes part of the Raft configuration. (All
    // loopback connections come from 127.0.0.1 whatever the caller's -bind, so the refusal is
    // recognised by its message: until s5 starts, nobody speaks plaintext.)
    const REFUSED: &str = "plaintext connection refused";
    for s in &servers {
        assert!(!s.output().contains(REFUSED), "{}", s.report());
    }
    let s5 = named(AgentBuilder::cluster_server(ip(5)), "s5", Some(&join))
        .args(["-bootstrap-expect", "3"])
        .start()
        .await;
    let refused = eventually(SETTLE, || async {
        servers
            .iter()
            .any(|s| s.output().contains(REFUSED))
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "no server logged refusing s5's plaintext RPC\n{}",
        servers[0].report()
    );
    assert!(sees_alive(&servers[0], "s5").await, "s5 is in the LAN pool");
    let peers = raft_servers(&servers[0]).await;
    let mut names: Vec<&str> = peers.iter().map(|p| p.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["s1", "s2", "s3"], "{peers:?}");
    assert!(peers.iter().all(|p| p.1), "{peers:?}");
    // s5 has no leader: it could not bootstrap with the others nor be added.
    let leader = s5.get("/v1/status/leader").await;
    assert_eq!(leader.text().trim(), "\"\"", "{}", s5.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificates_are_checked_for_the_ca_and_with_verify_server_hostname_the_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    // One server whose certificate is signed by the CA but for server.dc2.consul; it requires
    // client certificates.
    let s1 = named(AgentBuilder::cluster_server(ip(1)), "s1", None)
        .args(["-bootstrap"])
        .config_file(
            "tls.hcl",
            &rpc_tls(&pki, Some("wrongname"), "verify_incoming = true"),
        )
        .start()
        .await;
    let join = s1.gossip_addr();

    // verify_outgoing alone checks the chain only: the write goes through.
    let chain_only = named(AgentBuilder::client(ip(2)), "c2", Some(&join))
        .config_file(
            "tls.hcl",
            &rpc_tls(&pki, Some("agent"), "verify_outgoing = true"),
        )
        .start()
        .await;
    let written = eventually(SETTLE, || async {
        let r = chain_only.put("/v1/kv/tls/chain-only", "yes").await;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(
        written.is_some(),
        "verify_outgoing without verify_server_hostname refused a certificate of the CA\n{}",
        chain_only.report()
    );

    // verify_server_hostname wants server.dc1.consul: refused, and the error says why.
    let by_name = named(AgentBuilder::client(ip(3)), "c3", Some(&join))
        .config_file(
            "tls.hcl",
            &rpc_tls(&pki, Some("agent"), "verify_server_hostname = true"),
        )
        .start()
        .await;
    assert_refused(&by_name, "not valid for name").await;

    // A client agent trusting another CA refuses the server's certificate whatever the name.
    let other_ca = format!(
        "tls {{\n  defaults {{\n    ca_file = \"{}\"\n  }}\n  internal_rpc {{\n    \
         cert_file = \"{}\"\n    key_file = \"{}\"\n    verify_outgoing = true\n  }}\n}}\n",
        pki.path("other-ca.pem"),
        pki.path("rogue.pem"),
        pki.path("rogue.key"),
    );
    let distrusting = named(AgentBuilder::client(ip(4)), "c4", Some(&join))
        .config_file("tls.hcl", &other_ca)
        .start()
        .await;
    assert_refused(&distrusting, "certificate").await;

    // Nothing refused was written; the chain-only write is there.
    assert_eq!(
        s1.kv_value("tls/chain-only").await.as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(s1.kv_value("tls/refused").await, None);
}

/// Once `client` sees the server `s1` alive, a write through it fails with an error that
/// contains `why` (the TLS handshake's).
async fn assert_refused(client: &Agent, why: &str) {
    let seen = eventually(SETTLE, || async {
        sees_alive(client, "s1").await.then_some(())
    })
    .await;
    assert!(seen.is_some(), "never saw s1\n{}", client.report());
    let r = client.put("/v1/kv/tls/refused", "no").await;
    assert_ne!(r.status, 200, "{}", client.report());
    assert!(
        r.text().contains(why),
        "{} {:?} does not say {why:?}",
        r.status,
        r.text()
    );
}
