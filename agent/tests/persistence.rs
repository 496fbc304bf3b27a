//! End-to-end tests of durability: `agent -server -bootstrap -data-dir DIR` keeps every write it
//! acknowledged, with its indexes, across a clean stop, a `kill -9`, and a `kill -9` in the middle
//! of a stream of writes, also once snapshots and log compaction have run.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{b64, send, Agent, AgentBuilder, REQUEST_TIMEOUT};
use serde_json::Value;

/// Every entry under `prefix` (empty when the prefix has none).
async fn dump(a: &Agent, prefix: &str) -> Vec<Value> {
    let r = a.get(&format!("/v1/kv/{prefix}?recurse")).await;
    match r.status {
        404 => Vec::new(),
        200 => r.json().as_array().expect("array").clone(),
        s => panic!("GET {prefix}?recurse: {s} {:?}", r.text()),
    }
}

fn idx(e: &Value, field: &str) -> u64 {
    e[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {e}"))
}

async fn write_some(a: &Agent, prefix: &str, n: usize) {
    for i in 0..n {
        a.put(
            &format!("/v1/kv/{prefix}/k{i:04}?flags={i}"),
            format!("value {i}"),
        )
        .await
        .expect_status(200);
    }
    // Overwrites and a delete, so indexes differ from creation order.
    a.kv_put(&format!("{prefix}/k0000"), "rewritten").await;
    a.delete(&format!("/v1/kv/{prefix}/k0001"))
        .await
        .expect_status(200);
}

#[tokio::test]
async fn keys_and_indexes_survive_a_clean_stop() {
    let mut a = AgentBuilder::server().start().await;
    write_some(&a, "p", 30).await;
    let before = dump(&a, "p/").await;
    assert_eq!(before.len(), 29);
    let node_id = a.get("/v1/agent/self").await.json()["Config"]["NodeID"].clone();

    a.terminate().await;
    a.restart().await;

    let after = dump(&a, "p/").await;
    assert_eq!(
        after, before,
        "entries (values, flags, CreateIndex, ModifyIndex) after a restart"
    );
    assert!(
        a.kv_entry("p/k0001").await.is_none(),
        "a delete stays deleted"
    );
    let v = a.get("/v1/agent/self").await.json();
    assert_eq!(
        v["Config"]["NodeID"], node_id,
        "the node ID is kept in the data dir"
    );

    // New writes continue after the old indexes.
    let max_before = before
        .iter()
        .map(|e| idx(e, "ModifyIndex"))
        .max()
        .expect("entries");
    a.kv_put("p/new", "x").await;
    let e = a.kv_entry("p/new").await.expect("exists");
    assert!(
        idx(&e, "ModifyIndex") > max_before,
        "index after restart {} must pass {max_before}",
        idx(&e, "ModifyIndex")
    );
}

#[tokio::test]
async fn keys_and_indexes_survive_kill_9() {
    let mut a = AgentBuilder::server().start().await;
    write_some(&a, "p", 30).await;
    let before = dump(&a, "p/").await;
    let list_index = a.get("/v1/kv/p/?recurse").await.index();

    a.kill9();
    a.restart().await;

    assert_eq!(dump(&a, "p/").await, before, "entries after kill -9");
    let r = a.get("/v1/kv/p/?recurse").await;
    assert!(
        r.index() >= list_index,
        "a prefix's index never goes back ({list_index} -> {})",
        r.index()
    );
}

/// One acknowledged write of the crash test.
#[derive(Debug, Clone)]
struct Acked {
    key: String,
    value: String,
    /// ModifyIndex read back right after the write (None if the agent died first).
    modify_index: Option<u64>,
}

/// Writes `crash/kNNNNN` keys (and overwrites `crash/counter`) one after another until a request
/// fails; records every write answered `true`.
async fn writer(
    client: reqwest::Client,
    base: String,
    acked: Arc<Mutex<Vec<Acked>>>,
    counter: Arc<Mutex<(u64, u64)>>,
) {
    for i in 0u64.. {
        let key = format!("crash/k{i:05}");
        let value = format!("value-{i}-{}", "x".repeat((i % 50) as usize));
        let url = format!("{base}/v1/kv/{key}");
        match send(
            &client,
            "PUT",
            &url,
            Some(value.clone().into_bytes()),
            REQUEST_TIMEOUT,
        )
        .await
        {
            Ok(r) if r.status == 200 && r.body == b"true" => {}
            Ok(r) => panic!(
                "PUT {key} answered {} {:?} while the agent was up",
                r.status,
                r.text()
            ),
            Err(_) => return, // the agent was killed
        }
        let got = send(&client, "GET", &url, None, REQUEST_TIMEOUT).await;
        let modify_index = match got {
            Ok(r) if r.status == 200 => r.json()[0]["ModifyIndex"].as_u64(),
            _ => None,
        };
        acked.lock().expect("lock").push(Acked {
            key,
            value,
            modify_index,
        });
        if modify_index.is_none() {
            return;
        }
        // The counter: (last acknowledged value, last attempted value).
        counter.lock().expect("lock").1 = i;
        let url = format!("{base}/v1/kv/crash/counter");
        match send(
            &client,
            "PUT",
            &url,
            Some(i.to_string().into_bytes()),
            REQUEST_TIMEOUT,
        )
        .await
        {
            Ok(r) if r.status == 200 && r.body == b"true" => counter.lock().expect("lock").0 = i,
            _ => return,
        }
    }
}

/// `Stats.raft.last_snapshot_index` of `/v1/agent/self` (Consul reports raft stats as strings).
async fn last_snapshot_index(a: &Agent) -> Option<u64> {
    let v = a.get("/v1/agent/self").await.json();
    v["Stats"]["raft"]["last_snapshot_index"]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// Streams writes, `kill -9`s the agent once `acks_before_kill` were acknowledged (and, with
/// `want_snapshot`, once the agent reports a snapshot), restarts it on the same data dir and
/// checks every acknowledged write.
async fn crash_mid_writes(mut a: Agent, acks_before_kill: usize, want_snapshot: bool) {
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let counter = Arc::new(Mutex::new((0u64, 0u64)));
    let task = tokio::spawn(writer(
        a.client(),
        a.base_url(),
        acked.clone(),
        counter.clone(),
    ));

    // Let the writer get well going, then kill the agent under it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acked.lock().expect("lock").len() < acks_before_kill {
        if task.is_finished() {
            break;
        }
        if std::time::Instant::now() > deadline {
            a.fail(&format!(
                "the writer acknowledged only {} writes in 120s",
                acked.lock().expect("lock").len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if want_snapshot {
        // The writer goes on meanwhile; the snapshot must come from the threshold set in the
        // config file, so the crash happens after snapshots and log compaction.
        let snap = common::eventually(Duration::from_secs(30), || async {
            last_snapshot_index(&a).await.filter(|&i| i > 0)
        })
        .await;
        if snap.is_none() {
            a.fail(
                "no snapshot reported (/v1/agent/self Stats.raft.last_snapshot_index) \
                 with raft_snapshot_threshold = 50",
            );
        }
    }
    let stats = a.get("/v1/agent/self").await.json()["Stats"]["raft"].clone();
    a.kill9();
    match tokio::time::timeout(Duration::from_secs(60), task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => a.fail(&format!("the writer failed: {e}")),
        Err(_) => a.fail("the writer did not stop within 60s of the kill"),
    }
    let acked = acked.lock().expect("lock").clone();
    let (counter_acked, counter_tried) = *counter.lock().expect("lock");
    assert!(
        acked.len() >= acks_before_kill,
        "the writer stopped early: {} acknowledged writes",
        acked.len()
    );
    eprintln!(
        "crash test: {} acknowledged writes before kill -9; raft stats then: {stats}",
        acked.len()
    );

    a.restart().await;

    let mut lost = Vec::new();
    for w in &acked {
        match a.kv_entry(&w.key).await {
            None => lost.push(format!("{}: missing", w.key)),
            Some(e) => {
                let v = b64(&e["Value"]).unwrap_or_default();
                if v != w.value.as_bytes() {
                    lost.push(format!(
                        "{}: value {:?}, acknowledged {:?}",
                        w.key,
                        String::from_utf8_lossy(&v),
                        w.value
                    ));
                }
                if let Some(mi) = w.modify_index {
                    if e["ModifyIndex"].as_u64() != Some(mi) {
                        lost.push(format!(
                            "{}: ModifyIndex {} after restart, {mi} before",
                            w.key, e["ModifyIndex"]
                        ));
                    }
                }
            }
        }
    }
    if !lost.is_empty() {
        a.fail(&format!(
            "{} of {} acknowledged writes were lost or changed by kill -9:\n{}",
            lost.len(),
            acked.len(),
            lost.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
        ));
    }
    if counter_acked > 0 {
        let v = a.kv_value("crash/counter").await.unwrap_or_default();
        let n: u64 = String::from_utf8_lossy(&v).parse().unwrap_or_else(|e| {
            panic!("crash/counter holds {:?}: {e}", String::from_utf8_lossy(&v))
        });
        assert!(
            n >= counter_acked && n <= counter_tried,
            "crash/counter is {n}: acknowledged {counter_acked}, last tried {counter_tried}"
        );
    }

    // The agent goes on accepting writes, with indexes past everything before.
    let max_before = acked
        .iter()
        .filter_map(|w| w.modify_index)
        .max()
        .unwrap_or(0);
    a.kv_put("crash/after", "x").await;
    let e = a.kv_entry("crash/after").await.expect("exists");
    assert!(idx(&e, "ModifyIndex") > max_before);
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_mid_stream() {
    let a = AgentBuilder::server().start().await;
    crash_mid_writes(a, 300, false).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_after_snapshots_and_compaction() {
    let a = AgentBuilder::server()
        .config_file(
            "raft.json",
            r#"{"raft_snapshot_threshold": 50, "raft_snapshot_interval": "1s", "raft_trailing_logs": 10}"#,
        )
        .start()
        .await;
    // Enough writes for several snapshots (each write is 2 log entries with the counter).
    crash_mid_writes(a, 400, true).await;
}

#[tokio::test]
async fn a_restart_after_snapshots_keeps_deletes_and_tombstone_indexes() {
    let mut a = AgentBuilder::server()
        .config_file(
            "raft.hcl",
            "raft_snapshot_threshold = 50\nraft_snapshot_interval = \"1s\"\nraft_trailing_logs = 10\n",
        )
        .start()
        .await;
    write_some(&a, "t", 120).await;
    for i in 2..60 {
        a.delete(&format!("/v1/kv/t/k{i:04}"))
            .await
            .expect_status(200);
    }
    let before = dump(&a, "t/").await;
    let prefix_index = a.get("/v1/kv/t/?recurse").await.index();
    // ~240 log entries with a threshold of 50: the crash comes after snapshots.
    let snap = common::eventually(Duration::from_secs(30), || async {
        last_snapshot_index(&a).await.filter(|&i| i > 0)
    })
    .await;
    if snap.is_none() {
        a.fail("no snapshot reported (Stats.raft.last_snapshot_index) with a threshold of 50");
    }
    a.kill9();
    a.restart().await;
    assert_eq!(dump(&a, "t/").await, before);
    let r = a.get("/v1/kv/t/?recurse").await;
    assert!(
        r.index() >= prefix_index,
        "the prefix's index must not go back after a restart ({prefix_index} -> {})",
        r.index()
    );
}

#[tokio::test]
async fn a_second_agent_on_the_same_data_dir_refuses_to_start() {
    let a = AgentBuilder::server().start().await;
    a.kv_put("lock/k", "v").await;
    let data = a.data_dir().expect("data dir").display().to_string();
    let mut args = vec![
        "agent".to_string(),
        "-server".into(),
        "-bootstrap".into(),
        "-data-dir".into(),
        data,
        "-bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(common::Ports::free().args());
    let out = common::run_muster(&args, None, Duration::from_secs(30)).await;
    assert!(
        !out.timed_out && out.code.is_some_and(|c| c != 0),
        "a second agent on a data dir in use must exit with an error\n{out}"
    );
    assert!(!out.stderr.is_empty(), "and say why\n{out}");
    // The first one is unharmed.
    assert_eq!(a.kv_value("lock/k").await.as_deref(), Some(&b"v"[..]));
    a.kv_put("lock/k2", "v").await;
}
