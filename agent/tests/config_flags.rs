//! End-to-end tests of `muster agent` flags and config files: Consul's flag and key names, JSON
//! and HCL files, errors that name the flag, the file and the key, and `-pid-file`.

mod common;

use std::time::Duration;

use common::{run_muster, AgentBuilder, Ports};
use serde_json::json;

/// Bounds a run that should fail at once (if the agent starts instead, it is killed at this
/// point and the test fails as timed out).
const REFUSE_TIMEOUT: Duration = Duration::from_secs(20);

/// `agent -dev` with free ports (so a run that wrongly starts takes no default port) + `extra`.
fn dev_args(extra: &[&str]) -> Vec<String> {
    let mut args = vec!["agent".to_string(), "-dev".to_string()];
    args.extend(Ports::free().args());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test]
async fn an_unknown_agent_flag_exits_1_naming_it() {
    let out = run_muster(&dev_args(&["-no-such-flag"]), None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("no-such-flag"),
        "the error names the flag\n{out}"
    );
}

#[tokio::test]
async fn a_bad_flag_value_exits_1_naming_the_flag() {
    let out = run_muster(&dev_args(&["-http-port", "notaport"]), None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(out.stderr.contains("http-port"), "names the flag\n{out}");
}

#[tokio::test]
async fn an_unknown_key_in_a_json_config_file_exits_1_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"node_name": "x", "bogus_key_xyz": 1}"#).expect("write");
    let path = file.display().to_string();
    let out = run_muster(&dev_args(&["-config-file", &path]), None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(out.stderr.contains("bogus_key_xyz"), "names the key\n{out}");
    assert!(out.stderr.contains(&path), "names the file\n{out}");
}

#[tokio::test]
async fn an_unknown_key_in_an_hcl_config_file_exits_1_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.hcl");
    std::fs::write(&file, "node_name = \"x\"\nnode_nmae = \"typo\"\n").expect("write");
    let path = file.display().to_string();
    let out = run_muster(&dev_args(&["-config-file", &path]), None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(out.stderr.contains("node_nmae"), "names the key\n{out}");
    assert!(out.stderr.contains(&path), "names the file\n{out}");
}

#[tokio::test]
async fn a_config_file_that_does_not_parse_exits_1_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("broken.json");
    std::fs::write(&file, r#"{"node_name": "x","#).expect("write");
    let path = file.display().to_string();
    let out = run_muster(&dev_args(&["-config-file", &path]), None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(out.stderr.contains(&path), "names the file\n{out}");
}

#[tokio::test]
async fn a_missing_config_file_exits_1() {
    let out = run_muster(
        &dev_args(&["-config-file", "/nonexistent/muster-e2e.json"]),
        None,
        REFUSE_TIMEOUT,
    )
    .await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("/nonexistent/muster-e2e.json"),
        "names the file\n{out}"
    );
}

#[tokio::test]
async fn a_json_config_file_is_honoured() {
    let a = AgentBuilder::dev()
        .config_file(
            "agent.json",
            r#"{"node_name": "json-node", "datacenter": "dcjson"}"#,
        )
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("json-node"), "{v}");
    assert_eq!(v["Config"]["Datacenter"], json!("dcjson"), "{v}");
}

#[tokio::test]
async fn an_hcl_config_file_is_honoured() {
    let a = AgentBuilder::dev()
        .config_file(
            "agent.hcl",
            "# comment\nnode_name = \"hcl-node\"\ndatacenter = \"dchcl\"\n",
        )
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("hcl-node"), "{v}");
    assert_eq!(v["Config"]["Datacenter"], json!("dchcl"), "{v}");
}

#[tokio::test]
async fn flags_override_config_files() {
    let a = AgentBuilder::dev()
        .config_file("agent.json", r#"{"node_name": "from-file"}"#)
        .args(["-node", "from-flag"])
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("from-flag"), "{v}");
}

#[tokio::test]
async fn a_config_dir_loads_json_and_hcl_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("01-dc.json"), r#"{"datacenter": "dcdir"}"#).expect("write");
    std::fs::write(dir.path().join("02-node.hcl"), "node_name = \"dir-node\"\n").expect("write");
    std::fs::write(dir.path().join("README.txt"), "not a config file").expect("write");
    let a = AgentBuilder::dev()
        .args(["-config-dir".to_string(), dir.path().display().to_string()])
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("dir-node"), "{v}");
    assert_eq!(v["Config"]["Datacenter"], json!("dcdir"), "{v}");
}

#[tokio::test]
async fn the_pid_file_holds_the_agents_pid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("muster.pid");
    let a = AgentBuilder::dev()
        .args(["-pid-file".to_string(), pid_file.display().to_string()])
        .start()
        .await;
    let text = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("no pid file at {}: {e}", pid_file.display()));
    assert_eq!(
        text.trim(),
        a.pid().expect("running").to_string(),
        "pid file contents"
    );
}

#[tokio::test]
async fn double_dash_and_equals_forms_of_flags_work() {
    let a = AgentBuilder::dev()
        .args(["--node=dashes", "--datacenter", "dcdash"])
        .start()
        .await;
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(v["Config"]["NodeName"], json!("dashes"), "{v}");
    assert_eq!(v["Config"]["Datacenter"], json!("dcdash"), "{v}");
}

#[tokio::test]
async fn ports_from_a_config_file_are_honoured() {
    // The harness writes `{"ports": {"http": .., "dns": .., ...}}` and passes no port flag: the
    // agent is only reachable (and its leader only right) if the file was read.
    let a = AgentBuilder::dev().ports_in_config_file().start().await;
    let r = a.get("/v1/status/leader").await;
    assert_eq!(r.json(), json!(a.server_addr()));
}

#[tokio::test]
async fn a_documented_but_unimplemented_key_is_accepted_with_a_warning_naming_it() {
    let a = AgentBuilder::dev()
        .config_file(
            "telemetry.json",
            r#"{"telemetry": {"disable_hostname": true}}"#,
        )
        .start()
        .await;
    let said = common::eventually(Duration::from_secs(5), || async {
        a.output().contains("telemetry").then_some(())
    })
    .await;
    assert!(
        said.is_some(),
        "the agent started but its output never names `telemetry`:\n{}",
        a.output()
    );
}

#[tokio::test]
async fn a_server_without_a_data_dir_exits_1() {
    let mut args = vec![
        "agent".to_string(),
        "-server".into(),
        "-bootstrap".into(),
        "-bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(Ports::free().args());
    let out = run_muster(&args, None, REFUSE_TIMEOUT).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("data_dir") || out.stderr.contains("data-dir"),
        "says that the data dir is missing\n{out}"
    );
}
