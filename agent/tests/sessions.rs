//! End-to-end tests of sessions, KV locks, `muster lock` and `/v1/txn` against the real binary,
//! written from Consul's documentation: session create/info/list/renew/destroy, `?acquire=` /
//! `?release=`, invalidation (TTL, a check going critical) with `release` and `delete`, the
//! lock-delay, transactions' atomicity and limits, and `muster lock` with one holder and with a
//! semaphore of two.

mod common;

use std::time::Duration;

use common::{eventually, Agent, MUSTER};
use serde_json::{json, Value};

fn session_id(r: &common::Resp) -> String {
    r.expect_status(200);
    r.json()["ID"]
        .as_str()
        .unwrap_or_else(|| panic!("no ID in {}", r.text()))
        .to_string()
}

async fn create_session(a: &Agent, body: Value) -> String {
    session_id(&a.put("/v1/session/create", body.to_string()).await)
}

async fn acquire(a: &Agent, key: &str, session: &str) -> bool {
    let r = a.put(&format!("/v1/kv/{key}?acquire={session}"), "v").await;
    r.expect_status(200);
    r.json() == json!(true)
}

/// Reads the marker file the contending commands append to: ("start"|"end", id) per line.
fn markers(path: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (what, id) = l.split_once(' ')?;
            Some((what.to_string(), id.to_string()))
        })
        .collect()
}

/// The most commands that were between their start and end markers at once.
fn max_overlap(events: &[(String, String)]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for (what, _) in events {
        if what == "start" {
            now += 1;
            max = max.max(now);
        } else {
            now = now.saturating_sub(1);
        }
    }
    max
}

#[tokio::test]
async fn session_lifecycle_and_blocking_reads() {
    let a = Agent::dev().await;
    let list = a.get("/v1/session/list").await;
    list.expect_status(200);
    assert_eq!(list.json(), json!([]));
    let index = list.index();

    // A blocking list wakes when a session is created.
    let waiter = {
        let url = format!("{}/v1/session/list?index={index}&wait=30s", a.base_url());
        let client = a.client();
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("blocking list");
            r.json::<Value>().await.expect("json")
        })
    };
    let id = create_session(
        &a,
        json!({"Name": "web-lock", "TTL": "30s", "LockDelay": "2s"}),
    )
    .await;
    let woke = tokio::time::timeout(Duration::from_secs(40), waiter)
        .await
        .expect("the blocking list returned")
        .expect("task");
    assert_eq!(woke[0]["ID"], json!(id));

    let info = a.get(&format!("/v1/session/info/{id}")).await;
    info.expect_status(200);
    let s = &info.json()[0];
    assert_eq!(s["Name"], json!("web-lock"));
    assert_eq!(s["TTL"], json!("30s"));
    assert_eq!(s["LockDelay"], json!(2_000_000_000u64));
    assert_eq!(s["Behavior"], json!("release"));
    assert_eq!(s["NodeChecks"], json!(["serfHealth"]));
    let node = s["Node"].as_str().expect("node").to_string();
    let on_node = a.get(&format!("/v1/session/node/{node}")).await;
    assert_eq!(on_node.json()[0]["ID"], json!(id));

    let renewed = a.put(&format!("/v1/session/renew/{id}"), "").await;
    renewed.expect_status(200);
    assert_eq!(renewed.json()[0]["ID"], json!(id));

    // Bad requests change nothing.
    for bad in [
        json!({"TTL": "5s"}),
        json!({"Behavior": "explode"}),
        json!({"LockDelay": "5m"}),
    ] {
        let r = a.put("/v1/session/create", bad.to_string()).await;
        r.expect_status(400);
        assert!(!r.text().is_empty());
    }
    let r = a
        .put(
            "/v1/session/create",
            json!({"Node": "no-such-node"}).to_string(),
        )
        .await;
    r.expect_status(500);
    assert!(r.text().contains("no-such-node"), "{}", r.text());
    let r = a
        .put(
            "/v1/session/create",
            json!({"NodeChecks": ["no-such-check"]}).to_string(),
        )
        .await;
    r.expect_status(500);
    assert!(r.text().contains("no-such-check"), "{}", r.text());
    assert_eq!(
        a.get("/v1/session/list")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let r = a.put(&format!("/v1/session/destroy/{id}"), "").await;
    r.expect_status(200);
    assert_eq!(r.json(), json!(true));
    assert_eq!(
        a.get(&format!("/v1/session/info/{id}")).await.json(),
        json!([])
    );
    a.put(&format!("/v1/session/renew/{id}"), "")
        .await
        .expect_status(404);
}

