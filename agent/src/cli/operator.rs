//! `muster operator raft list-peers` and `operator raft remove-peer`: the Raft configuration as
//! Consul's CLI prints it, and removing a server from it.

use muster_api::RaftConfiguration;

use super::http_flags::{self, HttpFlags};
use super::members::columnize;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Provides cluster-level tools for Muster operators";

const PARENT_HELP: &str = "Usage: muster operator <subcommand> [options]

  Provides cluster-level tools for Muster operators, such as interacting with
  the Raft subsystem.

Subcommands:
    raft    Provides cluster-level tools for Muster operators";

const RAFT_HELP: &str = "Usage: muster operator raft <subcommand> [options]

  The Raft operator command is used to interact with Muster's Raft subsystem. The
  command can be used to verify Raft peers or in rare cases to recover quorum by
  removing invalid peers.

Subcommands:
    list-peers     Display the current Raft peer configuration
    remove-peer    Remove a Muster server from the Raft configuration";

pub fn list_peers_spec() -> Spec {
    Spec {
        name: "operator raft list-peers",
        help: "
Usage: muster operator raft list-peers [options]

  Displays the current Raft peer configuration.
",
        flags: http_flags::all(),
    }
}

pub fn remove_peer_spec() -> Spec {
    let mut flags = http_flags::all();
    flags.push(Flag::string(
        "address",
        "value",
        "The address to remove from the Raft configuration.",
    ));
    flags.push(Flag::string(
        "id",
        "value",
        "The ID to remove from the Raft configuration.",
    ));
    Spec {
        name: "operator raft remove-peer",
        help: "
Usage: muster operator raft remove-peer [options]

  Remove the Muster server with given -address from the Raft configuration.

  There are rare cases where a peer may be left behind in the Raft quorum even
  though the server is no longer present and known to the cluster. This command
  can be used to remove the failed server so that it is no longer affects the Raft
  quorum. If the server still shows in the output of the \"muster members\" command,
  it is preferable to clean up by simply running \"muster force-leave\" instead of
  this command.
",
        flags,
    }
}

/// The help `muster operator [raft [sub]] -h` prints.
pub fn help(rest: &[String]) -> String {
    match (
        rest.first().map(String::as_str),
        rest.get(1).map(String::as_str),
    ) {
        (Some("raft"), Some("list-peers")) => list_peers_spec().help_text(),
        (Some("raft"), Some("remove-peer")) => remove_peer_spec().help_text(),
        (Some("raft"), _) => RAFT_HELP.to_string(),
        _ => PARENT_HELP.to_string(),
    }
}

pub async fn run(mut rest: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let group = if rest.is_empty() {
        None
    } else {
        Some(rest.remove(0))
    };
    let sub = if rest.is_empty() {
        None
    } else {
        Some(rest.remove(0))
    };
    match (group.as_deref(), sub.as_deref()) {
        (Some("raft"), Some("list-peers")) => list_peers(rest, ui).await,
        (Some("raft"), Some("remove-peer")) => remove_peer(rest, ui).await,
        (Some("raft"), _) => {
            ui.error(RAFT_HELP);
            1
        }
        _ => {
            ui.error(PARENT_HELP);
            1
        }
    }
}

async fn list_peers(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let parsed = match list_peers_spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flags = HttpFlags::from_parsed(&parsed);
    let client = match flags.client() {
        Ok(c) => c,
        Err(e) => {
            ui.error(&format!("Error initializing client: {e}"));
            return 1;
        }
    };
    match client
        .get_json::<RaftConfiguration>("/v1/operator/raft/configuration", &flags.query_options())
        .await
    {
        Ok((config, _)) => {
            ui.output(&format_peers(&config));
            0
        }
        Err(e) => {
            ui.error(&format!(
                "Error getting peers: Failed to retrieve raft configuration: {e}"
            ));
            1
        }
    }
}

/// Consul's `list-peers` table.
pub fn format_peers(config: &RaftConfiguration) -> String {
    const SEP: char = '\u{1f}';
    let leader_index = config
        .servers
        .iter()
        .find(|s| s.leader)
        .map(|s| s.last_index)
        .unwrap_or(0);
    let mut lines = vec![[
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ]
    .join(&SEP.to_string())];
    for s in &config.servers {
        let state = if s.leader { "leader" } else { "follower" };
        let protocol = if s.protocol_version.is_empty() {
            "<=1"
        } else {
            &s.protocol_version
        };
        let trails = if s.leader {
            "-".to_string()
        } else {
            let by = leader_index.saturating_sub(s.last_index);
            if by == 1 {
                "1 commit".to_string()
            } else {
                format!("{by} commits")
            }
        };
        lines.push(
            [
                s.node.clone(),
                s.id.clone(),
                s.address.clone(),
                state.to_string(),
                s.voter.to_string(),
                protocol.to_string(),
                s.last_index.to_string(),
                trails,
            ]
            .join(&SEP.to_string()),
        );
    }
    columnize(&lines)
}

async fn remove_peer(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let parsed = match remove_peer_spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flags = HttpFlags::from_parsed(&parsed);
    let address = parsed.string("address").filter(|s| !s.is_empty());
    let id = parsed.string("id").filter(|s| !s.is_empty());
    let (param, value) = match (&address, &id) {
        (Some(_), Some(_)) => {
            ui.error("Error removing peer: Only one of -address or -id may be specified");
            return 1;
        }
        (Some(a), None) => ("address", a.clone()),
        (None, Some(i)) => ("id", i.clone()),
        (None, None) => {
            ui.error("Error removing peer: Must specify either -address or -id");
            return 1;
        }
    };
    let client = match flags.client() {
        Ok(c) => c,
        Err(e) => {
            ui.error(&format!("Error initializing client: {e}"));
            return 1;
        }
    };
    match client
        .delete_json::<Option<serde_json::Value>>(
            "/v1/operator/raft/peer",
            &[(param.to_string(), Some(value.clone()))],
        )
        .await
    {
        Ok(_) => {
            ui.output(&format!("Removed peer with {param} \"{value}\""));
            0
        }
        Err(e) => {
            ui.error(&format!("Error removing peer: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use muster_api::RaftServer;

    use super::*;

    #[test]
    fn list_peers_prints_consuls_columns() {
        let server = |node: &str, leader: bool, last_index: u64| RaftServer {
            id: format!("{node}-id"),
            node: node.to_string(),
            address: format!("10.0.0.{}:8300", node.len()),
            leader,
            protocol_version: "3".to_string(),
            voter: true,
            last_index,
        };
        let text = format_peers(&RaftConfiguration {
            servers: vec![server("a", true, 10), server("bb", false, 9)],
            index: 1,
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Node  ID     Address        State     Voter  RaftProtocol  Commit Index  Trails Leader By"
        );
        assert_eq!(
            lines[1],
            "a     a-id   10.0.0.1:8300  leader    true   3             10            -"
        );
        assert_eq!(
            lines[2],
            "bb    bb-id  10.0.0.2:8300  follower  true   3             9             1 commit"
        );
    }
}
