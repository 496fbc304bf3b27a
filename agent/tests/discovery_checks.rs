//! End-to-end tests of each health-check kind the agent runs, against real local servers
//! started by the test: HTTP (a server that flips between 200, 429 and 500; method, headers
//! and body as configured), TCP (a port that listens, then closes), script (exit codes, and a
//! script that hangs past its timeout and must die with its whole process group), TTL expiry,
//! Consul's success/failure thresholds, `deregister_critical_service_after`, and alias checks.
//! Each status is read from the agent (`/v1/agent/checks`) and from the catalog, where
//! anti-entropy must copy it.
//!
//! Checks run every second; every wait is a bounded poll, never a timed assertion.

mod common;
mod discovery_common;

use std::time::{Duration, Instant};

use common::{Agent, AgentBuilder};
use discovery_common::*;
use serde_json::{json, Value};

// ---- HTTP --------------------------------------------------------------------------------

#[tokio::test]
async fn http_check_follows_the_servers_answer_and_sends_what_is_configured() {
    let server = TestHttp::start(200).await;
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    let url = server.url("/health?probe=1");
    register_service(
        &a,
        json!({
            "ID": "web1", "Name": "web", "Port": server.addr.port(),
            "Check": {
                "HTTP": url, "Interval": "1s", "Timeout": "5s", "Method": "POST",
                "Header": {"X-Muster-Probe": ["yes"], "Authorization": ["Bearer t0ken"],
                           "Host": ["svc.example.test"]},
                "Body": "ping"
            }
        }),
    )
    .await;

    let c = wait_agent_check(&a, "service:web1", "passing").await;
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(
        out.contains("HTTP POST") && out.contains("200"),
        "Consul's output names the request and the status: {out:?}"
    );
    assert_eq!(c["Type"], "http", "{c}");
    wait_catalog_check(&a, &node, "service:web1", "passing").await;

    let seen = server.requests();
    let first = seen.first().expect("the check reached the server");
    assert_eq!(first.method, "POST", "{first:?}");
    assert_eq!(first.path, "/health?probe=1", "{first:?}");
    assert_eq!(first.body, "ping", "{first:?}");
    let header = |name: &str| {
        first
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("x-muster-probe").as_deref(),
        Some("yes"),
        "{first:?}"
    );
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer t0ken"),
        "{first:?}"
    );
    assert_eq!(
        header("host").as_deref(),
        Some("svc.example.test"),
        "a Host header sets the request's host: {first:?}"
    );

    // 429: warning.
    server.set(429);
    let c = wait_agent_check(&a, "service:web1", "warning").await;
    assert!(
        c["Output"].as_str().unwrap_or_default().contains("429"),
        "{c}"
    );
    wait_catalog_check(&a, &node, "service:web1", "warning").await;
    let r = a.get("/v1/agent/health/service/id/web1?format=text").await;
    assert_eq!((r.status, r.text().trim()), (429, "warning"));

    // 500: critical, and out of ?passing.
    server.set(500);
    wait_agent_check(&a, "service:web1", "critical").await;
    let c = wait_catalog_check(&a, &node, "service:web1", "critical").await;
    assert!(
        c["Output"].as_str().unwrap_or_default().contains("500"),
        "the catalog has the output too: {c}"
    );
    let healthy = get_json(&a, "/v1/health/service/web?passing").await;
    assert_eq!(healthy, json!([]));

    // 200 again: passing.
    server.set(200);
    wait_agent_check(&a, "service:web1", "passing").await;
    wait_catalog_check(&a, &node, "service:web1", "passing").await;
    let healthy = get_json(&a, "/v1/health/service/web?passing").await;
    assert_eq!(healthy.as_array().map(Vec::len), Some(1), "{healthy}");
}

#[tokio::test]
async fn http_check_against_a_closed_port_is_critical() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let a = Agent::dev().await;
    register_check(
        &a,
        json!({"ID": "dead", "Name": "dead", "HTTP": format!("http://127.0.0.1:{port}/"),
               "Interval": "1s", "Status": "passing"}),
    )
    .await;
    let c = wait_agent_check(&a, "dead", "critical").await;
    assert!(
        !c["Output"].as_str().unwrap_or_default().is_empty(),
        "the output says why: {c}"
    );
}