#[tokio::test]
async fn kv_acquire_release_lock_index_and_lock_delay() {
    let a = Agent::dev().await;
    let s1 = create_session(&a, json!({"LockDelay": "3s"})).await;
    let s2 = create_session(&a, json!({})).await;

    assert!(acquire(&a, "lk", &s1).await);
    let e = a.kv_entry("lk").await.expect("entry");
    assert_eq!(
        (e["LockIndex"].clone(), e["Session"].clone()),
        (json!(1), json!(s1))
    );
    // Held by another: false. Re-acquiring one's own lock keeps the LockIndex.
    assert!(!acquire(&a, "lk", &s2).await);
    assert!(acquire(&a, "lk", &s1).await);
    assert_eq!(
        a.kv_entry("lk").await.expect("entry")["LockIndex"],
        json!(1)
    );
    // Releasing with the wrong session: false.
    let r = a.put(&format!("/v1/kv/lk?release={s2}"), "x").await;
    assert_eq!(r.json(), json!(false));
    let r = a.put(&format!("/v1/kv/lk?release={s1}"), "x").await;
    assert_eq!(r.json(), json!(true));
    let e = a.kv_entry("lk").await.expect("entry");
    assert_eq!(e.get("Session"), None, "released: {e}");
    // A release is not an invalidation: no lock-delay.
    assert!(acquire(&a, "lk", &s2).await);
    assert_eq!(
        a.kv_entry("lk").await.expect("entry")["LockIndex"],
        json!(2)
    );
    a.put(&format!("/v1/kv/lk?release={s2}"), "").await;

    // cas combines with acquire: a stale index is a false.
    let modify = a.kv_entry("lk").await.expect("entry")["ModifyIndex"]
        .as_u64()
        .expect("index");
    let r = a
        .put(&format!("/v1/kv/lk?acquire={s1}&cas={}", modify - 1), "")
        .await;
    assert_eq!(r.json(), json!(false));
    let r = a
        .put(&format!("/v1/kv/lk?acquire={s1}&cas={modify}"), "")
        .await;
    assert_eq!(r.json(), json!(true));

    // Invalidation (destroy) releases the lock and starts the lock-delay.
    a.put(&format!("/v1/session/destroy/{s1}"), "")
        .await
        .expect_status(200);
    let e = a.kv_entry("lk").await.expect("kept (release)");
    assert_eq!(e.get("Session"), None);
    assert!(!acquire(&a, "lk", &s2).await, "inside the lock-delay");
    let got = eventually(Duration::from_secs(30), || async {
        acquire(&a, "lk", &s2).await.then_some(())
    })
    .await;
    assert!(got.is_some(), "acquired once the lock-delay passed");

    // `muster kv put -acquire/-release` now works end to end.
    let o = a
        .cli(&["kv", "put", "-acquire", "-session", &s2, "cli/key", "v"])
        .await;
    o.expect_code(0);
    assert_eq!(o.stdout, "Success! Lock acquired on: cli/key\n");
    let o = a
        .cli(&["kv", "put", "-release", "-session", &s2, "cli/key", "v"])
        .await;
    o.expect_code(0);
    assert_eq!(o.stdout, "Success! Lock released on: cli/key\n");

    // Unknown session: Consul's 500 naming it; missing session: 400; both at once: 400.
    let r = a.put("/v1/kv/other?acquire=not-a-session", "").await;
    r.expect_status(500);
    assert!(r.text().contains("not-a-session"));
    a.put("/v1/kv/other?acquire=", "").await.expect_status(400);
    a.put(&format!("/v1/kv/other?acquire={s2}&release={s2}"), "")
        .await
        .expect_status(400);
    assert!(a.kv_entry("other").await.is_none());
}

