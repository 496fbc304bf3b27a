//! End-to-end tests of the service-discovery CLI against a running agent: `services register`
//! and `deregister` (flags, JSON and HCL files), `catalog datacenters|nodes|services`, `maint`,
//! `reload` and `validate`, with Consul's messages and exit codes (scripts parse them). What the
//! agent holds afterwards is read back through its HTTP API, not through the CLI under test.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, run_muster, Agent, CLI_TIMEOUT};
use muster_api::{AgentService, Client, ClientConfig, HealthCheck, HealthStatus, QueryOptions};

/// How long anti-entropy may take to copy the agent's services into the catalog.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

fn api(a: &Agent) -> Client {
    Client::new(ClientConfig::new(a.http_addr())).expect("an API client for the agent")
}

async fn agent_services(a: &Agent) -> BTreeMap<String, AgentService> {
    api(a)
        .agent_services(&QueryOptions::default())
        .await
        .unwrap_or_else(|e| panic!("GET /v1/agent/services: {e}"))
}

async fn agent_checks(a: &Agent) -> BTreeMap<String, HealthCheck> {
    api(a)
        .agent_checks(&QueryOptions::default())
        .await
        .unwrap_or_else(|e| panic!("GET /v1/agent/checks: {e}"))
}

async fn node_name(a: &Agent) -> String {
    let r = a.get("/v1/agent/self").await;
    r.expect_status(200);
    r.json()["Config"]["NodeName"]
        .as_str()
        .expect("Config.NodeName")
        .to_string()
}

async fn muster(args: &[&str]) -> common::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_muster(&args, None, CLI_TIMEOUT).await
}

/// Waits until `catalog services` (through the CLI) lists `name`; returns that output.
async fn until_in_catalog(a: &Agent, name: &str) -> common::Output {
    let found = eventually(SYNC_TIMEOUT, || async {
        let out = a.cli(&["catalog", "services"]).await;
        (out.code == Some(0) && out.stdout.lines().any(|l| l == name)).then_some(out)
    })
    .await;
    match found {
        Some(out) => out,
        None => {
            let out = a.cli(&["catalog", "services"]).await;
            panic!("service {name} never reached the catalog\n{out}")
        }
    }
}

// ---- services register / deregister -----------------------------------------------------------

