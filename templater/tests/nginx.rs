//! The issue's end-to-end cases with the real binaries: `muster agent -dev`, `templater` and a
//! real nginx rendering the shipped `templates/nginx.conf.hbs` with
//! `check_cmd = "nginx -t -c {{src}}"` and a reload command. In each mode (`-watch`,
//! `-interval`, `-onetime`):
//!
//! 1. two registered backends are reachable through nginx;
//! 2. one turned critical disappears from nginx.conf and from the traffic;
//! 3. a KV change lands in the file and in a reload;
//! 4. a template producing an invalid config is rejected by check_cmd while nginx keeps serving
//!    (and the old file stays);
//! 5. the agent is killed and restarted while templater keeps running (daemon modes), or
//!    `-onetime` fails without touching the file while it is down.

mod common;

use std::time::Duration;

use common::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Watch,
    Interval,
    Onetime,
}

struct Scenario {
    mode: Mode,
    dir: tempfile::TempDir,
    agent: Agent,
    b1: Backend,
    b2: Backend,
    paths: NginxPaths,
    confdir: Confdir,
    nginx: Option<Proc>,
    templater: Option<Proc>,
    runs: usize,
}

impl Scenario {
    fn new(mode: Mode) -> Scenario {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Agent::start(dir.path());
        let (b1, b2) = (Backend::start("backend-1"), Backend::start("backend-2"));
        let paths = NginxPaths::new(dir.path());
        let confdir = Confdir::new(dir.path());
        confdir.shipped_template("nginx.conf.hbs");
        confdir.resource(
            "nginx.toml",
            &format!(
                r#"[template]
src = "nginx.conf.hbs"
dest = "{conf}"
keys = ["/nginx"]
services = ["web"]
mode = "0644"
check_cmd = "{check}"
reload_cmd = "{reload}"
wait = "50ms:500ms"
"#,
                conf = paths.conf.display(),
                check = paths.check_cmd(),
                reload = paths.reload_cmd(),
            ),
        );
        let s = Scenario {
            mode,
            dir,
            agent,
            b1,
            b2,
            paths,
            confdir,
            nginx: None,
            templater: None,
            runs: 0,
        };
        s.seed();
        s
    }

    /// What a fresh (dev) agent needs: the two instances and the KV settings.
    fn seed(&self) {
        self.agent.register_web("web-1", self.b1.port);
        self.agent.register_web("web-2", self.b2.port);
        self.agent
            .kv_put("nginx/listen", &format!("127.0.0.1:{}", self.paths.port));
        self.agent.kv_put("nginx/log_level", "notice");
        self.agent.kv_put("nginx/worker_processes", "1");
    }

    fn args(&self) -> Vec<String> {
        let mut args = strings(&[
            "-backend",
            "consul",
            "-node",
            &self.agent.addr(),
            "-confdir",
            &self.confdir.path.display().to_string(),
            "-log-level",
            "debug",
        ]);
        match self.mode {
            Mode::Watch => args.push("-watch".into()),
            Mode::Interval => args.extend(strings(&["-interval", "500ms"])),
            Mode::Onetime => args.push("-onetime".into()),
        }
        args
    }

    fn start(&mut self) {
        if self.mode != Mode::Onetime {
            let log = self.dir.path().join("templater.log");
            self.templater = Some(spawn_templater(
                &self.args(),
                &self.paths.template_env(),
                log,
            ));
        }
    }

    /// `-onetime`: runs templater once and returns its exit code; daemons: nothing to do.
    fn sync(&mut self) -> Option<i32> {
        if self.mode != Mode::Onetime {
            return Some(0);
        }
        self.runs += 1;
        let log = self
            .dir
            .path()
            .join(format!("templater-onetime-{}.log", self.runs));
        let (code, out) = run_templater(&self.args(), &self.paths.template_env(), log);
        eprintln!(
            "----- templater -onetime run {} (exit {code:?}) -----\n{out}",
            self.runs
        );
        code
    }

    fn templater_log(&self) -> String {
        match &self.templater {
            Some(p) => p.output(),
            None => (1..=self.runs)
                .map(|n| {
                    std::fs::read_to_string(
                        self.dir.path().join(format!("templater-onetime-{n}.log")),
                    )
                    .unwrap_or_default()
                })
                .collect(),
        }
    }

    #[track_caller]
    fn until(&self, what: &str, mut f: impl FnMut() -> bool) {
        if eventually(WAIT, || f().then_some(())).is_none() {
            panic!(
                "{what}: not within {WAIT:?}\n--- nginx.conf ---\n{}\n--- templater ---\n{}",
                self.paths.conf_text(),
                self.templater_log()
            );
        }
    }

    fn backend_line(port: u16) -> String {
        format!("server 127.0.0.1:{port};")
    }