#[tokio::test]
async fn a_critical_check_invalidates_its_sessions_with_release_and_delete() {
    let a = Agent::dev().await;
    let r = a
        .put(
            "/v1/agent/check/register",
            json!({"Name": "guard", "TTL": "300s", "Status": "passing"}).to_string(),
        )
        .await;
    r.expect_status(200);
    // The check reaches the catalog through anti-entropy.
    let synced = eventually(Duration::from_secs(20), || async {
        let r = a
            .put(
                "/v1/session/create",
                json!({"Name": "rel", "NodeChecks": ["serfHealth", "guard"], "LockDelay": "1ms"})
                    .to_string(),
            )
            .await;
        (r.status == 200).then(|| session_id(&r))
    })
    .await;
    let rel = synced.expect("session tied to the check");
    let del = create_session(
        &a,
        json!({"Name": "del", "Checks": ["guard"], "Behavior": "delete"}),
    )
    .await;
    assert!(acquire(&a, "guarded/rel", &rel).await);
    assert!(acquire(&a, "guarded/del", &del).await);

    a.put("/v1/agent/check/fail/guard", "")
        .await
        .expect_status(200);
    let gone = eventually(Duration::from_secs(20), || async {
        let list = a.get("/v1/session/list").await.json();
        (list == json!([])).then_some(())
    })
    .await;
    assert!(gone.is_some(), "both sessions invalidated");
    let e = a
        .kv_entry("guarded/rel")
        .await
        .expect("release keeps the key");
    assert_eq!(e.get("Session"), None, "{e}");
    assert!(
        a.kv_entry("guarded/del").await.is_none(),
        "delete removes the key"
    );

    // A session cannot be tied to a critical check.
    let r = a
        .put(
            "/v1/session/create",
            json!({"Checks": ["guard"]}).to_string(),
        )
        .await;
    r.expect_status(500);
    assert!(r.text().contains("critical"), "{}", r.text());
}

