//! State-store unit tests: KV semantics, Consul's index rules, targeted wake-ups, snapshots.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::kv::{key_topic, prefix_topic};
use super::*;

fn req(command: Command) -> Request {
    Request {
        time_ms: 1_000,
        command,
    }
}

fn set(key: &str, value: &str) -> Request {
    req(Command::KvSet {
        key: key.into(),
        value: Bytes::from(value.to_string()),
        flags: 0,
    })
}

fn cas(key: &str, value: &str, modify_index: u64) -> Request {
    req(Command::KvCas {
        key: key.into(),
        value: Bytes::from(value.to_string()),
        flags: 7,
        modify_index,
    })
}

fn del(key: &str) -> Request {
    req(Command::KvDelete { key: key.into() })
}

#[test]
fn set_keeps_create_index_and_bumps_modify() {
    let s = Store::default();
    assert_eq!(s.apply(5, &set("a", "1")), Response::Bool(true));
    assert_eq!(s.apply(6, &set("a", "2")), Response::Bool(true));
    let (idx, e) = s.read().kv_get("a");
    let e = e.expect("present");
    assert_eq!((idx, e.create_index, e.modify_index), (6, 5, 6));
    assert_eq!(&e.value[..], b"2");
}

#[test]
fn cas_zero_is_create_only() {
    let s = Store::default();
    assert_eq!(s.apply(3, &cas("k", "x", 0)), Response::Bool(true));
    assert_eq!(s.apply(4, &cas("k", "y", 0)), Response::Bool(false));
    let e = s.read().kv_get("k").1.expect("present");
    assert_eq!((&e.value[..], e.flags, e.modify_index), (&b"x"[..], 7, 3));
}

#[test]
fn cas_race_only_one_wins() {
    let s = Store::default();
    s.apply(10, &set("k", "base"));
    // Two clients read ModifyIndex 10 and race: the first applied wins, the second fails.
    assert_eq!(s.apply(11, &cas("k", "first", 10)), Response::Bool(true));
    assert_eq!(s.apply(12, &cas("k", "second", 10)), Response::Bool(false));
    let e = s.read().kv_get("k").1.expect("present");
    assert_eq!(&e.value[..], b"first");
    // A failed CAS does not move the table index.
    assert_eq!(s.read().index.kvs, 11);
    // CAS on a missing key with a non-zero index fails.
    assert_eq!(s.apply(13, &cas("nope", "v", 5)), Response::Bool(false));
}

#[test]
fn delete_cas() {
    let s = Store::default();
    s.apply(2, &set("k", "v"));
    let stale = req(Command::KvDeleteCas {
        key: "k".into(),
        modify_index: 1,
    });
    assert_eq!(s.apply(3, &stale), Response::Bool(false));
    assert!(s.read().kv_get("k").1.is_some());
    let good = req(Command::KvDeleteCas {
        key: "k".into(),
        modify_index: 2,
    });
    assert_eq!(s.apply(4, &good), Response::Bool(true));
    assert!(s.read().kv_get("k").1.is_none());
}

#[test]
fn recurse_delete_and_tombstone_index() {
    let s = Store::default();
    s.apply(2, &set("web/a", "1"));
    s.apply(3, &set("web/b", "2"));
    s.apply(4, &set("db/a", "3"));
    assert_eq!(s.read().kv_list("web/").0, 3);
    s.apply(
        5,
        &req(Command::KvDeleteTree {
            prefix: "web/".into(),
        }),
    );
    let t = s.read();
    let (idx, entries) = t.kv_list("web/");
    assert!(entries.is_empty());
    // The prefix's index is the tombstones', not lower.
    assert_eq!(idx, 5);
    assert_eq!(t.kv_list("db/").1.len(), 1);
    assert_eq!(t.kv_list("db/").0, 4);
    // A tree delete matching nothing changes nothing.
    s.apply(
        6,
        &req(Command::KvDeleteTree {
            prefix: "none/".into(),
        }),
    );
    assert_eq!(s.read().index.kvs, 5);
}

