//! `muster event`: fires a user event (`PUT /v1/event/fire/:name`), with Consul's flags,
//! checks and messages (`Event ID: <id>`).

use muster_api::UserEvent;
use regex::Regex;

use super::http_flags;
use super::http_flags::connect;
use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Fire a new event";

const HELP: &str = "
Usage: muster event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.
";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.extend([
        Flag::string("name", "string", "Name of the event."),
        Flag::string(
            "node",
            "string",
            "Regular expression to filter on node names.",
        ),
        Flag::string(
            "service",
            "string",
            "Regular expression to filter on service instances.",
        ),
        Flag::string(
            "tag",
            "string",
            "Regular expression to filter on service tags. Must be used with -service.",
        ),
    ]);
    Spec {
        name: "event",
        help: HELP,
        flags,
    }
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let p = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let get = |name: &str| p.string(name).unwrap_or_default();
    let (name, node, service, tag) = (get("name"), get("node"), get("service"), get("tag"));
    if name.is_empty() {
        ui.error("Event name must be specified");
        ui.error("");
        ui.error(&spec.help_text());
        return 1;
    }
    for (what, pattern) in [("node", &node), ("service", &service), ("tag", &tag)] {
        if !pattern.is_empty() {
            if let Err(e) = Regex::new(pattern) {
                ui.error(&format!("Failed to compile {what} filter regexp: {e}"));
                return 1;
            }
        }
    }
    if !tag.is_empty() && service.is_empty() {
        ui.error("Cannot provide tag filter without service filter.");
        return 1;
    }
    let payload = match p.args.as_slice() {
        [] => None,
        [one] => Some(one.as_bytes().to_vec()),
        _ => {
            ui.error("Too many command line arguments.");
            ui.error("");
            ui.error(&spec.help_text());
            return 1;
        }
    };
    let Some((client, _)) = connect(&p, ui) else {
        return 1;
    };
    if let Err(e) = client.agent_self().await {
        ui.error(&format!("Error querying Consul agent: {e}"));
        return 1;
    }
    let event = UserEvent {
        name,
        payload,
        node_filter: node,
        service_filter: service,
        tag_filter: tag,
        ..Default::default()
    };
    match client.event_fire(&event).await {
        Ok(fired) => {
            ui.output(&format!("Event ID: {}", fired.id));
            0
        }
        Err(e) => {
            ui.error(&format!("Error firing event: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[tokio::test]
    async fn checks_before_calling_the_agent() {
        let run_with = |a: &'static [&'static str]| async move {
            let mut c = Captured::default();
            let code = run(args(a), &mut c.ui()).await;
            (code, c.err())
        };
        let (code, err) = run_with(&["-http-addr=127.0.0.1:1"]).await;
        assert_eq!(code, 1);
        assert!(err.starts_with("Event name must be specified\n\nUsage: muster event"));
        let (code, err) = run_with(&["-http-addr=127.0.0.1:1", "-name=x", "-tag=v1"]).await;
        assert_eq!(
            (code, err.as_str()),
            (1, "Cannot provide tag filter without service filter.\n")
        );
        let (code, err) = run_with(&["-http-addr=127.0.0.1:1", "-name=x", "-node=("]).await;
        assert_eq!(code, 1);
        assert!(
            err.starts_with("Failed to compile node filter regexp: "),
            "{err}"
        );
        let (code, err) = run_with(&["-http-addr=127.0.0.1:1", "-name=x", "a", "b"]).await;
        assert_eq!(code, 1);
        assert!(err.starts_with("Too many command line arguments."), "{err}");
        let (code, err) = run_with(&["-http-addr=127.0.0.1:1", "-name=x", "p"]).await;
        assert_eq!(code, 1);
        assert!(err.starts_with("Error querying Consul agent: "), "{err}");
    }
}
