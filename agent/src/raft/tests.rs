//! Raft-layer tests: openraft's storage suite on both backends, and a node that writes,
//! snapshots, compacts and restarts with every acknowledged write.

use std::sync::Arc;

use bytes::Bytes;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use super::*;
use crate::state::{Command, Request, Response, Store};

fn to_storage(e: Error) -> StorageError {
    StorageError::IO {
        source: StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, AnyError::error(e)),
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
        let log = LogStore::open(None).map_err(to_storage)?;
        let sm = StateMachine::open(Arc::new(Store::default()), None).map_err(to_storage)?;
        Ok(((), log, sm))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| to_storage(Error::Io(e)))?;
        let raft_dir = dir.path().join("raft");
        let db = open_db(&raft_dir).await.map_err(to_storage)?;
        let log = LogStore::open(Some((db, raft_dir.as_path()))).map_err(to_storage)?;
        let sm =
            StateMachine::open(Arc::new(Store::default()), Some(&raft_dir)).map_err(to_storage)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_memory() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}

#[test]
fn openraft_storage_suite_sled() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}

fn put(key: &str, value: &str) -> Request {
    Request {
        time_ms: 0,
        command: Command::KvSet {
            key: key.into(),
            value: Bytes::from(value.to_string()),
            flags: 0,
        },
    }
}

/// Starts a bootstrapping single-voter node over `store`.
async fn boot(
    id: NodeId,
    dir: Option<&std::path::Path>,
    tuning: &RaftTuning,
    store: &Arc<Store>,
) -> Node {
    start(
        id,
        "127.0.0.1:8300".into(),
        Storage { dir },
        tuning,
        store.clone(),
        true,
    )
    .await
    .expect("start raft node")
}

async fn wait_leader(raft: &Raft) {
    let mut m = raft.metrics();
    for _ in 0..200 {
        if m.borrow().current_leader.is_some() {
            return;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(50), m.changed()).await;
    }
    panic!("no leader elected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_restart_with_snapshots_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tuning = RaftTuning {
        snapshot_threshold: 20,
        trailing_logs: 5,
        raft_multiplier: 1,
        ..RaftTuning::default()
    };
    let mut indexes = Vec::new();
    {
        let store = Arc::new(Store::default());
        let mut node = boot(7, Some(dir.path()), &tuning, &store).await;
        wait_leader(&node.raft).await;
        for i in 0..100 {
            let r = write(&node.raft, put(&format!("k/{i}"), &format!("v{i}")))
                .await
                .expect("write");
            assert_eq!(r, Response::Bool(true));
            indexes.push(store.read().kv_get(&format!("k/{i}")).0);
        }
        // A snapshot is taken (in the background) and the log compacted behind it.
        node.raft
            .wait(Some(std::time::Duration::from_secs(10)))
            .metrics(
                |m| m.snapshot.is_some() && m.purged.is_some(),
                "snapshot taken and log compacted",
            )
            .await
            .expect("snapshot and compaction within 10s");
        node.shutdown().await.expect("shutdown");
    }
    let store = Arc::new(Store::default());
    let mut node = boot(7, Some(dir.path()), &tuning, &store).await;
    wait_leader(&node.raft).await;
    // Restarted as the only voter: it leads and has applied everything committed before.
    for _ in 0..100 {
        if store.read().kv_list("k/").1.len() == 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let t = store.read();
    for (i, want) in indexes.iter().enumerate() {
        let (idx, e) = t.kv_get(&format!("k/{i}"));
        let e = e.unwrap_or_else(|| panic!("k/{i} lost"));
        assert_eq!(&e.value[..], format!("v{i}").as_bytes());
        assert_eq!(idx, *want, "k/{i} index changed");
    }
    // New writes continue above the old indexes.
    write(&node.raft, put("after", "x")).await.expect("write");
    assert!(store.read().kv_get("after").0 > *indexes.last().unwrap_or(&0));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn dev_node_is_leader_at_once() {
    let store = Arc::new(Store::default());
    let mut node = boot(1, None, &RaftTuning::default(), &store).await;
    wait_leader(&node.raft).await;
    assert_eq!(
        write(&node.raft, put("a", "b")).await.expect("write"),
        Response::Bool(true)
    );
    assert!(store.read().kv_get("a").1.is_some());
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_the_proposer_each_get_their_own_answer() {
    let store = Arc::new(Store::default());
    let mut node = boot(3, None, &RaftTuning::default(), &store).await;
    wait_leader(&node.raft).await;
    let proposer = Proposer::spawn(node.raft.clone());
    write(&node.raft, put("contended", "0"))
        .await
        .expect("seed");
    let seed = store.read().kv_get("contended").0;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let p = proposer.clone();
        tasks.push(tokio::spawn(async move {
            // Even writers set their own key; odd ones race a CAS on one shared key.
            let command = if i % 2 == 0 {
                Command::KvSet {
                    key: format!("c/{i}"),
                    value: Bytes::from(format!("v{i}")),
                    flags: u64::from(i),
                }
            } else {
                Command::KvCas {
                    key: "contended".into(),
                    value: Bytes::from(format!("w{i}")),
                    flags: 0,
                    modify_index: seed,
                }
            };
            (
                i,
                p.write(Request {
                    time_ms: 0,
                    command,
                })
                .await,
            )
        }));
    }
    let mut cas_wins = 0;
    for t in tasks {
        let (i, r) = t.await.expect("join");
        match (i % 2, r.expect("write")) {
            (0, resp) => assert_eq!(resp, Response::Bool(true), "set {i}"),
            (_, Response::Bool(won)) => cas_wins += usize::from(won),
            (_, other) => panic!("cas {i} answered {other:?}"),
        }
    }
    assert_eq!(cas_wins, 1, "exactly one CAS on the shared index wins");
    let t = store.read();
    for i in (0..200u32).step_by(2) {
        let e = t.kv_get(&format!("c/{i}")).1.expect("written");
        assert_eq!(
            (&e.value[..], e.flags),
            (format!("v{i}").as_bytes(), u64::from(i))
        );
    }
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_threshold_counts_writes_inside_batches() {
    let store = Arc::new(Store::default());
    let tuning = RaftTuning {
        snapshot_threshold: 50,
        ..RaftTuning::default()
    };
    let mut node = boot(5, None, &tuning, &store).await;
    wait_leader(&node.raft).await;
    // 100 writes in 10 log entries: far below 50 entries, twice the threshold in writes.
    for b in 0..10 {
        let commands = (0..10)
            .map(|i| Command::KvSet {
                key: format!("b{b}/{i}"),
                value: Bytes::from_static(b"v"),
                flags: 0,
            })
            .collect();
        let r = write(
            &node.raft,
            Request {
                time_ms: 0,
                command: Command::Batch(commands),
            },
        )
        .await
        .expect("write");
        assert!(
            matches!(r, Response::Batch(ref v) if v.len() == 10),
            "{r:?}"
        );
    }
    node.raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(|m| m.snapshot.is_some(), "snapshot after 50 writes")
        .await
        .expect("a snapshot was taken although only ~12 entries exist");
    // In memory nothing is kept behind the snapshot: the log is purged right up to it.
    node.raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(
            |m| m.purged.is_some() && m.purged == m.snapshot,
            "in-memory log purged up to the snapshot",
        )
        .await
        .expect("log purged up to the snapshot");
    node.shutdown().await.expect("shutdown");
}
