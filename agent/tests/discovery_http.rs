//! End-to-end tests of service discovery over HTTP against the real binary, written from
//! Consul's documentation of `/v1/agent/service*`, `/v1/agent/check*`, `/v1/catalog/*` and
//! `/v1/health/*`: registration in either spelling, what each read endpoint answers, anti-entropy
//! into the catalog, the catalog's own register/deregister and index rules, `?filter=`,
//! blocking queries with targeted wake-ups, maintenance, the agent's aggregated-health
//! endpoints, bad input, and persistence across a restart.
//!
//! No assertion is about speed: waits are bounded polls, and a blocking query is told apart by
//! its index (and by returning before, or only after about, its wait).

mod common;
mod discovery_common;

use std::time::Duration;

use common::{Agent, AgentBuilder};
use discovery_common::*;
use serde_json::{json, Value};

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The `ServiceID`s of a `/v1/catalog/service/:name` answer, sorted.
fn catalog_ids(list: &Value) -> Vec<String> {
    sorted(strings(list.as_array().expect("an array"), "ServiceID"))
}

/// The `Service.ID`s of a `/v1/health/service/:name` answer, sorted.
fn health_ids(list: &Value) -> Vec<String> {
    sorted(
        list.as_array()
            .unwrap_or_else(|| panic!("not an array: {list}"))
            .iter()
            .map(|e| e["Service"]["ID"].as_str().expect("Service.ID").to_string())
            .collect(),
    )
}

/// The `CheckID`s of a list of checks, sorted.
fn check_ids(list: &Value) -> Vec<String> {
    sorted(strings(list.as_array().expect("an array"), "CheckID"))
}

// ---- registration and the read endpoints ----------------------------------------------------

