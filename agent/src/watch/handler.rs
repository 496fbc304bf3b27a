//! What a watch does with a change: print it (`muster watch` without a command), run a
//! command with the JSON on stdin and `CONSUL_INDEX` in its environment, or POST it to an
//! HTTP endpoint (the agent's `http` handler type).
//!
//! [`spawn`] runs a handler beside the watch loop: at most one run at a time; results that
//! arrive during a run replace each other, so a slow handler is given only the latest one when
//! it is done and never piles up runs. A failing run is logged; the next change runs it again.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::Data;

/// Consul's default timeout of an HTTP handler.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of an HTTP handler's requests unless its `header` names one.
const USER_AGENT: &str = "Muster Watch Handler";

/// How much of a script handler's output is logged (Consul's `WatchBufSize`).
const OUTPUT_MAX: usize = 4096;

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Executed directly (`args`).
    Args(Vec<String>),
    /// Run by `sh -c` (or `$SHELL -c`): the older `handler` string, `muster watch -shell`.
    Shell(String),
}

/// Consul's `http_handler_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub path: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub timeout: Duration,
    pub tls_skip_verify: bool,
}

/// A watch's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// Run a command. `inherit`: its stdout/stderr are ours (`muster watch`); otherwise they
    /// are captured and logged (agent watches).
    Script { command: Command, inherit: bool },
    /// POST (or `method`) the JSON to `path`.
    Http(HttpConfig),
}

impl Handler {
    /// Runs the handler once for `data` at `index`; `Err` says why the run failed. `stop`
    /// ends a running command (its process group is killed).
    pub async fn invoke(
        &self,
        index: u64,
        data: &Data,
        stop: &CancellationToken,
    ) -> Result<(), String> {
        match self {
            Handler::Script { command, inherit } => {
                run_script(command, *inherit, index, &data.to_json_line(), stop).await
            }
            Handler::Http(c) => {
                let body = String::from_utf8_lossy(&data.to_json_line()).into_owned();
                let mut header = c.header.clone();
                header
                    .entry("Content-Type".to_string())
                    .or_default()
                    .push("application/json".to_string());
                header
                    .entry("X-Consul-Index".to_string())
                    .or_default()
                    .push(index.to_string());
                if !header.keys().any(|k| k.eq_ignore_ascii_case("user-agent")) {
                    // Not the HTTP checks' "Consul Health Check".
                    header.insert("User-Agent".into(), vec![USER_AGENT.into()]);
                }
                let request = crate::checks::http_request(
                    &c.path,
                    &c.method,
                    &header,
                    &body,
                    c.tls_skip_verify,
                    c.timeout,
                );
                let (ok, output) = tokio::select! {
                    r = request => r,
                    _ = stop.cancelled() => return Ok(()),
                };
                if ok {
                    tracing::debug!(output = %output, "http watch handler output");
                    Ok(())
                } else {
                    Err(format!("http watch handler failed: {output}"))
                }
            }
        }
    }
}

/// Runs `command` with `input` on stdin and `CONSUL_INDEX=index`, in its own process group.
async fn run_script(
    command: &Command,
    inherit: bool,
    index: u64,
    input: &[u8],
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut cmd = match command {
        Command::Args(args) => {
            let Some((program, rest)) = args.split_first() else {
                return Err("the handler has no command".to_string());
            };
            let mut c = tokio::process::Command::new(program);
            c.args(rest);
            c
        }
        Command::Shell(script) => {
            let shell = std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".to_string());
            let mut c = tokio::process::Command::new(shell);
            c.arg("-c").arg(script);
            c
        }
    };
    cmd.env("CONSUL_INDEX", index.to_string())
        .stdin(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if inherit {
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("Error starting handler: {e}"))?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        // A handler that does not read its stdin must not block us: write from a task.
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let kill_group = || {
        if let Some(pgid) = pgid {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    };
    let output = tokio::select! {
        out = child.wait_with_output() => out,
        _ = stop.cancelled() => {
            kill_group();
            return Ok(());
        }
    };
    let output = output.map_err(|e| format!("Error executing handler: {e}"))?;
    if !inherit {
        let mut text = output.stdout;
        text.extend_from_slice(&output.stderr);
        let total = text.len();
        let tail = &text[total.saturating_sub(OUTPUT_MAX)..];
        let mut shown = String::from_utf8_lossy(tail).into_owned();
        if total > OUTPUT_MAX {
            shown = format!("Captured {OUTPUT_MAX} of {total} bytes\n...\n{shown}");
        }
        tracing::debug!(output = %shown, "watch handler output");
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "Error executing handler: {}",
            go_exit_text(output.status)
        ))
    }
}

