//! `muster maint`: Consul's node and service maintenance command, word for word. Without
//! `-enable`/`-disable` it lists what is in maintenance (the agent's `_node_maintenance` and
//! `_service_maintenance:<id>` checks); with them it puts the node or one service in or out.

use std::collections::BTreeMap;

use muster_api::{HealthCheck, QueryOptions};

use super::http_flags;
use super::http_flags::connect;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Controls node or service maintenance mode";

/// The check ID Consul registers for node maintenance.
pub const NODE_MAINT_CHECK: &str = "_node_maintenance";
/// The prefix of the check ID Consul registers for a service's maintenance (`<prefix><id>`).
pub const SERVICE_MAINT_PREFIX: &str = "_service_maintenance:";

const HELP: &str = "
Usage: muster maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service will be excluded from all queries through the DNS
  or API interfaces, effectively taking it out of the pool of available
  nodes. This is done by registering an additional critical health check.

  When enabling maintenance mode for a node or service, you may optionally
  specify a reason string. This string will appear in the \"Notes\" field
  of the critical health check which is registered against the node or
  service. If no reason is provided, a default value will be used.

  Maintenance mode is persistent, and will be restored in the event of an
  agent restart. It is therefore required to disable maintenance mode on
  a given node or service before it will be placed back into the pool.

  By default, we operate on the node as a whole. By specifying the
  \"-service\" argument, this behavior can be changed to enable or disable
  only a specific service.

  If no arguments are given, the agent's maintenance status will be shown.
  This will return blank if nothing is currently under maintenance.
";

pub fn spec() -> Spec {
    let mut flags = http_flags::client_flags();
    flags.extend([
        Flag::bool("enable", "Enable maintenance mode."),
        Flag::bool("disable", "Disable maintenance mode."),
        Flag::string(
            "reason",
            "string",
            "Text describing the maintenance reason.",
        ),
        Flag::string(
            "service",
            "string",
            "Control maintenance mode for a specific service ID.",
        ),
    ]);
    Spec {
        name: "maint",
        help: HELP,
        flags,
    }
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let p = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (enable, disable) = (p.flag("enable"), p.flag("disable"));
    let reason = p.string("reason").unwrap_or_default();
    let service = p.string("service").unwrap_or_default();
    if enable && disable {
        ui.error("Only one of -enable or -disable may be provided");
        return 1;
    }
    if !enable && !reason.is_empty() {
        ui.error("Reason may only be provided with -enable");
        return 1;
    }
    if !enable && !disable && !service.is_empty() {
        ui.error("Service requires either -enable or -disable");
        return 1;
    }
    let Some((client, _)) = connect(&p, ui) else {
        return 1;
    };

    if !enable && !disable {
        let node_name = match client.agent_self().await {
            Ok(s) => s.config.node_name,
            Err(e) => {
                ui.error(&format!("Error querying Consul agent: {e}"));
                return 1;
            }
        };
        let checks = match client.agent_checks(&QueryOptions::default()).await {
            Ok(c) => c,
            Err(e) => {
                ui.error(&format!("Error getting checks: {e}"));
                return 1;
            }
        };
        for line in status_lines(&node_name, &checks) {
            ui.output(&line);
        }
        return 0;
    }

    let (result, done, failed) = match (enable, service.is_empty()) {
        (true, true) => (
            client.agent_node_maintenance(true, &reason).await,
            "Node maintenance is now enabled".to_string(),
            "Error enabling node maintenance",
        ),
        (true, false) => (
            client
                .agent_service_maintenance(&service, true, &reason)
                .await,
            format!("Service maintenance is now enabled for {service:?}"),
            "Error enabling service maintenance",
        ),
        (false, true) => (
            client.agent_node_maintenance(false, "").await,
            "Node maintenance is now disabled".to_string(),
            "Error disabling node maintenance",
        ),
        (false, false) => (
            client.agent_service_maintenance(&service, false, "").await,
            format!("Service maintenance is now disabled for {service:?}"),
            "Error disabling service maintenance",
        ),
    };
    match result {
        Ok(()) => {
            ui.output(&done);
            0
        }
        Err(e) => {
            ui.error(&format!("{failed}: {e}"));
            1
        }
    }
}

/// The listing Consul prints for the maintenance checks among `checks` (node first, then the
/// services by check ID), each block followed by an empty line.
pub fn status_lines(node_name: &str, checks: &BTreeMap<String, HealthCheck>) -> Vec<String> {
    let mut lines = Vec::new();
    for check in checks.values() {
        if check.check_id == NODE_MAINT_CHECK {
            lines.push("Node:".to_string());
            lines.push(format!("  Name:   {node_name}"));
            lines.push(format!("  Reason: {}", check.notes));
            lines.push(String::new());
        } else if check.check_id.starts_with(SERVICE_MAINT_PREFIX) {
            lines.push("Service:".to_string());
            lines.push(format!("  ID:     {}", check.service_id));
            lines.push(format!("  Reason: {}", check.notes));
            lines.push(String::new());
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    fn check(id: &str, service: &str, notes: &str) -> (String, HealthCheck) {
        (
            id.to_string(),
            HealthCheck {
                check_id: id.to_string(),
                service_id: service.to_string(),
                notes: notes.to_string(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn listing() {
        let checks: BTreeMap<String, HealthCheck> = [
            check("_service_maintenance:redis", "redis", "backup"),
            check("serfHealth", "", ""),
            check("_node_maintenance", "", "new kernel"),
        ]
        .into();
        assert_eq!(
            status_lines("n1", &checks).join("\n"),
            "Node:\n  Name:   n1\n  Reason: new kernel\n\n\
             Service:\n  ID:     redis\n  Reason: backup\n"
        );
        assert!(status_lines("n1", &BTreeMap::new()).is_empty());
    }

    #[tokio::test]
    async fn conflicting_flags() {
        for (a, want) in [
            (
                &["-enable", "-disable"][..],
                "Only one of -enable or -disable may be provided\n",
            ),
            (
                &["-reason=x"][..],
                "Reason may only be provided with -enable\n",
            ),
            (
                &["-disable", "-reason", "x"][..],
                "Reason may only be provided with -enable\n",
            ),
            (
                &["-service=web"][..],
                "Service requires either -enable or -disable\n",
            ),
        ] {
            let mut c = Captured::default();
            assert_eq!(run(args(a), &mut c.ui()).await, 1, "{a:?}");
            assert_eq!(c.err(), want, "{a:?}");
            assert!(c.out().is_empty());
        }
        let mut c = Captured::default();
        assert_eq!(run(args(&["-datacenter=dc1"]), &mut c.ui()).await, 1);
        assert!(c
            .err()
            .starts_with("flag provided but not defined: -datacenter\n"));
    }
}
