//! `muster catalog datacenters|nodes|services`: Consul's catalog listing commands, word for word
//! (flags, the `Node  ID  Address  DC` table and its `-detailed` form, the `-tags` table, the
//! "No ... match the given query" messages and exit codes), with the tables as pure functions.

use std::collections::BTreeMap;

use muster_api::{CatalogService, Node, QueryOptions};

use super::http_flags;
use super::http_flags::connect;
use super::kv::{load_data_source, tabwrite};
use super::members::columnize;
use super::services::{help_with_subcommands, map_flag, take_repeated, values_of};
use super::{Flag, Parsed, Spec, Ui};

pub const SYNOPSIS: &str = "Interact with the catalog";

/// The `catalog` subcommands and their synopses, sorted.
pub const SUBCOMMANDS: &[(&str, &str)] = &[
    ("datacenters", "Lists all known datacenters"),
    ("nodes", "Lists all nodes in the given datacenter"),
    ("services", "Lists all registered services in a datacenter"),
];

/// `muster catalog` itself (it only prints help).
pub fn spec() -> Spec {
    Spec {
        name: "catalog",
        help: HELP,
        flags: Vec::new(),
    }
}

/// `muster catalog -h` (and `muster catalog` alone, on stderr): the usage and the subcommands.
pub fn parent_help() -> String {
    help_with_subcommands(&spec(), SUBCOMMANDS)
}

const HELP: &str = "
Usage: muster catalog <subcommand> [options] [args]

  This command has subcommands for interacting with the catalog. The
  catalog should not be confused with the agent, although the APIs and
  responses may be similar.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  List all datacenters:

      $ muster catalog datacenters

  List all nodes:

      $ muster catalog nodes

  List all services:

      $ muster catalog services

  For more examples, ask for subcommand help or view the documentation.
";

const DATACENTERS_HELP: &str = "
Usage: muster catalog datacenters [options]

  Retrieves the list of all known datacenters. This datacenters are sorted in
  ascending order based on the estimated median round trip time from the servers
  in this datacenter to the servers in the other datacenters.

  To retrieve the list of datacenters:

      $ muster catalog datacenters

  For a full list of options and examples, please see the documentation.
";

const NODES_HELP: &str = "
Usage: muster catalog nodes [options]

  Retrieves the list nodes registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of nodes:

      $ muster catalog nodes

  To print detailed information including full node IDs, tagged addresses, and
  metadata information:

      $ muster catalog nodes -detailed

  To list nodes which are running a particular service:

      $ muster catalog nodes -service=web

  To filter by node metadata:

      $ muster catalog nodes -node-meta=\"foo=bar\"

  To sort nodes by estimated round-trip time from node-web:

      $ muster catalog nodes -near=node-web

  For a full list of options and examples, please see the documentation.
";

const SERVICES_HELP: &str = "
Usage: muster catalog services [options]

  Retrieves the list services registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of services:

      $ muster catalog services

  To include the services' tags in the output:

      $ muster catalog services -tags

  To list services which run on a particular node:

      $ muster catalog services -node=web

  To filter services on node metadata:

      $ muster catalog services -node-meta=\"foo=bar\"

  For a full list of options and examples, please see the documentation.
";

/// The declaration of `catalog <sub>`.
pub fn sub_spec(sub: &str) -> Option<Spec> {
    let mut flags = http_flags::all();
    let (name, help) = match sub {
        "datacenters" => ("catalog datacenters", DATACENTERS_HELP),
        "nodes" => {
            flags.extend([
                Flag::string("filter", "string", "Filter to use with the request"),
                Flag::bool(
                    "detailed",
                    "Output detailed information about the nodes including their addresses \
                     and metadata.",
                ),
                Flag::string(
                    "near",
                    "string",
                    "Node name to sort the node list in ascending order based on estimated \
                     round-trip time from that node. Passing \"_agent\" will use this agent's \
                     node for sorting.",
                ),
                Flag::string(
                    "node-meta",
                    "key=value",
                    "Metadata to filter nodes with the given `key=value` pairs. This flag may \
                     be specified multiple times to filter on multiple sources of metadata.",
                ),
                Flag::string(
                    "service",
                    "id or name",
                    "Service `id or name` to filter nodes. Only nodes which are providing the \
                     given service will be returned.",
                ),
            ]);
            ("catalog nodes", NODES_HELP)
        }
        "services" => {
            flags.extend([
                Flag::string(
                    "node",
                    "id or name",
                    "Node `id or name` for which to list services.",
                ),
                Flag::string(
                    "node-meta",
                    "key=value",
                    "Metadata to filter nodes with the given `key=value` pairs. If specified, \
                     only services running on nodes matching the given metadata will be \
                     returned. This flag may be specified multiple times to filter on multiple \
                     sources of metadata.",
                ),
                Flag::bool(
                    "tags",
                    "Display each service's tags as a comma-separated list beside each service \
                     entry.",
                ),
            ]);
            ("catalog services", SERVICES_HELP)
        }
        _ => return None,
    };
    Some(Spec { name, help, flags })
}

