//! End-to-end tests of service and check definitions from `-config-dir`, against the real
//! binary: JSON and HCL files with `service`, `services`, `check` and `checks` (the
//! walkthrough's `order` service among them), `-datacenter`/`-node` in the catalog's answers,
//! reload through `PUT /v1/agent/reload`, `muster reload` and SIGHUP applying only the
//! difference (an unchanged service's checks do not flap), malformed definitions refusing the
//! start with the file and the field named, and script checks in files gated by
//! `enable_local_script_checks` with Consul's message.

mod common;
mod discovery_common;

use std::path::Path;
use std::time::Duration;

use common::{free_ports, run_muster, AgentBuilder, Output};
use discovery_common::*;
use serde_json::{json, Value};

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(name).display()));
}

fn remove(dir: &Path, name: &str) {
    std::fs::remove_file(dir.join(name))
        .unwrap_or_else(|e| panic!("remove {}: {e}", dir.join(name).display()));
}

fn config_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("muster-discovery-conf-")
        .tempdir()
        .expect("create a config dir")
}

fn sorted_keys(m: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut k: Vec<String> = m.keys().cloned().collect();
    k.sort();
    k
}

// ---- definitions from a config dir -------------------------------------------------------

#[tokio::test]
async fn json_and_hcl_definitions_from_a_config_dir_with_datacenter_and_node_name() {
    let tcp = TestTcp::start().await;
    let dir = config_dir();
    let d = dir.path();
    // The walkthrough's file, as users write it.
    write(
        d,
        "order.json",
        r#"{"service": {"name": "order", "tags": ["order"], "port": 15000}}"#,
    );
    write(
        d,
        "invoice.hcl",
        r#"
service {
  name = "invoice"
  tags = ["invoice", "billing"]
  port = 15001
  meta {
    team = "money"
  }
  check {
    id   = "invoice-ttl"
    name = "invoice heartbeat"
    ttl  = "60s"
  }
}
"#,
    );
    write(
        d,
        "tax.json",
        &json!({"services": [
            {"name": "tax", "port": 15002, "checks": [
                {"ttl": "60s"},
                {"tcp": tcp.addr.to_string(), "interval": "1s"}
            ]},
            {"name": "ship", "id": "ship-1", "port": 15003, "enable_tag_override": true}
        ]})
        .to_string(),
    );
    write(
        d,
        "more.hcl",
        r#"
services {
  name = "audit"
  port = 15004
}
services {
  name = "report"
  id   = "report-1"
  port = 15005
}
"#,
    );
    write(
        d,
        "node-checks.hcl",
        r#"
check {
  id   = "disk"
  name = "disk space"
  ttl  = "60s"
}
checks = [
  { id = "mem", name = "memory", ttl = "60s" },
  { id = "load", name = "load", ttl = "60s", status = "passing" },
]
"#,
    );
    write(
        d,
        "node-checks.json",
        r#"{"check": {"id": "fs", "name": "fs", "ttl": "60s"},
            "checks": [{"id": "inodes", "name": "inodes", "ttl": "60s"}]}"#,
    );

    let a = AgentBuilder::dev()
        .args([
            "-config-dir",
            &d.display().to_string(),
            "-datacenter",
            "zone1",
            "-node",
            "host1",
            "-node-meta",
            "rack:r7",
        ])
        .start()
        .await;

    let services = agent_services(&a).await;
    assert_eq!(
        sorted_keys(&services),
        ["audit", "invoice", "order", "report-1", "ship-1", "tax"],
        "{services:?}"
    );
    let order = &services["order"];
    assert_eq!(order["Service"], "order");
    assert_eq!(order["Tags"], json!(["order"]));
    assert_eq!(order["Port"], 15000);
    assert_eq!(order["Datacenter"], "zone1");
    let invoice = &services["invoice"];
    assert_eq!(invoice["Tags"], json!(["invoice", "billing"]));
    assert_eq!(invoice["Meta"], json!({"team": "money"}));
    assert_eq!(services["ship-1"]["EnableTagOverride"], true);
    assert_eq!(services["report-1"]["Service"], "report");

    let checks = agent_checks(&a).await;
    assert_eq!(
        sorted_keys(&checks),
        [
            "disk",
            "fs",
            "inodes",
            "invoice-ttl",
            "load",
            "mem",
            "service:tax:1",
            "service:tax:2"
        ],
        "{checks:?}"
    );
    assert_eq!(checks["invoice-ttl"]["ServiceID"], "invoice");
    assert_eq!(checks["invoice-ttl"]["Name"], "invoice heartbeat");
    assert_eq!(
        checks["disk"]["ServiceID"], "",
        "a top-level check is node-level"
    );
    assert_eq!(
        checks["load"]["Status"], "passing",
        "initial status from the file"
    );
    assert_eq!(checks["mem"]["Status"], "critical");
    wait_agent_check(&a, "service:tax:2", "passing").await;

    // The catalog answers with this datacenter and node name.
    assert_eq!(node_name(&a).await, "host1");
    assert_eq!(
        get_json(&a, "/v1/catalog/datacenters").await,
        json!(["zone1"])
    );
    wait_catalog_instance(&a, "order", "order", true).await;
    let list = get_json(&a, "/v1/catalog/service/order").await;
    assert_eq!(list[0]["Node"], "host1", "{list}");
    assert_eq!(list[0]["Datacenter"], "zone1", "{list}");
    assert_eq!(list[0]["ServicePort"], 15000, "{list}");
    assert_eq!(list[0]["ServiceTags"], json!(["order"]), "{list}");
    let nodes = get_json(&a, "/v1/catalog/nodes").await;
    assert_eq!(strings(nodes.as_array().expect("array"), "Node"), ["host1"]);
    assert_eq!(nodes[0]["Datacenter"], "zone1", "{nodes}");
    for name in [
        "order", "invoice", "tax", "ship", "audit", "report", "consul",
    ] {
        wait_for(&format!("{name} in the catalog"), SYNC, || async {
            let all = get_json(&a, "/v1/catalog/services").await;
            if all.get(name).is_some() {
                Ok(())
            } else {
                Err(all.to_string())
            }
        })
        .await;
    }
    let health = get_json(&a, "/v1/health/service/order").await;
    assert_eq!(health[0]["Node"]["Node"], "host1");
    assert_eq!(health[0]["Node"]["Datacenter"], "zone1");
    assert_eq!(health[0]["Service"]["Datacenter"], "zone1");
    assert_eq!(
        health[0]["Node"]["Meta"]["rack"], "r7",
        "-node-meta: {health}"
    );
    let by_meta = get_json(&a, "/v1/health/service/order?node-meta=rack:r7").await;
    assert_eq!(by_meta.as_array().map(Vec::len), Some(1), "{by_meta}");
    let by_meta = get_json(&a, "/v1/catalog/service/order?node-meta=rack:r8").await;
    assert_eq!(by_meta, json!([]));
    wait_catalog_check(&a, "host1", "service:tax:2", "passing").await;
    wait_catalog_check(&a, "host1", "inodes", "critical").await;
    // A datacenter that is not this one is refused rather than silently answered.
    let r = a.get("/v1/catalog/service/order?dc=elsewhere").await;
    assert_ne!(r.status, 200, "{:?}", r.text());
}