#[tokio::test]
async fn register_by_flags_then_deregister() {
    let a = Agent::dev().await;
    let out = a
        .cli(&[
            "services",
            "register",
            "-name=web",
            "-id",
            "web-1",
            "-port=8080",
            "-address",
            "10.0.0.5",
            "-tag=v1",
            "-tag",
            "primary",
            "-meta",
            "version=1.2",
            "-meta=team=edge",
        ])
        .await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Registered service: web\n", "{out}");
    assert_eq!(out.stderr, "", "{out}");

    let services = agent_services(&a).await;
    let web = services
        .get("web-1")
        .unwrap_or_else(|| panic!("web-1 not in /v1/agent/services: {services:?}"));
    assert_eq!(web.service, "web");
    assert_eq!(web.port, 8080);
    assert_eq!(web.address, "10.0.0.5");
    assert_eq!(web.tags, ["v1", "primary"]);
    assert_eq!(web.meta.get("version").map(String::as_str), Some("1.2"));
    assert_eq!(web.meta.get("team").map(String::as_str), Some("edge"));

    // Without -id the ID is the name.
    a.cli(&["services", "register", "-name=api"])
        .await
        .expect_code(0);
    assert!(agent_services(&a).await.contains_key("api"));

    let out = a.cli(&["services", "deregister", "-id=web-1"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Deregistered service: web-1\n", "{out}");
    let services = agent_services(&a).await;
    assert!(!services.contains_key("web-1"), "{services:?}");
    assert!(services.contains_key("api"), "{services:?}");
}

#[tokio::test]
async fn register_from_json_and_hcl_files_then_deregister_them() {
    let a = Agent::dev().await;
    let dir = a.dir();
    std::fs::write(
        dir.join("web.json"),
        r#"{"service": {"name": "web", "port": 80, "tags": ["a"],
            "enable_tag_override": true,
            "check": {"ttl": "30s", "name": "web ttl"}}}"#,
    )
    .expect("write web.json");
    std::fs::write(
        dir.join("db.hcl"),
        "services {\n  name = \"db\"\n  id   = \"db-1\"\n  port = 5432\n  tags = [\"primary\"]\n\
         meta {\n    engine = \"postgres\"\n  }\n}\n\
         services {\n  name = \"cache\"\n  port = 6379\n}\n",
    )
    .expect("write db.hcl");

    // The harness runs the CLI in the agent's work dir: relative paths work.
    let out = a.cli(&["services", "register", "web.json", "db.hcl"]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout, "Registered service: web\nRegistered service: db\nRegistered service: cache\n",
        "{out}"
    );
    let services = agent_services(&a).await;
    let web = services.get("web").expect("web registered (ID = name)");
    assert_eq!(web.port, 80);
    assert_eq!(web.tags, ["a"]);
    assert!(web.enable_tag_override);
    let db = services.get("db-1").expect("db-1 registered");
    assert_eq!(db.service, "db");
    assert_eq!(db.port, 5432);
    assert_eq!(db.meta.get("engine").map(String::as_str), Some("postgres"));
    assert!(services.contains_key("cache"), "{services:?}");
    // The file's check came along with its service.
    let checks = agent_checks(&a).await;
    assert!(
        checks
            .values()
            .any(|c| c.service_id == "web" && c.name == "web ttl"),
        "no TTL check for web: {checks:?}"
    );

    // Flags fill what a file leaves out and add tags/meta (Consul's CombineArgs).
    std::fs::write(dir.join("bare.json"), r#"{"service": {"name": "bare"}}"#)
        .expect("write bare.json");
    a.cli(&[
        "services",
        "register",
        "-port=9000",
        "-tag=x",
        "-id=bare-1",
        "bare.json",
    ])
    .await
    .expect_code(0);
    let bare = agent_services(&a).await.remove("bare-1").expect("bare-1");
    assert_eq!(bare.port, 9000);
    assert_eq!(bare.tags, ["x"]);

    let out = a
        .cli(&["services", "deregister", "web.json", "db.hcl"])
        .await;
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "Deregistered service: web\nDeregistered service: db-1\nDeregistered service: cache\n",
        "{out}"
    );
    let services = agent_services(&a).await;
    for id in ["web", "db-1", "cache"] {
        assert!(!services.contains_key(id), "{id} still there: {services:?}");
    }
    assert!(services.contains_key("bare-1"));
}

