//! End-to-end tests of the `muster` CLI against a running agent: the commands, messages and exit
//! codes that Consul documents for `consul kv ...`, `members`, `info`, `version` and `leave`
//! (scripts parse them, so they are Consul's word for word).

mod common;

use std::time::Duration;

use common::{b64, run_muster, run_muster_with, Agent, CLI_TIMEOUT, EXIT_TIMEOUT};
use serde_json::{json, Value};

#[tokio::test]
async fn kv_put_then_get() {
    let a = Agent::dev().await;
    let out = a.cli(&["kv", "put", "cli/foo", "bar"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Success! Data written to: cli/foo\n", "{out}");
    assert_eq!(a.kv_value("cli/foo").await.as_deref(), Some(&b"bar"[..]));

    let out = a.cli(&["kv", "get", "cli/foo"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "bar\n", "{out}");
}

#[tokio::test]
async fn kv_get_of_a_missing_key_is_an_error() {
    let a = Agent::dev().await;
    let out = a.cli(&["kv", "get", "cli/missing"]).await;
    out.expect_code(1);
    assert!(
        out.stderr.contains("Error! No key exists at: cli/missing"),
        "{out}"
    );
    assert_eq!(out.stdout, "", "{out}");
}

#[tokio::test]
async fn kv_put_cas() {
    let a = Agent::dev().await;
    a.cli(&["kv", "put", "cas/foo", "v1"]).await.expect_code(0);
    let idx = a.kv_entry("cas/foo").await.expect("exists")["ModifyIndex"]
        .as_u64()
        .expect("ModifyIndex");

    let stale = (idx + 1000).to_string();
    let out = a
        .cli(&[
            "kv",
            "put",
            "-cas",
            &format!("-modify-index={stale}"),
            "cas/foo",
            "v2",
        ])
        .await;
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("Error! Did not write to cas/foo: CAS failed"),
        "{out}"
    );
    assert_eq!(a.kv_value("cas/foo").await.as_deref(), Some(&b"v1"[..]));

    let out = a
        .cli(&[
            "kv",
            "put",
            "-cas",
            "-modify-index",
            &idx.to_string(),
            "cas/foo",
            "v2",
        ])
        .await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Success! Data written to: cas/foo\n", "{out}");
    assert_eq!(a.kv_value("cas/foo").await.as_deref(), Some(&b"v2"[..]));

    // -cas without -modify-index is refused before anything is sent.
    let out = a.cli(&["kv", "put", "-cas", "cas/foo", "v3"]).await;
    out.expect_code(1);
    assert_eq!(a.kv_value("cas/foo").await.as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn kv_put_flags_and_get_detailed() {
    let a = Agent::dev().await;
    a.cli(&["kv", "put", "-flags=42", "det/foo", "bar"])
        .await
        .expect_code(0);
    let e = a.kv_entry("det/foo").await.expect("exists");
    assert_eq!(e["Flags"], json!(42));

    let out = a.cli(&["kv", "get", "-detailed", "det/foo"]).await;
    out.expect_code(0);
    let fields: Vec<(String, String)> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next().unwrap_or_default().to_string();
            let v = it.collect::<Vec<_>>().join(" ");
            (k, v)
        })
        .collect();
    let get = |k: &str| {
        fields
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} line in -detailed output\n{out}"))
    };
    assert_eq!(get("CreateIndex"), e["CreateIndex"].to_string());
    assert_eq!(get("ModifyIndex"), e["ModifyIndex"].to_string());
    assert_eq!(get("Flags"), "42");
    assert_eq!(get("Key"), "det/foo");
    assert_eq!(get("LockIndex"), "0");
    assert_eq!(get("Session"), "-");
    assert_eq!(get("Value"), "bar");
    // Consul's tabwriter layout (minwidth 0, tabwidth 2, padding 6), as in its documentation.
    assert_eq!(
        out.stdout,
        format!(
            "CreateIndex      {}\nFlags            42\nKey              det/foo\n\
             LockIndex        0\nModifyIndex      {}\nSession          -\nValue            bar\n",
            e["CreateIndex"], e["ModifyIndex"]
        ),
        "{out}"
    );
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "CreateIndex",
            "Flags",
            "Key",
            "LockIndex",
            "ModifyIndex",
            "Session",
            "Value"
        ],
        "{out}"
    );
}

