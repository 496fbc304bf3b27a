//! `muster force-leave [-prune] NODE`: a failed member becomes `left` (with `-prune`, it is
//! removed from the member list) through `PUT /v1/agent/force-leave/:node`.

use super::http_flags;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Forces a member of the cluster to enter the \"left\" state";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.extend([
        Flag::bool("prune", "Remove agent forcibly from list of members"),
        Flag::bool("wan", "Exclusively leave the agent from the WAN serf pool."),
    ]);
    Spec {
        name: "force-leave",
        help: HELP,
        flags,
    }
}

const HELP: &str = "
Usage: muster force-leave [options] name

  Forces a member of a Muster cluster to enter the \"left\" state. Note
  that if the member is still actually alive, it will eventually rejoin
  the cluster. The true purpose of this method is to force remove
  \"failed\" nodes.
";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let parsed = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if parsed.args.len() != 1 {
        ui.error("A single node name must be specified to force leave.");
        ui.error("");
        ui.error(&spec.help_text());
        return 1;
    }
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    match client
        .agent_force_leave(&parsed.args[0], parsed.flag("prune"))
        .await
    {
        Ok(()) => 0,
        Err(e) => {
            ui.error(&format!("Error force leaving: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn needs_one_node() {
        for a in [&[][..], &["a", "b"][..]] {
            let mut c = Captured::default();
            assert_eq!(run(args(a), &mut c.ui()).await, 1);
            assert!(c
                .err()
                .starts_with("A single node name must be specified to force leave.\n"));
        }
    }
}