#[test]
fn prefix_index_never_goes_backwards() {
    let s = Store::default();
    s.apply(2, &set("p/a", "1"));
    s.apply(3, &set("p/b", "2"));
    let mut last = s.read().kv_list("p/").0;
    let steps = [
        del("p/b"),
        set("p/c", "3"),
        del("p/a"),
        del("p/c"),
        req(Command::TombstoneReap { before_ms: 5_000 }),
        set("other", "x"),
    ];
    for (i, r) in steps.iter().enumerate() {
        s.apply(4 + i as u64, r);
        let now = s.read().kv_list("p/").0;
        assert!(now >= last, "step {i}: index went from {last} to {now}");
        last = now;
    }
    assert!(s.read().tombstones.is_empty());
}

#[test]
fn keys_with_separator_fold_folders() {
    let s = Store::default();
    for (i, k) in ["a/b/c", "a/b/d", "a/e", "a/f/g", "b"].iter().enumerate() {
        s.apply(2 + i as u64, &set(k, "v"));
    }
    let t = s.read();
    assert_eq!(t.kv_keys("a/", Some("/")).1, ["a/b/", "a/e", "a/f/"]);
    assert_eq!(t.kv_keys("", Some("/")).1, ["a/", "b"]);
    assert_eq!(t.kv_keys("a/", None).1.len(), 4);
    assert_eq!(t.kv_keys("a/", Some("/")).0, 5);
}

#[test]
fn missing_key_index_is_table_index() {
    let s = Store::default();
    assert_eq!(s.read().kv_get("x").0, 1, "never 0 even when empty");
    s.apply(9, &set("y", "1"));
    assert_eq!(s.read().kv_get("x"), (9, None));
}

#[test]
fn snapshot_round_trip() {
    let s = Store::default();
    s.apply(2, &set("a", "1"));
    s.apply(3, &cas("b", "2", 0));
    s.apply(4, &del("a"));
    let tables = s.read();
    let bytes = snapshot::encode(&tables).expect("encode");
    let back = snapshot::decode(&bytes).expect("decode");
    assert_eq!(*tables, back);
    assert!(snapshot::decode(&[]).is_err());
    assert!(snapshot::decode(&[9, 1, 2]).is_err());
    assert!(snapshot::decode(&[1, 0xff, 0xff]).is_err());
}

/// Spawns a blocking query and returns its handle.
fn block(
    s: &Arc<Store>,
    topic: Topic,
    min: u64,
    query: fn(&Tables) -> (u64, usize),
) -> tokio::task::JoinHandle<(u64, usize)> {
    let s = s.clone();
    tokio::spawn(async move {
        s.blocking(topic, Some(min), Duration::from_secs(3600), query)
            .await
    })
}

fn query_key_a(t: &Tables) -> (u64, usize) {
    let (i, e) = t.kv_get("web/a");
    (i, e.map(|e| e.value.len()).unwrap_or(0))
}

fn query_prefix_web(t: &Tables) -> (u64, usize) {
    let (i, e) = t.kv_list("web/");
    (i, e.len())
}

fn query_prefix_db(t: &Tables) -> (u64, usize) {
    let (i, e) = t.kv_list("db/");
    (i, e.len())
}