#[tokio::test]
async fn kv_put_data_from_stdin_file_base64_and_nothing() {
    let a = Agent::dev().await;
    let out = a
        .cli_stdin(&["kv", "put", "src/stdin", "-"], Some(b"from stdin\n"))
        .await;
    out.expect_code(0);
    assert_eq!(
        a.kv_value("src/stdin").await.as_deref(),
        Some(&b"from stdin\n"[..])
    );

    std::fs::write(a.dir().join("value.txt"), b"from a file").expect("write value file");
    a.cli(&["kv", "put", "src/file", "@value.txt"])
        .await
        .expect_code(0);
    assert_eq!(
        a.kv_value("src/file").await.as_deref(),
        Some(&b"from a file"[..])
    );

    a.cli(&["kv", "put", "-base64", "src/b64", "YmFy"])
        .await
        .expect_code(0);
    assert_eq!(a.kv_value("src/b64").await.as_deref(), Some(&b"bar"[..]));

    // No DATA: an empty value.
    let out = a.cli(&["kv", "put", "src/empty"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Success! Data written to: src/empty\n");
    assert_eq!(a.kv_value("src/empty").await.as_deref(), Some(&b""[..]));
}

#[tokio::test]
async fn kv_delete_single_recurse_and_cas() {
    let a = Agent::dev().await;
    for k in ["d/a", "d/b", "d/c/d", "dz"] {
        a.kv_put(k, "v").await;
    }
    let out = a.cli(&["kv", "delete", "d/a"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Success! Deleted key: d/a\n", "{out}");
    assert!(a.kv_entry("d/a").await.is_none());

    let idx = a.kv_entry("d/b").await.expect("exists")["ModifyIndex"]
        .as_u64()
        .expect("ModifyIndex");
    let out = a
        .cli(&[
            "kv",
            "delete",
            "-cas",
            &format!("-modify-index={}", idx + 1000),
            "d/b",
        ])
        .await;
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("Error! Did not delete key d/b: CAS failed"),
        "{out}"
    );
    assert!(a.kv_entry("d/b").await.is_some());
    let out = a
        .cli(&[
            "kv",
            "delete",
            "-cas",
            &format!("-modify-index={idx}"),
            "d/b",
        ])
        .await;
    out.expect_code(0);
    assert_eq!(out.stdout, "Success! Deleted key: d/b\n", "{out}");

    let out = a.cli(&["kv", "delete", "-recurse", "d/"]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout, "Success! Deleted keys with prefix: d/\n",
        "{out}"
    );
    assert!(a.kv_entry("d/c/d").await.is_none());
    assert!(a.kv_entry("dz").await.is_some());

    // Without a key and without -recurse: an error, and nothing deleted.
    let out = a.cli(&["kv", "delete"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("Error! Missing KEY argument"), "{out}");
    assert!(a.kv_entry("dz").await.is_some());
}

#[tokio::test]
async fn kv_get_recurse_prints_key_colon_value_lines() {
    let a = Agent::dev().await;
    for (k, v) in [("r/b", "2"), ("r/a", "1"), ("r/c/d", "x:y"), ("rz", "no")] {
        a.kv_put(k, v).await;
    }
    let out = a.cli(&["kv", "get", "-recurse", "r/"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "r/a:1\nr/b:2\nr/c/d:x:y\n", "{out}");

    let out = a.cli(&["kv", "get", "-keys", "r/"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "r/a\nr/b\nr/c/\n", "{out}");

    // A prefix that matches nothing lists nothing, successfully.
    let out = a.cli(&["kv", "get", "-recurse", "nothing/"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout, "", "{out}");
}

#[tokio::test]
async fn kv_export_then_import_round_trips() {
    let a = Agent::dev().await;
    let bin: Vec<u8> = vec![0, 1, 2, 255, b'\n'];
    a.kv_put("exp/a", "alpha").await;
    a.put("/v1/kv/exp/b?flags=7", "beta")
        .await
        .expect_status(200);
    a.kv_put("exp/c/bin", &bin).await;
    a.kv_put("other", "not exported").await;

    let out = a.cli(&["kv", "export", "exp/"]).await;
    out.expect_code(0);
    let exported: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("export is not JSON ({e})\n{out}"));
    let list = exported.as_array().expect("export is a JSON array");
    assert_eq!(list.len(), 3, "{exported}");
    assert_eq!(list[0]["key"], json!("exp/a"));
    assert_eq!(list[0]["flags"], json!(0));
    assert_eq!(b64(&list[0]["value"]).as_deref(), Some(&b"alpha"[..]));
    assert_eq!(list[1]["key"], json!("exp/b"));
    assert_eq!(list[1]["flags"], json!(7));
    assert_eq!(b64(&list[2]["value"]), Some(bin.clone()));

    // Wipe, then import from a file.
    a.delete("/v1/kv/exp/?recurse").await.expect_status(200);
    std::fs::write(a.dir().join("export.json"), &out.stdout).expect("write export");
    let imp = a.cli(&["kv", "import", "@export.json"]).await;
    imp.expect_code(0);
    assert_eq!(
        imp.stdout, "Imported: exp/a\nImported: exp/b\nImported: exp/c/bin\n",
        "{imp}"
    );
    assert_eq!(a.kv_value("exp/a").await.as_deref(), Some(&b"alpha"[..]));
    assert_eq!(a.kv_entry("exp/b").await.expect("exp/b")["Flags"], json!(7));
    assert_eq!(a.kv_value("exp/c/bin").await, Some(bin.clone()));

    // And from stdin.
    a.delete("/v1/kv/exp/?recurse").await.expect_status(200);
    let imp = a
        .cli_stdin(&["kv", "import", "-"], Some(out.stdout.as_bytes()))
        .await;
    imp.expect_code(0);
    assert_eq!(a.kv_value("exp/c/bin").await, Some(bin));

    // Export of the same tree is the same document.
    let again = a.cli(&["kv", "export", "exp/"]).await;
    again.expect_code(0);
    let again: Value = serde_json::from_str(&again.stdout).expect("JSON");
    assert_eq!(again, exported);
}

#[tokio::test]
async fn kv_import_of_bad_json_fails_and_writes_nothing() {
    let a = Agent::dev().await;
    let out = a
        .cli_stdin(&["kv", "import", "-"], Some(b"[{\"key\": \"x\", "))
        .await;
    out.expect_code(1);
    assert!(!out.stderr.is_empty(), "{out}");
    let keys = a.get("/v1/kv/?keys").await.json();
    assert_eq!(keys, json!([]));
}

#[tokio::test]
async fn members_lists_this_node() {
    let a = Agent::dev().await;
    let node = a.get("/v1/agent/self").await.json()["Config"]["NodeName"]
        .as_str()
        .expect("NodeName")
        .to_string();
    let out = a.cli(&["members"]).await;
    out.expect_code(0);
    let mut lines = out.stdout.lines();
    let header = lines.next().unwrap_or_default();
    for col in ["Node", "Address", "Status", "Type", "DC"] {
        assert!(header.contains(col), "header lacks {col}\n{out}");
    }
    let addr = format!("127.0.0.1:{}", a.ports.serf_lan);
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(node.as_str()))
        .unwrap_or_else(|| panic!("no row for {node}\n{out}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    for want in [addr.as_str(), "alive", "server", "dc1"] {
        assert!(cols.contains(&want), "row lacks {want}: {row:?}\n{out}");
    }
}

#[tokio::test]
async fn info_prints_sections() {
    let a = Agent::dev().await;
    let out = a.cli(&["info"]).await;
    out.expect_code(0);
    for section in ["agent:", "consul:", "raft:"] {
        assert!(
            out.stdout.lines().any(|l| l == section),
            "no {section} section\n{out}"
        );
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim().replace(' ', "") == "server=true"),
        "consul section says server = true\n{out}"
    );
}

#[tokio::test]
async fn version_prints_musters_version() {
    let out = run_muster(&["version".to_string()], None, CLI_TIMEOUT).await;
    out.expect_code(0);
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "muster version prints {}\n{out}",
        env!("CARGO_PKG_VERSION")
    );
}

#[tokio::test]
async fn leave_shuts_the_agent_down() {
    let mut a = Agent::dev().await;
    let out = a.cli(&["leave"]).await;
    out.expect_code(0);
    assert!(out.stdout.contains("Graceful leave complete"), "{out}");
    if a.wait_exit(EXIT_TIMEOUT).await.is_none() {
        a.fail("the agent did not exit after `muster leave`");
    }
}

#[tokio::test]
async fn http_addr_forms_and_environment() {
    let a = Agent::dev().await;
    a.kv_put("env/k", "v").await;
    // http:// scheme in -http-addr.
    let out = run_muster(
        &[
            "kv".into(),
            "get".into(),
            format!("-http-addr=http://{}", a.http_addr()),
            "env/k".into(),
        ],
        None,
        CLI_TIMEOUT,
    )
    .await;
    out.expect_code(0);
    assert_eq!(out.stdout, "v\n", "{out}");
    // CONSUL_HTTP_ADDR instead of the flag.
    let out = run_muster_with(
        &["kv".into(), "get".into(), "env/k".into()],
        None,
        CLI_TIMEOUT,
        None,
        &[("CONSUL_HTTP_ADDR", &a.http_addr())],
    )
    .await;
    out.expect_code(0);
    assert_eq!(out.stdout, "v\n", "{out}");
}

#[tokio::test]
async fn an_unreachable_agent_is_an_error_not_a_hang() {
    // A port nobody listens on.
    let port = common::free_ports(1)[0];
    let out = run_muster(
        &[
            "kv".into(),
            "get".into(),
            format!("-http-addr=127.0.0.1:{port}"),
            "k".into(),
        ],
        None,
        Duration::from_secs(60),
    )
    .await;
    out.expect_code(1);
    assert!(out.stderr.contains("Error"), "{out}");
}

#[tokio::test]
async fn a_bad_cli_flag_exits_1_naming_it() {
    let a = Agent::dev().await;
    let out = a.cli(&["kv", "put", "-no-such-flag", "bad/k", "v"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("no-such-flag"), "{out}");
    assert!(a.kv_entry("bad/k").await.is_none());
}

#[tokio::test]
async fn kv_export_prints_consuls_tab_indented_json() {
    let a = Agent::dev().await;
    a.kv_put("redis/config/connections", "5").await;
    let out = a.cli(&["kv", "export", "redis/"]).await;
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "[\n\t{\n\t\t\"key\": \"redis/config/connections\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"NQ==\"\n\t}\n]\n",
        "{out}"
    );
    // An empty tree is an empty list.
    let out = a.cli(&["kv", "export", "nothing/"]).await;
    out.expect_code(0);
    assert_eq!(out.stdout.trim(), "[]", "{out}");
}

#[tokio::test]
async fn kv_put_with_too_many_arguments_is_an_error() {
    let a = Agent::dev().await;
    let out = a.cli(&["kv", "put", "k", "v", "extra"]).await;
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("Error! Too many arguments (expected 1 or 2, got 3)"),
        "{out}"
    );
    assert!(a.kv_entry("k").await.is_none());
    let out = a.cli(&["kv", "put"]).await;
    out.expect_code(1);
    assert!(out.stderr.contains("Error! Missing KEY argument"), "{out}");
}