/// Runs `catalog <sub>` with the arguments after the subcommand name.
pub async fn run(sub: &str, args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let Some(spec) = sub_spec(sub) else {
        ui.error(&parent_help());
        return 1;
    };
    let (args, taken) = take_repeated(&spec, args, &["node-meta"]);
    let p = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let node_meta = match map_flag("node-meta", &values_of(&taken, "node-meta")) {
        Ok(m) => m,
        Err(e) => {
            ui.error(&e);
            ui.error(&spec.help_text());
            return 1;
        }
    };
    if !p.args.is_empty() {
        ui.error(&format!(
            "Too many arguments (expected 0, got {})",
            p.args.len()
        ));
        return 1;
    }
    match sub {
        "datacenters" => datacenters(&p, ui).await,
        "nodes" => nodes(&p, &node_meta, ui).await,
        _ => services(&p, &node_meta, ui).await,
    }
}

async fn datacenters(p: &Parsed, ui: &mut Ui<'_>) -> u8 {
    let Some((client, _)) = connect(p, ui) else {
        return 1;
    };
    match client.catalog_datacenters().await {
        Ok(dcs) => {
            for dc in dcs {
                ui.output(&dc);
            }
            0
        }
        Err(e) => {
            ui.error(&format!("Error listing datacenters: {e}"));
            1
        }
    }
}

async fn nodes(p: &Parsed, node_meta: &BTreeMap<String, String>, ui: &mut Ui<'_>) -> u8 {
    let Some((client, flags)) = connect(p, ui) else {
        return 1;
    };
    let filter = match p.string("filter").filter(|f| !f.is_empty()) {
        None => None,
        Some(source) => match load_data_source(&source, ui) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) => {
                ui.error(&format!("Could not process filter argument: {e}"));
                return 1;
            }
        },
    };
    let opts = QueryOptions {
        filter,
        ..flags.query_options()
    };
    let near = p.string("near");
    let nodes = match p.string("service").filter(|s| !s.is_empty()) {
        Some(service) => {
            match client
                .catalog_service(&service, node_meta, near.as_deref(), &opts)
                .await
            {
                Ok((instances, _)) => instances.iter().map(node_of_instance).collect(),
                Err(e) => {
                    ui.error(&format!("Error listing nodes for service: {e}"));
                    return 1;
                }
            }
        }
        None => match client
            .catalog_nodes(node_meta, near.as_deref(), &opts)
            .await
        {
            Ok((nodes, _)) => nodes,
            Err(e) => {
                ui.error(&format!("Error listing nodes: {e}"));
                return 1;
            }
        },
    };
    if nodes.is_empty() {
        ui.error("No nodes match the given query - try expanding your search.");
        return 0;
    }
    ui.output(&columnize(&node_lines(&nodes, p.flag("detailed"))));
    0
}

/// The node an instance of `catalog/service/:name` runs on, as Consul's command builds it.
pub fn node_of_instance(s: &CatalogService) -> Node {
    Node {
        id: s.id.clone(),
        node: s.node.clone(),
        address: s.address.clone(),
        datacenter: s.datacenter.clone(),
        tagged_addresses: s.tagged_addresses.clone(),
        meta: s.node_meta.clone(),
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}

const SEP: char = '\u{1f}';

/// Consul's `NodesHeader`/`NodeRow`: `Node ID Address DC` with the ID cut at its first `-`, or
/// with `-detailed` the full ID, `TaggedAddresses` and `Meta` as sorted `k=v, k=v` lists.
/// Columns are separated by 0x1f for [`columnize`].
pub fn node_lines(nodes: &[Node], detailed: bool) -> Vec<String> {
    let sep = SEP.to_string();
    let mut lines = Vec::with_capacity(nodes.len() + 1);
    if detailed {
        lines.push(["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"].join(&sep));
    } else {
        lines.push(["Node", "ID", "Address", "DC"].join(&sep));
    }
    for n in nodes {
        if detailed {
            lines.push(
                [
                    n.node.as_str(),
                    n.id.as_str(),
                    n.address.as_str(),
                    n.datacenter.as_str(),
                    &map_to_kv(&n.tagged_addresses, ", "),
                    &map_to_kv(&n.meta, ", "),
                ]
                .join(&sep),
            );
        } else {
            let id = match n.id.find('-') {
                Some(i) if i > 0 => &n.id[..i],
                _ => n.id.as_str(),
            };
            lines.push(
                [
                    n.node.as_str(),
                    id,
                    n.address.as_str(),
                    n.datacenter.as_str(),
                ]
                .join(&sep),
            );
        }
    }
    lines
}

/// Consul's `mapToKV`: `k=v` pairs sorted by key, joined.
pub fn map_to_kv(map: &BTreeMap<String, String>, joiner: &str) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(joiner)
}

