//! Script checks (Consul's `CheckMonitor` with `args`): exec a command in its own process
//! group, exit code → status, combined output → output, the whole group killed on timeout.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::net::io_error_text;
use super::{HealthStatus, OUTPUT_MAX};

/// How long to wait for a SIGKILLed process to be reaped before leaving it to tokio's
/// background reaper (only a process stuck in the kernel takes that long).
const REAP_WAIT: Duration = Duration::from_secs(5);

/// Runs `args` once: exit 0 passing, 1 warning, anything else critical, with stdout and
/// stderr (interleaved as written, last 4 KiB kept, Consul's "Captured N of M bytes" note) as
/// output. On timeout the process group is SIGKILLed and the result is critical with
/// Consul's `Timed out (<timeout>) running check` message. `None` when `cancel` fired: the
/// group is killed and the child reaped before returning.
pub(super) async fn check(
    args: &[String],
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<(HealthStatus, String)> {
    let critical = |output: String| Some((HealthStatus::Critical, output));
    let Some((program, rest)) = args.split_first() else {
        return critical("script check has no args".to_string());
    };
    // One pipe for stdout and stderr, so their bytes interleave as Go's shared buffer does.
    // Close-on-exec: only the child's dup'ed fds 1 and 2 survive its exec.
    let (read_end, write_end) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(ends) => ends,
        Err(e) => return critical(format!("pipe: {}", e.desc())),
    };
    let write_end_2 = match write_end.try_clone() {
        Ok(fd) => fd,
        Err(e) => return critical(format!("pipe: {}", io_error_text(&e))),
    };
    let spawned = {
        let mut command = Command::new(program);
        command
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .stderr(Stdio::from(write_end_2))
            .process_group(0);
        command.spawn()
        // `command` drops here, closing the parent's copies of the write end so that the
        // reader sees EOF once the child's group is done with it.
    };
    let child = match spawned {
        Ok(child) => child,
        Err(e) => return critical(spawn_error_text(program, &e)),
    };
    let mut run = Running::new(child);
    let mut output = TailBuffer::new(OUTPUT_MAX);
    let reader = match pipe::Receiver::from_owned_fd(read_end) {
        Ok(reader) => reader,
        Err(e) => {
            run.kill_and_reap().await;
            return critical(format!("pipe: {}", io_error_text(&e)));
        }
    };

    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => Outcome::Cancelled,
        _ = tokio::time::sleep(timeout) => Outcome::TimedOut,
        // Like Go's `cmd.Wait`, the run ends when the child exited *and* its output is closed
        // (a background grandchild holding the pipe keeps it running until the timeout).
        status = wait_and_drain(&mut run, reader, &mut output) => Outcome::Exited(status),
    };
    match outcome {
        Outcome::Cancelled => {
            run.kill_and_reap().await;
            None
        }
        Outcome::TimedOut => {
            run.kill_and_reap().await;
            let mut message = format!(
                "Timed out ({}) running check",
                muster_api::duration::format(timeout)
            );
            let text = output.text();
            if !text.is_empty() {
                message.push_str("\n\n");
                message.push_str(&text);
            }
            tracing::warn!(timeout = %muster_api::duration::format(timeout), "script check timed out");
            critical(message)
        }
        Outcome::Exited(Err(e)) => {
            run.kill_and_reap().await;
            critical(format!("wait: {}", io_error_text(&e)))
        }
        Outcome::Exited(Ok(status)) => {
            run.reaped();
            let status = match status.code() {
                Some(0) => HealthStatus::Passing,
                Some(1) => HealthStatus::Warning,
                _ => HealthStatus::Critical,
            };
            Some((status, output.text()))
        }
    }
}

/// How a script run ended.
enum Outcome {
    Cancelled,
    TimedOut,
    Exited(std::io::Result<ExitStatus>),
}

/// Waits for the child to exit and its output pipe to close, keeping the output's tail.
async fn wait_and_drain(
    run: &mut Running,
    mut reader: pipe::Receiver,
    output: &mut TailBuffer,
) -> std::io::Result<ExitStatus> {
    let drain = async {
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => output.write(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "reading script output");
                    break;
                }
            }
        }
    };
    let (status, ()) = tokio::join!(run.child.wait(), drain);
    status
}

/// A started script: until it is known reaped, dropping it SIGKILLs its process group (the
/// child was made the leader of a new group), so an aborted task leaks no process; tokio's
/// reaper collects the child then.
struct Running {
    child: Child,
    /// The process group to kill, while it may still have members we started.
    pgid: Option<Pid>,
}

impl Running {
    fn new(child: Child) -> Running {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Running { child, pgid }
    }