#[tokio::test]
async fn definitions_from_config_files_are_reloaded_too() {
    let a = AgentBuilder::dev()
        .config_file(
            "svc.hcl",
            "service {\n  name = \"single\"\n  port = 7001\n  check {\n    ttl = \"5m\"\n  }\n}\n",
        )
        .config_file(
            "more.json",
            r#"{"services": [{"name": "pair", "port": 7002}]}"#,
        )
        .start()
        .await;
    let services = agent_services(&a).await;
    assert_eq!(sorted_keys(&services), ["pair", "single"]);
    assert!(agent_checks(&a).await.contains_key("service:single"));

    write(
        a.dir(),
        "svc.hcl",
        "service {\n  name = \"single\"\n  port = 7003\n}\n",
    );
    a.put("/v1/agent/reload", "").await.expect_status(200);
    let services = agent_services(&a).await;
    assert_eq!(services["single"]["Port"], 7003);
    assert!(
        !agent_checks(&a).await.contains_key("service:single"),
        "a check removed from the file is removed"
    );
    wait_for("the new port in the catalog", SYNC, || async {
        let list = get_json(&a, "/v1/catalog/service/single").await;
        if list[0]["ServicePort"] == 7003 {
            Ok(())
        } else {
            Err(list.to_string())
        }
    })
    .await;
}

