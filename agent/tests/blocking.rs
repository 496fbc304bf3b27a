//! End-to-end tests of blocking queries (`?index=N&wait=D`) on `/v1/kv`, from Consul's
//! documentation: a query blocks until the result's index passes N or the wait ends; a write
//! wakes only the watchers of what it touched; a result's index never goes backwards.
//!
//! No assertion here is about speed. "Woken by the write" is told apart from "returned at the
//! wait" by the index (greater) and by returning before the wait was over; "not woken" by the
//! index (the same) and by returning only once about the wait had passed.

mod common;

use std::time::Duration;

use common::{b64, send, Agent, Resp};

/// Generous margin added to a blocking query's client timeout (wait + jitter + scheduling).
const MARGIN: Duration = Duration::from_secs(20);

/// A blocking GET started on another task.
fn spawn_get(a: &Agent, path_and_query: String, wait: Duration) -> tokio::task::JoinHandle<Resp> {
    let client = a.client();
    let url = format!("{}{}", a.base_url(), path_and_query);
    tokio::spawn(async move {
        send(&client, "GET", &url, None, wait + MARGIN)
            .await
            .unwrap_or_else(|e| panic!("blocking GET failed: {e}"))
    })
}

/// Gives a just-started blocking query time to reach the agent and block. Correctness does
/// not depend on it: a write that lands first makes the query return at once with a greater
/// index, which the tests accept too.
async fn let_it_block() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn join(h: tokio::task::JoinHandle<Resp>) -> Resp {
    h.await.expect("blocking query task panicked")
}

#[tokio::test]
async fn a_write_wakes_a_query_blocked_on_that_key() {
    let a = Agent::dev().await;
    a.kv_put("blk/key", "v1").await;
    let idx = a.get("/v1/kv/blk/key").await.index();

    let wait = Duration::from_secs(10);
    let h = spawn_get(&a, format!("/v1/kv/blk/key?index={idx}&wait=10s"), wait);
    let_it_block().await;
    a.kv_put("blk/key", "v2").await;
    let r = join(h).await;

    r.expect_status(200);
    assert!(
        r.index() > idx,
        "woken by the write: index {} must pass {idx}",
        r.index()
    );
    assert!(
        r.elapsed < wait,
        "the query must return because of the write, before its wait of {wait:?} (took {:?})",
        r.elapsed
    );
    let v = r.json();
    assert_eq!(b64(&v[0]["Value"]).as_deref(), Some(&b"v2"[..]));
}

#[tokio::test]
async fn without_a_write_a_query_returns_at_the_wait_with_the_same_index() {
    let a = Agent::dev().await;
    a.kv_put("idle/key", "v").await;
    let idx = a.get("/v1/kv/idle/key").await.index();

    let r = a
        .request_timeout(
            "GET",
            &format!("/v1/kv/idle/key?index={idx}&wait=1s"),
            None,
            Duration::from_secs(1) + MARGIN,
        )
        .await;
    r.expect_status(200);
    assert_eq!(r.index(), idx, "nothing changed: the same index");
    assert!(
        r.elapsed >= Duration::from_millis(950),
        "with nothing to wake it the query holds for its wait (1s); returned after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn index_zero_or_an_older_index_returns_at_once() {
    let a = Agent::dev().await;
    a.kv_put("old/key", "v1").await;
    let idx = a.get("/v1/kv/old/key").await.index();
    a.kv_put("old/key", "v2").await;
    // The result's index is already past idx: no blocking at all, whatever the wait.
    for q in [
        format!("index={idx}&wait=10m"),
        "index=0&wait=10m".to_string(),
    ] {
        let r = a
            .request_timeout(
                "GET",
                &format!("/v1/kv/old/key?{q}"),
                None,
                Duration::from_secs(10),
            )
            .await;
        r.expect_status(200);
        assert!(r.index() > idx, "{q}: index {}", r.index());
    }
}

#[tokio::test]
async fn a_write_to_another_key_does_not_wake_the_query() {
    let a = Agent::dev().await;
    a.kv_put("quiet/watched", "v").await;
    let idx = a.get("/v1/kv/quiet/watched").await.index();

    let wait = Duration::from_secs(2);
    let h = spawn_get(
        &a,
        format!("/v1/kv/quiet/watched?index={idx}&wait=2s"),
        wait,
    );
    let_it_block().await;
    for i in 0..5 {
        a.kv_put(&format!("quiet/other{i}"), "x").await;
        a.kv_put(&format!("unrelated/{i}"), "x").await;
    }
    let r = join(h).await;
    r.expect_status(200);
    assert_eq!(
        r.index(),
        idx,
        "writes to other keys must not change this key's index"
    );
    assert!(
        r.elapsed >= Duration::from_millis(1900),
        "the query must hold until its wait (2s): returned after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn a_prefix_watch_wakes_on_a_write_under_the_prefix() {
    let a = Agent::dev().await;
    a.kv_put("pw/a", "1").await;
    a.kv_put("outside", "1").await;
    let idx = a.get("/v1/kv/pw/?recurse").await.index();

    let wait = Duration::from_secs(10);
    let h = spawn_get(&a, format!("/v1/kv/pw/?recurse&index={idx}&wait=10s"), wait);
    let_it_block().await;
    a.kv_put("pw/deep/new", "2").await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx, "index {} must pass {idx}", r.index());
    assert!(
        r.elapsed < wait,
        "woken by the write, before the wait (took {:?})",
        r.elapsed
    );
    let keys: Vec<String> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["Key"].as_str().expect("Key").to_string())
        .collect();
    assert_eq!(keys, ["pw/a", "pw/deep/new"]);
}