    /// SIGKILLs the whole process group (Consul's `KillCommandSubtree`).
    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            match killpg(pgid, Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => tracing::warn!(error = %e, "killing a script check's process group"),
            }
        }
    }

    /// Kills the group and waits (bounded) for the child so no zombie is left.
    async fn kill_and_reap(&mut self) {
        self.kill_group();
        match tokio::time::timeout(REAP_WAIT, self.child.wait()).await {
            Ok(_) => self.pgid = None,
            Err(_) => tracing::warn!("script check's process not reaped after SIGKILL"),
        }
    }

    /// The child exited and was reaped normally: the group is left alone, as Consul does.
    fn reaped(&mut self) {
        self.pgid = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Go's text for a failed start: `exec: "x": executable file not found in $PATH` for a bare
/// name, `fork/exec /path: <errno>` otherwise.
fn spawn_error_text(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && !program.contains('/') {
        format!("exec: {program:?}: executable file not found in $PATH")
    } else {
        format!("fork/exec {program}: {}", io_error_text(e))
    }
}

/// The last `cap` bytes written, and how many were written in all (Consul's `circbuf`).
struct TailBuffer {
    bytes: VecDeque<u8>,
    cap: usize,
    total: u64,
}

impl TailBuffer {
    fn new(cap: usize) -> TailBuffer {
        TailBuffer {
            bytes: VecDeque::with_capacity(cap),
            cap,
            total: 0,
        }
    }

    fn write(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len() as u64);
        let data = &data[data.len().saturating_sub(self.cap)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.cap);
        self.bytes.drain(..overflow);
        self.bytes.extend(data);
    }

    /// The output as Consul reports it: the kept bytes, preceded by
    /// `Captured <kept> of <total> bytes\n...\n` when some were dropped.
    fn text(&mut self) -> String {
        let kept = String::from_utf8_lossy(self.bytes.make_contiguous()).into_owned();
        if self.total > self.bytes.len() as u64 {
            format!(
                "Captured {} of {} bytes\n...\n{kept}",
                self.bytes.len(),
                self.total
            )
        } else {
            kept
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use nix::sys::signal::kill;

    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    async fn run(args: &[String], timeout_ms: u64) -> (HealthStatus, String) {
        check(
            args,
            Duration::from_millis(timeout_ms),
            &CancellationToken::new(),
        )
        .await
        .expect("not cancelled")
    }

    /// Whether `pid` is a live process (a zombie waiting for its parent counts as gone).
    fn alive(pid: i32) -> bool {
        if kill(Pid::from_raw(pid), None).is_err() {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Waits up to 2 s for `pid` to be gone.
    async fn gone(pid: i32) -> bool {
        for _ in 0..200 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        assert_eq!(
            run(&sh("echo all good"), 5000).await,
            (HealthStatus::Passing, "all good\n".to_string())
        );
        assert_eq!(
            run(&sh("echo slow >&2; exit 1"), 5000).await,
            (HealthStatus::Warning, "slow\n".to_string())
        );
        assert_eq!(
            run(&sh("echo out; echo err >&2; exit 2"), 5000).await,
            (HealthStatus::Critical, "out\nerr\n".to_string())
        );
        assert_eq!(run(&sh("kill -9 $$"), 5000).await.0, HealthStatus::Critical);
    }

    #[tokio::test]
    async fn args_are_not_run_by_a_shell() {
        let args = vec!["echo".to_string(), "$HOME; exit 2".to_string()];
        assert_eq!(
            run(&args, 5000).await,
            (HealthStatus::Passing, "$HOME; exit 2\n".to_string())
        );
    }

    #[tokio::test]
    async fn start_failures_are_critical() {
        let (status, output) = run(&["no-such-command-muster".to_string()], 5000).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(
            output,
            "exec: \"no-such-command-muster\": executable file not found in $PATH"
        );
        let (status, output) = run(&["/no/such/file".to_string()], 5000).await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, "fork/exec /no/such/file: no such file or directory");
        assert_eq!(run(&[], 5000).await.0, HealthStatus::Critical);
    }

    #[tokio::test]
    async fn output_keeps_the_last_4k_like_consul() {
        let (status, output) = run(
            &sh("head -c 10000 /dev/zero | tr '\\0' a; printf END"),
            5000,
        )
        .await;
        assert_eq!(status, HealthStatus::Passing);
        let expected_tail = format!("{}END", "a".repeat(4093));
        assert_eq!(
            output,
            format!("Captured 4096 of 10003 bytes\n...\n{expected_tail}")
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The script starts a background grandchild (same process group, holding the output
        // pipe), records both pids, then hangs.
        let script = format!(
            "sleep 1000 & echo $! > {p}.tmp; echo $$ >> {p}.tmp; mv {p}.tmp {p}; echo started; sleep 1000",
            p = pids.display()
        );
        let started = Instant::now();
        let (status, output) = run(&sh(&script), 500).await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, "Timed out (500ms) running check\n\nstarted\n");
        let text = std::fs::read_to_string(&pids).unwrap();
        let pids: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(pids.len(), 2);
        for pid in pids {
            assert!(gone(pid).await, "process {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn cancel_kills_and_reaps() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 1000 & echo $! > {p}.tmp; mv {p}.tmp {p}; sleep 1000",
            p = pidfile.display()
        );
        let cancel = CancellationToken::new();
        let args = sh(&script);
        let run = check(&args, Duration::from_secs(60), &cancel);
        let canceller = async {
            for _ in 0..200 {
                if pidfile.exists() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cancel.cancel();
        };
        let (result, ()) = tokio::join!(run, canceller);
        assert_eq!(result, None);
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid).await, "grandchild {pid} survived cancel");
    }

    #[test]
    fn tail_buffer_counts_and_keeps_the_end() {
        let mut b = TailBuffer::new(4);
        b.write(b"ab");
        assert_eq!(b.text(), "ab");
        b.write(b"cdef");
        assert_eq!(b.text(), "Captured 4 of 6 bytes\n...\ncdef");
        b.write(b"0123456789");
        assert_eq!(b.text(), "Captured 4 of 16 bytes\n...\n6789");
    }
}