#[tokio::test]
async fn http_check_that_outlives_its_timeout_is_critical() {
    let server = TestHttp::start(200).await;
    let a = Agent::dev().await;
    register_check(
        &a,
        json!({"ID": "slow", "Name": "slow", "HTTP": server.url("/"), "Interval": "1s",
               "Timeout": "300ms"}),
    )
    .await;
    wait_agent_check(&a, "slow", "passing").await;
    let seen = server.requests();
    assert_eq!(seen[0].method, "GET", "the default method: {:?}", seen[0]);

    server.set_delay(Duration::from_secs(3));
    let c = wait_agent_check(&a, "slow", "critical").await;
    assert!(
        !c["Output"].as_str().unwrap_or_default().is_empty(),
        "the output says why: {c}"
    );
    server.set_delay(Duration::ZERO);
    wait_agent_check(&a, "slow", "passing").await;
}

/// Consul's thresholds: after the first result (reported at once, as Consul's `StatusHandler`
/// starts its counters at the thresholds), the status changes only after
/// `failures_before_critical` consecutive failures and `success_before_passing` consecutive
/// successes. Observed by recording how many answers the server had given when the status
/// changed, never by timing.
#[tokio::test]
async fn http_check_thresholds_hold_the_status_until_reached() {
    let server = TestHttp::start(200).await;
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({
            "ID": "th1", "Name": "th",
            "Check": {"HTTP": server.url("/"), "Interval": "1s",
                      "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}
        }),
    )
    .await;
    wait_agent_check(&a, "service:th1", "passing").await;
    wait_catalog_check(&a, &node, "service:th1", "passing").await;

    let served = |code: u16| {
        server
            .requests()
            .iter()
            .filter(|s| s.served == code)
            .count()
    };
    // Waits for `status`, recording every status seen with the number of `code` answers
    // given since `base` (read before the status, so it can only be an underestimate).
    let until = |status: &'static str, code: u16, base: usize| {
        let a = &a;
        let served = &served;
        async move {
            let seen = std::cell::RefCell::new(Vec::new());
            let at = wait_for(&format!("the check to be {status}"), SETTLE, || {
                let n = served(code) - base;
                let seen = &seen;
                async move {
                    let checks = agent_checks(a).await;
                    let now = checks["service:th1"]["Status"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    seen.borrow_mut().push((n, now.clone()));
                    if now == status {
                        Ok(n)
                    } else {
                        Err(format!("{now} after {n} answers {code}"))
                    }
                }
            })
            .await;
            (at, seen.into_inner())
        }
    };

    server.set(500);
    let (fails, seen) = until("critical", 500, 0).await;
    assert!(
        fails >= 2,
        "failures_before_critical = 2: critical after only {fails} failure(s)"
    );
    assert!(
        seen.iter().all(|(_, s)| s != "warning"),
        "failures_before_warning defaults to failures_before_critical: no warning on the way \
         ({seen:?})"
    );
    wait_catalog_check(&a, &node, "service:th1", "critical").await;

    let base = served(200);
    server.set(200);
    let (oks, seen) = until("passing", 200, base).await;
    assert!(
        oks >= 2,
        "success_before_passing = 2: passing after only {oks} success(es) ({seen:?})"
    );
    wait_catalog_check(&a, &node, "service:th1", "passing").await;
}

// ---- TCP ---------------------------------------------------------------------------------

#[tokio::test]
async fn tcp_check_passes_while_the_port_listens_and_fails_once_it_closes() {
    let mut port = TestTcp::start().await;
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "cache1", "Name": "cache", "Port": port.addr.port(),
               "Check": {"TCP": port.addr.to_string(), "Interval": "1s", "Timeout": "2s"}}),
    )
    .await;
    let c = wait_agent_check(&a, "service:cache1", "passing").await;
    assert_eq!(c["Type"], "tcp", "{c}");
    wait_catalog_check(&a, &node, "service:cache1", "passing").await;

    port.close().await;
    let c = wait_agent_check(&a, "service:cache1", "critical").await;
    assert!(
        !c["Output"].as_str().unwrap_or_default().is_empty(),
        "the output says why: {c}"
    );
    wait_catalog_check(&a, &node, "service:cache1", "critical").await;
}

// ---- script ------------------------------------------------------------------------------

