//! `muster join ADDR...`: asks the agent to join the LAN pool through each address
//! (`PUT /v1/agent/join/:addr`), with Consul's messages.

use super::http_flags;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Tell Muster agent to join cluster";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.push(Flag::bool(
        "wan",
        "Joins a server to another server in the WAN pool.",
    ));
    Spec {
        name: "join",
        help: HELP,
        flags,
    }
}

const HELP: &str = "
Usage: muster join [options] address ...

  Tells a running Muster agent (with \"muster agent\") to join the cluster
  by specifying at least one existing member.
";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if parsed.args.is_empty() {
        ui.error("At least one address to join must be specified.");
        ui.error("");
        ui.error(&spec.help_text());
        return 1;
    }
    if parsed.flag("wan") {
        ui.error("Error joining: WAN join is not implemented");
        return 1;
    }
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    let mut joins = 0;
    for addr in &parsed.args {
        match client.agent_join(addr).await {
            Ok(()) => joins += 1,
            Err(e) => ui.error(&format!("Error joining address '{addr}': {e}")),
        }
    }
    if joins == 0 {
        ui.error("Failed to join any nodes.");
        return 1;
    }
    ui.output(&format!(
        "Successfully joined cluster by contacting {joins} nodes."
    ));
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn needs_an_address() {
        let mut c = Captured::default();
        assert_eq!(run(args(&[]), &mut c.ui()).await, 1);
        assert!(c
            .err()
            .starts_with("At least one address to join must be specified.\n"));
    }

    #[tokio::test]
    async fn unreachable_agent() {
        let mut c = Captured::default();
        assert_eq!(
            run(args(&["-http-addr=127.0.0.1:1", "10.0.0.1"]), &mut c.ui()).await,
            1
        );
        assert!(
            c.err().starts_with("Error joining address '10.0.0.1': "),
            "{}",
            c.err()
        );
        assert!(
            c.err().ends_with("Failed to join any nodes.\n"),
            "{}",
            c.err()
        );
    }
}