/// Lets spawned tasks run until they are parked.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn prefix_watch_wakes_only_what_it_should() {
    let s = Arc::new(Store::default());
    s.apply(2, &set("web/a", "1"));
    s.apply(3, &set("db/a", "1"));
    let key = block(&s, key_topic("web/a"), 2, query_key_a);
    let web = block(&s, prefix_topic("web/"), 2, query_prefix_web);
    let db = block(&s, prefix_topic("db/"), 3, query_prefix_db);
    settle().await;
    assert_eq!(s.watched_topics(), 3);

    // A write elsewhere under web/ wakes the prefix watcher, not the key's or db's.
    s.apply(4, &set("web/b", "22"));
    settle().await;
    assert!(web.is_finished(), "web/ prefix watcher must wake");
    assert_eq!(web.await.expect("join"), (4, 2));
    assert!(!key.is_finished(), "web/a must not wake for web/b");
    assert!(!db.is_finished(), "db/ must not wake for web/b");

    // A write to the key wakes it.
    s.apply(5, &set("web/a", "333"));
    settle().await;
    assert_eq!(key.await.expect("join"), (5, 3));
    assert!(!db.is_finished());
    db.abort();
    let _ = db.await;
    settle().await;
    assert_eq!(s.watched_topics(), 0, "watchers unregister when they go");
}

#[tokio::test(start_paused = true)]
async fn tree_delete_wakes_key_and_sub_prefix_watchers() {
    let s = Arc::new(Store::default());
    s.apply(2, &set("web/a", "1"));
    s.apply(3, &set("web/sub/x", "1"));
    let key = block(&s, key_topic("web/a"), 2, query_key_a);
    let sub = {
        let s = s.clone();
        tokio::spawn(async move {
            s.blocking(
                prefix_topic("web/sub/"),
                Some(3),
                Duration::from_secs(3600),
                |t| {
                    let (i, e) = t.kv_list("web/sub/");
                    (i, e.len())
                },
            )
            .await
        })
    };
    settle().await;
    s.apply(
        4,
        &req(Command::KvDeleteTree {
            prefix: "web/".into(),
        }),
    );
    settle().await;
    assert_eq!(key.await.expect("join"), (4, 0));
    assert_eq!(sub.await.expect("join"), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn wait_expires_with_same_index() {
    let s = Arc::new(Store::default());
    s.apply(2, &set("web/a", "1"));
    let start = tokio::time::Instant::now();
    let (idx, _) = s
        .blocking(
            key_topic("web/a"),
            Some(2),
            Duration::from_secs(30),
            query_key_a,
        )
        .await;
    assert_eq!(idx, 2);
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    // index 0 answers at once
    let (idx, _) = s
        .blocking(
            key_topic("web/a"),
            Some(0),
            Duration::from_secs(30),
            query_key_a,
        )
        .await;
    assert_eq!(idx, 2);
}

#[test]
fn batch_is_published_once_and_in_order() {
    let s = Store::default();
    let a = set("k", "1");
    let b = cas("k", "2", 2);
    let out = s.apply_batch([(2, Some(&a)), (3, None), (4, Some(&b))]);
    assert_eq!(
        out,
        [Response::Bool(true), Response::Ok, Response::Bool(true)]
    );
    assert_eq!(s.read().kv_get("k").0, 4);
}

#[test]
fn batch_applies_in_order_at_one_index_with_a_response_each() {
    let s = Store::default();
    s.apply(2, &set("k", "base"));
    let batch = req(Command::Batch(vec![
        Command::KvCas {
            key: "k".into(),
            value: Bytes::from_static(b"first"),
            flags: 0,
            modify_index: 2,
        },
        // Same expected index: loses to the first, as two racing clients would.
        Command::KvCas {
            key: "k".into(),
            value: Bytes::from_static(b"second"),
            flags: 0,
            modify_index: 2,
        },
        Command::KvSet {
            key: "other".into(),
            value: Bytes::from_static(b"x"),
            flags: 0,
        },
        Command::KvDelete { key: "k".into() },
    ]));
    assert_eq!(
        s.apply(3, &batch),
        Response::Batch(vec![
            Response::Bool(true),
            Response::Bool(false),
            Response::Bool(true),
            Response::Bool(true),
        ])
    );
    let t = s.read();
    assert!(t.kv_get("k").1.is_none());
    assert_eq!(t.kv_get("other").1.map(|e| e.modify_index), Some(3));
    assert_eq!(t.tombstones.get("k").map(|t| t.index), Some(3));
}