#[tokio::test]
async fn script_checks_map_exit_codes_to_statuses() {
    let a = AgentBuilder::dev()
        .args(["-enable-script-checks"])
        .start()
        .await;
    let node = node_name(&a).await;
    for (id, code) in [("s0", 0), ("s1", 1), ("s2", 2), ("s7", 7)] {
        register_check(
            &a,
            json!({"ID": id, "Name": id, "Interval": "1s",
                   "Args": ["sh", "-c", format!("echo out-{id}; echo err-{id} >&2; exit {code}")]}),
        )
        .await;
    }
    for (id, status) in [
        ("s0", "passing"),
        ("s1", "warning"),
        ("s2", "critical"),
        ("s7", "critical"),
    ] {
        // Checks start critical: wait for a run's result (its output), then its status.
        let c = wait_for(&format!("{id}'s first run"), SETTLE, || async {
            let checks = agent_checks(&a).await;
            let c = checks[id].clone();
            let out = c["Output"].as_str().unwrap_or_default();
            if out.contains(&format!("out-{id}")) {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        })
        .await;
        let out = c["Output"].as_str().unwrap_or_default();
        assert_eq!(c["Status"], status, "{id}: exit code → status: {c}");
        assert!(
            out.contains(&format!("err-{id}")),
            "{id}: stdout and stderr are the output: {out:?}"
        );
        assert_eq!(c["Type"], "script", "{c}");
        wait_catalog_check(&a, &node, id, status).await;
    }
    // A program that does not exist is critical with a message.
    register_check(
        &a,
        json!({"ID": "missing", "Name": "missing", "Interval": "1s",
               "Args": ["/no/such/program-muster-test"]}),
    )
    .await;
    // It starts critical; wait for the run's output.
    wait_for("the missing program's run to report", SETTLE, || async {
        let checks = agent_checks(&a).await;
        let c = &checks["missing"];
        let out = c["Output"].as_str().unwrap_or_default();
        if c["Status"] == "critical" && out.contains("program-muster-test") {
            Ok(())
        } else {
            Err(c.to_string())
        }
    })
    .await;
}

#[tokio::test]
async fn a_script_that_hangs_past_its_timeout_is_critical_and_its_process_group_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    // The first run starts a background grandchild (same process group) and records both
    // pids; every run then hangs far past the timeout.
    let script = format!(
        "#!/bin/sh\n\
         echo \"$$\" >> {d}/pids\n\
         if [ ! -e {d}/first ]; then\n\
           : > {d}/first\n\
           sleep 1000 &\n\
           echo \"$!\" >> {d}/pids\n\
           echo \"$!\" > {d}/grandchild\n\
           echo \"$$\" > {d}/script\n\
         fi\n\
         echo started\n\
         exec sleep 1000\n"
    );
    let path = dir.path().join("hang.sh");
    std::fs::write(&path, script).expect("write the script");
    // Whatever happens to the test, nothing the script started outlives it.
    let _reaper = KillListed(dir.path().join("pids"));

    let a = AgentBuilder::dev()
        .args(["-enable-script-checks"])
        .start()
        .await;
    let node = node_name(&a).await;
    register_check(
        &a,
        json!({"ID": "hang", "Name": "hang", "Interval": "1s", "Timeout": "1s",
               "Args": ["sh", path.display().to_string()], "Status": "passing"}),
    )
    .await;
    let c = wait_agent_check(&a, "hang", "critical").await;
    let out = c["Output"].as_str().unwrap_or_default();
    assert!(
        out.contains("Timed out"),
        "Consul's timeout message: {out:?}"
    );
    wait_catalog_check(&a, &node, "hang", "critical").await;

    let read_pid = |name: &str| -> u32 {
        let p = dir.path().join(name);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let script_pid = read_pid("script");
    let grandchild = read_pid("grandchild");
    wait_for(
        "the timed-out script and its background grandchild to be killed",
        Duration::from_secs(15),
        || async move {
            let alive: Vec<u32> = [script_pid, grandchild]
                .into_iter()
                .filter(|p| process_alive(*p))
                .collect();
            if alive.is_empty() {
                Ok(())
            } else {
                Err(format!("still alive: {alive:?}"))
            }
        },
    )
    .await;

    // Removing the check leaves no run behind either.
    a.put("/v1/agent/check/deregister/hang", "")
        .await
        .expect_status(200);
    let pids_file = dir.path().join("pids");
    wait_for(
        "every process any run started to be gone after deregistering",
        Duration::from_secs(15),
        || {
            let pids_file = pids_file.clone();
            async move {
                let text = std::fs::read_to_string(&pids_file).unwrap_or_default();
                let alive: Vec<u32> = text
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .filter(|p| process_alive(*p))
                    .collect();
                if alive.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still alive: {alive:?}"))
                }
            }
        },
    )
    .await;
}