/// Go's `ExitError` text: `exit status 2`, `signal: killed`.
fn go_exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "signal: killed".to_string(),
        (None, Some(sig)) => format!("signal: {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The sending side of a running handler: hand it each change; only the latest waiting one is
/// kept.
#[derive(Clone)]
pub struct Feed(tokio::sync::watch::Sender<Option<(u64, Data)>>);

impl Feed {
    pub fn send(&self, index: u64, data: Data) {
        self.0.send_replace(Some((index, data)));
    }
}

/// Starts `handler` as a task fed by the returned [`Feed`]; it ends with `stop` (killing a
/// running command) or when every `Feed` is dropped. `on_error` is told about failed runs.
pub fn spawn(
    handler: Handler,
    stop: CancellationToken,
    on_error: impl Fn(&str) + Send + 'static,
) -> (Feed, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<(u64, Data)>>(None);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            let Some((index, data)) = rx.borrow_and_update().clone() else {
                continue;
            };
            if let Err(e) = handler.invoke(index, &data, &stop).await {
                on_error(&e);
            }
        }
    });
    (Feed(tx), task)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn data(n: usize) -> Data {
        Data::Services(BTreeMap::from([(format!("s{n}"), Vec::new())]))
    }

    #[tokio::test]
    async fn a_script_gets_the_json_and_the_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out");
        let script = format!("cat > {0}; echo \"$CONSUL_INDEX\" >> {0}", out.display());
        let h = Handler::Script {
            command: Command::Shell(script),
            inherit: false,
        };
        h.invoke(42, &data(1), &CancellationToken::new())
            .await
            .expect("ran");
        let text = std::fs::read_to_string(&out).expect("output");
        assert_eq!(text, "{\"s1\":[]}\n42\n");
        let failing = Handler::Script {
            command: Command::Args(vec!["false".into()]),
            inherit: false,
        };
        let err = failing
            .invoke(1, &data(1), &CancellationToken::new())
            .await
            .expect_err("fails");
        assert_eq!(err, "Error executing handler: exit status 1");
        let missing = Handler::Script {
            command: Command::Args(vec!["/nonexistent/handler".into()]),
            inherit: false,
        };
        assert!(missing
            .invoke(1, &data(1), &CancellationToken::new())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_slow_handler_runs_once_at_a_time_and_gets_the_latest() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("log");
        let gate = dir.path().join("gate");
        // Each run records its index, then waits for the gate file before finishing.
        let script = format!(
            "echo start $CONSUL_INDEX >> {0}; while [ ! -e {1} ]; do sleep 0.02; done; \
             echo end $CONSUL_INDEX >> {0}",
            log.display(),
            gate.display()
        );
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let errs = errors.clone();
        let stop = CancellationToken::new();
        let (feed, task) = spawn(
            Handler::Script {
                command: Command::Shell(script),
                inherit: false,
            },
            stop.clone(),
            move |e| {
                errs.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(e.into())
            },
        );
        feed.send(1, data(1));
        // Wait (bounded) until the first run has started, then queue three more.
        for _ in 0..500 {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("start 1")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        feed.send(2, data(2));
        feed.send(3, data(3));
        feed.send(4, data(4));
        std::fs::write(&gate, "").expect("open the gate");
        for _ in 0..500 {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("end 4")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = std::fs::read_to_string(&log).expect("log");
        assert_eq!(text, "start 1\nend 1\nstart 4\nend 4\n");
        stop.cancel();
        task.await.expect("join");
        assert!(errors.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
    }
}