#[tokio::test]
async fn txn_is_all_or_nothing_and_limited_to_64_ops() {
    let a = Agent::dev().await;
    a.kv_put("t/x", "1").await;
    let x = a.kv_entry("t/x").await.expect("x");
    let stale = x["ModifyIndex"].as_u64().expect("index") - 1;

    // One failing op: nothing applied, 409 with the failing op's index.
    let r = a
        .put(
            "/v1/txn",
            json!([
                {"KV": {"Verb": "set", "Key": "t/a", "Value": "YQ=="}},
                {"KV": {"Verb": "delete", "Key": "t/x"}},
                {"KV": {"Verb": "cas", "Key": "t/x", "Value": "Yg==", "Index": stale}},
            ])
            .to_string(),
        )
        .await;
    r.expect_status(409);
    let body = r.json();
    assert_eq!(body["Results"], Value::Null);
    assert_eq!(body["Errors"][0]["OpIndex"], json!(2), "{body}");
    assert!(body["Errors"][0]["What"].as_str().is_some());
    assert!(a.kv_entry("t/a").await.is_none(), "nothing applied");
    assert_eq!(a.kv_value("t/x").await.as_deref(), Some(&b"1"[..]));

    // All succeed: one index for every write, results in order, values only for reads.
    let r = a
        .put(
            "/v1/txn",
            json!([
                {"KV": {"Verb": "set", "Key": "t/a", "Value": "YQ==", "Flags": 5}},
                {"KV": {"Verb": "check-not-exists", "Key": "t/nope"}},
                {"KV": {"Verb": "get", "Key": "t/x"}},
                {"KV": {"Verb": "delete", "Key": "t/x"}},
            ])
            .to_string(),
        )
        .await;
    r.expect_status(200);
    let body = r.json();
    assert_eq!(body["Errors"], Value::Null);
    let results = body["Results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{body}");
    assert_eq!(results[0]["KV"]["Key"], json!("t/a"));
    assert_eq!(results[0]["KV"]["Flags"], json!(5));
    assert_eq!(results[0]["KV"]["Value"], Value::Null);
    assert_eq!(results[1]["KV"]["Value"], json!("MQ=="));
    assert!(a.kv_entry("t/x").await.is_none());

    // 65 operations: 413 and nothing applied; 64 are fine.
    let ops = |n: usize| -> String {
        Value::Array(
            (0..n)
                .map(|i| json!({"KV": {"Verb": "set", "Key": format!("t/many/{i}"), "Value": "eA=="}}))
                .collect(),
        )
        .to_string()
    };
    let r = a.put("/v1/txn", ops(65)).await;
    r.expect_status(413);
    assert!(r.text().contains("65"), "{}", r.text());
    assert!(a.kv_entry("t/many/0").await.is_none());
    a.put("/v1/txn", ops(64)).await.expect_status(200);
    assert!(a.kv_entry("t/many/63").await.is_some());

    // A read-only transaction is served with ?stale too.
    let r = a
        .put(
            "/v1/txn?stale",
            json!([{"KV": {"Verb": "get-tree", "Key": "t/many/1"}}]).to_string(),
        )
        .await;
    r.expect_status(200);
    assert_eq!(r.json()["Results"].as_array().map(Vec::len), Some(11));

    // Malformed bodies and unknown verbs.
    a.put("/v1/txn", "{").await.expect_status(400);
    let r = a
        .put(
            "/v1/txn",
            json!([{"KV": {"Verb": "frob", "Key": "k"}}]).to_string(),
        )
        .await;
    r.expect_status(409);
    assert!(r.text().contains("frob"));

    // Node, service and check operations.
    let r = a
        .put(
            "/v1/txn",
            json!([
                {"Node": {"Verb": "set", "Node": {"Node": "txn-node", "Address": "10.0.0.9"}}},
                {"Service": {"Verb": "set", "Node": "txn-node", "Service": {"ID": "db1", "Service": "db", "Port": 5432}}},
                {"Check": {"Verb": "set", "Check": {"Node": "txn-node", "CheckID": "db-alive", "Name": "db alive", "Status": "passing", "ServiceID": "db1"}}},
            ])
            .to_string(),
        )
        .await;
    r.expect_status(200);
    let body = r.json();
    assert_eq!(body["Results"][0]["Node"]["Node"], json!("txn-node"));
    assert_eq!(body["Results"][1]["Service"]["Service"], json!("db"));
    assert_eq!(body["Results"][2]["Check"]["CheckID"], json!("db-alive"));
    let health = a.get("/v1/health/service/db").await.json();
    assert_eq!(health[0]["Service"]["Port"], json!(5432));
    // A check on a missing node fails the whole transaction.
    let r = a
        .put(
            "/v1/txn",
            json!([
                {"KV": {"Verb": "set", "Key": "t/never", "Value": "eA=="}},
                {"Check": {"Verb": "set", "Check": {"Node": "ghost", "CheckID": "c"}}},
            ])
            .to_string(),
        )
        .await;
    r.expect_status(409);
    assert!(a.kv_entry("t/never").await.is_none());
}

/// Runs `muster lock` with the given arguments against `a`, in `a`'s directory.
fn lock<'a>(a: &'a Agent, args: &[&str]) -> impl std::future::Future<Output = common::Output> + 'a {
    let mut full = vec!["lock".to_string()];
    full.extend(args.iter().map(|s| s.to_string()));
    async move {
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        a.cli(&refs).await
    }
}