// ---- reload ------------------------------------------------------------------------------

/// The catalog's ModifyIndex of every check of service `name` on `node`, and of the instance.
async fn catalog_indexes(a: &common::Agent, name: &str) -> Vec<(String, u64)> {
    let list = get_json(a, &format!("/v1/health/service/{name}")).await;
    let entry = &list[0];
    let mut out = vec![(
        format!("service {name}"),
        u(&entry["Service"], "ModifyIndex"),
    )];
    for c in entry["Checks"].as_array().expect("Checks") {
        if c["ServiceID"] != "" {
            out.push((
                c["CheckID"].as_str().expect("CheckID").to_string(),
                u(c, "ModifyIndex"),
            ));
        }
    }
    out.sort();
    out
}

/// Waits until the agent's services are exactly `want` and `change`'s tags are `tags`, and
/// the catalog agrees.
async fn until_applied(a: &common::Agent, want: &[&str], tags: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let tags = json!(tags);
    wait_for("the reloaded definitions in the agent", SETTLE, || async {
        let services = agent_services(a).await;
        let have = sorted_keys(&services);
        if have == want && services["change"]["Tags"] == tags {
            Ok(())
        } else {
            Err(Value::Object(services).to_string())
        }
    })
    .await;
    wait_for("the reloaded definitions in the catalog", SYNC, || async {
        let all = get_json(a, "/v1/catalog/services").await;
        let mut have: Vec<String> = keys(&all).into_iter().filter(|k| k != "consul").collect();
        have.sort();
        let change = get_json(a, "/v1/catalog/service/change").await;
        if have == want && change[0]["ServiceTags"] == tags {
            Ok(())
        } else {
            Err(format!("{all} / change: {change}"))
        }
    })
    .await;
}

