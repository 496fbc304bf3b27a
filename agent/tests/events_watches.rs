//! End-to-end tests of user events (`/v1/event/fire`, `/v1/event/list` with blocking,
//! `muster event`) and watches (`muster watch` with a script handler or printing, the agent's
//! `watches` config with an `http` handler), against the real binary on loopback ports.
//!
//! Nothing here asserts on speed: every wait is bounded and polls for an outcome.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{b64, eventually, send, Agent, AgentBuilder, Resp, MUSTER};
use serde_json::Value;

/// Bound for an outcome that depends on the agent and a child process.
const SETTLE: Duration = Duration::from_secs(30);

fn id_index(id: &str) -> u64 {
    muster_api::event::id_to_index(id).unwrap_or_else(|| panic!("{id:?} is not a UUID"))
}

async fn fire(a: &Agent, path: &str, body: &str) -> Resp {
    a.put(path, body).await
}

// ---- events -----------------------------------------------------------------------------------

#[tokio::test]
async fn events_are_fired_listed_filtered_and_block() {
    let a = AgentBuilder::dev().args(["-node", "ev-node"]).start().await;

    let empty = a.get("/v1/event/list").await;
    empty.expect_status(200);
    assert_eq!(empty.json(), serde_json::json!([]));
    assert_eq!(empty.index(), 1, "an empty list answers index 1, as Consul");

    let r = fire(&a, "/v1/event/fire/deploy", "v1").await;
    r.expect_status(200);
    let fired = r.json();
    let id = fired["ID"].as_str().expect("ID").to_string();
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(b64(&fired["Payload"]).as_deref(), Some(&b"v1"[..]));
    assert_eq!(fired["Version"], 1);
    assert_eq!(fired["LTime"], 0);
    for key in ["NodeFilter", "ServiceFilter", "TagFilter"] {
        assert_eq!(fired[key], "", "{key}");
    }

    let listed = a.get("/v1/event/list").await;
    listed.expect_status(200);
    assert_eq!(listed.index(), id_index(&id));
    let list = listed.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(b64(&list[0]["Payload"]).as_deref(), Some(&b"v1"[..]));

    // A blocked list wakes on the next event and moves its index.
    let idx = listed.index();
    let client = a.client();
    let url = format!("{}/v1/event/list?index={idx}&wait=20s", a.base_url());
    let blocked = tokio::spawn(async move {
        send(&client, "GET", &url, None, Duration::from_secs(60))
            .await
            .expect("blocking list")
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = fire(&a, "/v1/event/fire/restart?node=^ev-", "").await;
    second.expect_status(200);
    let second_id = second.json()["ID"].as_str().expect("ID").to_string();
    assert_eq!(second.json()["NodeFilter"], "^ev-");
    let woken = blocked.await.expect("join");
    woken.expect_status(200);
    assert_eq!(woken.index(), id_index(&second_id));
    assert_eq!(woken.json().as_array().map(Vec::len), Some(2));
    assert_eq!(woken.json()[1]["Payload"], Value::Null);

    // Name filter: only deploy's, with deploy's index.
    let named = a.get("/v1/event/list?name=deploy").await;
    assert_eq!(named.index(), id_index(&id));
    assert_eq!(named.json().as_array().map(Vec::len), Some(1));

    // Filters that do not match this node or its services: accepted, not kept here.
    fire(&a, "/v1/event/fire/skip?node=^other$", "")
        .await
        .expect_status(200);
    fire(&a, "/v1/event/fire/skip?service=^web$", "")
        .await
        .expect_status(200);
    let svc = serde_json::json!({"Name": "web", "Port": 80, "Tags": ["blue"]});
    a.put("/v1/agent/service/register", svc.to_string())
        .await
        .expect_status(200);
    fire(&a, "/v1/event/fire/keep?service=^web$&tag=^bl", "")
        .await
        .expect_status(200);
    fire(&a, "/v1/event/fire/skip?service=^web$&tag=^green", "")
        .await
        .expect_status(200);
    let names: Vec<String> = a
        .get("/v1/event/list")
        .await
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["deploy", "restart", "keep"]);

    // Bad input: a clear status and message, nothing stored.
    let r = fire(&a, "/v1/event/fire/x?tag=v1", "").await;
    r.expect_status(400);
    assert!(r
        .text()
        .contains("Cannot provide tag filter without service filter"));
    let r = fire(&a, "/v1/event/fire/x?node=(", "").await;
    r.expect_status(400);
    assert!(
        r.text().starts_with("Invalid node filter: "),
        "{}",
        r.text()
    );
    fire(&a, "/v1/event/fire/", "").await.expect_status(400);
    let r = fire(&a, "/v1/event/fire/big", &"x".repeat(1000)).await;
    r.expect_status(413);
    assert!(r.text().contains("exceeds"), "{}", r.text());
    a.get("/v1/event/list?index=abc").await.expect_status(400);
    a.request("GET", "/v1/event/fire/x", None)
        .await
        .expect_status(405);
    assert_eq!(
        a.get("/v1/event/list")
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn muster_event_fires_and_prints_the_id() {
    let a = Agent::dev().await;
    let out = a.cli(&["event", "-name", "deploy", "build-42"]).await;
    out.expect_code(0);
    let id = out
        .stdout
        .strip_prefix("Event ID: ")
        .map(str::trim)
        .unwrap_or_else(|| panic!("unexpected output\n{out}"))
        .to_string();
    let list = a.get("/v1/event/list?name=deploy").await.json();
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(b64(&list[0]["Payload"]).as_deref(), Some(&b"build-42"[..]));

    let out = a
        .cli(&["event", "-name", "x", "-service", "web", "-tag", "v1"])
        .await;
    out.expect_code(0);
    let out = a.cli(&["event", "-name", "x", "-tag", "v1"]).await;
    out.expect_code(1);
    assert_eq!(
        out.stderr, "Cannot provide tag filter without service filter.\n",
        "{out}"
    );
    let out = a.cli(&["event"]).await;
    out.expect_code(1);
    assert!(
        out.stderr.starts_with("Event name must be specified"),
        "{out}"
    );
}

// ---- watches ----------------------------------------------------------------------------------

/// A background `muster watch`, stopped with SIGTERM (or killed) when dropped.
struct Watch {
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Watch {
    fn start(a: &Agent, args: &[&str], dir: &Path) -> Watch {
        let stdout = dir.join("watch.stdout");
        let stderr = dir.join("watch.stderr");
        let mut cmd = tokio::process::Command::new(MUSTER);
        cmd.arg("watch")
            .arg(format!("-http-addr={}", a.http_addr()))
            .args(args)
            .env_remove("CONSUL_HTTP_ADDR")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn muster watch");
        Watch {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- watch stdout ---\n{}\n--- watch stderr ---\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// The JSON documents printed so far.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let exited = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        match exited {
            Ok(Ok(status)) => assert!(status.success(), "watch exited {status}\n{}", self.output()),
            _ => {
                let _ = self.child.kill().await;
                panic!("muster watch did not stop on SIGTERM\n{}", self.output());
            }
        }
    }
}

/// One handler run as the test's script records it: the JSON it read and its CONSUL_INDEX.
#[derive(Debug, Clone)]
struct Run {
    data: Value,
    index: u64,
}

fn runs(file: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .filter_map(|c| {
            Some(Run {
                data: serde_json::from_str(c[0]).ok()?,
                index: c[1].strip_prefix("INDEX=")?.parse().ok()?,
            })
        })
        .collect()
}

/// The keys and decoded values of a keyprefix result (`null` is empty).
fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    (
                        p["Key"].as_str().unwrap_or_default().to_string(),
                        String::from_utf8_lossy(&b64(&p["Value"]).unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn watch_keyprefix_runs_the_handler_for_every_change() {
    let a = Agent::dev().await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("runs");
    let script = format!(
        "cat >> {0}; echo \"INDEX=$CONSUL_INDEX\" >> {0}",
        out.display()
    );
    let w = Watch::start(
        &a,
        &["-type", "keyprefix", "-prefix", "app/", &script],
        dir.path(),
    );

    let wait_runs = |n: usize| {
        let out = out.clone();
        async move {
            eventually(SETTLE, || {
                let r = runs(&out);
                async move { (r.len() >= n).then_some(r) }
            })
            .await
        }
    };
    // The first run sees the empty prefix.
    let Some(r) = wait_runs(1).await else {
        panic!("no first handler run\n{}", w.output());
    };
    assert_eq!(
        r[0].data,
        Value::Null,
        "an empty prefix is null, as Consul's"
    );

    let mut expected: Vec<Vec<(String, String)>> = vec![vec![]];
    let steps: Vec<(&str, Option<&str>)> = vec![
        ("app/a", Some("1")),
        ("app/b", Some("2")),
        ("app/a", Some("3")),
        ("app/b", None),
    ];
    let mut current: Vec<(String, String)> = Vec::new();
    for (key, value) in steps {
        match value {
            Some(v) => {
                a.kv_put(key, v).await;
                current.retain(|(k, _)| k != key);
                current.push((key.to_string(), v.to_string()));
                current.sort();
            }
            None => {
                a.delete(&format!("/v1/kv/{key}")).await.expect_status(200);
                current.retain(|(k, _)| k != key);
            }
        }
        let index = a.get("/v1/kv/app/?recurse").await.index();
        expected.push(current.clone());
        let n = expected.len();
        let Some(r) = wait_runs(n).await else {
            panic!("no handler run for {key}\n{}", w.output());
        };
        let last = &r[n - 1];
        assert_eq!(pairs(&last.data), current, "run {n}\n{}", w.output());
        assert_eq!(last.index, index, "CONSUL_INDEX of run {n}");
        // A write outside the prefix changes nothing the watch sees.
        a.kv_put("other/x", key).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = runs(&out);
    assert_eq!(
        all.len(),
        expected.len(),
        "one run per change\n{}",
        w.output()
    );
    for (run, want) in all.iter().zip(&expected) {
        assert_eq!(&pairs(&run.data), want);
    }
    w.stop().await;
}

#[tokio::test]
async fn watch_service_passingonly_follows_a_ttl_check() {
    let a = Agent::dev().await;
    let svc = serde_json::json!({"Name": "web", "ID": "web1", "Port": 80,
                                 "Check": {"TTL": "60s"}});
    a.put("/v1/agent/service/register", svc.to_string())
        .await
        .expect_status(200);
    a.put("/v1/agent/check/pass/service:web1", "")
        .await
        .expect_status(200);
    let passing_ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|l| {
                l.iter()
                    .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Without a command, `muster watch` prints the current value once and exits (Consul's
    // behaviour): each state is read by a fresh run.
    let args = ["-type", "service", "-service", "web", "-passingonly=true"];
    let shows = |want: Vec<&'static str>| {
        let a = &a;
        async move {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            eventually(SETTLE, || {
                let want = want.clone();
                async move {
                    let printed = watch_once(a, &args).await;
                    (passing_ids(&printed) == want).then_some(())
                }
            })
            .await
        }
    };
    if shows(vec!["web1"]).await.is_none() {
        panic!("the watch never printed web1 passing");
    }
    a.put("/v1/agent/check/fail/service:web1", "")
        .await
        .expect_status(200);
    if shows(vec![]).await.is_none() {
        panic!("the watch never printed web1 dropping out");
    }
    a.put("/v1/agent/check/pass/service:web1", "")
        .await
        .expect_status(200);
    if shows(vec!["web1"]).await.is_none() {
        panic!("the watch never printed web1 back");
    }
}

/// `muster watch ARGS` without a command: it must exit 0 by itself (bounded here) after
/// printing one indented JSON value, which is returned.
async fn watch_once(a: &Agent, args: &[&str]) -> Value {
    let run = tokio::process::Command::new(MUSTER)
        .arg("watch")
        .arg(format!("-http-addr={}", a.http_addr()))
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("spawn muster watch: {e}"),
        Err(_) => panic!("muster watch {args:?} without a command did not exit by itself"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "muster watch exited {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect();
    assert_eq!(values.len(), 1, "one JSON value printed: {stdout}");
    values.into_iter().next().unwrap_or_default()
}

// ---- agent watches with an http handler ---------------------------------------------------------

/// What the test's HTTP server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    index: String,
    content_type: String,
    custom: String,
    body: Value,
}

/// A loopback HTTP server recording every request; answers 200 (or 500 for `/fail`).
async fn hook_server() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let (index, content_type, custom) = (
                            header("x-consul-index"),
                            header("content-type"),
                            header("x-test"),
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = if path == "/fail" { 500 } else { 200 };
                        log.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
                            method,
                            path,
                            index,
                            content_type,
                            custom,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        });
                        hyper::Response::builder()
                            .status(status)
                            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen)
}

fn watches_config(port: u16, path: &str, events_file: &Path) -> String {
    serde_json::json!({"watches": [
        {"type": "key", "key": "cfg/color", "handler_type": "http",
         "http_handler_config": {"path": format!("http://127.0.0.1:{port}{path}"),
                                 "method": "POST", "header": {"X-Test": ["yes"]},
                                 "timeout": "5s"}},
        // The older `handler` string, run by sh -c.
        {"type": "event", "name": "ping",
         "handler": format!("cat >> {}", events_file.display())}
    ]})
    .to_string()
}

#[tokio::test]
async fn agent_watches_post_changes_to_an_http_handler_and_follow_reload() {
    let (port, seen) = hook_server().await;
    let scratch = tempfile::tempdir().expect("tmp");
    let events_file = scratch.path().join("events");
    let a = AgentBuilder::dev()
        .config_file("watches.json", &watches_config(port, "/hook", &events_file))
        .start()
        .await;
    let seen_where = |path: &'static str, n: usize| {
        let seen = seen.clone();
        async move {
            eventually(SETTLE, || {
                let got: Vec<Seen> = seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|s| s.path == path)
                    .cloned()
                    .collect();
                async move { (got.len() >= n).then_some(got) }
            })
            .await
        }
    };
    // The first POST: the key does not exist yet.
    let Some(first) = seen_where("/hook", 1).await else {
        panic!("no POST for the initial state")
    };
    assert_eq!(first[0].method, "POST");
    assert_eq!(first[0].body, Value::Null);
    assert_eq!(first[0].custom, "yes");
    assert_eq!(first[0].content_type, "application/json");

    a.kv_put("cfg/color", "blue").await;
    let index = a.get("/v1/kv/cfg/color").await.index();
    let Some(got) = seen_where("/hook", 2).await else {
        panic!("no POST after the write")
    };
    assert_eq!(got[1].body["Key"], "cfg/color");
    assert_eq!(b64(&got[1].body["Value"]).as_deref(), Some(&b"blue"[..]));
    assert_eq!(got[1].index, index.to_string());

    // Reload with the handler moved to /fail: failures are logged and retried on the next
    // change; the agent goes on.
    std::fs::write(
        a.dir().join("watches.json"),
        watches_config(port, "/fail", &events_file),
    )
    .expect("rewrite config");
    a.cli(&["reload"]).await.expect_code(0);
    let Some(_) = seen_where("/fail", 1).await else {
        panic!("the reloaded watch never called /fail")
    };
    a.kv_put("cfg/color", "green").await;
    let Some(failed) = seen_where("/fail", 2).await else {
        panic!("a failed handler was not run again on the next change")
    };
    assert_eq!(
        b64(&failed[1].body["Value"]).as_deref(),
        Some(&b"green"[..])
    );
    // Had the old watch survived the reload, "green" would have reached /hook by now too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hook_posts = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|s| s.path == "/hook")
        .count();
    assert_eq!(hook_posts, 2, "the old watch stopped at the reload");
    a.get("/v1/status/leader").await.expect_status(200);

    // The event watch (unchanged by the reload, so still running): each `ping` reaches the
    // script as the list of new events.
    let id = fire(&a, "/v1/event/fire/ping", "p1").await.json()["ID"]
        .as_str()
        .expect("ID")
        .to_string();
    let seen_event = eventually(SETTLE, || {
        let text = std::fs::read_to_string(&events_file).unwrap_or_default();
        let id = id.clone();
        async move {
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v.as_array().cloned())
                .flatten()
                .find(|e| e["ID"] == id.as_str())
        }
    })
    .await;
    let Some(event) = seen_event else {
        panic!("the event watch's handler never saw {id}")
    };
    assert_eq!(b64(&event["Payload"]).as_deref(), Some(&b"p1"[..]));
}

#[tokio::test]
async fn a_bad_watches_entry_stops_the_agent_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("w.json");
    std::fs::write(
        &file,
        r#"{"watches": [{"type": "key", "key": "k", "handler_type": "http",
                         "http_handler_config": {"method": "POST"}}]}"#,
    )
    .expect("write");
    let out = common::run_muster(
        &[
            "agent".to_string(),
            "-dev".to_string(),
            format!("-config-file={}", file.display()),
        ],
        None,
        Duration::from_secs(30),
    )
    .await;
    out.expect_code(1);
    assert!(
        out.stderr
            .contains("watches[0].http_handler_config.path: Requires 'path' to be set"),
        "{out}"
    );
}