#[tokio::test]
async fn two_lock_processes_never_overlap_and_both_run() {
    let a = Agent::dev().await;
    let log = a.dir().join("markers");
    let cmd = |id: &str| format!("echo start {id} >> markers; sleep 1; echo end {id} >> markers");
    let (c1, c2) = (cmd("one"), cmd("two"));
    let (o1, o2) = tokio::join!(
        lock(&a, &["job/leader", &c1]),
        lock(&a, &["job/leader", &c2])
    );
    o1.expect_code(0);
    o2.expect_code(0);
    let events = markers(&log);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        max_overlap(&events),
        1,
        "the commands overlapped: {events:?}"
    );
    assert_eq!(events[0].1, events[1].1, "{events:?}");
    assert_ne!(events[0].1, events[2].1, "both ran: {events:?}");
    // Released and cleaned up.
    assert!(a.kv_entry("job/leader/.lock").await.is_none());
    assert_eq!(a.get("/v1/session/list").await.json(), json!([]));

    // The child's exit code with -child-exit-code; without a shell.
    lock(&a, &["-child-exit-code", "job/x", "exit 3"])
        .await
        .expect_code(2);
    lock(&a, &["job/x", "exit 3"]).await.expect_code(0);
    let o = lock(&a, &["-shell=false", "job/x", "echo", "a   b"]).await;
    o.expect_code(0);
    assert_eq!(o.stdout, "a   b\n");
    lock(&a, &["only-a-prefix"]).await.expect_code(1);
    // stdin reaches the child only with -pass-stdin.
    let o = a
        .cli_stdin(&["lock", "-pass-stdin", "job/x", "cat"], Some(b"hello"))
        .await;
    o.expect_code(0);
    assert_eq!(o.stdout, "hello");
    let o = a.cli_stdin(&["lock", "job/x", "cat"], Some(b"hello")).await;
    o.expect_code(0);
    assert_eq!(o.stdout, "");
    // A key that is not a lock is not taken over.
    a.kv_put("notlock/.lock", "data").await;
    let o = lock(&a, &["notlock", "true"]).await;
    o.expect_code(1);
    assert!(o.stderr.contains("does not match lock use"), "{o}");
}

#[tokio::test]
async fn semaphore_of_two_never_runs_three() {
    let a = Agent::dev().await;
    let log = a.dir().join("markers");
    let cmd = |id: &str| format!("echo start {id} >> markers; sleep 2; echo end {id} >> markers");
    let (c1, c2, c3) = (cmd("a"), cmd("b"), cmd("c"));
    let (o1, o2, o3) = tokio::join!(
        lock(&a, &["-n", "2", "pool", &c1]),
        lock(&a, &["-n=2", "pool", &c2]),
        lock(&a, &["-n", "2", "pool", &c3])
    );
    for o in [&o1, &o2, &o3] {
        o.expect_code(0);
    }
    let events = markers(&log);
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        max_overlap(&events) <= 2,
        "three holders at once: {events:?}"
    );
    assert!(a.kv_entry("pool/.lock").await.is_none(), "cleaned up");
    assert_eq!(a.get("/v1/session/list").await.json(), json!([]));
    // A different limit on the same prefix is a conflict while holders exist.
    let stop = a.dir().join("stop");
    let (held, other) = tokio::join!(
        lock(
            &a,
            &[
                "-n",
                "2",
                "pool2",
                "while [ ! -f stop ]; do sleep 0.1; done"
            ]
        ),
        async {
            let _ = eventually(Duration::from_secs(20), || async {
                a.kv_entry("pool2/.lock").await.map(|_| ())
            })
            .await;
            let other = lock(&a, &["-n", "3", "pool2", "true"]).await;
            std::fs::write(&stop, b"").expect("stop file");
            other
        }
    );
    held.expect_code(0);
    other.expect_code(1);
    assert!(other.stderr.contains("limit conflict"), "{other}");
}