#[tokio::test]
async fn register_in_pascal_and_snake_case_then_read_back_everywhere_and_deregister() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;

    // As py-consul and Go's api package send it.
    register_service(
        &a,
        json!({
            "ID": "web1", "Name": "web", "Tags": ["v1", "primary"], "Port": 8080,
            "Address": "10.0.0.10", "Meta": {"env": "prod"},
            "Check": {"TTL": "30s", "Status": "passing"}
        }),
    )
    .await;
    // As a config file spells it (the endpoint takes snake case too).
    register_service(
        &a,
        json!({
            "id": "db1", "name": "db", "tags": ["sql"], "port": 5432,
            "meta": {"env": "dev"}, "enable_tag_override": true,
            "check": {"check_id": "db-ttl", "name": "db ttl", "ttl": "30s"}
        }),
    )
    .await;

    // The agent's view.
    let services = agent_services(&a).await;
    let mut ids: Vec<&String> = services.keys().collect();
    ids.sort();
    assert_eq!(ids, ["db1", "web1"], "{services:?}");
    let web = &services["web1"];
    assert_eq!(web["ID"], "web1");
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Tags"], json!(["v1", "primary"]));
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Address"], "10.0.0.10");
    assert_eq!(web["Meta"], json!({"env": "prod"}));
    let db = &services["db1"];
    assert_eq!(db["Service"], "db");
    assert_eq!(db["Port"], 5432);
    assert_eq!(
        db["EnableTagOverride"], true,
        "snake_case enable_tag_override: {db}"
    );
    assert_eq!(db["Meta"], json!({"env": "dev"}));

    let one = get_json(&a, "/v1/agent/service/web1").await;
    assert_eq!(one["ID"], "web1");
    assert_eq!(one["Service"], "web");
    assert_eq!(one["Port"], 8080);
    assert!(
        one["ContentHash"].as_str().is_some_and(|h| !h.is_empty()),
        "Consul answers a ContentHash: {one}"
    );
    let r = a.get("/v1/agent/service/nope").await;
    assert_eq!(r.status, 404, "unknown service ID: {:?}", r.text());

    let checks = agent_checks(&a).await;
    let web_check = &checks["service:web1"];
    assert_eq!(
        web_check["Status"], "passing",
        "initial Status: {web_check}"
    );
    assert_eq!(web_check["ServiceID"], "web1");
    assert_eq!(web_check["ServiceName"], "web");
    assert_eq!(web_check["Name"], "Service 'web' check");
    assert_eq!(web_check["Node"], node.as_str());
    let db_check = &checks["db-ttl"];
    assert_eq!(db_check["Name"], "db ttl");
    assert_eq!(
        db_check["Status"], "critical",
        "a check without Status starts critical: {db_check}"
    );
    assert_eq!(db_check["ServiceID"], "db1");

    // Anti-entropy copies both into the catalog.
    wait_catalog_instance(&a, "web", "web1", true).await;
    wait_catalog_instance(&a, "db", "db1", true).await;
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    wait_catalog_check(&a, &node, "db-ttl", "critical").await;

    let services = get_json(&a, "/v1/catalog/services").await;
    let mut web_tags: Vec<String> =
        serde_json::from_value(services["web"].clone()).expect("web's tags");
    web_tags.sort();
    assert_eq!(web_tags, ["primary", "v1"], "{services}");
    assert_eq!(services["db"], json!(["sql"]), "{services}");
    assert!(services.get("consul").is_some(), "{services}");

    let list = get_json(&a, "/v1/catalog/service/web").await;
    assert_eq!(catalog_ids(&list), ["web1"]);
    let inst = &list[0];
    assert_eq!(inst["Node"], node.as_str());
    assert_eq!(inst["ServiceName"], "web");
    assert_eq!(inst["ServicePort"], 8080);
    assert_eq!(inst["ServiceAddress"], "10.0.0.10");
    assert_eq!(inst["ServiceMeta"], json!({"env": "prod"}));
    assert_eq!(inst["ServiceTags"], json!(["v1", "primary"]));
    assert_eq!(inst["Datacenter"], "dc1");

    let nodes = get_json(&a, "/v1/catalog/nodes").await;
    assert!(
        strings(nodes.as_array().expect("array"), "Node").contains(&node),
        "{nodes}"
    );

    let n = get_json(&a, &format!("/v1/catalog/node/{node}")).await;
    assert_eq!(n["Node"]["Node"], node.as_str());
    assert_eq!(
        keys(&n["Services"]),
        ["consul", "db1", "web1"],
        "catalog/node/:node Services is a map by ID: {n}"
    );
    let ns = get_json(&a, &format!("/v1/catalog/node-services/{node}")).await;
    assert_eq!(ns["Node"]["Node"], node.as_str());
    assert_eq!(
        sorted(strings(ns["Services"].as_array().expect("a list"), "ID")),
        ["consul", "db1", "web1"],
        "catalog/node-services/:node Services is a list: {ns}"
    );

    let health = get_json(&a, "/v1/health/service/web").await;
    assert_eq!(health_ids(&health), ["web1"]);
    assert_eq!(health[0]["Node"]["Node"], node.as_str());
    assert_eq!(
        check_ids(&health[0]["Checks"]),
        ["serfHealth", "service:web1"],
        "an instance's checks include its node's: {health}"
    );

    // Deregistration removes the service and its checks, here and in the catalog.
    let r = a.put("/v1/agent/service/deregister/web1", "").await;
    r.expect_status(200);
    let services = agent_services(&a).await;
    assert!(!services.contains_key("web1"), "{services:?}");
    assert!(services.contains_key("db1"), "{services:?}");
    assert!(!agent_checks(&a).await.contains_key("service:web1"));
    wait_catalog_instance(&a, "web", "web1", false).await;
    wait_for("service:web1 to leave the catalog", SYNC, || async {
        let checks = catalog_node_checks(&a, &node).await;
        if checks.iter().any(|c| c["CheckID"] == "service:web1") {
            Err(format!("{checks:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    let services = get_json(&a, "/v1/catalog/services").await;
    assert!(services.get("web").is_none(), "{services}");
    assert!(services.get("db").is_some(), "{services}");
}

#[tokio::test]
async fn the_node_has_the_consul_service_and_a_passing_serf_health_check() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    // Registering and removing a service runs anti-entropy, which must leave the leader's
    // registrations alone.
    register_service(&a, json!({"Name": "tmp"})).await;
    wait_catalog_instance(&a, "tmp", "tmp", true).await;
    a.put("/v1/agent/service/deregister/tmp", "")
        .await
        .expect_status(200);
    wait_catalog_instance(&a, "tmp", "tmp", false).await;

    let consul = get_json(&a, "/v1/catalog/service/consul").await;
    assert_eq!(catalog_ids(&consul), ["consul"], "{consul}");
    assert_eq!(consul[0]["Node"], node.as_str());
    let checks = catalog_node_checks(&a, &node).await;
    let serf = checks
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap_or_else(|| panic!("no serfHealth on {node}: {checks:?}"));
    assert_eq!(serf["Status"], "passing", "{serf}");
    assert_eq!(serf["Name"], "Serf Health Status", "{serf}");
    assert_eq!(serf["ServiceID"], "", "a node-level check: {serf}");
    let health = get_json(&a, "/v1/health/service/consul?passing").await;
    assert_eq!(health_ids(&health), ["consul"], "{health}");
}

#[tokio::test]
async fn health_service_passing_tags_node_meta_and_the_check_lists() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    for (id, tags) in [
        ("web1", json!(["v1", "primary"])),
        ("web2", json!(["v1"])),
        ("web3", json!(["v2"])),
    ] {
        register_service(
            &a,
            json!({"ID": id, "Name": "web", "Tags": tags, "Check": {"TTL": "60s"}}),
        )
        .await;
    }
    ttl(&a, "pass", "service:web1").await;
    ttl(&a, "warn", "service:web2").await;
    // web3 stays critical (a TTL check starts critical).
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    wait_catalog_check(&a, &node, "service:web2", "warning").await;
    wait_catalog_check(&a, &node, "service:web3", "critical").await;

    // An instance on another node, with node meta (registered in the catalog directly).
    let r = put_json(
        &a,
        "/v1/catalog/register",
        &json!({
            "Node": "ext1", "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
            "Service": {"ID": "web-ext", "Service": "web", "Tags": ["v1"], "Port": 80},
            "Check": {"CheckID": "web-ext-alive", "Name": "alive", "Status": "passing",
                      "ServiceID": "web-ext"}
        }),
    )
    .await;
    r.expect_status(200);

    let q = |s: &'static str| {
        let a = &a;
        async move { health_ids(&get_json(a, &format!("/v1/health/service/web{s}")).await) }
    };
    assert_eq!(q("").await, ["web-ext", "web1", "web2", "web3"]);
    assert_eq!(
        q("?passing").await,
        ["web-ext", "web1"],
        "?passing keeps only instances whose checks all pass"
    );
    assert_eq!(q("?passing=true").await, ["web-ext", "web1"]);
    assert_eq!(
        q("?passing=false").await,
        ["web-ext", "web1", "web2", "web3"]
    );
    assert_eq!(q("?tag=v1").await, ["web-ext", "web1", "web2"]);
    assert_eq!(
        q("?tag=v1&tag=primary").await,
        ["web1"],
        "repeated tag: every tag must match"
    );
    assert_eq!(q("?tag=nope").await, Vec::<String>::new());
    assert_eq!(q("?passing&tag=v1").await, ["web-ext", "web1"]);
    assert_eq!(q("?node-meta=rack:r1").await, ["web-ext"]);
    assert_eq!(q("?node-meta=rack:r2").await, Vec::<String>::new());
    assert_eq!(
        catalog_ids(&get_json(&a, "/v1/catalog/service/web?tag=v1&tag=primary").await),
        ["web1"]
    );
    assert_eq!(
        catalog_ids(&get_json(&a, "/v1/catalog/service/web?node-meta=rack:r1").await),
        ["web-ext"]
    );

    // /health/checks/:service: the service's own checks on every node, not the node checks.
    let checks = get_json(&a, "/v1/health/checks/web").await;
    assert_eq!(
        check_ids(&checks),
        [
            "service:web1",
            "service:web2",
            "service:web3",
            "web-ext-alive"
        ],
        "{checks}"
    );
    // /health/node/:node: every check of the node, node-level ones included.
    let on_node = get_json(&a, &format!("/v1/health/node/{node}")).await;
    assert_eq!(
        check_ids(&on_node),
        ["serfHealth", "service:web1", "service:web2", "service:web3"],
        "{on_node}"
    );
    assert_eq!(
        check_ids(&get_json(&a, "/v1/health/node/ext1").await),
        ["web-ext-alive"]
    );

    // /health/state/:state
    let state = |s: &'static str| {
        let a = &a;
        async move { check_ids(&get_json(a, &format!("/v1/health/state/{s}")).await) }
    };
    assert_eq!(
        state("passing").await,
        ["serfHealth", "service:web1", "web-ext-alive"]
    );
    assert_eq!(state("warning").await, ["service:web2"]);
    assert_eq!(state("critical").await, ["service:web3"]);
    assert_eq!(
        state("any").await,
        [
            "serfHealth",
            "service:web1",
            "service:web2",
            "service:web3",
            "web-ext-alive"
        ]
    );
    let r = a.get("/v1/health/state/bogus").await;
    assert_eq!(r.status, 400, "a bad state is a 400: {:?}", r.text());
    assert!(
        r.text().contains("bogus"),
        "the message names the bad state: {:?}",
        r.text()
    );
}

