//! The walkthrough of `examples/order-invoice-tax/` run end to end against the real `muster`:
//! the agent loads the example's `consul.d/` (ports rewritten to free ones, check interval
//! shortened), the three Python services find each other only through
//! `/v1/health/service/<name>?passing`, a stopped instance is failed over and then dropped from
//! the passing answer, and `apache.json` registered over HTTP becomes passing only once a web
//! server answers on its port.
//!
//! Needs `python3` on PATH (standard library only). Every wait is bounded; on a failure the
//! harness prints the agent's output and each Python process's log is printed too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, http_client, send, Agent, AgentBuilder, Resp};
use serde_json::{json, Value};

/// Upper bound of every wait for something to become (or stop being) passing.
const WAIT: Duration = Duration::from_secs(30);
/// The check interval the test gives every check instead of the example's 10s.
const INTERVAL: &str = "1s";
/// How long apache must stay out of `?passing` while nothing listens on its port (several
/// check intervals).
const NOT_PASSING_FOR: Duration = Duration::from_secs(3);
/// The walkthrough's ports, which the example's files must use.
const WALKTHROUGH: [(&str, u16); 3] = [("order", 15000), ("invoice", 15001), ("tax", 15002)];

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/order-invoice-tax")
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Child processes (the Python services and the web server)
// ---------------------------------------------------------------------------------------------

/// A child process killed (SIGKILL) and reaped on drop, panics included; it also dies with the
/// test process (PR_SET_PDEATHSIG). Its stdout and stderr go to a log file printed on failure.
struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, args: &[String], envs: &[(&str, String)], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create a process log");
        let err = out.try_clone().expect("clone the log file");
        let mut cmd = Command::new("python3");
        cmd.args(args)
            .current_dir(dir)
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("PORT")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        common::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 {args:?} ({name}): {e}"));
        Proc {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// One of the example's services on `port`, finding the others through the agent.
    fn service(service: &str, name: &str, port: u16, agent: &Agent, dir: &Path) -> Proc {
        let script = example_dir().join("service.py");
        let args = [
            "-u".to_string(),
            script.display().to_string(),
            "--service".into(),
            service.into(),
            "--port".into(),
            port.to_string(),
        ];
        Proc::spawn(name, &args, &[("CONSUL_HTTP_ADDR", agent.http_addr())], dir)
    }

    /// Kills and reaps the process (no-op when already stopped).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Panics with the log when the process has exited by itself.
    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} exited early ({status}); its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({}) -----\n{}",
                self.name,
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Asking the agent and the services
// ---------------------------------------------------------------------------------------------

/// `GET path` on the agent; must answer 200 with a JSON array.
async fn entries(a: &Agent, path: &str) -> Vec<Value> {
    let r = a.get(path).await;
    r.expect_status(200);
    match r.json() {
        Value::Array(list) => list,
        other => panic!("GET {path} did not answer a JSON array: {other}"),
    }
}

