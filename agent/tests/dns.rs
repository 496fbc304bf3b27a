//! End-to-end tests of the DNS interface: the real `muster` binary on free loopback ports,
//! services and checks registered over HTTP (`/v1/agent/service/register` with TTL checks the
//! test drives, `/v1/catalog/register` for other nodes), queried with hickory's client and
//! resolver, raw UDP/TCP messages (EDNS on or off, malformed packets), and the real `dig`.
//!
//! Recursion is tested against DNS servers this test runs on 127.0.0.1 (a hickory-server with
//! static records, one that answers SERVFAIL, a socket that never answers); no query leaves
//! the loopback interface. Every wait is bounded; nothing asserts on speed.

mod common;
mod discovery_common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use common::{Agent, AgentBuilder};
use discovery_common::*;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Upper bound for one DNS exchange.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a change to show in DNS answers.
const SHOW: Duration = Duration::from_secs(20);

// ---- asking ------------------------------------------------------------------------------

/// How a raw query is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// UDP without EDNS (512-byte answers).
    Udp,
    /// UDP with an EDNS OPT record advertising this payload size.
    UdpEdns(u16),
    Tcp,
}

fn query_message(name: &str, qtype: RecordType, via: Via) -> Message {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name}: {e}")),
        qtype,
    ));
    if let Via::UdpEdns(size) = via {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        m.set_edns(edns);
    }
    m
}