#[tokio::test]
async fn reload_by_http_cli_and_sighup_applies_only_the_difference() {
    let server = TestHttp::start(200).await;
    let dir = config_dir();
    let d = dir.path();
    write(
        d,
        "keep.json",
        &json!({"service": {"name": "keep", "port": 9000, "checks": [
            {"id": "keep-ttl", "name": "keep ttl", "ttl": "5m"},
            {"id": "keep-http", "name": "keep http", "http": server.url("/"), "interval": "1s"}
        ]}})
        .to_string(),
    );
    write(
        d,
        "change.json",
        r#"{"service": {"name": "change", "tags": ["v1"]}}"#,
    );
    write(d, "gone.hcl", "service {\n  name = \"gone\"\n}\n");

    let a = AgentBuilder::dev()
        .args(["-config-dir", &d.display().to_string()])
        .start()
        .await;
    let node = node_name(&a).await;
    // An API registration, which reloads must leave alone.
    register_service(&a, json!({"Name": "api-made", "Port": 1})).await;
    ttl(&a, "pass", "keep-ttl").await;
    wait_agent_check(&a, "keep-http", "passing").await;
    wait_catalog_check(&a, &node, "keep-ttl", "passing").await;
    wait_catalog_check(&a, &node, "keep-http", "passing").await;
    until_applied(&a, &["api-made", "change", "gone", "keep"], &["v1"]).await;
    let keep_before = catalog_indexes(&a, "keep").await;
    assert_eq!(keep_before.len(), 3, "{keep_before:?}");

    let assert_keep_untouched = |round: &'static str| {
        let a = &a;
        let keep_before = keep_before.clone();
        async move {
            let checks = agent_checks(a).await;
            for id in ["keep-ttl", "keep-http"] {
                assert_eq!(
                    checks[id]["Status"], "passing",
                    "{round}: the unchanged {id} keeps its status"
                );
            }
            assert_eq!(
                catalog_indexes(a, "keep").await,
                keep_before,
                "{round}: the unchanged service and its checks must not be rewritten (no flap)"
            );
        }
    };

    // Round 1: PUT /v1/agent/reload — one removed, one added, one changed, a node check added.
    remove(d, "gone.hcl");
    write(
        d,
        "added.json",
        r#"{"service": {"name": "added", "port": 9100}}"#,
    );
    write(
        d,
        "change.json",
        r#"{"service": {"name": "change", "tags": ["v2"]}}"#,
    );
    write(
        d,
        "node.hcl",
        "check {\n  id = \"node-ttl\"\n  name = \"node ttl\"\n  ttl = \"5m\"\n}\n",
    );
    a.put("/v1/agent/reload", "").await.expect_status(200);
    until_applied(&a, &["added", "api-made", "change", "keep"], &["v2"]).await;
    assert!(agent_checks(&a).await.contains_key("node-ttl"));
    wait_catalog_check(&a, &node, "node-ttl", "critical").await;
    assert_keep_untouched("PUT /v1/agent/reload").await;

    // Round 2: `muster reload`.
    write(
        d,
        "added2.hcl",
        "service {\n  name = \"added2\"\n  tags = [\"x\"]\n}\n",
    );
    write(
        d,
        "change.json",
        r#"{"service": {"name": "change", "tags": ["v3"]}}"#,
    );
    let out = a.cli(&["reload"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "Configuration reload triggered", "{out}");
    until_applied(
        &a,
        &["added", "added2", "api-made", "change", "keep"],
        &["v3"],
    )
    .await;
    assert_keep_untouched("muster reload").await;

    // Round 3: SIGHUP.
    remove(d, "added.json");
    remove(d, "node.hcl");
    write(
        d,
        "change.json",
        r#"{"service": {"name": "change", "tags": ["v4"]}}"#,
    );
    a.signal(nix::sys::signal::Signal::SIGHUP);
    until_applied(&a, &["added2", "api-made", "change", "keep"], &["v4"]).await;
    assert!(!agent_checks(&a).await.contains_key("node-ttl"));
    wait_for("node-ttl to leave the catalog", SYNC, || async {
        let checks = catalog_node_checks(&a, &node).await;
        if checks.iter().any(|c| c["CheckID"] == "node-ttl") {
            Err(format!("{checks:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    assert_keep_untouched("SIGHUP").await;

    // A reload with a broken file keeps the previous definitions and the agent running.
    write(
        d,
        "broken.json",
        r#"{"service": {"name": "broken", "prot": 1}}"#,
    );
    let r = a.put("/v1/agent/reload", "").await;
    assert_ne!(
        r.status,
        200,
        "a broken file fails the reload: {:?}",
        r.text()
    );
    assert!(
        r.text().contains("broken.json") && r.text().contains("prot"),
        "the failure names the file and the field: {:?}",
        r.text()
    );
    let services = agent_services(&a).await;
    assert_eq!(
        sorted_keys(&services),
        ["added2", "api-made", "change", "keep"],
        "{services:?}"
    );
    a.get("/v1/agent/self").await.expect_status(200);
    assert_keep_untouched("failed reload").await;
}

/// A check defined on its own in a file but bound to a service (`check { service_id = ... }`)
/// is part of the config like any other: a reload that changes its service must not reset it
/// (Consul restores check state across a reload).
#[tokio::test]
async fn reload_keeps_the_status_of_a_file_check_bound_to_a_changed_service() {
    let dir = config_dir();
    let d = dir.path();
    write(
        d,
        "svc.json",
        r#"{"service": {"name": "svc", "tags": ["a"]}}"#,
    );
    write(
        d,
        "extra.json",
        r#"{"check": {"id": "svc-extra", "name": "extra", "service_id": "svc", "ttl": "5m"}}"#,
    );
    let a = AgentBuilder::dev()
        .args(["-config-dir", &d.display().to_string()])
        .start()
        .await;
    ttl(&a, "pass", "svc-extra").await;
    write(
        d,
        "svc.json",
        r#"{"service": {"name": "svc", "tags": ["b"]}}"#,
    );
    a.put("/v1/agent/reload", "").await.expect_status(200);
    let services = agent_services(&a).await;
    assert_eq!(services["svc"]["Tags"], json!(["b"]));
    assert_eq!(
        agent_checks(&a).await["svc-extra"]["Status"],
        "passing",
        "the unchanged check keeps its status"
    );
}

/// Removing a file's check, then reloading, removes the check, also when it is bound to a
/// service.
#[tokio::test]
async fn reload_removes_a_deleted_file_check_bound_to_a_service() {
    let dir = config_dir();
    let d = dir.path();
    write(d, "svc.json", r#"{"service": {"name": "svc"}}"#);
    write(
        d,
        "extra.json",
        r#"{"check": {"id": "svc-extra", "name": "extra", "service_id": "svc", "ttl": "5m"}}"#,
    );
    let a = AgentBuilder::dev()
        .args(["-config-dir", &d.display().to_string()])
        .start()
        .await;
    assert!(agent_checks(&a).await.contains_key("svc-extra"));
    remove(d, "extra.json");
    a.put("/v1/agent/reload", "").await.expect_status(200);
    let checks = agent_checks(&a).await;
    assert!(!checks.contains_key("svc-extra"), "{checks:?}");
}

/// Anti-entropy's full sync removes from the catalog what the agent no longer has: a service
/// whose file was removed while the agent was down, and a registration made on this node
/// through the catalog behind the agent's back. The leader's `consul` service and
/// `serfHealth` stay.
#[tokio::test]
async fn after_a_restart_anti_entropy_removes_what_the_agent_no_longer_has() {
    let dir = config_dir();
    let d = dir.path();
    write(d, "old.json", r#"{"service": {"name": "old", "port": 1}}"#);
    write(
        d,
        "stays.json",
        r#"{"service": {"name": "stays", "port": 2}}"#,
    );
    let mut a = AgentBuilder::server()
        .args(["-config-dir", &d.display().to_string()])
        .start()
        .await;
    let node = node_name(&a).await;
    wait_catalog_instance(&a, "old", "old", true).await;
    wait_catalog_instance(&a, "stays", "stays", true).await;
    put_json(
        &a,
        "/v1/catalog/register",
        &json!({"Node": node, "Address": "127.0.0.1", "SkipNodeUpdate": true,
                "Service": {"ID": "intruder", "Service": "intruder"}}),
    )
    .await
    .expect_status(200);
    wait_catalog_instance(&a, "intruder", "intruder", true).await;

    remove(d, "old.json");
    a.restart().await;

    wait_catalog_instance(&a, "old", "old", false).await;
    wait_catalog_instance(&a, "intruder", "intruder", false).await;
    wait_catalog_instance(&a, "stays", "stays", true).await;
    wait_catalog_instance(&a, "consul", "consul", true).await;
    wait_catalog_check(&a, &node, "serfHealth", "passing").await;
}

// ---- malformed definitions ----------------------------------------------------------------

/// Starts `muster agent -dev -config-dir DIR` (on free ports) and returns its output; it must
/// exit by itself.
async fn start_fails(dir: &Path, extra: &[&str]) -> Output {
    let p = free_ports(5);
    let mut args: Vec<String> = vec!["agent".into(), "-dev".into()];
    for (flag, port) in [
        "-http-port",
        "-dns-port",
        "-server-port",
        "-serf-lan-port",
        "-serf-wan-port",
    ]
    .into_iter()
    .zip(&p)
    {
        args.push(flag.into());
        args.push(port.to_string());
    }
    args.push("-config-dir".into());
    args.push(dir.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_muster(&args, None, Duration::from_secs(20)).await;
    assert!(
        !out.timed_out && out.code.is_some_and(|c| c != 0),
        "the agent must refuse to start\n{out}"
    );
    out
}

#[tokio::test]
async fn malformed_definitions_refuse_the_start_naming_the_file_and_the_field() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "typo.json",
            r#"{"service": {"name": "order", "prot": 15000}}"#,
            &["typo.json", "prot"],
        ),
        (
            "port.json",
            r#"{"service": {"name": "order", "port": "fifteen-thousand"}}"#,
            &["port.json", "port"],
        ),
        (
            "duration.json",
            r#"{"service": {"name": "order",
                "check": {"http": "http://127.0.0.1:1/", "interval": "10 parsecs"}}}"#,
            &["duration.json", "interval"],
        ),
        (
            "typo.hcl",
            "service {\n  name = \"order\"\n  prot = 15000\n}\n",
            &["typo.hcl", "prot"],
        ),
        (
            "ttl.hcl",
            "check {\n  id = \"x\"\n  name = \"x\"\n  ttl = \"soon\"\n}\n",
            &["ttl.hcl", "ttl"],
        ),
        (
            "checks.json",
            r#"{"checks": [{"id": "a", "name": "a", "ttl": "1s"},
                           {"id": "b", "name": "b", "ttl": true}]}"#,
            &["checks.json", "ttl"],
        ),
        (
            "meta.json",
            r#"{"service": {"name": "order", "meta": {"version": 2}}}"#,
            &["meta.json", "version"],
        ),
        (
            "tags.hcl",
            "service {\n  name = \"order\"\n  tags = \"order\"\n}\n",
            &["tags.hcl", "tags"],
        ),
        (
            "syntax.json",
            r#"{"service": {"name": "order""#,
            &["syntax.json"],
        ),
        (
            "noname.json",
            r#"{"service": {"port": 1}}"#,
            &["noname.json", "name"],
        ),
    ];
    for (file, contents, needles) in cases {
        let dir = config_dir();
        write(dir.path(), file, contents);
        let out = start_fails(dir.path(), &[]).await;
        let text = format!("{}{}", out.stdout, out.stderr);
        for needle in *needles {
            assert!(
                text.contains(needle),
                "{file}: the error should name {needle:?}\n{out}"
            );
        }
    }
}

#[tokio::test]
async fn script_checks_in_files_need_enable_local_script_checks() {
    let def = r#"{"service": {"name": "scripted", "check":
        {"id": "scripted-check", "args": ["sh", "-c", "echo fine"], "interval": "1s"}}}"#;

    // Refused by default, with Consul's message.
    let dir = config_dir();
    write(dir.path(), "scripted.json", def);
    let out = start_fails(dir.path(), &[]).await;
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("scripted.json")
            && text.contains("Scripts are disabled on this agent")
            && text.contains("enable_local_script_checks"),
        "{out}"
    );

    // Allowed with enable_local_script_checks (here from a config file in the same dir) ...
    write(
        dir.path(),
        "agent.hcl",
        "enable_local_script_checks = true\n",
    );
    let a = AgentBuilder::dev()
        .args(["-config-dir", &dir.path().display().to_string()])
        .start()
        .await;
    let c = wait_agent_check(&a, "scripted-check", "passing").await;
    assert!(
        c["Output"].as_str().unwrap_or_default().contains("fine"),
        "{c}"
    );
    // ... which still refuses scripts from the HTTP API (that needs enable_script_checks).
    let r = put_json(
        &a,
        "/v1/agent/check/register",
        &json!({"Name": "remote", "Args": ["sh", "-c", "true"], "Interval": "1s"}),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.text());
    assert!(
        r.text().contains("Scripts are disabled on this agent")
            && r.text().contains("enable_script_checks"),
        "{:?}",
        r.text()
    );
    assert!(!agent_checks(&a).await.contains_key("remote"));

    // The flag spelling works too.
    let dir2 = config_dir();
    write(dir2.path(), "scripted.json", def);
    let b = AgentBuilder::dev()
        .args([
            "-config-dir",
            &dir2.path().display().to_string(),
            "-enable-local-script-checks",
        ])
        .start()
        .await;
    wait_agent_check(&b, "scripted-check", "passing").await;
}