async fn services(p: &Parsed, node_meta: &BTreeMap<String, String>, ui: &mut Ui<'_>) -> u8 {
    let Some((client, flags)) = connect(p, ui) else {
        return 1;
    };
    let opts = flags.query_options();
    let services: BTreeMap<String, Vec<String>> = match p.string("node").filter(|n| !n.is_empty()) {
        Some(node) => match client.catalog_node_services(&node, node_meta, &opts).await {
            Ok((list, _)) => {
                let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for s in list.map(|l| l.services).unwrap_or_default() {
                    by_name.entry(s.service).or_default().extend(s.tags);
                }
                by_name
            }
            Err(e) => {
                ui.error(&format!("Error listing services for node: {e}"));
                return 1;
            }
        },
        None => match client.catalog_services(node_meta, &opts).await {
            Ok((services, _)) => services,
            Err(e) => {
                ui.error(&format!("Error listing services: {e}"));
                return 1;
            }
        },
    };
    if services.is_empty() {
        ui.error("No services match the given query - try expanding your search.");
        return 0;
    }
    if p.flag("tags") {
        ui.output(&services_with_tags(&services));
    } else {
        for name in services.keys() {
            ui.output(name);
        }
    }
    0
}

/// `catalog services -tags`: Consul's tabwriter table (min width 0, padding 6) of each service
/// and its sorted tags joined by `,`, trimmed of surrounding whitespace.
pub fn services_with_tags(services: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = String::new();
    for (name, tags) in services {
        let mut tags = tags.clone();
        tags.sort();
        text.push_str(&format!("{name}\t{}\n", tags.join(",")));
    }
    String::from_utf8_lossy(&tabwrite(text.as_bytes(), 0, 6))
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    fn node(name: &str, id: &str, addr: &str) -> Node {
        Node {
            id: id.into(),
            node: name.into(),
            address: addr.into(),
            datacenter: "dc1".into(),
            tagged_addresses: [
                ("lan".to_string(), addr.to_string()),
                ("wan".to_string(), addr.to_string()),
            ]
            .into(),
            meta: [("consul-network-segment".to_string(), String::new())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_table() {
        let nodes = vec![
            node(
                "worker-01",
                "1b662d97-8b5c-3cc2-0ac0-96f55ad423b5",
                "172.20.20.11",
            ),
            node("db", "", "10.0.0.1"),
        ];
        assert_eq!(
            columnize(&node_lines(&nodes, false)),
            "Node       ID        Address       DC\n\
             worker-01  1b662d97  172.20.20.11  dc1\n\
             db                   10.0.0.1      dc1"
        );
        assert_eq!(
            columnize(&node_lines(&nodes[..1], true)),
            "Node       ID                                    Address       DC   \
             TaggedAddresses                     Meta\n\
             worker-01  1b662d97-8b5c-3cc2-0ac0-96f55ad423b5  172.20.20.11  dc1  \
             lan=172.20.20.11, wan=172.20.20.11  consul-network-segment="
        );
    }

    #[test]
    fn services_tags_table() {
        let services: BTreeMap<String, Vec<String>> = [
            ("consul".to_string(), vec![]),
            (
                "postgresql".to_string(),
                vec!["replica".to_string(), "primary".to_string()],
            ),
            ("redis".to_string(), vec!["v1".to_string()]),
        ]
        .into();
        // Go's tabwriter pads a cell even when the line's last cell is empty; TrimSpace only
        // trims the ends of the whole table.
        assert_eq!(
            services_with_tags(&services),
            "consul          \npostgresql      primary,replica\nredis           v1"
        );
    }

    #[tokio::test]
    async fn usage_errors() {
        let mut c = Captured::default();
        assert_eq!(run("nodes", args(&["extra"]), &mut c.ui()).await, 1);
        assert_eq!(c.err(), "Too many arguments (expected 0, got 1)\n");

        let mut c = Captured::default();
        assert_eq!(
            run("services", args(&["-node-meta", "nope"]), &mut c.ui()).await,
            1
        );
        assert!(c
            .err()
            .starts_with("invalid value \"nope\" for flag -node-meta"));

        let mut c = Captured::default();
        assert_eq!(
            run("datacenters", args(&["-detailed"]), &mut c.ui()).await,
            1
        );
        assert!(c
            .err()
            .starts_with("flag provided but not defined: -detailed\n"));

        let mut c = Captured::default();
        assert_eq!(run("frob", Vec::new(), &mut c.ui()).await, 1);
        assert!(c.err().contains("Subcommands:"));
    }
}