#[tokio::test]
async fn a_keys_watch_wakes_on_a_new_key_under_the_prefix() {
    let a = Agent::dev().await;
    a.kv_put("kw/a", "1").await;
    let idx = a.get("/v1/kv/kw/?keys&separator=/").await.index();
    let wait = Duration::from_secs(10);
    let h = spawn_get(
        &a,
        format!("/v1/kv/kw/?keys&separator=/&index={idx}&wait=10s"),
        wait,
    );
    let_it_block().await;
    a.kv_put("kw/b/c", "1").await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx);
    assert!(r.elapsed < wait, "took {:?}", r.elapsed);
    assert_eq!(r.json(), serde_json::json!(["kw/a", "kw/b/"]));
}

#[tokio::test]
async fn deleting_under_a_prefix_moves_its_index_up_and_wakes_its_watchers() {
    let a = Agent::dev().await;
    a.kv_put("dp/a", "1").await;
    a.kv_put("dp/b", "2").await;
    let idx = a.get("/v1/kv/dp/?recurse").await.index();

    let wait = Duration::from_secs(10);
    let h = spawn_get(&a, format!("/v1/kv/dp/?recurse&index={idx}&wait=10s"), wait);
    let_it_block().await;
    // Delete the key with the highest ModifyIndex: without tombstones the prefix's index
    // would fall back to dp/a's, lower than before.
    a.delete("/v1/kv/dp/b").await.expect_status(200);
    let r = join(h).await;
    r.expect_status(200);
    assert!(
        r.index() > idx,
        "after a delete the prefix's index must go up ({} -> {})",
        idx,
        r.index()
    );
    assert!(
        r.elapsed < wait,
        "woken by the delete (took {:?})",
        r.elapsed
    );

    // And it stays up on plain reads, even once the prefix is empty.
    let after_one = a.get("/v1/kv/dp/?recurse").await.index();
    assert!(after_one > idx);
    a.delete("/v1/kv/dp/a").await.expect_status(200);
    let r = a.get("/v1/kv/dp/?recurse").await;
    r.expect_status(404);
    assert!(
        r.index() > after_one,
        "an emptied prefix still reports an index past its last delete ({after_one} -> {})",
        r.index()
    );
}

#[tokio::test]
async fn a_query_on_a_missing_key_wakes_when_it_is_created() {
    let a = Agent::dev().await;
    let r = a.get("/v1/kv/later/key").await;
    r.expect_status(404);
    let idx = r.index();

    let wait = Duration::from_secs(10);
    let h = spawn_get(&a, format!("/v1/kv/later/key?index={idx}&wait=10s"), wait);
    let_it_block().await;
    a.kv_put("later/key", "here").await;
    let r = join(h).await;
    r.expect_status(200);
    assert!(r.index() > idx);
    assert!(
        r.elapsed < wait,
        "woken by the create (took {:?})",
        r.elapsed
    );
    assert_eq!(b64(&r.json()[0]["Value"]).as_deref(), Some(&b"here"[..]));
}

#[tokio::test]
async fn a_delete_wakes_a_query_on_that_key() {
    let a = Agent::dev().await;
    a.kv_put("gone/key", "v").await;
    let idx = a.get("/v1/kv/gone/key").await.index();
    let wait = Duration::from_secs(10);
    let h = spawn_get(&a, format!("/v1/kv/gone/key?index={idx}&wait=10s"), wait);
    let_it_block().await;
    a.delete("/v1/kv/gone/key").await.expect_status(200);
    let r = join(h).await;
    r.expect_status(404);
    assert!(
        r.index() > idx,
        "a deleted key's index goes up ({idx} -> {})",
        r.index()
    );
    assert!(
        r.elapsed < wait,
        "woken by the delete (took {:?})",
        r.elapsed
    );
}

#[tokio::test]
async fn many_watchers_of_one_key_all_wake() {
    let a = Agent::dev().await;
    a.kv_put("fan/key", "v0").await;
    let idx = a.get("/v1/kv/fan/key").await.index();
    let wait = Duration::from_secs(15);
    let handles: Vec<_> = (0..50)
        .map(|_| spawn_get(&a, format!("/v1/kv/fan/key?index={idx}&wait=15s"), wait))
        .collect();
    let_it_block().await;
    a.kv_put("fan/key", "v1").await;
    for h in handles {
        let r = join(h).await;
        r.expect_status(200);
        assert!(r.index() > idx);
        assert!(r.elapsed < wait, "took {:?}", r.elapsed);
    }
}
