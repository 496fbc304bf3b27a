//! Running `check_cmd` and `reload_cmd`: `sh -c` in a process group of its own, stdout and
//! stderr into one in-memory file (memfd: a pipe would hang on a daemon the command leaves
//! behind, and a file on disk would put the disk's latency before every reload), bounded in
//! time — on timeout the whole group is killed.

use std::io::{Read as _, Seek as _};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResult {
    /// The exit code; `None` when killed by a signal (or by the timeout).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr, interleaved, trimmed to the last 64 KiB.
    pub output: String,
    pub elapsed: Duration,
}

impl CmdResult {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// `exit 1`, `killed after 5s (timeout)`, ...
    pub fn describe(&self) -> String {
        if self.timed_out {
            return format!("killed after {:?} (timeout)", self.elapsed);
        }
        match self.code {
            Some(c) => format!("exit {c}"),
            None => "killed by a signal".to_string(),
        }
    }
}

const OUTPUT_LIMIT: u64 = 64 * 1024;

/// Runs `command` with `sh -c`, at most `timeout`.
pub async fn run(command: &str, timeout: Duration) -> std::io::Result<CmdResult> {
    let out = output_file()?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .process_group(0)
        .kill_on_drop(true);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let (code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            if let Some(pid) = pid {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    let elapsed = start.elapsed();
    Ok(CmdResult {
        code,
        timed_out,
        output: read_tail(out)?,
        elapsed,
    })
}

/// An anonymous in-memory file (a temporary file where memfd is unavailable).
fn output_file() -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MFdFlags};
    match memfd_create("templater-cmd-output", MFdFlags::MFD_CLOEXEC) {
        Ok(fd) => Ok(std::fs::File::from(fd)),
        Err(_) => tempfile::tempfile(),
    }
}

fn read_tail(mut file: std::fs::File) -> std::io::Result<String> {
    let len = file.seek(std::io::SeekFrom::End(0))?;
    let start = len.saturating_sub(OUTPUT_LIMIT);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// Replaces `{{src}}` (and confd's `{{.src}}`, spaces allowed inside the braces) with the
/// staged file's path, shell-quoted when it needs to be.
pub fn substitute_src(command: &str, src: &Path) -> String {
    let path = shell_quote(&src.to_string_lossy());
    let mut out = String::with_capacity(command.len() + path.len());
    let mut rest = command;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        if inner == "src" || inner == ".src" {
            out.push_str(&path);
        } else {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// Quotes `s` for `sh` unless it is made only of safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn src_substitution() {
        let p = Path::new("/etc/nginx/.nginx.conf.x1");
        assert_eq!(
            substitute_src("nginx -t -c {{src}}", p),
            "nginx -t -c /etc/nginx/.nginx.conf.x1"
        );
        assert_eq!(
            substitute_src("check {{ .src }} && echo {{other}}", p),
            "check /etc/nginx/.nginx.conf.x1 && echo {{other}}"
        );
        assert_eq!(
            substitute_src("cat {{src}}", Path::new("/a b/it's")),
            "cat '/a b/it'\\''s'"
        );
        assert_eq!(substitute_src("no braces {{", p), "no braces {{");
    }

    #[tokio::test]
    async fn output_and_exit_code() {
        let r = run("echo out; echo err >&2; exit 3", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(r.code, Some(3));
        assert!(
            r.output.contains("out") && r.output.contains("err"),
            "{}",
            r.output
        );
        assert!(!r.success());
        assert!(run("true", Duration::from_secs(10))
            .await
            .unwrap()
            .success());
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild-ran");
        // The grandchild would write the marker after 2 s if it survived the kill.
        let cmd = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let r = run(&cmd, Duration::from_millis(300)).await.unwrap();
        assert!(r.timed_out);
        assert!(r.elapsed < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the grandchild survived the group kill");
    }

    #[tokio::test]
    async fn a_daemon_left_behind_does_not_hold_us() {
        let start = Instant::now();
        let r = run(
            "sleep 5 >/dev/null 2>&1 & echo started",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(r.success());
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(r.output, "started");
    }
}