#[tokio::test]
async fn register_errors_name_the_file_field_or_agent_answer() {
    let a = Agent::dev().await;
    std::fs::write(
        a.dir().join("bad.json"),
        r#"{"service": {"name": "web", "port": "eighty"}}"#,
    )
    .expect("write bad.json");
    let out = a.cli(&["services", "register", "bad.json"]).await;
    out.expect_code(1);
    assert!(out.stderr.starts_with("Error: "), "{out}");
    assert!(out.stderr.contains("bad.json"), "{out}");
    assert!(out.stderr.contains("port"), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(agent_services(&a).await.is_empty());

    let out = a.cli(&["services", "register", "missing.json"]).await;
    out.expect_code(1);
    assert!(out.stderr.starts_with("Error: "), "{out}");
    assert!(out.stderr.contains("missing.json"), "{out}");

    // The agent's refusal is reported as Consul's client reports it.
    let out = a.cli(&["services", "deregister", "-id=nope"]).await;
    out.expect_code(1);
    assert!(
        out.stderr
            .starts_with("Error deregistering service \"nope\": Unexpected response code: "),
        "{out}"
    );

    // No agent at all.
    let out = muster(&[
        "services",
        "register",
        "-http-addr=127.0.0.1:1",
        "-name=web",
    ])
    .await;
    out.expect_code(1);
    assert_eq!(
        out.stderr,
        "Error registering service \"web\": Put \"http://127.0.0.1:1/v1/agent/service/register\": \
         dial tcp 127.0.0.1:1: connect: connection refused\n",
        "{out}"
    );
}

// ---- catalog ----------------------------------------------------------------------------------

#[tokio::test]
async fn catalog_datacenters_and_nodes() {
    let a = Agent::dev().await;
    let out = a.cli(&["catalog", "datacenters"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "dc1\n", "{out}");

    let node = node_name(&a).await;
    let self_id = a.get("/v1/agent/self").await.json()["Config"]["NodeID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let short_id = self_id.split('-').next().unwrap_or_default().to_string();

    let out = a.cli(&["catalog", "nodes"]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Node", "ID", "Address", "DC"], "{out}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, [node.as_str(), &short_id, "127.0.0.1", "dc1"], "{out}");
    // columnize: every column but the last padded to its width plus two spaces.
    let id_at = lines[0].find("ID").expect("ID column");
    assert_eq!(lines[1].find(&short_id), Some(id_at), "{out}");

    let out = a.cli(&["catalog", "nodes", "-detailed"]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"],
        "{out}"
    );
    assert!(lines[1].contains(&self_id), "{out}");
    assert!(lines[1].contains("lan=127.0.0.1"), "{out}");

    // Filters that match nothing: Consul's message on stderr, and success.
    for args in [
        &["catalog", "nodes", "-node-meta", "rack=nowhere"][..],
        &["catalog", "nodes", "-filter", "Node == \"nope\""][..],
        &["catalog", "nodes", "-service=nope"][..],
    ] {
        let out = a.cli(args).await;
        out.expect_code(0);
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(
            out.stderr, "No nodes match the given query - try expanding your search.\n",
            "{out}"
        );
    }
    let out = a
        .cli(&["catalog", "nodes", &format!("-filter=Node == \"{node}\"")])
        .await;
    out.expect_code(0);
    assert_eq!(out.stdout.lines().count(), 2, "{out}");

    // -service lists the nodes running it.
    a.cli(&["services", "register", "-name=web", "-tag=v1"])
        .await
        .expect_code(0);
    until_in_catalog(&a, "web").await;
    let out = a.cli(&["catalog", "nodes", "-service=web"]).await;
    out.expect_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[1].starts_with(&node), "{out}");
}

#[tokio::test]
async fn catalog_services_tags_and_node() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    a.cli(&[
        "services",
        "register",
        "-name=web",
        "-id=web-1",
        "-tag=v2",
        "-tag=blue",
    ])
    .await
    .expect_code(0);
    a.cli(&[
        "services",
        "register",
        "-name=web",
        "-id=web-2",
        "-port=81",
        "-tag=green",
    ])
    .await
    .expect_code(0);
    a.cli(&["services", "register", "-name=db"])
        .await
        .expect_code(0);
    let out = until_in_catalog(&a, "web").await;
    let out = if out.stdout.lines().any(|l| l == "db") {
        out
    } else {
        until_in_catalog(&a, "db").await
    };
    let names: Vec<&str> = out.stdout.lines().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name\n{out}");
    assert!(names.contains(&"db") && names.contains(&"web"), "{out}");

    let out = a.cli(&["catalog", "services", "-tags"]).await;
    out.expect_code(0);
    let web_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web line\n{out}"));
    // The union of the instances' tags, sorted, joined by commas.
    assert_eq!(
        web_line.split_whitespace().collect::<Vec<_>>(),
        ["web", "blue,green,v2"],
        "{out}"
    );
    // Tabwriter with padding 6: the tags column starts 6 past the longest name.
    let longest = names.iter().map(|n| n.len()).max().unwrap_or(0);
    assert_eq!(web_line.find("blue"), Some(longest + 6), "{out}");

    let out = a.cli(&["catalog", "services", "-node", &node]).await;
    out.expect_code(0);
    assert!(out.stdout.lines().any(|l| l == "web"), "{out}");
    assert!(out.stdout.lines().any(|l| l == "db"), "{out}");

    let out = a.cli(&["catalog", "services", "-node=no-such-node"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(
        out.stderr, "No services match the given query - try expanding your search.\n",
        "{out}"
    );
    let out = a
        .cli(&["catalog", "services", "-node-meta=rack=nowhere"])
        .await;
    out.expect_code(0);
    assert_eq!(
        out.stderr, "No services match the given query - try expanding your search.\n",
        "{out}"
    );
}

// ---- maint ------------------------------------------------------------------------------------

#[tokio::test]
async fn maint_node_and_service_with_reasons() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;

    let out = a.cli(&["maint"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "", "nothing in maintenance yet\n{out}");

    let out = a.cli(&["maint", "-enable", "-reason", "new kernel"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Node maintenance is now enabled\n", "{out}");
    let checks = agent_checks(&a).await;
    let check = checks
        .get("_node_maintenance")
        .unwrap_or_else(|| panic!("no _node_maintenance check: {checks:?}"));
    assert_eq!(check.status, HealthStatus::Critical);
    assert_eq!(check.notes, "new kernel");

    a.cli(&["services", "register", "-name=redis", "-id=redis-1"])
        .await
        .expect_code(0);
    let out = a
        .cli(&["maint", "-enable", "-service=redis-1", "-reason=backup"])
        .await;
    out.expect_code(0);
    assert_eq!(
        out.stdout, "Service maintenance is now enabled for \"redis-1\"\n",
        "{out}"
    );
    let checks = agent_checks(&a).await;
    let check = checks
        .get("_service_maintenance:redis-1")
        .unwrap_or_else(|| panic!("no service maintenance check: {checks:?}"));
    assert_eq!(check.status, HealthStatus::Critical);
    assert_eq!(check.service_id, "redis-1");
    assert_eq!(check.notes, "backup");

    let out = a.cli(&["maint"]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        format!(
            "Node:\n  Name:   {node}\n  Reason: new kernel\n\n\
             Service:\n  ID:     redis-1\n  Reason: backup\n\n"
        ),
        "{out}"
    );

    let out = a.cli(&["maint", "-disable"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Node maintenance is now disabled\n", "{out}");
    let out = a.cli(&["maint", "-disable", "-service", "redis-1"]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout, "Service maintenance is now disabled for \"redis-1\"\n",
        "{out}"
    );
    let checks = agent_checks(&a).await;
    assert!(
        !checks.keys().any(
            |id| id.starts_with("_node_maintenance") || id.starts_with("_service_maintenance:")
        ),
        "maintenance checks left: {checks:?}"
    );
    let out = a.cli(&["maint"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{out}");

    // An unknown service: the agent's refusal, reported as Consul does.
    let out = a.cli(&["maint", "-enable", "-service=nope"]).await;
    out.expect_code(1);
    assert!(
        out.stderr
            .starts_with("Error enabling service maintenance: Unexpected response code: "),
        "{out}"
    );
}

// ---- reload -----------------------------------------------------------------------------------

#[tokio::test]
async fn reload_triggers_and_says_so() {
    let a = Agent::dev().await;
    let out = a.cli(&["reload"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Configuration reload triggered\n", "{out}");
    assert_eq!(out.stderr, "", "{out}");
    // Still answering afterwards.
    a.get("/v1/agent/self").await.expect_status(200);
}

// ---- validate ---------------------------------------------------------------------------------

/// A config dir the agent would start with: a data dir, a node name, and a service.
fn good_config_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("muster-validate-")
        .tempdir()
        .expect("temp dir");
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("agent.hcl"),
        format!(
            "data_dir  = {:?}\nnode_name = \"validate-node\"\nserver    = true\n",
            data.display().to_string()
        ),
    )
    .expect("write agent.hcl");
    std::fs::write(
        dir.path().join("web.json"),
        r#"{"service": {"name": "web", "port": 80,
            "check": {"http": "http://127.0.0.1:80/health", "interval": "10s"}}}"#,
    )
    .expect("write web.json");
    dir
}

#[tokio::test]
async fn validate_good_and_bad_config_dirs() {
    let dir = good_config_dir();
    let path = dir.path().display().to_string();
    let out = muster(&["validate", &path]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Configuration is valid!\n", "{out}");

    let out = muster(&["validate", "-quiet", &path]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(out.stderr, "", "{out}");

    // A malformed service: the error names the file and the field.
    std::fs::write(
        dir.path().join("zz-bad.json"),
        r#"{"service": {"name": "api", "port": "eighty"}}"#,
    )
    .expect("write zz-bad.json");
    let out = muster(&["validate", &path]).await;
    out.expect_code(1);
    assert_eq!(out.stdout, "", "{out}");
    assert!(
        out.stderr.starts_with("Config validation failed: "),
        "{out}"
    );
    assert!(out.stderr.contains("zz-bad.json"), "{out}");
    assert!(out.stderr.contains("port"), "{out}");
    std::fs::remove_file(dir.path().join("zz-bad.json")).expect("rm");

    // A check with no way to run it.
    std::fs::write(
        dir.path().join("zz-check.hcl"),
        "service {\n  name = \"api\"\n  check {\n    interval = \"10s\"\n  }\n}\n",
    )
    .expect("write zz-check.hcl");
    let out = muster(&["validate", &path]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("zz-check.hcl"), "{out}");
    std::fs::remove_file(dir.path().join("zz-check.hcl")).expect("rm");

    // -config-format reads a file without a known extension.
    let plain = dir.path().join("extra.conf");
    std::fs::write(&plain, "log_level = \"warn\"\n").expect("write extra.conf");
    let agent_hcl = dir.path().join("agent.hcl").display().to_string();
    let plain = plain.display().to_string();
    let out = muster(&["validate", "-config-format=hcl", &agent_hcl, &plain]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Configuration is valid!\n", "{out}");
    let out = muster(&["validate", &agent_hcl, &plain]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("extra.conf"), "{out}");
}

// ---- usage ------------------------------------------------------------------------------------

#[tokio::test]
async fn usage_errors_and_help() {
    let out = muster(&["services", "register"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Service registration requires at least one argument or flags.\n",
        "{out}"
    );
    let out = muster(&["services", "deregister"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Service deregistration requires at least one argument or -id.\n",
        "{out}"
    );
    let out = muster(&["services", "register", "-bogus"]).await;
    out.expect_code(1);
    assert!(
        out.stderr.starts_with(
            "flag provided but not defined: -bogus\nUsage: muster services register [options] [FILE...]"
        ),
        "{out}"
    );
    let out = muster(&["services", "register", "-name=web", "-meta=novalue"]).await;
    out.expect_code(1);
    assert!(
        out.stderr.starts_with(
            "invalid value \"novalue\" for flag -meta: Missing \"=\" value in argument: novalue\n"
        ),
        "{out}"
    );
    let out = muster(&["catalog", "nodes", "extra"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Too many arguments (expected 0, got 1)\n",
        "{out}"
    );
    let out = muster(&["maint", "-enable", "-disable"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Only one of -enable or -disable may be provided\n",
        "{out}"
    );
    let out = muster(&["validate"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Must specify at least one config file or directory\n",
        "{out}"
    );
    let out = muster(&["validate", "-config-format=yaml", "x"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "-config-format must be either 'hcl' or 'json\n",
        "{out}"
    );

    // Parents alone print their subcommands on stderr and fail; -h prints them and succeeds.
    for (parent, sub) in [("catalog", "datacenters"), ("services", "register")] {
        let out = muster(&[parent]).await;
        out.expect_code(1);
        assert!(
            out.stderr.starts_with(&format!(
                "Usage: muster {parent} <subcommand> [options] [args]"
            )),
            "{out}"
        );
        assert!(out.stderr.contains("\nSubcommands:\n"), "{out}");
        assert!(out.stderr.contains(&format!("\n    {sub} ")), "{out}");
        let out = muster(&[parent, "-h"]).await;
        out.expect_code(0);
        assert!(out.stdout.contains("\nSubcommands:\n"), "{out}");
    }
    let out = muster(&["catalog", "nodes", "-h"]).await;
    out.expect_code(0);
    assert!(
        out.stdout
            .starts_with("Usage: muster catalog nodes [options]"),
        "{out}"
    );
    assert!(out.stdout.contains("  -node-meta=<key=value>"), "{out}");

    let out = muster(&["-h"]).await;
    out.expect_code(0);
    for (name, synopsis) in [
        ("catalog", "Interact with the catalog"),
        ("maint", "Controls node or service maintenance mode"),
        ("reload", "Triggers the agent to reload configuration files"),
        ("services", "Interact with services"),
        ("validate", "Validate config files/directories"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.ends_with(synopsis)),
            "{name} missing from the command list\n{out}"
        );
    }
}