    fn run(mut self) {
        let (p1, p2) = (self.b1.port, self.b2.port);
        let line1 = Self::backend_line(p1);
        let line2 = Self::backend_line(p2);

        // 1. Both backends in the file and reachable through nginx.
        self.start();
        assert_eq!(self.sync(), Some(0), "first render");
        self.until("both instances rendered", || {
            let c = self.paths.conf_text();
            c.contains(&line1) && c.contains(&line2)
        });
        self.nginx = Some(start_nginx(&self.paths, self.dir.path()));
        let port = self.paths.port;
        self.until("both backends answer through nginx", || {
            traffic(port, 12) == ["backend-1", "backend-2"]
        });

        // 2. web-1 critical: out of the file and out of the traffic.
        let reloads = self.paths.reloads();
        self.agent.fail_check("web-1");
        assert_eq!(self.sync(), Some(0), "render after web-1 failed");
        self.until("web-1 gone from nginx.conf", || {
            let c = self.paths.conf_text();
            !c.contains(&line1) && c.contains(&line2)
        });
        self.until("only backend-2 serves", || {
            traffic(port, 12) == ["backend-2"]
        });
        self.until("nginx reloaded", || self.paths.reloads() > reloads);

        // 3. A KV change lands in the file and in a reload.
        let reloads = self.paths.reloads();
        self.agent.kv_put("nginx/server_name", "kv-change.example");
        assert_eq!(self.sync(), Some(0), "render after the KV change");
        self.until("the KV value in nginx.conf", || {
            self.paths
                .conf_text()
                .contains("server_name kv-change.example;")
        });
        self.until("nginx reloaded after the KV change", || {
            self.paths.reloads() > reloads
        });

        // 4. An invalid value: check_cmd rejects it, the old file stays, nginx keeps serving.
        let before = self.paths.conf_text();
        self.agent.kv_put("nginx/proxy_read_timeout", "forever");
        let code = self.sync();
        if self.mode == Mode::Onetime {
            assert_eq!(
                code,
                Some(1),
                "-onetime must fail when check_cmd rejects the file"
            );
        }
        self.until("templater reports the check failure", || {
            let log = self.templater_log();
            log.contains("check_cmd") && log.contains("proxy_read_timeout")
        });
        assert_eq!(self.paths.conf_text(), before, "the old nginx.conf stays");
        assert_eq!(traffic(port, 6), ["backend-2"], "nginx keeps serving");
        let stages: Vec<String> = std::fs::read_dir(self.paths.conf.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "nginx.conf")
            .collect();
        assert!(stages.is_empty(), "stage files left behind: {stages:?}");
        // Fixed again: it lands.
        self.agent.kv_put("nginx/proxy_read_timeout", "30s");
        assert_eq!(self.sync(), Some(0));
        self.until("the fixed value lands", || {
            self.paths.conf_text().contains("proxy_read_timeout 30s;")
        });

        // 5. The agent killed and restarted.
        let before = self.paths.conf_text();
        self.agent.kill9();
        if self.mode == Mode::Onetime {
            assert_ne!(
                self.sync(),
                Some(0),
                "-onetime fails while the agent is down"
            );
        } else {
            std::thread::sleep(Duration::from_millis(1500));
            let t = self.templater.as_mut().unwrap();
            assert!(t.running(), "templater must keep running: {}", t.output());
        }
        assert_eq!(
            self.paths.conf_text(),
            before,
            "files stay as they are while the agent is down"
        );
        assert_eq!(traffic(port, 4), ["backend-2"]);
        self.agent.restart();
        // A dev agent starts empty: register again, this time with web-1 passing and web-2
        // not registered at all.
        self.agent
            .kv_put("nginx/listen", &format!("127.0.0.1:{port}"));
        self.agent.kv_put("nginx/log_level", "notice");
        self.agent.kv_put("nginx/worker_processes", "1");
        self.agent
            .kv_put("nginx/server_name", "after-restart.example");
        self.agent.register_web("web-1", p1);
        assert_eq!(self.sync(), Some(0), "render after the restart");
        self.until("the restarted agent's state lands", || {
            let c = self.paths.conf_text();
            c.contains(&line1) && !c.contains(&line2) && c.contains("after-restart.example")
        });
        self.until("only backend-1 serves", || {
            traffic(port, 12) == ["backend-1"]
        });
        if let Some(t) = self.templater.as_mut() {
            assert!(t.running());
            let log = t.output();
            assert_eq!(
                log.matches("is unreachable").count(),
                1,
                "the outage is logged once:\n{log}"
            );
            assert!(log.contains("is reachable again"), "{log}");
            // SIGTERM stops it cleanly.
            t.signal(nix::sys::signal::Signal::SIGTERM);
            let status = t
                .wait_exit(Duration::from_secs(10))
                .expect("templater exits on SIGTERM");
            assert!(status.success(), "{status:?}");
        }
    }
}

#[test]
fn watch_mode_drives_nginx() {
    Scenario::new(Mode::Watch).run();
}

#[test]
fn interval_mode_drives_nginx() {
    Scenario::new(Mode::Interval).run();
}

#[test]
fn onetime_mode_drives_nginx() {
    Scenario::new(Mode::Onetime).run();
}
