//! `muster reload`: asks the agent to re-read its configuration files (`PUT /v1/agent/reload`),
//! as `consul reload` does instead of a SIGHUP.

use super::http_flags;
use super::http_flags::connect;
use super::{Spec, Ui};

pub const SYNOPSIS: &str = "Triggers the agent to reload configuration files";

const HELP: &str = "
Usage: muster reload

  Causes the agent to reload configurations. This can be used instead
  of sending the SIGHUP signal to the agent.
";

pub fn spec() -> Spec {
    Spec {
        name: "reload",
        help: HELP,
        flags: http_flags::client_flags(),
    }
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let p = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some((client, _)) = connect(&p, ui) else {
        return 1;
    };
    match client.agent_reload().await {
        Ok(()) => {
            ui.output("Configuration reload triggered");
            0
        }
        Err(e) => {
            ui.error(&format!("Error reloading: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn unreachable_agent() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["-http-addr=127.0.0.1:1"]), &mut c.ui()).await, 1);
        assert!(
            c.err()
                .starts_with("Error reloading: Put \"http://127.0.0.1:1/v1/agent/reload\""),
            "{}",
            c.err()
        );
    }
}
