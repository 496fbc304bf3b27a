//! `muster monitor [-log-level=LEVEL] [-log-json]`: follows the agent's log lines
//! (`GET /v1/agent/monitor`) until interrupted or until the agent ends the stream, as Consul's
//! `monitor` does: the level may be more verbose than the agent's own `-log-level`.

use super::http_flags;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Stream logs from a Muster agent";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.extend([
        Flag::string(
            "log-level",
            "string",
            "Log level of the agent. Defaults to \"INFO\".",
        ),
        Flag::bool("log-json", "Output logs in JSON format."),
    ]);
    Spec {
        name: "monitor",
        help: HELP,
        flags,
    }
}

const HELP: &str = "
Usage: muster monitor [options]

  Attaches to a Muster agent and outputs its log messages as they occur in
  real time. The monitor lets you
  listen for log levels that may be filtered out of the Muster agent. For
  example your agent may only be logging at INFO level, but with the monitor
  you can see the DEBUG level logs.
";

/// What Consul prints when the agent ends the stream.
pub const REMOTE_ENDED: &str =
    "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if super::refuse_args(&parsed, &spec, ui) {
        return 1;
    }
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    let level = parsed.string("log-level");
    let mut stream = match client
        .agent_monitor(level.as_deref(), parsed.flag("log-json"))
        .await
    {
        Ok(s) => s,
        Err(e) => {
            ui.error(&format!("Error starting monitor: {e}"));
            return 1;
        }
    };
    let interrupted = super::wait_for_interrupt();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            () = &mut interrupted => return 0,
            line = stream.next_line() => match line {
                Ok(Some(line)) => ui.output(&line),
                Ok(None) | Err(_) => {
                    ui.output("");
                    ui.output(REMOTE_ENDED);
                    return 1;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn unexpected_args_and_an_unreachable_agent() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["now"]), &mut c.ui()).await, 1);
        assert_eq!(c.err(), "Error found unexpected args: [now]\n");
        assert!(c.out().starts_with("Usage: muster monitor [options]"));

        let mut c = Captured::default();
        assert_eq!(run(args(&["-http-addr=127.0.0.1:1"]), &mut c.ui()).await, 1);
        assert!(
            c.err()
                .starts_with("Error starting monitor: Get \"http://127.0.0.1:1/v1/agent/monitor"),
            "{}",
            c.err()
        );
    }
}