#[tokio::test]
async fn a_holder_killed_with_9_loses_the_lock_to_its_session_ttl() {
    let a = Agent::dev().await;
    let dir = a.dir().to_path_buf();
    let mut holder = tokio::process::Command::new(MUSTER)
        .args([
            "lock",
            &format!("-http-addr={}", a.http_addr()),
            "crash",
            "echo $$ > child.pid; sleep 600",
        ])
        .current_dir(&dir)
        .env("NO_PROXY", "127.0.0.1")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn muster lock");
    let pid_file = dir.join("child.pid");
    let child_pid = eventually(Duration::from_secs(30), || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    })
    .await
    .expect("the first holder runs its command");
    let first = a.kv_entry("crash/.lock").await.expect("held")["Session"].clone();
    holder.start_kill().expect("kill -9");
    let _ = holder.wait().await;
    // The orphaned command is the test's to stop (its own process group).
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(child_pid),
        nix::sys::signal::Signal::SIGKILL,
    );

    // Nobody renews the session: after 2×TTL the leader invalidates it, and after the
    // lock-delay another holder gets the lock.
    let second = tokio::process::Command::new(MUSTER)
        .args([
            "lock",
            &format!("-http-addr={}", a.http_addr()),
            "-timeout=120s",
            "crash",
            "echo second > second.txt",
        ])
        .current_dir(&dir)
        .env("NO_PROXY", "127.0.0.1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(150), second)
        .await
        .expect("the second holder finished")
        .expect("ran");
    assert!(
        out.status.success(),
        "second holder: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("second.txt")).unwrap_or_default(),
        "second\n"
    );
    let sessions = a.get("/v1/session/list").await.json();
    assert!(
        !sessions.to_string().contains(first.as_str().unwrap_or("?")),
        "the dead holder's session is gone: {sessions}"
    );
}

/// Starts `muster lock PREFIX COMMAND` in `a`'s directory, with its output piped.
fn spawn_lock(a: &Agent, prefix: &str, command: &str) -> tokio::process::Child {
    tokio::process::Command::new(MUSTER)
        .args([
            "lock",
            &format!("-http-addr={}", a.http_addr()),
            prefix,
            command,
        ])
        .current_dir(a.dir())
        .env("NO_PROXY", "127.0.0.1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn muster lock")
}

async fn held_by(a: &Agent, key: &str) -> Option<String> {
    eventually(Duration::from_secs(30), || async {
        a.kv_entry(key)
            .await
            .and_then(|e| e["Session"].as_str().map(str::to_string))
    })
    .await
}

/// Waits until the child has installed its signal trap (it then creates `file`).
async fn ready(a: &Agent, file: &str) {
    let path = a.dir().join(file);
    let seen = eventually(Duration::from_secs(30), || async {
        path.exists().then_some(())
    })
    .await;
    assert!(seen.is_some(), "the child never started");
}

#[tokio::test]
async fn a_lost_lock_stops_the_child_and_signals_are_forwarded() {
    let a = Agent::dev().await;
    // The lock is lost when its session is destroyed: the child is stopped, exit 1.
    let holder = spawn_lock(
        &a,
        "lost",
        "trap 'echo term > lost.txt; exit 0' TERM; touch lost.ready; while :; do sleep 0.1; done",
    );
    let session = held_by(&a, "lost/.lock").await.expect("held");
    ready(&a, "lost.ready").await;
    a.put(&format!("/v1/session/destroy/{session}"), "")
        .await
        .expect_status(200);
    let out = tokio::time::timeout(Duration::from_secs(60), holder.wait_with_output())
        .await
        .expect("muster lock exited")
        .expect("ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Lock lost, killing child"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(a.dir().join("lost.txt")).unwrap_or_default(),
        "term\n",
        "the child got SIGTERM"
    );

    // SIGTERM to `muster lock` reaches the child; then the lock is released and cleaned up.
    let holder = spawn_lock(
        &a,
        "fwd",
        "trap 'echo term > fwd.txt; exit 0' TERM; touch fwd.ready; while :; do sleep 0.1; done",
    );
    held_by(&a, "fwd/.lock").await.expect("held");
    ready(&a, "fwd.ready").await;
    let pid = holder.id().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let out = tokio::time::timeout(Duration::from_secs(60), holder.wait_with_output())
        .await
        .expect("muster lock exited")
        .expect("ran");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(a.dir().join("fwd.txt")).unwrap_or_default(),
        "term\n"
    );
    assert!(
        a.kv_entry("fwd/.lock").await.is_none(),
        "released and removed"
    );
    assert_eq!(a.get("/v1/session/list").await.json(), json!([]));
}