/// Sends raw bytes over UDP and returns the raw answer, or `None` when nothing comes back
/// within `wait`.
async fn udp_raw(port: u16, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    socket
        .connect(("127.0.0.1", port))
        .await
        .expect("connect UDP");
    socket.send(bytes).await.expect("send UDP");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn tcp_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    let run = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        let len = u16::try_from(bytes.len()).expect("query fits");
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(bytes).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    tokio::time::timeout(QUERY_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("no TCP answer from port {port} within {QUERY_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("TCP exchange with port {port}: {e}"))
}

/// One query as a raw message; the answer must come and decode.
async fn ask_via(port: u16, name: &str, qtype: RecordType, via: Via) -> Message {
    let q = query_message(name, qtype, via);
    let bytes = q.to_vec().expect("encode query");
    let raw = match via {
        Via::Tcp => tcp_raw(port, &bytes).await,
        _ => udp_raw(port, &bytes, QUERY_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no UDP answer to {name} {qtype} within {QUERY_TIMEOUT:?}")),
    };
    if via != Via::Tcp {
        assert!(
            raw.len() <= 512 || matches!(via, Via::UdpEdns(size) if raw.len() <= usize::from(size)),
            "{name} {qtype} via {via:?}: a {}-byte UDP answer exceeds the client's size",
            raw.len()
        );
    }
    let m = Message::from_vec(&raw).unwrap_or_else(|e| panic!("undecodable answer: {e}"));
    assert_eq!(m.metadata.id, q.metadata.id, "answer ID");
    assert_eq!(m.metadata.message_type, MessageType::Response);
    m
}

/// hickory's own client over UDP (with EDNS, its default).
async fn hickory_client(port: u16) -> Client<TokioRuntimeProvider> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let conn = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(QUERY_TIMEOUT))
        .build();
    let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(conn);
    tokio::spawn(bg);
    client
}

async fn ask(client: &mut Client<TokioRuntimeProvider>, name: &str, qtype: RecordType) -> Message {
    let name = Name::from_ascii(name).expect("name");
    match tokio::time::timeout(
        QUERY_TIMEOUT * 2,
        client.query(name.clone(), DNSClass::IN, qtype),
    )
    .await
    {
        Ok(Ok(resp)) => (*resp).clone(),
        Ok(Err(e)) => panic!("{name} {qtype}: {e}"),
        Err(_) => panic!("{name} {qtype}: no answer"),
    }
}

// ---- reading answers ---------------------------------------------------------------------

fn addresses(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn srvs(records: &[Record]) -> Vec<SRV> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// SRV answers as sorted `(target lower case, port)`.
fn srv_targets(m: &Message) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = srvs(&m.answers)
        .iter()
        .map(|s| (s.target.to_ascii().to_ascii_lowercase(), s.port))
        .collect();
    v.sort();
    v
}

fn txts(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

fn soa_of(m: &Message) -> SOA {
    m.authorities
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SOA in the authority section of {m:?}"))
}

#[track_caller]
fn expect_nxdomain(m: &Message, what: &str) {
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "{what}: {m:?}"
    );
    assert!(m.answers.is_empty(), "{what}: {m:?}");
    assert_eq!(soa_of(m).mname.to_ascii(), "ns.consul.", "{what}");
}

/// Polls `name` until its A answers are exactly `want`.
async fn wait_addresses(port: u16, name: &str, want: &[&str]) -> Message {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    wait_for(&format!("{name} A to be {want:?}"), SHOW, || {
        let want = want.clone();
        async move {
            // TCP and UDP (whose answers to service names come from a cache of encodings)
            // must agree.
            let m = ask_via(port, name, RecordType::A, Via::Tcp).await;
            let u = ask_via(port, name, RecordType::A, Via::UdpEdns(4096)).await;
            if addresses(&m.answers) == want && addresses(&u.answers) == want {
                Ok(m)
            } else {
                Err(format!(
                    "TCP: {} {:?}, UDP: {} {:?}",
                    m.metadata.response_code,
                    addresses(&m.answers),
                    u.metadata.response_code,
                    addresses(&u.answers)
                ))
            }
        }
    })
    .await
}

// ---- registering -------------------------------------------------------------------------

/// `PUT /v1/catalog/register` of a node with one service and a passing (or given) check.
#[allow(clippy::too_many_arguments)]
async fn catalog_instance(
    a: &Agent,
    node: &str,
    address: &str,
    meta: serde_json::Value,
    service: &str,
    service_address: &str,
    port: u16,
    tags: &[&str],
    status: &str,
) {
    let id = format!("{service}-{node}");
    let body = json!({
        "Node": node, "Address": address, "NodeMeta": meta,
        "Service": {"ID": id, "Service": service, "Address": service_address, "Port": port,
                    "Tags": tags},
        "Check": {"CheckID": format!("check-{id}"), "Name": "alive", "Status": status,
                  "ServiceID": id},
    });
    put_json(a, "/v1/catalog/register", &body)
        .await
        .expect_status(200);
}

/// Registers `name` on the agent itself with a TTL check `<name>-ttl`, made passing.
async fn local_service(a: &Agent, name: &str, port: u16, tags: &[&str]) {
    register_service(
        a,
        json!({"Name": name, "Port": port, "Tags": tags,
               "Check": {"CheckID": format!("{name}-ttl"), "TTL": "10m"}}),
    )
    .await;
    ttl(a, "pass", &format!("{name}-ttl")).await;
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn every_name_form_and_type_with_consuls_answers() {
    let a = AgentBuilder::dev()
        .config_file(
            "dns.json",
            r#"{"dns_config": {"node_ttl": "11s", "service_ttl": {"*": "5s", "web": "7s"}}}"#,
        )
        .start()
        .await;
    let port = a.ports.dns;
    let me = node_name(&a).await.to_ascii_lowercase();
    local_service(&a, "web", 8080, &["v1", "primary"]).await;
    catalog_instance(
        &a,
        "ext1",
        "127.0.1.1",
        json!({"rack": "r1"}),
        "web",
        "",
        81,
        &["v2"],
        "passing",
    )
    .await;
    // An instance with its own address, on a node with another.
    catalog_instance(
        &a,
        "ext2",
        "127.0.1.2",
        json!({}),
        "web",
        "127.0.2.2",
        82,
        &["v1"],
        "passing",
    )
    .await;
    catalog_instance(
        &a,
        "ext3",
        "127.0.1.3",
        json!({}),
        "db",
        "",
        5432,
        &[],
        "passing",
    )
    .await;

    let m = wait_addresses(
        port,
        "web.service.consul.",
        &["127.0.0.1", "127.0.1.1", "127.0.2.2"],
    )
    .await;
    let mut client = hickory_client(port).await;

    // A, with the service TTL and Consul's flags.
    let m2 = ask(&mut client, "web.service.consul.", RecordType::A).await;
    assert_eq!(addresses(&m2.answers), addresses(&m.answers));
    assert!(
        m2.answers.iter().all(|r| r.ttl == 7),
        "service_ttl.web: {m2:?}"
    );
    assert!(m2.metadata.authoritative, "AA");
    assert!(!m2.metadata.recursion_available, "no recursors: RA clear");
    assert!(m2.edns.is_some(), "the client's EDNS is echoed");
    let m = ask(&mut client, "db.service.consul.", RecordType::A).await;
    assert!(m.answers.iter().all(|r| r.ttl == 5), "service_ttl.*: {m:?}");

    // SRV: node names, the .addr name for an instance with its own IP, targets' A records in
    // the additional section, node meta as TXT.
    let m = ask(&mut client, "web.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![
            ("7f000202.addr.dc1.consul.".to_string(), 82),
            ("ext1.node.dc1.consul.".to_string(), 81),
            (format!("{me}.node.dc1.consul."), 8080),
        ]
    );
    assert!(srvs(&m.answers)
        .iter()
        .all(|s| s.priority == 1 && s.weight == 1));
    assert_eq!(
        addresses(&m.additionals),
        ["127.0.0.1", "127.0.1.1", "127.0.2.2"]
            .map(String::from)
            .into()
    );
    for extra in m
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
    {
        let target = extra.name.to_ascii().to_ascii_lowercase();
        assert!(
            srv_targets(&m).iter().any(|(t, _)| *t == target),
            "additional {target} is an SRV target"
        );
    }
    assert!(txts(&m.additionals).contains("rack=r1"), "{m:?}");

    // Tags, RFC 2782, datacenter forms.
    let m = ask(&mut client, "v1.web.service.consul.", RecordType::A).await;
    assert_eq!(
        addresses(&m.answers),
        ["127.0.0.1", "127.0.2.2"].map(String::from).into()
    );
    let m = ask(&mut client, "PRIMARY.web.service.consul.", RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());
    let m = ask(&mut client, "_web._v2.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![("ext1.node.dc1.consul.".to_string(), 81)]
    );
    let m = ask(
        &mut client,
        "_web._tcp.service.dc1.consul.",
        RecordType::SRV,
    )
    .await;
    assert_eq!(m.answers.len(), 3);
    let m = ask(&mut client, "_web._tcp.consul.", RecordType::SRV).await;
    assert_eq!(
        m.answers.len(),
        3,
        "the service label is optional for RFC 2782"
    );
    let m = ask(&mut client, "web.service.dc1.consul.", RecordType::A).await;
    assert_eq!(m.answers.len(), 3);
    expect_nxdomain(
        &ask(&mut client, "web.service.dc2.consul.", RecordType::A).await,
        "other dc",
    );
    expect_nxdomain(
        &ask(&mut client, "nope.service.consul.", RecordType::A).await,
        "unknown service",
    );
    expect_nxdomain(
        &ask(&mut client, "v9.web.service.consul.", RecordType::A).await,
        "unknown tag",
    );
    expect_nxdomain(
        &ask(&mut client, "what.consul.", RecordType::A).await,
        "no kind label",
    );

    // A known name without records of the type: NOERROR, empty, SOA.
    let m = ask(&mut client, "web.service.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    soa_of(&m);

    // Nodes: A with node_ttl, node meta as TXT (answer for TXT, additional for A).
    let m = ask(&mut client, "ext1.node.consul.", RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.1.1".to_string()].into());
    assert!(m.answers.iter().all(|r| r.ttl == 11), "node_ttl: {m:?}");
    assert!(txts(&m.additionals).contains("rack=r1"));
    let m = ask(&mut client, "ext1.node.dc1.consul.", RecordType::TXT).await;
    assert_eq!(txts(&m.answers), ["rack=r1".to_string()].into());
    let m = ask(&mut client, "EXT1.node.consul.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    soa_of(&m);
    let m = ask(&mut client, &format!("{me}.node.consul."), RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());
    expect_nxdomain(
        &ask(&mut client, "ghost.node.consul.", RecordType::A).await,
        "unknown node",
    );

    // .addr, hex and dotted.
    let m = ask(&mut client, "7f000101.addr.dc1.consul.", RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.1.1".to_string()].into());
    assert_eq!(m.answers[0].ttl, 11);
    let m = ask(&mut client, "127.0.2.2.addr.consul.", RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.2.2".to_string()].into());
    let m = ask(
        &mut client,
        "00000000000000000000000000000001.addr.consul.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(addresses(&m.answers), ["::1".to_string()].into());

    // The servers.
    let m = ask(&mut client, "consul.service.consul.", RecordType::A).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());
    let m = ask(&mut client, "consul.service.consul.", RecordType::SRV).await;
    assert_eq!(
        srv_targets(&m),
        vec![(format!("{me}.node.dc1.consul."), a.ports.server)]
    );

    // PTR for a node's address and for a service's own address.
    let m = ask(&mut client, "1.1.0.127.in-addr.arpa.", RecordType::PTR).await;
    let ptrs: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(ptrs, ["ext1.node.dc1.consul."]);
    let m = ask(&mut client, "2.2.0.127.in-addr.arpa.", RecordType::PTR).await;
    assert!(
        matches!(&m.answers[0].data, RData::PTR(p) if p.0.to_ascii() == "web.service.dc1.consul."),
        "{m:?}"
    );
    expect_nxdomain(
        &ask(&mut client, "9.9.9.127.in-addr.arpa.", RecordType::PTR).await,
        "PTR",
    );

    // SOA and NS of the domain, Consul's defaults.
    let m = ask(&mut client, "consul.", RecordType::SOA).await;
    let soa = match &m.answers[0].data {
        RData::SOA(s) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(soa.mname.to_ascii(), "ns.consul.");
    assert_eq!(soa.rname.to_ascii(), "hostmaster.consul.");
    assert_eq!(
        (soa.refresh, soa.retry, soa.expire, soa.minimum),
        (3600, 600, 86400, 0)
    );
    assert_eq!(m.answers[0].ttl, 0, "the SOA's TTL is min_ttl");
    let m = ask(&mut client, "consul.", RecordType::NS).await;
    let ns: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(n) => Some(n.0.to_ascii()),
            _ => None,
        })
        .collect();
    assert_eq!(ns, [format!("{me}.node.dc1.consul.")]);
    assert_eq!(addresses(&m.additionals), ["127.0.0.1".to_string()].into());

    // Outside the domain without recursors: REFUSED.
    let m = ask_via(port, "example.com.", RecordType::A, Via::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    // Case is kept in the answer's owner name.
    let m = ask_via(port, "WEB.Service.Consul.", RecordType::A, Via::Udp).await;
    assert_eq!(m.answers[0].name.to_ascii(), "WEB.Service.Consul.");
}

#[tokio::test]
async fn hickory_resolver_and_tcp_find_the_same_answers() {
    use hickory_resolver::config::{
        ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
    };
    use hickory_resolver::Resolver;

    let a = Agent::dev().await;
    let port = a.ports.dns;
    local_service(&a, "api", 9090, &[]).await;
    wait_addresses(port, "api.service.consul.", &["127.0.0.1"]).await;

    let mut udp = ConnectionConfig::udp();
    udp.port = port;
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = port;
    let config = ResolverConfig::from_parts(
        None,
        Vec::new(),
        vec![NameServerConfig::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            true,
            vec![udp, tcp],
        )],
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    opts.cache_size = 0;
    let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("resolver");
    let ips = resolver
        .lookup_ip("api.service.consul.")
        .await
        .expect("lookup_ip api.service.consul");
    assert_eq!(
        ips.iter().collect::<Vec<_>>(),
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
    );
    let srv = resolver
        .lookup("_api._tcp.service.consul.", RecordType::SRV)
        .await
        .expect("SRV lookup");
    let ports: Vec<u16> = srv
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    assert_eq!(ports, vec![9090]);

    // TCP answers the same as UDP.
    let m = ask_via(port, "api.service.consul.", RecordType::SRV, Via::Tcp).await;
    assert_eq!(srvs(&m.answers).len(), 1);
    assert_eq!(addresses(&m.additionals), ["127.0.0.1".to_string()].into());
}

#[tokio::test]
async fn failing_checks_drop_instances_and_only_passing_drops_warnings() {
    let a = Agent::dev().await;
    let port = a.ports.dns;
    local_service(&a, "pay", 7000, &[]).await;
    catalog_instance(
        &a,
        "p1",
        "127.0.4.1",
        json!({}),
        "pay",
        "",
        7000,
        &[],
        "warning",
    )
    .await;
    catalog_instance(
        &a,
        "p2",
        "127.0.4.2",
        json!({}),
        "pay",
        "",
        7000,
        &[],
        "critical",
    )
    .await;
    // A warning instance is answered (Consul's default), a critical one is not.
    wait_addresses(port, "pay.service.consul.", &["127.0.0.1", "127.0.4.1"]).await;

    // The local instance's TTL check fails: it drops out.
    ttl(&a, "fail", "pay-ttl").await;
    wait_addresses(port, "pay.service.consul.", &["127.0.4.1"]).await;
    // A critical node-level check takes every instance on the node with it.
    put_json(
        &a,
        "/v1/catalog/register",
        &json!({"Node": "p1", "Address": "127.0.4.1", "SkipNodeUpdate": true,
                "Check": {"CheckID": "serfHealth", "Name": "Serf", "Status": "critical"}}),
    )
    .await
    .expect_status(200);
    let m = ask_via(port, "pay.service.consul.", RecordType::A, Via::Udp).await;
    expect_nxdomain(&m, "every instance critical");
    ttl(&a, "pass", "pay-ttl").await;
    wait_addresses(port, "pay.service.consul.", &["127.0.0.1"]).await;

    // only_passing: warnings are left out too.
    let b = AgentBuilder::dev()
        .config_file("dns.json", r#"{"dns_config": {"only_passing": true}}"#)
        .start()
        .await;
    catalog_instance(
        &b,
        "w1",
        "127.0.4.1",
        json!({}),
        "pay",
        "",
        7000,
        &[],
        "warning",
    )
    .await;
    catalog_instance(
        &b,
        "w2",
        "127.0.4.2",
        json!({}),
        "pay",
        "",
        7000,
        &[],
        "passing",
    )
    .await;
    wait_addresses(b.ports.dns, "pay.service.consul.", &["127.0.4.2"]).await;
}

#[tokio::test]
async fn answers_come_in_random_order() {
    let a = Agent::dev().await;
    for i in 1..=4 {
        catalog_instance(
            &a,
            &format!("r{i}"),
            &format!("127.0.5.{i}"),
            json!({}),
            "spread",
            "",
            80,
            &[],
            "passing",
        )
        .await;
    }
    let port = a.ports.dns;
    for via in [Via::Tcp, Via::UdpEdns(1232)] {
        random_orders(port, via).await;
    }
}

async fn random_orders(port: u16, via: Via) {
    let mut orders = BTreeSet::new();
    for _ in 0..40 {
        let m = ask_via(port, "spread.service.consul.", RecordType::A, via).await;
        let order: Vec<String> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(order.len(), 4);
        orders.insert(order);
        if orders.len() > 3 {
            break;
        }
    }
    // 40 draws of 24 orders all landing on at most 3 is (3/24)^37: never, unless not random.
    assert!(
        orders.len() > 3,
        "answers over {via:?} are not shuffled: {orders:?}"
    );
}

#[tokio::test]
async fn large_answers_are_truncated_for_udp_and_whole_over_tcp_and_edns() {
    let a = Agent::dev().await;
    let port = a.ports.dns;
    for i in 1..=30 {
        catalog_instance(
            &a,
            &format!("big-node-{i:02}"),
            &format!("127.0.6.{i}"),
            json!({}),
            "big",
            "",
            9000 + i,
            &[],
            "passing",
        )
        .await;
    }
    let all: Vec<String> = (1..=30).map(|i| format!("127.0.6.{i}")).collect();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    wait_addresses(port, "big.service.consul.", &all_refs).await;

    // UDP without EDNS: at most 512 bytes and udp_answer_limit (3) answers, TC set.
    let m = ask_via(port, "big.service.consul.", RecordType::A, Via::Udp).await;
    assert!(m.metadata.truncation, "TC: {m:?}");
    assert!(
        !m.answers.is_empty() && m.answers.len() <= 3,
        "{} answers",
        m.answers.len()
    );
    assert!(m.edns.is_none(), "no EDNS in, none out");
    let m = ask_via(port, "big.service.consul.", RecordType::SRV, Via::Udp).await;
    assert!(m.metadata.truncation);
    // Every SRV kept has its target's address; no address without its SRV.
    let targets: BTreeSet<String> = srvs(&m.answers)
        .iter()
        .map(|s| s.target.to_ascii())
        .collect();
    let extra: BTreeSet<String> = m
        .additionals
        .iter()
        .filter(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.to_ascii())
        .collect();
    assert_eq!(targets, extra);

    // TCP: everything.
    let m = ask_via(port, "big.service.consul.", RecordType::A, Via::Tcp).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m.answers).len(), 30);
    let m = ask_via(port, "big.service.consul.", RecordType::SRV, Via::Tcp).await;
    assert_eq!(m.answers.len(), 30);
    assert_eq!(addresses(&m.additionals).len(), 30);

    // EDNS: the client's size is honoured; 4096 holds all 30 SRV records and their addresses.
    let m = ask_via(
        port,
        "big.service.consul.",
        RecordType::SRV,
        Via::UdpEdns(4096),
    )
    .await;
    assert!(!m.metadata.truncation, "{m:?}");
    assert_eq!(m.answers.len(), 30);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(4096));
    // EDNS at 512 bytes: as many SRV records as fit, TC set.
    let m = ask_via(
        port,
        "big.service.consul.",
        RecordType::SRV,
        Via::UdpEdns(512),
    )
    .await;
    assert!(m.metadata.truncation);
    assert!(
        m.answers.len() > 1 && m.answers.len() < 30,
        "{} answers",
        m.answers.len()
    );
    // A larger EDNS size than 512 but smaller than the answer.
    let m = ask_via(
        port,
        "big.service.consul.",
        RecordType::SRV,
        Via::UdpEdns(1232),
    )
    .await;
    assert!(m.metadata.truncation);
    assert!(
        m.answers.len() > 3 && m.answers.len() < 30,
        "{} answers",
        m.answers.len()
    );

    // With enable_truncate = false the answer is trimmed silently (Consul's default), and
    // udp_answer_limit / a_record_limit apply.
    let b = AgentBuilder::dev()
        .config_file(
            "dns.json",
            r#"{"dns_config": {"enable_truncate": false, "udp_answer_limit": 2, "a_record_limit": 5}}"#,
        )
        .start()
        .await;
    for i in 1..=8 {
        catalog_instance(
            &b,
            &format!("n{i}"),
            &format!("127.0.7.{i}"),
            json!({}),
            "lim",
            "",
            80,
            &[],
            "passing",
        )
        .await;
    }
    let m = ask_via(b.ports.dns, "lim.service.consul.", RecordType::A, Via::Udp).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 2);
    let m = ask_via(b.ports.dns, "lim.service.consul.", RecordType::A, Via::Tcp).await;
    assert_eq!(m.answers.len(), 5, "a_record_limit");
}

#[tokio::test]
async fn malformed_packets_never_disturb_the_server_and_a_flood_never_stalls_http() {
    let a = Agent::dev().await;
    let port = a.ports.dns;
    local_service(&a, "ok", 80, &[]).await;
    wait_addresses(port, "ok.service.consul.", &["127.0.0.1"]).await;

    let valid = query_message("ok.service.consul.", RecordType::A, Via::Udp)
        .to_vec()
        .expect("encode");
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        // A header claiming one question, then nothing.
        vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0],
        // A question whose label runs past the end.
        [&valid[..12], &[0x3f, b'a', b'b'][..]].concat(),
        // A compression pointer loop.
        [&valid[..12], &[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01][..]].concat(),
        valid[..valid.len() - 3].to_vec(),
    ];
    // Random bytes, deterministic.
    let mut x: u32 = 0x9e37_79b9;
    for len in [20usize, 100, 600, 1500] {
        garbage.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for (i, g) in garbage.iter().enumerate() {
        if let Some(raw) = udp_raw(port, g, Duration::from_millis(300)).await {
            if let Ok(m) = Message::from_vec(&raw) {
                assert_ne!(
                    m.metadata.response_code,
                    ResponseCode::NoError,
                    "garbage #{i} got a NOERROR answer: {m:?}"
                );
            }
        }
        // Over TCP too: the connection may close, the server must not.
        if let Ok(Ok(mut s)) =
            tokio::time::timeout(QUERY_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await
        {
            let len = u16::try_from(g.len()).unwrap_or(0);
            let _ = s.write_all(&len.to_be_bytes()).await;
            let _ = s.write_all(g).await;
            let mut buf = [0u8; 2];
            let _ = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
        }
    }
    // Two questions: FORMERR.
    let mut two = query_message("ok.service.consul.", RecordType::A, Via::Udp);
    two.add_query(Query::query(
        Name::from_str("x.service.consul.").expect("name"),
        RecordType::A,
    ));
    let raw = udp_raw(port, &two.to_vec().expect("encode"), QUERY_TIMEOUT)
        .await
        .expect("an answer to two questions");
    let m = Message::from_vec(&raw).expect("decode");
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Another opcode: NOTIMP.
    let mut notify = query_message("ok.service.consul.", RecordType::A, Via::Udp);
    notify.metadata.op_code = OpCode::Notify;
    let raw = udp_raw(port, &notify.to_vec().expect("encode"), QUERY_TIMEOUT)
        .await
        .expect("an answer to NOTIFY");
    assert_eq!(
        Message::from_vec(&raw)
            .expect("decode")
            .metadata
            .response_code,
        ResponseCode::NotImp
    );
    // The server still answers, over both transports.
    let m = ask_via(port, "ok.service.consul.", RecordType::A, Via::Udp).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());
    let m = ask_via(port, "ok.service.consul.", RecordType::A, Via::Tcp).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());

    // A flood of queries (bounded: 20,000 datagrams, 30 s at most) while the HTTP API answers.
    let flood = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(("127.0.0.1", port)).await.expect("connect");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut sent = 0;
        while sent < 20_000 && tokio::time::Instant::now() < deadline {
            let _ = socket.send(&valid).await;
            sent += 1;
            if sent % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        sent
    });
    for _ in 0..5 {
        a.get("/v1/status/leader").await.expect_status(200);
        a.get("/v1/catalog/services").await.expect_status(200);
    }
    let sent = flood.await.expect("flood task");
    assert!(sent > 0);
    let m = ask_via(port, "ok.service.consul.", RecordType::A, Via::Tcp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn alt_domain_answers_in_its_own_names() {
    let a = AgentBuilder::dev()
        .args(["-alt-domain", "example.test"])
        .start()
        .await;
    let port = a.ports.dns;
    catalog_instance(
        &a,
        "alt1",
        "127.0.8.1",
        json!({}),
        "svc",
        "",
        80,
        &[],
        "passing",
    )
    .await;
    let m = ask_via(port, "svc.service.example.test.", RecordType::SRV, Via::Tcp).await;
    assert_eq!(
        srv_targets(&m),
        vec![("alt1.node.dc1.example.test.".to_string(), 80)]
    );
    assert_eq!(addresses(&m.additionals), ["127.0.8.1".to_string()].into());
    let m = ask_via(port, "svc.service.consul.", RecordType::SRV, Via::Tcp).await;
    assert_eq!(
        srv_targets(&m),
        vec![("alt1.node.dc1.consul.".to_string(), 80)]
    );
    let m = ask_via(port, "nope.service.example.test.", RecordType::A, Via::Tcp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa_of(&m).mname.to_ascii(), "ns.example.test.");
}

// ---- recursion -----------------------------------------------------------------------------

/// What a test upstream server does.
#[derive(Clone, Copy)]
enum Upstream {
    /// Static records: `static.example.` A 127.0.0.42, `big.example.` 100 A records,
    /// anything else NXDOMAIN.
    Records,
    /// SERVFAIL to everything.
    ServFail,
}

struct UpstreamHandler(Upstream);

#[async_trait::async_trait]
impl hickory_server::server::RequestHandler for UpstreamHandler {
    async fn handle_request<
        R: hickory_server::server::ResponseHandler,
        T: hickory_server::net::runtime::Time,
    >(
        &self,
        request: &hickory_server::server::Request,
        mut handle: R,
    ) -> hickory_server::server::ResponseInfo {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let mut answers = Vec::new();
        let name = request
            .queries
            .queries()
            .first()
            .map(|q| q.original().name().clone())
            .unwrap_or_else(Name::root);
        match self.0 {
            Upstream::ServFail => meta.response_code = ResponseCode::ServFail,
            Upstream::Records => match name.to_ascii().to_ascii_lowercase().as_str() {
                "static.example." => answers.push(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(127, 0, 0, 42))),
                )),
                "big.example." => {
                    for i in 0..100u8 {
                        answers.push(Record::from_rdata(
                            name.clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(127, 1, 0, i))),
                        ));
                    }
                }
                "txt.example." => answers.push(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::TXT(TXT::new(vec!["hello".into()])),
                )),
                _ => meta.response_code = ResponseCode::NXDomain,
            },
        }
        let edns = request.edns.clone();
        let builder = hickory_server::zone_handler::MessageResponseBuilder::new(
            &request.queries,
            edns.as_ref(),
        );
        let response = builder.build(meta, answers.iter(), [].iter(), [].iter(), [].iter());
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => panic!("upstream could not answer: {e}"),
        }
    }
}

