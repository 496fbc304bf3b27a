//! `muster leave`: asks the agent to leave the cluster gracefully and shut down
//! (`PUT /v1/agent/leave`).

use super::http_flags;
use super::{Spec, Ui};

pub const SYNOPSIS: &str = "Gracefully leaves the cluster and shuts down";

pub fn spec() -> Spec {
    Spec {
        name: "leave",
        help: HELP,
        flags: http_flags::all(),
    }
}

const HELP: &str = "
Usage: muster leave [options]

  Causes the agent to gracefully leave the cluster and shutdown.
";

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
    match client.agent_leave().await {
        Ok(()) => {
            ui.output("Graceful leave complete");
            0
        }
        Err(e) => {
            ui.error(&format!("Error leaving: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn unexpected_args() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["now", "please"]), &mut c.ui()).await, 1);
        assert_eq!(c.err(), "Error found unexpected args: [now please]\n");
        assert!(c.out().starts_with("Usage: muster leave [options]"));
    }

    #[tokio::test]
    async fn unreachable_agent() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["-http-addr=127.0.0.1:1"]), &mut c.ui()).await, 1);
        assert!(
            c.err()
                .starts_with("Error leaving: Put \"http://127.0.0.1:1/v1/agent/leave\": "),
            "{}",
            c.err()
        );
    }
}