/// The service IDs in `/v1/health/service/NAME?passing`, sorted.
async fn passing_ids(a: &Agent, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = entries(a, &format!("/v1/health/service/{name}?passing"))
        .await
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Polls until the passing instances of `name` are exactly `want`; fails after [`WAIT`] with
/// the last passing answer and the unfiltered one (which shows each check's status and output).
async fn wait_passing(a: &Agent, name: &str, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ids = passing_ids(a, name).await;
        if ids == want {
            return;
        }
        if Instant::now() >= deadline {
            let all = a.get(&format!("/v1/health/service/{name}")).await.text();
            panic!(
                "/v1/health/service/{name}?passing still lists {ids:?} after {WAIT:?}, \
                 want {want:?}; /v1/health/service/{name} answers {all}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET http://127.0.0.1:PORT/PATH` on one of the Python services.
async fn call(client: &reqwest::Client, port: u16, path: &str) -> Resp {
    let url = format!("http://127.0.0.1:{port}{path}");
    send(client, "GET", &url, None, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The example's `consul.d/` with each service on its free port and checks every [`INTERVAL`],
/// written to `dir`. Checks on the way that the example's files are what the README says.
fn rewrite_config_dir(dir: &Path, ports: &[(&str, u16)]) {
    std::fs::create_dir_all(dir).expect("mkdir consul.d");
    for ((name, walkthrough_port), (_, port)) in WALKTHROUGH.iter().zip(ports) {
        let src = example_dir().join("consul.d").join(format!("{name}.json"));
        let mut doc = read_json(&src);
        let svc = &mut doc["service"];
        assert_eq!(svc["name"], json!(name), "{}", src.display());
        assert_eq!(svc["tags"], json!([name]), "{}", src.display());
        assert_eq!(svc["port"], json!(walkthrough_port), "{}", src.display());
        assert_eq!(
            svc["check"]["http"],
            json!(format!("http://127.0.0.1:{walkthrough_port}/health")),
            "{}",
            src.display()
        );
        assert_eq!(svc["check"]["interval"], json!("10s"), "{}", src.display());
        svc["port"] = json!(port);
        svc["check"]["http"] = json!(format!("http://127.0.0.1:{port}/health"));
        svc["check"]["interval"] = json!(INTERVAL);
        let text = serde_json::to_string_pretty(&doc).expect("serialise");
        std::fs::write(dir.join(format!("{name}.json")), text).expect("write a service file");
    }
}

/// One of the example's registration payloads (`apache.json`, `tax-2.json`) on `port`, with
/// its check against that port every [`INTERVAL`].
fn registration(file: &str, port: u16, check_path: &str) -> Value {
    let mut doc = read_json(&example_dir().join(file));
    doc["Port"] = json!(port);
    doc["Check"]["HTTP"] = json!(format!("http://127.0.0.1:{port}{check_path}"));
    doc["Check"]["Interval"] = json!(INTERVAL);
    doc
}

// ---------------------------------------------------------------------------------------------
// The walkthrough
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn order_invoice_tax_walkthrough() {
    let tmp = tempfile::Builder::new()
        .prefix("muster-walkthrough-")
        .tempdir()
        .expect("create a temp dir");
    let p = free_ports(5);
    let (order_port, invoice_port, tax_port, tax2_port, apache_port) =
        (p[0], p[1], p[2], p[3], p[4]);
    let ports = [
        ("order", order_port),
        ("invoice", invoice_port),
        ("tax", tax_port),
    ];
    let config_dir = tmp.path().join("consul.d");
    rewrite_config_dir(&config_dir, &ports);

    // The README's agent command, on free ports.
    let a = AgentBuilder::dev()
        .args([
            "-ui",
            "-datacenter",
            "zone1",
            "-node",
            "host1",
            "-config-dir",
        ])
        .args([config_dir.display().to_string()])
        .start()
        .await;
    let client = http_client();

    // The catalog knows the three services (with their tags) before any of them runs — once
    // the agent's first anti-entropy sync, which follows the leader's election, has run.
    let synced = common::eventually(Duration::from_secs(30), || async {
        let r = a.get("/v1/catalog/services").await;
        let c = r.json();
        (r.status == 200 && ports.iter().all(|(name, _)| !c[name].is_null())).then_some(c)
    })
    .await;
    let catalog = match synced {
        Some(c) => c,
        None => a.get("/v1/catalog/services").await.json(),
    };
    for (name, _) in ports {
        assert_eq!(
            catalog[name],
            json!([name]),
            "/v1/catalog/services lists {name} with its tag: {catalog}"
        );
    }
    // Nothing answers their checks yet (Consul's checks start critical).
    for (name, _) in ports {
        assert_eq!(
            passing_ids(&a, name).await,
            Vec::<String>::new(),
            "{name} is passing before it runs"
        );
    }

    // Start the services; each becomes passing once its /health answers.
    let mut procs = Vec::new();
    for (name, port) in ports {
        procs.push(Proc::service(name, name, port, &a, tmp.path()));
    }
    for (name, _) in ports {
        wait_passing(&a, name, &[name]).await;
    }
    for proc in &mut procs {
        proc.assert_running();
    }
    let entry = entries(&a, "/v1/health/service/invoice?passing").await[0].clone();
    assert_eq!(entry["Node"]["Node"], json!("host1"), "-node: {entry}");
    assert_eq!(
        entry["Node"]["Datacenter"],
        json!("zone1"),
        "-datacenter: {entry}"
    );
    assert_eq!(entry["Service"]["Service"], json!("invoice"), "{entry}");
    assert_eq!(entry["Service"]["Port"], json!(invoice_port), "{entry}");

    // order -> invoice -> tax: the services only learnt each other's ports from the agent.
    let r = call(&client, order_port, "/order?amount=100").await;
    r.expect_status(200);
    let o = r.json();
    assert_eq!(o["service"], json!("order"), "{o}");
    assert_eq!(
        o["instance"],
        json!(format!("127.0.0.1:{order_port}")),
        "{o}"
    );
    let inv = &o["invoice"];
    assert_eq!(inv["service"], json!("invoice"), "{o}");
    assert_eq!(
        inv["instance"],
        json!(format!("127.0.0.1:{invoice_port}")),
        "{o}"
    );
    assert_eq!(inv["tax"]["service"], json!("tax"), "{o}");
    assert_eq!(
        inv["tax"]["instance"],
        json!(format!("127.0.0.1:{tax_port}")),
        "{o}"
    );
    assert_eq!(inv["tax"]["tax"], json!(20.0), "{o}");
    assert_eq!(inv["total"], json!(120.0), "{o}");

    // A second tax instance, registered over HTTP as the README's tax-2.json does.
    let mut tax2 = Proc::service("tax", "tax-2", tax2_port, &a, tmp.path());
    let body = registration("tax-2.json", tax2_port, "/health");
    a.put("/v1/agent/service/register", body.to_string())
        .await
        .expect_status(200);
    wait_passing(&a, "tax", &["tax", "tax-2"]).await;

    // Stop the first tax: invoice fails over to tax-2 at once, even while the agent still
    // lists the dead instance as passing...
    procs[2].stop();
    for _ in 0..5 {
        let r = call(&client, order_port, "/order?amount=10").await;
        r.expect_status(200);
        let o = r.json();
        assert_eq!(
            o["invoice"]["tax"]["instance"],
            json!(format!("127.0.0.1:{tax2_port}")),
            "{o}"
        );
        assert_eq!(o["invoice"]["total"], json!(12.0), "{o}");
    }
    // ... and the health endpoint drops it once its check fails; the catalog keeps it, critical.
    wait_passing(&a, "tax", &["tax-2"]).await;
    let all = entries(&a, "/v1/health/service/tax").await;
    let dead = all
        .iter()
        .find(|e| e["Service"]["ID"] == json!("tax"))
        .unwrap_or_else(|| panic!("/v1/health/service/tax lost the stopped instance: {all:?}"));
    let statuses: Vec<&Value> = dead["Checks"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["Status"]).collect())
        .unwrap_or_default();
    assert!(
        statuses.contains(&&json!("critical")),
        "the stopped tax has a critical check: {dead}"
    );

    // With no tax left, order answers an error that says what failed.
    tax2.stop();
    let r = call(&client, order_port, "/order?amount=10").await;
    assert_eq!(r.status, 502, "order without any tax: {}", r.text());
    assert!(
        r.text().contains("tax"),
        "the error names tax: {}",
        r.text()
    );

    // apache: registered over HTTP with a check against a port where nothing listens.
    let body = registration("apache.json", apache_port, "/");
    a.put("/v1/agent/service/register", body.to_string())
        .await
        .expect_status(200);
    let listed = common::eventually(WAIT, || async {
        let all = entries(&a, "/v1/health/service/apache").await;
        (all.len() == 1).then_some(all)
    })
    .await
    .unwrap_or_else(|| panic!("apache never appeared in /v1/health/service/apache"));
    assert_eq!(
        listed[0]["Service"]["Port"],
        json!(apache_port),
        "{listed:?}"
    );
    let r = a.get("/v1/catalog/services").await;
    r.expect_status(200);
    assert!(
        r.json().get("apache").is_some(),
        "/v1/catalog/services lists apache: {}",
        r.text()
    );
    // It is registered but not discoverable: it stays out of ?passing for several intervals.
    let until = Instant::now() + NOT_PASSING_FOR;
    while Instant::now() < until {
        assert_eq!(
            passing_ids(&a, "apache").await,
            Vec::<String>::new(),
            "apache is passing while nothing listens on {apache_port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A web server on its port makes it passing.
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).expect("mkdir www");
    let mut web = Proc::spawn(
        "http.server",
        &[
            "-m".into(),
            "http.server".into(),
            apache_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--directory".into(),
            www.display().to_string(),
        ],
        &[],
        tmp.path(),
    );
    wait_passing(&a, "apache", &["apache"]).await;
    web.assert_running();
    let e = entries(&a, "/v1/health/service/apache?passing").await[0].clone();
    assert_eq!(e["Service"]["Port"], json!(apache_port), "{e}");
    assert_eq!(e["Service"]["Tags"], json!(["web"]), "{e}");
}