/// A DNS server on 127.0.0.1 (UDP and TCP on one port), stopped when dropped.
struct TestUpstream {
    port: u16,
    stop: tokio_util::sync::CancellationToken,
}

impl TestUpstream {
    async fn start(kind: Upstream) -> TestUpstream {
        let (udp, tcp) = bind_pair().await;
        let port = udp.local_addr().expect("addr").port();
        let mut server = hickory_server::Server::new(UpstreamHandler(kind));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 8);
        let stop = server.shutdown_token().clone();
        tokio::spawn(async move {
            let _ = server.block_until_done().await;
        });
        TestUpstream { port, stop }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A UDP socket and a TCP listener on the same free loopback port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let port = udp.local_addr().expect("addr").port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

#[tokio::test]
async fn queries_outside_the_domain_go_to_the_recursors() {
    let upstream = TestUpstream::start(Upstream::Records).await;
    let failing = TestUpstream::start(Upstream::ServFail).await;
    let a = AgentBuilder::dev()
        .args(["-recursor", &failing.addr(), "-recursor", &upstream.addr()])
        .start()
        .await;
    let port = a.ports.dns;

    // The first recursor answers SERVFAIL: the next one is asked.
    let mut client = hickory_client(port).await;
    let m = ask(&mut client, "static.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&m.answers), ["127.0.0.42".to_string()].into());
    assert!(m.metadata.recursion_available);
    assert!(!m.metadata.authoritative);
    let m = ask(&mut client, "txt.example.", RecordType::TXT).await;
    assert_eq!(txts(&m.answers), ["hello".to_string()].into());
    // NXDOMAIN from upstream is passed on.
    let m = ask_via(port, "missing.example.", RecordType::A, Via::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // A PTR nobody in the catalog has goes upstream too.
    let m = ask_via(port, "9.9.9.10.in-addr.arpa.", RecordType::PTR, Via::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.recursion_available);

    // 100 records do not fit the upstream's UDP answer: Muster asks again over TCP, and gives
    // the client all of them over TCP, a truncated answer over UDP.
    let m = ask_via(port, "big.example.", RecordType::A, Via::Tcp).await;
    assert_eq!(addresses(&m.answers).len(), 100);
    let m = ask_via(port, "big.example.", RecordType::A, Via::Udp).await;
    assert!(m.metadata.truncation);
    let m = ask_via(port, "big.example.", RecordType::A, Via::UdpEdns(4096)).await;
    assert!(!m.metadata.truncation);
    assert_eq!(addresses(&m.answers).len(), 100);

    // In-domain names are still answered locally, with RA set.
    let m = ask_via(port, "consul.service.consul.", RecordType::A, Via::Udp).await;
    assert_eq!(addresses(&m.answers), ["127.0.0.1".to_string()].into());
    assert!(m.metadata.recursion_available);
    assert!(m.metadata.authoritative);
}

#[tokio::test]
async fn every_recursor_failing_is_servfail_within_the_timeout() {
    // A socket that takes queries and never answers (and no TCP listener behind it).
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    let failing = TestUpstream::start(Upstream::ServFail).await;
    let a = AgentBuilder::dev()
        .config_file(
            "dns.json",
            &format!(
                r#"{{"recursors": ["{silent_addr}", "{}"], "dns_config": {{"recursor_timeout": "300ms"}}}}"#,
                failing.addr()
            ),
        )
        .start()
        .await;
    let started = std::time::Instant::now();
    let m = ask_via(a.ports.dns, "static.example.", RecordType::A, Via::Udp).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
    assert!(m.metadata.recursion_available);
    // Bounded by recursor_timeout per recursor (the query's own timeout is 5 s).
    assert!(started.elapsed() < QUERY_TIMEOUT);
    drop(silent);
}

// ---- dig -----------------------------------------------------------------------------------

/// Runs the real `dig` against the agent; fails with a hint when dig is missing.
async fn dig(port: u16, args: &[&str]) -> String {
    let probe = tokio::process::Command::new("dig").arg("-v").output().await;
    if probe.is_err() {
        panic!("`dig` is not installed: `bash scripts/test.sh` installs dnsutils (Debian), or run `apt-get install dnsutils`");
    }
    let mut cmd = tokio::process::Command::new("dig");
    cmd.arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=3", "+tries=1"])
        .args(args)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("dig {args:?} did not finish within 30 s"))
        .unwrap_or_else(|e| panic!("running dig: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn dig_walkthrough() {
    let a = Agent::dev().await;
    let port = a.ports.dns;
    let me = node_name(&a).await.to_ascii_lowercase();
    local_service(&a, "order", 8080, &["v1"]).await;
    catalog_instance(
        &a,
        "order-2",
        "127.0.9.2",
        json!({}),
        "order",
        "",
        8081,
        &["v2"],
        "passing",
    )
    .await;
    wait_addresses(port, "order.service.consul.", &["127.0.0.1", "127.0.9.2"]).await;

    // dig @127.0.0.1 -p 8600 order.service.consul SRV
    let out = dig(port, &["order.service.consul", "SRV"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains(" aa"), "authoritative: {out}");
    let lower = out.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("srv\t1 1 8080 {me}.node.dc1.consul.")),
        "{out}"
    );
    assert!(
        lower.contains("srv\t1 1 8081 order-2.node.dc1.consul."),
        "{out}"
    );
    assert!(
        lower.contains(&format!("{me}.node.dc1.consul.\t0\tin\ta\t127.0.0.1")),
        "{out}"
    );
    let short = dig(port, &["+short", "order.service.consul", "SRV"]).await;
    assert_eq!(short.lines().count(), 2, "{short}");

    // dig @127.0.0.1 -p 8600 consul.service.consul: the servers.
    let short = dig(port, &["+short", "consul.service.consul"]).await;
    assert_eq!(short.trim(), "127.0.0.1");

    // A tag filter, both spellings.
    let short = dig(port, &["+short", "v2.order.service.consul"]).await;
    assert_eq!(short.trim(), "127.0.9.2");
    let short = dig(port, &["+short", "_order._v1.service.consul", "SRV"]).await;
    assert_eq!(
        short.trim().to_ascii_lowercase(),
        format!("1 1 8080 {me}.node.dc1.consul.")
    );

    // NXDOMAIN with the SOA.
    let out = dig(port, &["nope.service.consul"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("ns.consul. hostmaster.consul."), "{out}");

    // Over TCP, and without EDNS.
    let short = dig(port, &["+tcp", "+short", "order.service.consul"]).await;
    assert_eq!(short.lines().count(), 2, "{short}");
    let short = dig(port, &["+noedns", "+short", "order.service.consul"]).await;
    assert_eq!(short.lines().count(), 2, "{short}");

    // The local instance's check goes critical: it vanishes from the answer.
    ttl(&a, "fail", "order-ttl").await;
    wait_for(
        "order's local instance to leave the SRV answer",
        SHOW,
        || async {
            let short = dig(port, &["+short", "order.service.consul", "SRV"]).await;
            if short
                .trim()
                .eq_ignore_ascii_case("1 1 8081 order-2.node.dc1.consul.")
            {
                Ok(())
            } else {
                Err(short)
            }
        },
    )
    .await;
    // And when the last one goes critical, the name is gone.
    catalog_instance(
        &a,
        "order-2",
        "127.0.9.2",
        json!({}),
        "order",
        "",
        8081,
        &["v2"],
        "critical",
    )
    .await;
    let out = dig(port, &["order.service.consul"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");

    // Many instances: a UDP answer without EDNS is truncated and dig retries over TCP.
    for i in 1..=30 {
        catalog_instance(
            &a,
            &format!("many-{i:02}"),
            &format!("127.0.10.{i}"),
            json!({}),
            "many",
            "",
            80,
            &[],
            "passing",
        )
        .await;
    }
    let out = dig(port, &["+noedns", "many.service.consul"]).await;
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 30"), "{out}");
    let out = dig(port, &["+noedns", "+ignore", "many.service.consul"]).await;
    assert!(out.contains(" tc"), "TC flag: {out}");
}