#[tokio::test]
async fn many_concurrent_registrations_and_updates_all_reach_the_catalog() {
    let a = Agent::dev().await;
    const N: usize = 100;
    let mut tasks = Vec::new();
    for i in 0..N {
        let client = a.client();
        let url = format!("{}/v1/agent/service/register", a.base_url());
        tasks.push(tokio::spawn(async move {
            let body = json!({"ID": format!("svc{i}"), "Name": format!("svc{}", i % 10),
                              "Check": {"TTL": "5m"}});
            common::send(
                &client,
                "PUT",
                &url,
                Some(body.to_string().into_bytes()),
                Duration::from_secs(30),
            )
            .await
            .map(|r| r.status)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok(200));
    }
    let mut tasks = Vec::new();
    for i in 0..N {
        let client = a.client();
        let verb = ["pass", "warn", "fail"][i % 3];
        let url = format!("{}/v1/agent/check/{verb}/service:svc{i}", a.base_url());
        tasks.push(tokio::spawn(async move {
            common::send(&client, "PUT", &url, None, Duration::from_secs(30))
                .await
                .map(|r| r.status)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok(200));
    }
    wait_for("every instance and status in the catalog", SYNC, || async {
        let checks = get_json(&a, "/v1/health/state/any").await;
        let mut wrong = Vec::new();
        for i in 0..N {
            let id = format!("service:svc{i}");
            let want = ["passing", "warning", "critical"][i % 3];
            match checks
                .as_array()
                .expect("array")
                .iter()
                .find(|c| c["CheckID"] == id.as_str())
            {
                Some(c) if c["Status"] == want => {}
                other => wrong.push(format!("{id}: {other:?}")),
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} wrong, e.g. {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(3)]
            ))
        }
    })
    .await;
    let services = get_json(&a, "/v1/catalog/services").await;
    assert_eq!(
        keys(&services).len(),
        11,
        "svc0..svc9 and consul: {services}"
    );
    let passing = get_json(&a, "/v1/health/service/svc0?passing").await;
    // svc0 has instances svc0, svc10, ..., svc90: i % 3 == 0 are passing.
    let want: Vec<String> = sorted(
        (0..N)
            .filter(|i| i % 10 == 0 && i % 3 == 0)
            .map(|i| format!("svc{i}"))
            .collect(),
    );
    assert_eq!(health_ids(&passing), want);
}

/// Consul's state store matches `?tag=` case-insensitively (`serviceTagFilter` compares
/// lower-cased tags; from Consul's source, not its API docs).
#[tokio::test]
async fn tag_filters_ignore_case_as_consul_does() {
    let a = Agent::dev().await;
    register_service(
        &a,
        json!({"ID": "web1", "Name": "web", "Tags": ["Primary"]}),
    )
    .await;
    wait_catalog_instance(&a, "web", "web1", true).await;
    assert_eq!(
        catalog_ids(&get_json(&a, "/v1/catalog/service/web?tag=primary").await),
        ["web1"]
    );
    assert_eq!(
        health_ids(&get_json(&a, "/v1/health/service/web?tag=PRIMARY").await),
        ["web1"]
    );
}

// ---- the catalog's own register/deregister and its index rules -----------------------------

#[tokio::test]
async fn catalog_register_deregister_and_index_rules() {
    let a = Agent::dev().await;
    let body = json!({
        "Node": "ext1", "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
        "Service": {"ID": "redis1", "Service": "redis", "Tags": ["primary"], "Port": 6379},
        "Check": {"CheckID": "service:redis1", "Name": "redis alive", "Status": "passing",
                  "ServiceID": "redis1"}
    });
    let r = put_json(&a, "/v1/catalog/register", &body).await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));

    let list = get_json(&a, "/v1/catalog/service/redis").await;
    assert_eq!(catalog_ids(&list), ["redis1"]);
    assert_eq!(list[0]["Node"], "ext1");
    assert_eq!(list[0]["Address"], "10.1.0.1");
    assert_eq!(list[0]["NodeMeta"], json!({"rack": "r1"}));
    assert_eq!(list[0]["ServicePort"], 6379);
    let health = get_json(&a, "/v1/health/service/redis").await;
    assert_eq!(check_ids(&health[0]["Checks"]), ["service:redis1"]);
    assert_eq!(health[0]["Checks"][0]["Status"], "passing");

    let paths = [
        "/v1/catalog/service/redis",
        "/v1/health/service/redis",
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/health/checks/redis",
        "/v1/health/node/ext1",
    ];
    let mut before = Vec::new();
    for p in paths {
        before.push(a.get(p).await.index());
    }
    let modify = u(&list[0], "ModifyIndex");

    // The same registration again changes nothing: no index moves.
    put_json(&a, "/v1/catalog/register", &body)
        .await
        .expect_status(200);
    for (p, idx) in paths.iter().zip(&before) {
        assert_eq!(
            a.get(p).await.index(),
            *idx,
            "an unchanged re-registration must not bump {p}'s X-Consul-Index"
        );
    }
    let again = get_json(&a, "/v1/catalog/service/redis").await;
    assert_eq!(u(&again[0], "ModifyIndex"), modify, "{again}");

    // py-consul's lowercase body is the same registration too (Go decodes case-insensitively).
    let lower = json!({
        "node": "ext1", "address": "10.1.0.1", "nodemeta": {"rack": "r1"},
        "service": {"id": "redis1", "service": "redis", "tags": ["primary"], "port": 6379},
        "check": {"checkid": "service:redis1", "name": "redis alive", "status": "passing",
                  "serviceid": "redis1"}
    });
    put_json(&a, "/v1/catalog/register", &lower)
        .await
        .expect_status(200);
    assert_eq!(
        a.get("/v1/catalog/service/redis").await.index(),
        before[0],
        "the lowercase spelling of the same registration changes nothing"
    );

    // A real change moves the service's index.
    let mut changed = body.clone();
    changed["Service"]["Port"] = json!(6380);
    put_json(&a, "/v1/catalog/register", &changed)
        .await
        .expect_status(200);
    let after = a.get("/v1/catalog/service/redis").await;
    assert!(after.index() > before[0], "a changed port bumps the index");
    assert_eq!(after.json()[0]["ServicePort"], 6380);

    // Missing node: 400, and nothing written.
    let idx = a.get("/v1/catalog/nodes").await.index();
    for bad in [
        json!({"Address": "10.9.9.9", "Service": {"Service": "ghost"}}),
        json!({"Node": "", "Address": "10.9.9.9"}),
    ] {
        let r = put_json(&a, "/v1/catalog/register", &bad).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.text());
        assert!(
            r.text().to_lowercase().contains("node"),
            "the message names the node: {:?}",
            r.text()
        );
    }
    let r = a.put("/v1/catalog/register", "{not json").await;
    assert_eq!(r.status, 400, "{:?}", r.text());
    assert_eq!(a.get("/v1/catalog/nodes").await.index(), idx);
    assert!(get_json(&a, "/v1/catalog/services")
        .await
        .get("ghost")
        .is_none());

    // Deregister a check, then the service, then the node.
    let r = put_json(
        &a,
        "/v1/catalog/deregister",
        &json!({"Node": "ext1", "CheckID": "service:redis1"}),
    )
    .await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    assert_eq!(
        get_json(&a, "/v1/health/checks/redis").await,
        json!([]),
        "the check is gone"
    );
    let idx = a.get("/v1/catalog/service/redis").await.index();
    put_json(
        &a,
        "/v1/catalog/deregister",
        &json!({"Node": "ext1", "ServiceID": "redis1"}),
    )
    .await
    .expect_status(200);
    let r = a.get("/v1/catalog/service/redis").await;
    assert_eq!(r.json(), json!([]));
    assert!(
        r.index() > idx,
        "a service's index never goes backwards; its removal moves it"
    );
    assert!(get_json(&a, "/v1/catalog/services")
        .await
        .get("redis")
        .is_none());
    put_json(&a, "/v1/catalog/deregister", &json!({"Node": "ext1"}))
        .await
        .expect_status(200);
    let nodes = get_json(&a, "/v1/catalog/nodes").await;
    assert!(
        !strings(nodes.as_array().expect("array"), "Node").contains(&"ext1".to_string()),
        "{nodes}"
    );
    let r = put_json(&a, "/v1/catalog/deregister", &json!({"ServiceID": "x"})).await;
    assert_eq!(r.status, 400, "deregister without a node: {:?}", r.text());
}