/// On drop, SIGKILLs every still-running process listed (one pid a line) in the file, if it
/// is one the test started (its command line mentions `sleep` or `hang.sh`).
struct KillListed(std::path::PathBuf);

impl Drop for KillListed {
    fn drop(&mut self) {
        let text = std::fs::read_to_string(&self.0).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if process_alive(pid as u32)
                && (cmdline.contains("sleep") || cmdline.contains("hang.sh"))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

// ---- TTL ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_ttl_check_not_refreshed_within_its_ttl_goes_critical_with_ttl_expired() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "w1", "Name": "worker", "Check": {"TTL": "1s"}}),
    )
    .await;
    let c = &agent_checks(&a).await["service:w1"];
    assert_eq!(c["Status"], "critical", "a TTL check starts critical: {c}");

    ttl(&a, "pass", "service:w1").await;
    assert_eq!(agent_checks(&a).await["service:w1"]["Status"], "passing");
    let c = wait_for("the TTL to expire", SETTLE, || async {
        let checks = agent_checks(&a).await;
        let c = checks["service:w1"].clone();
        if c["Status"] == "critical" {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await;
    assert_eq!(c["Output"], "TTL expired", "{c}");
    let c = wait_catalog_check(&a, &node, "service:w1", "critical").await;
    assert_eq!(c["Output"], "TTL expired", "{c}");

    // With a note, the expired output quotes it (Consul's wording).
    a.put("/v1/agent/check/pass/service:w1?note=busy%20but%20fine", "")
        .await
        .expect_status(200);
    let c = wait_for("the TTL to expire again", SETTLE, || async {
        let checks = agent_checks(&a).await;
        let c = checks["service:w1"].clone();
        if c["Status"] == "critical" {
            Ok(c)
        } else {
            Err(c.to_string())
        }
    })
    .await;
    assert_eq!(
        c["Output"], "TTL expired (last output before timeout follows): busy but fine",
        "{c}"
    );
}

// ---- deregister_critical_service_after --------------------------------------------------------

#[tokio::test]
async fn a_service_critical_past_deregister_critical_service_after_is_removed() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "doomed1", "Name": "doomed",
               "Check": {"TTL": "60s", "DeregisterCriticalServiceAfter": "2s"}}),
    )
    .await;
    register_service(
        &a,
        json!({"ID": "fine1", "Name": "fine",
               "Check": {"TTL": "60s", "Status": "passing",
                         "deregister_critical_service_after": "2s"}}),
    )
    .await;
    wait_catalog_instance(&a, "doomed", "doomed1", true).await;
    wait_catalog_instance(&a, "fine", "fine1", true).await;

    wait_for(
        "doomed1 to be reaped from the agent",
        Duration::from_secs(30),
        || async {
            let services = agent_services(&a).await;
            if services.contains_key("doomed1") {
                Err(format!("{:?}", services.keys().collect::<Vec<_>>()))
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert!(
        !agent_checks(&a).await.contains_key("service:doomed1"),
        "its checks go with it"
    );
    wait_catalog_instance(&a, "doomed", "doomed1", false).await;
    wait_for("service:doomed1 to leave the catalog", SYNC, || async {
        let checks = catalog_node_checks(&a, &node).await;
        if checks.iter().any(|c| c["CheckID"] == "service:doomed1") {
            Err(format!("{checks:?}"))
        } else {
            Ok(())
        }
    })
    .await;
    assert!(
        agent_services(&a).await.contains_key("fine1"),
        "a passing service with the same setting stays"
    );
    wait_catalog_instance(&a, "fine", "fine1", true).await;
}

#[tokio::test]
async fn a_service_whose_check_recovers_in_time_is_not_reaped() {
    let a = Agent::dev().await;
    register_service(
        &a,
        json!({"ID": "flaky1", "Name": "flaky",
               "Check": {"TTL": "60s", "DeregisterCriticalServiceAfter": "3s"}}),
    )
    .await;
    ttl(&a, "pass", "service:flaky1").await;
    // Critical again, but only briefly each time: the clock restarts on every recovery.
    for _ in 0..3 {
        ttl(&a, "fail", "service:flaky1").await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        ttl(&a, "pass", "service:flaky1").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        agent_services(&a).await.contains_key("flaky1"),
        "never critical for 3s in a row: not reaped"
    );
}

// ---- alias ------------------------------------------------------------------------------

#[tokio::test]
async fn an_alias_check_follows_the_local_service_it_aliases() {
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(
        &a,
        json!({"ID": "backend1", "Name": "backend", "Check": {"TTL": "60s"}}),
    )
    .await;
    register_service(
        &a,
        json!({"ID": "frontend1", "Name": "frontend",
               "Check": {"AliasService": "backend1"}}),
    )
    .await;
    let alias = "service:frontend1";
    let c = wait_agent_check(&a, alias, "critical").await;
    assert_eq!(c["Type"], "alias", "{c}");

    ttl(&a, "pass", "service:backend1").await;
    wait_agent_check(&a, alias, "passing").await;
    wait_catalog_check(&a, &node, alias, "passing").await;
    let r = a
        .get("/v1/agent/health/service/name/frontend?format=text")
        .await;
    assert_eq!((r.status, r.text().trim()), (200, "passing"));

    ttl(&a, "warn", "service:backend1").await;
    wait_agent_check(&a, alias, "warning").await;
    wait_catalog_check(&a, &node, alias, "warning").await;

    ttl(&a, "fail", "service:backend1").await;
    wait_agent_check(&a, alias, "critical").await;
    wait_catalog_check(&a, &node, alias, "critical").await;
    let healthy = get_json(&a, "/v1/health/service/frontend?passing").await;
    assert_eq!(healthy, json!([]));

    ttl(&a, "pass", "service:backend1").await;
    wait_agent_check(&a, alias, "passing").await;

    // The aliased service going away makes the alias critical.
    a.put("/v1/agent/service/deregister/backend1", "")
        .await
        .expect_status(200);
    let c = wait_agent_check(&a, alias, "critical").await;
    assert!(
        !c["Output"].as_str().unwrap_or_default().is_empty(),
        "the output says why: {c}"
    );
    wait_catalog_check(&a, &node, alias, "critical").await;
}

#[tokio::test]
async fn an_alias_check_follows_a_service_on_another_node_through_the_catalog() {
    let a = Agent::dev().await;
    let reg = |status: &str| {
        json!({
            "Node": "ext1", "Address": "10.1.0.1",
            "Service": {"ID": "db-ext", "Service": "db", "Port": 5432},
            "Check": {"CheckID": "db-ext-alive", "Name": "alive", "Status": status,
                      "ServiceID": "db-ext"}
        })
    };
    put_json(&a, "/v1/catalog/register", &reg("passing"))
        .await
        .expect_status(200);
    register_check(
        &a,
        json!({"ID": "db-alias", "Name": "db alias", "AliasNode": "ext1",
               "AliasService": "db-ext"}),
    )
    .await;
    wait_agent_check(&a, "db-alias", "passing").await;

    put_json(&a, "/v1/catalog/register", &reg("critical"))
        .await
        .expect_status(200);
    wait_agent_check(&a, "db-alias", "critical").await;
    put_json(&a, "/v1/catalog/register", &reg("warning"))
        .await
        .expect_status(200);
    wait_agent_check(&a, "db-alias", "warning").await;

    // The node going away makes it critical.
    put_json(&a, "/v1/catalog/deregister", &json!({"Node": "ext1"}))
        .await
        .expect_status(200);
    let c = wait_agent_check(&a, "db-alias", "critical").await;
    assert!(
        !c["Output"].as_str().unwrap_or_default().is_empty(),
        "the output says why: {c}"
    );
}

// ---- a check registered on its own, bound to a service ---------------------------------------

#[tokio::test]
async fn a_check_registered_separately_counts_for_its_service() {
    let server = TestHttp::start(200).await;
    let a = Agent::dev().await;
    let node = node_name(&a).await;
    register_service(&a, json!({"ID": "api1", "Name": "api"})).await;
    register_check(
        &a,
        json!({"ID": "api-http", "Name": "api http", "ServiceID": "api1",
               "HTTP": server.url("/"), "Interval": "1s"}),
    )
    .await;
    let c = wait_agent_check(&a, "api-http", "passing").await;
    assert_eq!(c["ServiceID"], "api1");
    assert_eq!(c["ServiceName"], "api", "{c}");
    wait_catalog_check(&a, &node, "api-http", "passing").await;

    server.set(503);
    wait_catalog_check(&a, &node, "api-http", "critical").await;
    let started = Instant::now();
    let healthy: Value = wait_for("api1 to drop out of ?passing", SYNC, || async {
        let v = get_json(&a, "/v1/health/service/api?passing").await;
        if v == json!([]) {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    })
    .await;
    assert_eq!(healthy, json!([]), "after {:?}", started.elapsed());
}