/// Consul's docs for `SkipNodeUpdate`: "if the parameter is enabled for a node that doesn't
/// exist, it will still be created."
#[tokio::test]
async fn catalog_register_with_skip_node_update_creates_a_missing_node() {
    let a = Agent::dev().await;
    let r = put_json(
        &a,
        "/v1/catalog/register",
        &json!({"Node": "fresh", "Address": "10.2.0.1", "SkipNodeUpdate": true,
                "Service": {"Service": "memcached", "Port": 11211}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    let list = get_json(&a, "/v1/catalog/service/memcached").await;
    assert_eq!(strings(list.as_array().expect("array"), "Node"), ["fresh"]);
}

#[tokio::test]
async fn an_unchanged_agent_reregistration_does_not_bump_the_catalog() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    let body = json!({"ID": "web1", "Name": "web", "Tags": ["a"], "Port": 80,
                      "Check": {"TTL": "60s", "Status": "passing"}});
    register_service(&a, body.clone()).await;
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    let before = a.get("/v1/health/service/web").await;
    let idx = before.index();

    register_service(&a, body.clone()).await;
    // A later registration reaching the catalog shows anti-entropy has handled the earlier one.
    register_service(&a, json!({"Name": "marker"})).await;
    wait_catalog_instance(&a, "marker", "marker", true).await;
    let after = a.get("/v1/health/service/web").await;
    assert_eq!(
        after.index(),
        idx,
        "re-registering an unchanged service must not bump web's index"
    );
    assert_eq!(
        after.json()[0]["Checks"],
        before.json()[0]["Checks"],
        "nor flap its check"
    );

    // A change does.
    let mut changed = body;
    changed["Tags"] = json!(["b"]);
    register_service(&a, changed).await;
    wait_for("the new tags to reach the catalog", SYNC, || async {
        let r = a.get("/v1/health/service/web").await;
        let v = r.json();
        if v[0]["Service"]["Tags"] == json!(["b"]) && r.index() > idx {
            Ok(())
        } else {
            Err(format!("index {} body {v}", r.index()))
        }
    })
    .await;
    let checks = agent_checks(&a).await;
    assert_eq!(
        checks["service:web1"]["Status"], "passing",
        "changing the service keeps its unchanged check's status"
    );
}

// ---- ?filter= ---------------------------------------------------------------------------

/// Registers web1 (v1, primary; env prod; passing), web2 (v1; env dev; critical) and db1 (no
/// tags; env prod; passing) and waits until the catalog has them.
async fn filter_fixture(a: &Agent) -> String {
    let node = node_name(a).await;
    register_service(
        a,
        json!({"ID": "web1", "Name": "web", "Tags": ["v1", "primary"], "Port": 80,
               "Meta": {"env": "prod"}, "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    register_service(
        a,
        json!({"ID": "web2", "Name": "web", "Tags": ["v1"], "Port": 81,
               "Meta": {"env": "dev"}, "Check": {"TTL": "60s"}}),
    )
    .await;
    register_service(
        a,
        json!({"ID": "db1", "Name": "db", "Port": 5432, "Meta": {"env": "prod"},
               "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    wait_catalog_check(a, &node, "service:web1", "passing").await;
    wait_catalog_check(a, &node, "service:web2", "critical").await;
    wait_catalog_check(a, &node, "service:db1", "passing").await;
    node
}

#[tokio::test]
async fn filter_on_agent_services_and_checks() {
    let a = Agent::dev().await;
    filter_fixture(&a).await;
    let cases: &[(&str, &[&str])] = &[
        (r#"Service == "web""#, &["web1", "web2"]),
        (r#"Service != "web""#, &["db1"]),
        (r#""primary" in Tags"#, &["web1"]),
        (r#""primary" not in Tags"#, &["db1", "web2"]),
        (r#"Tags contains "v1""#, &["web1", "web2"]),
        (r#"Tags not contains "v1""#, &["db1"]),
        ("Tags is empty", &["db1"]),
        ("Tags is not empty", &["web1", "web2"]),
        (r#"Meta.env == "prod""#, &["db1", "web1"]),
        (r#"Service matches "^w""#, &["web1", "web2"]),
        (r#"Service not matches "^w""#, &["db1"]),
        (r#"Service == "web" and Meta.env == "prod""#, &["web1"]),
        (r#"Service == "db" or "primary" in Tags"#, &["db1", "web1"]),
        (r#"not Service == "web""#, &["db1"]),
        (
            r#"(Service == "web" or Service == "db") and not (Meta.env == "dev")"#,
            &["db1", "web1"],
        ),
        ("Port == 81", &["web2"]),
    ];
    for (expr, want) in cases {
        let r = get_filtered(&a, "/v1/agent/services", expr).await;
        assert_eq!(r.status, 200, "{expr}: {:?}", r.text());
        assert_eq!(keys(&r.json()), *want, "agent/services filter {expr}");
    }
    let cases: &[(&str, &[&str])] = &[
        (r#"Status == "critical""#, &["service:web2"]),
        (r#"ServiceName == "web""#, &["service:web1", "service:web2"]),
        (
            r#"Status == "passing" and ServiceTags is empty"#,
            &["service:db1"],
        ),
        (r#""primary" in ServiceTags"#, &["service:web1"]),
    ];
    for (expr, want) in cases {
        let r = get_filtered(&a, "/v1/agent/checks", expr).await;
        assert_eq!(r.status, 200, "{expr}: {:?}", r.text());
        assert_eq!(keys(&r.json()), *want, "agent/checks filter {expr}");
    }
}

#[tokio::test]
async fn filter_on_catalog_and_health_endpoints() {
    let a = Agent::dev().await;
    let node = filter_fixture(&a).await;

    let cases: &[(&str, &[&str])] = &[
        (r#"ServiceMeta.env == "prod""#, &["web1"]),
        (r#"ServiceTags contains "primary""#, &["web1"]),
        (r#""v1" in ServiceTags"#, &["web1", "web2"]),
        (r#"ServiceID != "web1""#, &["web2"]),
        (
            r#"ServicePort == 81 or ServiceID == "web1""#,
            &["web1", "web2"],
        ),
    ];
    for (expr, want) in cases {
        let r = get_filtered(&a, "/v1/catalog/service/web", expr).await;
        assert_eq!(r.status, 200, "{expr}: {:?}", r.text());
        assert_eq!(
            catalog_ids(&r.json()),
            *want,
            "catalog/service filter {expr}"
        );
    }

    let on_node = format!("Node.Node == {node:?}");
    let cases: &[(&str, &[&str])] = &[
        (r#"Service.Meta.env == "prod""#, &["web1"]),
        (r#"Service.Meta.env == "dev""#, &["web2"]),
        (r#"Checks.Status == "critical""#, &["web2"]),
        (r#"Service.Tags contains "primary""#, &["web1"]),
        (
            r#"Service.Service == "web" and not Service.ID == "web1""#,
            &["web2"],
        ),
        (&on_node, &["web1", "web2"]),
    ];
    for (expr, want) in cases {
        let r = get_filtered(&a, "/v1/health/service/web", expr).await;
        assert_eq!(r.status, 200, "{expr}: {:?}", r.text());
        assert_eq!(health_ids(&r.json()), *want, "health/service filter {expr}");
    }

    let r = get_filtered(&a, "/v1/catalog/nodes", &format!("Node == {node:?}")).await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(
        strings(r.json().as_array().expect("array"), "Node"),
        std::slice::from_ref(&node)
    );
    let r = get_filtered(&a, "/v1/catalog/nodes", &format!("Node != {node:?}")).await;
    assert_eq!(r.json(), json!([]));
    let r = get_filtered(
        &a,
        "/v1/catalog/nodes",
        r#"Meta is not empty and Address == "127.0.0.1""#,
    )
    .await;
    assert_eq!(
        strings(r.json().as_array().expect("array"), "Node"),
        std::slice::from_ref(&node)
    );

    let r = get_filtered(&a, "/v1/health/checks/web", r#"Status == "passing""#).await;
    assert_eq!(check_ids(&r.json()), ["service:web1"]);
    let r = get_filtered(&a, "/v1/health/state/any", r#"ServiceName == "db""#).await;
    assert_eq!(check_ids(&r.json()), ["service:db1"]);
}

#[tokio::test]
async fn a_bad_filter_is_a_400_naming_the_problem_on_every_endpoint() {
    let a = Agent::dev().await;
    let node = filter_fixture(&a).await;
    let endpoints = [
        "/v1/agent/services".to_string(),
        "/v1/agent/checks".to_string(),
        "/v1/catalog/nodes".to_string(),
        "/v1/catalog/service/web".to_string(),
        "/v1/health/service/web".to_string(),
        "/v1/health/checks/web".to_string(),
        format!("/v1/health/node/{node}"),
        "/v1/health/state/any".to_string(),
    ];
    for path in &endpoints {
        // An unknown selector: the message names it.
        let r = get_filtered(&a, path, r#"NoSuchField == "x""#).await;
        assert_eq!(r.status, 400, "{path} unknown selector: {:?}", r.text());
        assert!(
            r.text().contains("NoSuchField"),
            "{path}: the message names the selector: {:?}",
            r.text()
        );
        // A syntax error.
        let r = get_filtered(&a, path, "Status ==").await;
        assert_eq!(r.status, 400, "{path} syntax error: {:?}", r.text());
        assert!(!r.text().trim().is_empty(), "{path}: a message");
        // Unbalanced parentheses.
        let r = get_filtered(&a, path, r#"(Node == "x""#).await;
        assert_eq!(r.status, 400, "{path} unbalanced: {:?}", r.text());
    }
    // A bad regular expression names it.
    let r = get_filtered(&a, "/v1/agent/services", r#"Service matches "(""#).await;
    assert_eq!(r.status, 400, "{:?}", r.text());
    assert!(r.text().contains("("), "{:?}", r.text());
    // A value of the wrong type for the selector.
    let r = get_filtered(&a, "/v1/agent/services", r#"Port == "abc""#).await;
    assert_eq!(r.status, 400, "{:?}", r.text());
    assert!(r.text().contains("Port"), "{:?}", r.text());
}

// ---- blocking queries -------------------------------------------------------------------

#[tokio::test]
async fn health_service_wakes_on_its_check_and_not_on_another_services_flap() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "web1", "Name": "web", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    register_service(
        &a,
        json!({"ID": "db1", "Name": "db", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    wait_catalog_check(&a, &node, "service:db1", "passing").await;

    // db flapping does not wake a watcher of web.
    let idx = a.get("/v1/health/service/web").await.index();
    let db_idx = a.get("/v1/health/service/db").await.index();
    let wait = Duration::from_secs(2);
    let h = spawn_get(
        &a,
        &format!("/v1/health/service/web?index={idx}&wait=2s"),
        wait,
    );
    let_it_block().await;
    for verb in ["fail", "pass", "fail", "pass"] {
        ttl(&a, verb, "service:db1").await;
        let want = if verb == "fail" {
            "critical"
        } else {
            "passing"
        };
        wait_catalog_check(&a, &node, "service:db1", want).await;
    }
    let r = join(h).await;
    r.expect_status(200);
    assert!(
        a.get("/v1/health/service/db").await.index() > db_idx,
        "db's flaps reached the catalog"
    );
    assert_eq!(r.index(), idx, "db's flaps must not move web's index");
    assert!(
        r.elapsed >= Duration::from_millis(1900),
        "nothing about web changed: the query holds for its wait (2s); returned after {:?}",
        r.elapsed
    );

    // Nor does it wake a watcher of the service list: no service changed.
    let idx_services = a.get("/v1/catalog/services").await.index();
    let wait = Duration::from_secs(2);
    let h = spawn_get(
        &a,
        &format!("/v1/catalog/services?index={idx_services}&wait=2s"),
        wait,
    );
    let_it_block().await;
    ttl(&a, "fail", "service:db1").await;
    wait_catalog_check(&a, &node, "service:db1", "critical").await;
    ttl(&a, "pass", "service:db1").await;
    wait_catalog_check(&a, &node, "service:db1", "passing").await;
    let r = join(h).await;
    assert_eq!(
        r.index(),
        idx_services,
        "a check flap does not change /v1/catalog/services"
    );
    assert!(r.elapsed >= Duration::from_millis(1900), "{:?}", r.elapsed);

    // web's own check going critical wakes it.
    let wait = Duration::from_secs(20);
    let h = spawn_get(
        &a,
        &format!("/v1/health/service/web?index={idx}&wait=20s"),
        wait,
    );
    let_it_block().await;
    ttl(&a, "fail", "service:web1").await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx, "index {} must pass {idx}", r.index());
    assert!(
        r.elapsed < wait,
        "woken by the status change, before the wait of {wait:?} (took {:?})",
        r.elapsed
    );
    let v = r.json();
    let check = v[0]["Checks"]
        .as_array()
        .expect("Checks")
        .iter()
        .find(|c| c["CheckID"] == "service:web1")
        .cloned()
        .expect("web1's check");
    assert_eq!(check["Status"], "critical", "{v}");

    // And the ?passing view of it is now empty.
    let r = a.get("/v1/health/service/web?passing").await;
    assert_eq!(r.json(), json!([]));
}

#[tokio::test]
async fn catalog_services_wakes_on_a_new_service() {
    let a = Agent::dev().await;
    let idx = a.get("/v1/catalog/services").await.index();
    let wait = Duration::from_secs(20);
    let h = spawn_get(
        &a,
        &format!("/v1/catalog/services?index={idx}&wait=20s"),
        wait,
    );
    let_it_block().await;
    register_service(&a, json!({"Name": "newcomer", "Tags": ["fresh"]})).await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx, "index {} must pass {idx}", r.index());
    assert!(
        r.elapsed < wait,
        "woken by the registration (took {:?})",
        r.elapsed
    );
    assert_eq!(r.json()["newcomer"], json!(["fresh"]), "{}", r.text());
}

#[tokio::test]
async fn health_state_critical_wakes_on_a_check_going_critical() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "api1", "Name": "api", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    wait_catalog_check(&a, &node, "service:api1", "passing").await;
    let r = a.get("/v1/health/state/critical").await;
    let idx = r.index();
    assert_eq!(r.json(), json!([]), "nothing critical yet");

    let wait = Duration::from_secs(20);
    let h = spawn_get(
        &a,
        &format!("/v1/health/state/critical?index={idx}&wait=20s"),
        wait,
    );
    let_it_block().await;
    ttl(&a, "fail", "service:api1").await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx, "index {} must pass {idx}", r.index());
    assert!(
        r.elapsed < wait,
        "woken by the check (took {:?})",
        r.elapsed
    );
    assert_eq!(check_ids(&r.json()), ["service:api1"]);
}

#[tokio::test]
async fn a_watch_on_a_service_wakes_when_it_first_appears_and_when_it_goes() {
    let a = Agent::dev().await;
    let r = a.get("/v1/health/service/later").await;
    assert_eq!(r.json(), json!([]));
    let idx = r.index();
    assert!(idx > 0, "an empty result still has a meaningful index");

    let wait = Duration::from_secs(20);
    let h = spawn_get(
        &a,
        &format!("/v1/health/service/later?index={idx}&wait=20s"),
        wait,
    );
    let_it_block().await;
    register_service(
        &a,
        json!({"ID": "later1", "Name": "later", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx, "index {} must pass {idx}", r.index());
    assert!(
        r.elapsed < wait,
        "woken by the registration (took {:?})",
        r.elapsed
    );
    // The wake may come from the service row before its check lands; wait for both.
    wait_for("later1 with its check in the catalog", SYNC, || async {
        let v = get_json(&a, "/v1/health/service/later").await;
        if health_ids(&v) == ["later1"] && v[0]["Checks"].as_array().is_some_and(|c| c.len() == 2) {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;

    let idx = a.get("/v1/health/service/later").await.index();
    let h = spawn_get(
        &a,
        &format!("/v1/health/service/later?index={idx}&wait=20s"),
        wait,
    );
    let_it_block().await;
    a.put("/v1/agent/service/deregister/later1", "")
        .await
        .expect_status(200);
    let r = join(h).await;
    r.expect_status(200);
    assert!(
        r.index() > idx,
        "removing the last instance moves the index forward, never back: {} vs {idx}",
        r.index()
    );
    assert!(
        r.elapsed < wait,
        "woken by the removal (took {:?})",
        r.elapsed
    );
    assert_eq!(r.json(), json!([]));
}

// ---- maintenance ------------------------------------------------------------------------

#[tokio::test]
async fn node_and_service_maintenance_are_critical_checks_that_hide_instances() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "web1", "Name": "web", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    register_service(&a, json!({"ID": "db1", "Name": "db"})).await;
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    wait_catalog_instance(&a, "db", "db1", true).await;
    let passing = |name: &'static str| {
        let a = &a;
        async move { health_ids(&get_json(a, &format!("/v1/health/service/{name}?passing")).await) }
    };
    assert_eq!(passing("web").await, ["web1"]);

    // Node maintenance.
    let r = a
        .put(
            "/v1/agent/maintenance?enable=true&reason=kernel%20upgrade",
            "",
        )
        .await;
    r.expect_status(200);
    let c = &agent_checks(&a).await["_node_maintenance"];
    assert_eq!(c["Status"], "critical", "{c}");
    assert_eq!(c["Notes"], "kernel upgrade", "the reason is in Notes: {c}");
    assert_eq!(c["ServiceID"], "", "{c}");
    let c = wait_catalog_check(&a, &node, "_node_maintenance", "critical").await;
    assert_eq!(c["Notes"], "kernel upgrade", "{c}");
    assert_eq!(
        passing("web").await,
        Vec::<String>::new(),
        "node maintenance hides web"
    );
    assert_eq!(
        passing("db").await,
        Vec::<String>::new(),
        "and every service of the node"
    );
    assert!(check_ids(&get_json(&a, "/v1/health/state/critical").await)
        .contains(&"_node_maintenance".to_string()));

    a.put("/v1/agent/maintenance?enable=false", "")
        .await
        .expect_status(200);
    assert!(!agent_checks(&a).await.contains_key("_node_maintenance"));
    wait_for("_node_maintenance to leave the catalog", SYNC, || async {
        let ids = check_ids(&Value::Array(catalog_node_checks(&a, &node).await));
        if ids.contains(&"_node_maintenance".to_string()) {
            Err(format!("{ids:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    assert_eq!(passing("web").await, ["web1"]);

    // Service maintenance.
    a.put(
        "/v1/agent/service/maintenance/web1?enable=true&reason=deploying",
        "",
    )
    .await
    .expect_status(200);
    let id = "_service_maintenance:web1";
    let c = &agent_checks(&a).await[id];
    assert_eq!(c["Status"], "critical", "{c}");
    assert_eq!(c["ServiceID"], "web1", "{c}");
    assert_eq!(c["Notes"], "deploying", "{c}");
    wait_catalog_check(&a, &node, id, "critical").await;
    assert_eq!(passing("web").await, Vec::<String>::new());
    assert_eq!(passing("db").await, ["db1"], "only web1 is in maintenance");
    let r = a.get("/v1/agent/health/service/id/web1?format=text").await;
    assert_eq!((r.status, r.text().trim()), (503, "critical"));

    a.put("/v1/agent/service/maintenance/web1?enable=false", "")
        .await
        .expect_status(200);
    assert!(!agent_checks(&a).await.contains_key(id));
    wait_for("web1 passing again", SYNC, || async {
        let ids = passing("web").await;
        if ids == ["web1"] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;

    // Without a reason, Notes still says why.
    a.put("/v1/agent/maintenance?enable=true", "")
        .await
        .expect_status(200);
    let c = &agent_checks(&a).await["_node_maintenance"];
    assert!(
        c["Notes"].as_str().is_some_and(|n| !n.is_empty()),
        "a default reason: {c}"
    );

    // Unknown service: 404; no enable: 400.
    let r = a
        .put("/v1/agent/service/maintenance/nope?enable=true", "")
        .await;
    assert_eq!(r.status, 404, "{:?}", r.text());
    let r = a.put("/v1/agent/service/maintenance/web1", "").await;
    assert_eq!(r.status, 400, "missing enable: {:?}", r.text());
    let r = a.put("/v1/agent/maintenance?enable=maybe", "").await;
    assert_eq!(r.status, 400, "bad enable: {:?}", r.text());
}

// ---- /v1/agent/health/service/{name,id} ---------------------------------------------------

#[tokio::test]
async fn agent_health_by_name_and_id_follow_the_worst_check() {
    let a = Agent::dev().await;
    for id in ["web1", "web2"] {
        register_service(
            &a,
            json!({"ID": id, "Name": "web", "Check": {"TTL": "60s"}}),
        )
        .await;
    }
    ttl(&a, "pass", "service:web1").await;
    ttl(&a, "pass", "service:web2").await;

    async fn text(a: &Agent, path: &str) -> (u16, String) {
        let r = a.get(&format!("{path}?format=text")).await;
        (r.status, r.text().trim().to_string())
    }
    let by_name = "/v1/agent/health/service/name/web";
    let id1 = "/v1/agent/health/service/id/web1";
    let id2 = "/v1/agent/health/service/id/web2";
    assert_eq!(text(&a, by_name).await, (200, "passing".into()));
    assert_eq!(text(&a, id2).await, (200, "passing".into()));

    ttl(&a, "warn", "service:web2").await;
    assert_eq!(text(&a, by_name).await, (429, "warning".into()));
    assert_eq!(text(&a, id1).await, (200, "passing".into()));
    assert_eq!(text(&a, id2).await, (429, "warning".into()));

    ttl(&a, "fail", "service:web2").await;
    assert_eq!(text(&a, by_name).await, (503, "critical".into()));
    assert_eq!(text(&a, id2).await, (503, "critical".into()));

    // JSON: by name an array of every instance, by ID one object.
    let r = a.get(by_name).await;
    assert_eq!(r.status, 503);
    let v = r.json();
    let mut got: Vec<(String, String)> = v
        .as_array()
        .expect("an array by name")
        .iter()
        .map(|i| {
            (
                i["Service"]["ID"].as_str().expect("Service.ID").to_string(),
                i["AggregatedStatus"]
                    .as_str()
                    .expect("AggregatedStatus")
                    .to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("web1".to_string(), "passing".to_string()),
            ("web2".to_string(), "critical".to_string())
        ]
    );
    let r = a.get(id1).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["AggregatedStatus"], "passing", "{v}");
    assert_eq!(v["Service"]["ID"], "web1", "{v}");
    assert_eq!(check_ids(&v["Checks"]), ["service:web1"], "{v}");

    // Unknown: 404 in both formats.
    for path in [
        "/v1/agent/health/service/name/nope",
        "/v1/agent/health/service/id/nope",
    ] {
        let r = a.get(path).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.text());
        let r = a.get(&format!("{path}?format=text")).await;
        assert_eq!(r.status, 404, "{path}?format=text: {:?}", r.text());
        assert!(r.text().contains("nope"), "{path}: {:?}", r.text());
    }
}

/// Consul's docs: "to get the text format, you can append `?format=text` to the URL or use
/// Mime Content negotiation by specifying a HTTP Header `Accept` starting with `text/plain`."
#[tokio::test]
async fn agent_health_honours_accept_text_plain() {
    let a = Agent::dev().await;
    register_service(
        &a,
        json!({"ID": "web1", "Name": "web", "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    for path in [
        "/v1/agent/health/service/name/web",
        "/v1/agent/health/service/id/web1",
    ] {
        let r = a
            .client()
            .get(format!("{}{path}", a.base_url()))
            .header("Accept", "text/plain")
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.text().await.expect("body").trim(), "passing", "{path}");
    }
}

/// A node-level check (here node maintenance) counts for every service's health, but it is not
/// the service's check: like every node check, it has no ServiceName or ServiceTags.
#[tokio::test]
async fn agent_health_reports_node_checks_without_a_service_name() {
    let a = Agent::dev().await;
    register_service(
        &a,
        json!({"ID": "web1", "Name": "web", "Tags": ["t"],
               "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    a.put("/v1/agent/maintenance?enable=true&reason=x", "")
        .await
        .expect_status(200);
    let r = a.get("/v1/agent/health/service/id/web1").await;
    assert_eq!(r.status, 503);
    let v = r.json();
    let maint = v["Checks"]
        .as_array()
        .expect("Checks")
        .iter()
        .find(|c| c["CheckID"] == "_node_maintenance")
        .cloned()
        .unwrap_or_else(|| panic!("node maintenance counts for the service: {v}"));
    assert_eq!(maint["ServiceID"], "");
    assert_eq!(maint["ServiceName"], "", "{maint}");
    assert_eq!(maint["ServiceTags"], json!([]), "{maint}");
}

/// Consul takes the service ID as the rest of the path (`strings.TrimPrefix`), and clients
/// (Go's `api`, py-consul) put the ID in the path unescaped, so an ID with a slash — which
/// registration accepts — must work in the per-ID endpoints too.
#[tokio::test]
async fn a_service_id_with_a_slash_works_in_the_per_id_endpoints() {
    let a = Agent::dev().await;
    register_service(&a, json!({"ID": "cell-001/api", "Name": "api"})).await;
    let r = a.get("/v1/agent/service/cell-001/api").await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert_eq!(r.json()["ID"], "cell-001/api");
    let r = a
        .put("/v1/agent/service/maintenance/cell-001/api?enable=true", "")
        .await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    let r = a.put("/v1/agent/service/deregister/cell-001/api", "").await;
    assert_eq!(r.status, 200, "{:?}", r.text());
    assert!(agent_services(&a).await.is_empty());
}

// ---- bad input --------------------------------------------------------------------------

#[tokio::test]
async fn bad_registrations_are_refused_with_a_message_and_register_nothing() {
    let a = Agent::dev().await;
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/agent/service/register", r#"{"Name": "x","#, ""),
        ("/v1/agent/service/register", "", ""),
        ("/v1/agent/service/register", "[1, 2]", ""),
        ("/v1/agent/service/register", r#"{"Port": 80}"#, "name"),
        (
            "/v1/agent/service/register",
            r#"{"Name": "h", "Check": {"HTTP": "http://127.0.0.1:1/"}}"#,
            "interval",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name": "n", "Check": {"Name": "nothing"}}"#,
            "ttl",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name": "p", "Port": "eighty"}"#,
            "port",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name": "d", "Check": {"TTL": "10parsecs"}}"#,
            "ttl",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name": "both", "Check": {"TTL": "10s", "Interval": "10s", "TCP": "127.0.0.1:1"}}"#,
            "",
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name": "s", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}"#,
            "enable_script_checks",
        ),
        (
            "/v1/agent/check/register",
            r#"{"Name": "s", "Args": ["/bin/true"], "Interval": "1s"}"#,
            "enable_script_checks",
        ),
        ("/v1/agent/check/register", r#"{"Name": "lonely"}"#, "ttl"),
        ("/v1/agent/check/register", r#"{"TTL": "10s"}"#, "name"),
        (
            "/v1/agent/check/register",
            r#"{"Name": "orphan", "TTL": "10s", "ServiceID": "nope"}"#,
            "nope",
        ),
        ("/v1/agent/check/register", "not json", ""),
    ];
    for (path, body, needle) in cases {
        let r = a.put(path, *body).await;
        assert_eq!(r.status, 400, "PUT {path} {body}: {:?}", r.text());
        let msg = r.text();
        assert!(!msg.trim().is_empty(), "PUT {path} {body}: a message");
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "PUT {path} {body}: the message {msg:?} should mention {needle:?}"
        );
        if needle == &"enable_script_checks" {
            assert!(
                msg.contains("Scripts are disabled on this agent"),
                "Consul's wording: {msg:?}"
            );
        }
    }
    assert!(agent_services(&a).await.is_empty(), "nothing registered");
    assert!(agent_checks(&a).await.is_empty(), "no check registered");

    // Unknown IDs.
    for verb in ["pass", "warn", "fail"] {
        let r = a.put(&format!("/v1/agent/check/{verb}/nope"), "").await;
        assert_eq!(r.status, 404, "{verb} of an unknown check: {:?}", r.text());
        assert!(r.text().contains("nope"), "{:?}", r.text());
    }
    let r = put_json(
        &a,
        "/v1/agent/check/update/nope",
        &json!({"Status": "passing"}),
    )
    .await;
    assert_eq!(r.status, 404, "update of an unknown check: {:?}", r.text());
    let r = a.put("/v1/agent/service/deregister/nope", "").await;
    assert_eq!(r.status, 404, "{:?}", r.text());
    // pass on a check that is not a TTL check is refused too.
    register_service(
        &a,
        json!({"ID": "t1", "Name": "t", "Check": {"TTL": "60s"}}),
    )
    .await;
    let r = put_json(
        &a,
        "/v1/agent/check/update/service:t1",
        &json!({"Status": "sideways"}),
    )
    .await;
    assert_eq!(r.status, 400, "a bad status: {:?}", r.text());
    assert_eq!(
        agent_checks(&a).await["service:t1"]["Status"],
        "critical",
        "a refused update changes nothing"
    );
}

// ---- TTL updates --------------------------------------------------------------------------

#[tokio::test]
async fn ttl_updates_set_status_and_output() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_check(&a, json!({"ID": "hb", "Name": "heartbeat", "TTL": "60s"})).await;
    a.put("/v1/agent/check/pass/hb?note=all%20good", "")
        .await
        .expect_status(200);
    let c = &agent_checks(&a).await["hb"];
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("passing"), Some("all good"))
    );
    let c = wait_catalog_check(&a, &node, "hb", "passing").await;
    assert_eq!(c["Output"], "all good", "{c}");
    assert_eq!(c["ServiceID"], "", "a standalone check is node-level: {c}");

    put_json(
        &a,
        "/v1/agent/check/update/hb",
        &json!({"Status": "warning", "Output": "disk 91%"}),
    )
    .await
    .expect_status(200);
    let c = wait_catalog_check(&a, &node, "hb", "warning").await;
    assert_eq!(c["Output"], "disk 91%", "{c}");

    a.put("/v1/agent/check/deregister/hb", "")
        .await
        .expect_status(200);
    assert!(!agent_checks(&a).await.contains_key("hb"));
    wait_for("hb to leave the catalog", SYNC, || async {
        let ids = check_ids(&Value::Array(catalog_node_checks(&a, &node).await));
        if ids.contains(&"hb".to_string()) {
            Err(format!("{ids:?}"))
        } else {
            Ok(())
        }
    })
    .await;
}

// ---- replace-existing-checks ------------------------------------------------------------------

#[tokio::test]
async fn reregistering_with_replace_existing_checks_drops_the_checks_left_out() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "m1", "Name": "m", "Checks": [
            {"TTL": "60s"},
            {"CheckID": "m-extra", "Name": "extra", "TTL": "60s"}
        ]}),
    )
    .await;
    let checks = agent_checks(&a).await;
    assert!(
        checks.contains_key("service:m1:1"),
        "numbered IDs: {checks:?}"
    );
    assert!(checks.contains_key("m-extra"), "{checks:?}");
    ttl(&a, "pass", "m-extra").await;
    wait_catalog_check(&a, &node, "service:m1:1", "critical").await;

    // Without the parameter, a check left out stays.
    register_service(
        &a,
        json!({"ID": "m1", "Name": "m", "Checks": [
            {"CheckID": "m-extra", "Name": "extra", "TTL": "60s"}
        ]}),
    )
    .await;
    assert!(agent_checks(&a).await.contains_key("service:m1:1"));

    // With it, the checks left out are removed (here and in the catalog); the kept one keeps
    // its status.
    let r = put_json(
        &a,
        "/v1/agent/service/register?replace-existing-checks",
        &json!({"ID": "m1", "Name": "m", "Checks": [
            {"CheckID": "m-extra", "Name": "extra", "TTL": "60s"}
        ]}),
    )
    .await;
    r.expect_status(200);
    let checks = agent_checks(&a).await;
    let ids: Vec<&String> = checks.keys().collect();
    assert_eq!(ids, ["m-extra"], "{checks:?}");
    assert_eq!(checks["m-extra"]["Status"], "passing");
    wait_for("service:m1:1 to leave the catalog", SYNC, || async {
        let ids = check_ids(&get_json(&a, "/v1/health/checks/m").await);
        if ids == ["m-extra"] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
}

// ---- persistence --------------------------------------------------------------------------

#[tokio::test]
async fn services_registered_over_http_survive_a_restart() {
    let mut a = AgentBuilder::server().start().await;
    register_service(
        &a,
        json!({"ID": "keep1", "Name": "keep", "Tags": ["x"], "Port": 7000,
               "Meta": {"owner": "team-a"}, "Check": {"TTL": "60s", "Status": "passing"}}),
    )
    .await;
    register_service(&a, json!({"ID": "gone1", "Name": "gone"})).await;
    register_check(
        &a,
        json!({"ID": "node-hb", "Name": "node heartbeat", "TTL": "60s"}),
    )
    .await;
    a.put("/v1/agent/service/deregister/gone1", "")
        .await
        .expect_status(200);

    a.restart().await;

    let services = agent_services(&a).await;
    let mut ids: Vec<&String> = services.keys().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["keep1"],
        "a deregistered service stays gone: {services:?}"
    );
    let keep = &services["keep1"];
    assert_eq!(keep["Service"], "keep");
    assert_eq!(keep["Tags"], json!(["x"]));
    assert_eq!(keep["Port"], 7000);
    assert_eq!(keep["Meta"], json!({"owner": "team-a"}));
    let checks = agent_checks(&a).await;
    assert!(checks.contains_key("service:keep1"), "{checks:?}");
    assert!(checks.contains_key("node-hb"), "{checks:?}");
    assert_eq!(checks["service:keep1"]["Definition"]["TTL"], "1m0s");

    // Still a TTL check that the API drives, and back in the catalog.
    ttl(&a, "pass", "service:keep1").await;
    let node = node_name(&a).await;
    wait_catalog_check(&a, &node, "service:keep1", "passing").await;
    wait_catalog_instance(&a, "keep", "keep1", true).await;
    wait_catalog_instance(&a, "gone", "gone1", false).await;
}

/// Consul's checks documentation: "TTL checks also persist their last known status to disk.
/// This allows the Consul agent to restore the last known status of the check across restarts.
/// Persisted check status is valid through the end of the TTL from the time of the last check."
#[tokio::test]
async fn a_ttl_checks_last_status_survives_a_restart_within_its_ttl() {
    let mut a = AgentBuilder::server().start().await;
    register_service(
        &a,
        json!({"ID": "hb1", "Name": "hb", "Check": {"TTL": "10m"}}),
    )
    .await;
    a.put("/v1/agent/check/pass/service:hb1?note=alive", "")
        .await
        .expect_status(200);
    assert_eq!(agent_checks(&a).await["service:hb1"]["Status"], "passing");

    a.restart().await;

    let c = agent_checks(&a).await["service:hb1"].clone();
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("passing"), Some("alive")),
        "the last status, within its TTL, is restored: {c}"
    );
}

#[tokio::test]
async fn maintenance_survives_a_restart() {
    let mut a = AgentBuilder::server().start().await;
    register_service(&a, json!({"ID": "web1", "Name": "web"})).await;
    a.put(
        "/v1/agent/service/maintenance/web1?enable=true&reason=deploy",
        "",
    )
    .await
    .expect_status(200);
    a.put("/v1/agent/maintenance?enable=true&reason=rack%20move", "")
        .await
        .expect_status(200);

    a.restart().await;

    let checks = agent_checks(&a).await;
    let svc = checks
        .get("_service_maintenance:web1")
        .unwrap_or_else(|| panic!("service maintenance lost: {checks:?}"));
    assert_eq!(
        (svc["Status"].as_str(), svc["Notes"].as_str()),
        (Some("critical"), Some("deploy"))
    );
    let node_m = checks
        .get("_node_maintenance")
        .unwrap_or_else(|| panic!("node maintenance lost: {checks:?}"));
    assert_eq!(node_m["Notes"], "rack move");
    // Disabling after the restart works and is persisted too.
    a.put("/v1/agent/maintenance?enable=false", "")
        .await
        .expect_status(200);
    a.put("/v1/agent/service/maintenance/web1?enable=false", "")
        .await
        .expect_status(200);
    a.restart().await;
    let checks = agent_checks(&a).await;
    assert!(checks.is_empty(), "{checks:?}");
    assert!(agent_services(&a).await.contains_key("web1"));
}

/// What the agent has is what comes back after a restart: a check kept by a re-registration
/// that left it out (without `replace-existing-checks`, Consul keeps it) must not vanish on
/// restart.
#[tokio::test]
async fn checks_kept_across_a_reregistration_survive_a_restart() {
    let mut a = AgentBuilder::server().start().await;
    register_service(
        &a,
        json!({"ID": "m1", "Name": "m", "Checks": [
            {"CheckID": "m-a", "Name": "a", "TTL": "5m"},
            {"CheckID": "m-b", "Name": "b", "TTL": "5m"}
        ]}),
    )
    .await;
    register_service(
        &a,
        json!({"ID": "m1", "Name": "m", "Tags": ["new"], "Checks": [
            {"CheckID": "m-b", "Name": "b", "TTL": "5m"}
        ]}),
    )
    .await;
    let before = sorted(agent_checks(&a).await.keys().cloned().collect());
    assert_eq!(before, ["m-a", "m-b"]);

    a.restart().await;

    let after = sorted(agent_checks(&a).await.keys().cloned().collect());
    assert_eq!(
        after, before,
        "the restart must bring back what the agent had"
    );
    assert_eq!(agent_services(&a).await["m1"]["Tags"], json!(["new"]));
}
