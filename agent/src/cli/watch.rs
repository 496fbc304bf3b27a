//! `muster watch`: Consul's flags (`-type`, `-key`, `-prefix`, `-service`, `-tag`,
//! `-passingonly`, `-state`, `-name`, `-shell`) over the agent's watch engine. Without a
//! command it prints the indented JSON of the current value and exits, as Consul's does; with
//! one it runs it for every change with the JSON on stdin and `CONSUL_INDEX` set (a failing
//! run is reported, and the next change runs it again) until interrupted.

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::http_flags::connect;
use super::http_flags::{self, HttpFlags};
use super::services::{take_repeated, values_of};
use super::{Flag, FlagKind, Spec, Ui};
use crate::watch::handler::{self, Command, Handler};

pub const SYNOPSIS: &str = "Watch for changes in Consul";

const HELP: &str = "
Usage: muster watch [options] [child...]

  Watches for changes in a given data view from Consul. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.
";

pub fn spec() -> Spec {
    let mut flags = http_flags::all();
    flags.extend([
        Flag::string(
            "type",
            "string",
            "Specifies the watch type. One of key, keyprefix, services, nodes, service, \
             checks, or event.",
        ),
        Flag::string(
            "key",
            "string",
            "Specifies the key to watch. Only for 'key' type.",
        ),
        Flag::string(
            "prefix",
            "string",
            "Specifies the key prefix to watch. Only for 'keyprefix' type.",
        ),
        Flag::string(
            "service",
            "string",
            "Specifies the service to watch. Required for 'service' type, optional for \
             'checks' type.",
        ),
        Flag::string(
            "tag",
            "string",
            "Specifies the service tag(s) to filter on. Optional for 'service' type. May be \
             specified multiple times.",
        ),
        Flag::string(
            "passingonly",
            "string",
            "Specifies if only hosts passing all checks are displayed. Optional for 'service' \
             type, must be one of `[true|false]`. Defaults false.",
        ),
        Flag::bool(
            "shell",
            "Use a shell to run the command (can set a custom shell via the SHELL environment \
             variable). The default value is true.",
        ),
        Flag::string(
            "state",
            "string",
            "Specifies the states to watch. Optional for 'checks' type.",
        ),
        Flag::string(
            "name",
            "string",
            "Specifies an event name to watch. Only for 'event' type.",
        ),
    ]);
    Spec {
        name: "watch",
        help: HELP,
        flags,
    }
}

/// Takes `-shell[=bool]` out of the flags (before the first argument that is not a flag); Go's
/// default for it is true, which clap's boolean cannot say. `Err` is Go's message.
fn take_shell(spec: &Spec, args: Vec<String>) -> Result<(Vec<String>, bool), String> {
    let mut shell = true;
    let mut rest = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let is_flag = arg.len() > 1 && arg.starts_with('-');
        if arg == "--" || !is_flag {
            rest.push(arg);
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "shell" {
            shell = match inline {
                None => true,
                Some(v) => super::parse_go_bool(v).ok_or_else(|| {
                    format!("invalid boolean value {v:?} for -shell: parse error")
                })?,
            };
            continue;
        }
        let takes_value = spec
            .flags
            .iter()
            .any(|f| f.name == name && f.kind != FlagKind::Bool);
        rest.push(arg.clone());
        if takes_value && inline.is_none() {
            if let Some(v) = iter.next() {
                rest.push(v);
            }
        }
    }
    rest.extend(iter);
    Ok((rest, shell))
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let spec = spec();
    let (args, shell) = match take_shell(&spec, args) {
        Ok(r) => r,
        Err(e) => {
            ui.error(&e);
            ui.error(&spec.help_text());
            return 1;
        }
    };
    let (args, taken) = take_repeated(&spec, args, &["tag"]);
    let p = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let get = |name: &str| p.string(name).filter(|s| !s.is_empty());
    let Some(typ) = get("type") else {
        ui.error("Watch type must be specified");
        ui.error("");
        ui.error(&spec.help_text());
        return 1;
    };
    let http = HttpFlags::from_parsed(&p);
    let mut params = Map::new();
    params.insert("type".into(), Value::String(typ));
    for (key, value) in [
        (
            "datacenter",
            http.datacenter.clone().filter(|s| !s.is_empty()),
        ),
        ("token", http.token.clone().filter(|s| !s.is_empty())),
        ("key", get("key")),
        ("prefix", get("prefix")),
        ("service", get("service")),
        ("state", get("state")),
        ("name", get("name")),
    ] {
        if let Some(v) = value {
            params.insert(key.into(), Value::String(v));
        }
    }
    let tags = values_of(&taken, "tag");
    match tags.as_slice() {
        [] => {}
        [one] => {
            params.insert("tag".into(), Value::String(one.to_string()));
        }
        many => {
            params.insert(
                "tag".into(),
                Value::Array(many.iter().map(|t| Value::String(t.to_string())).collect()),
            );
        }
    }
    if http.stale {
        params.insert("stale".into(), Value::Bool(true));
    }
    if let Some(v) = get("passingonly") {
        match super::parse_go_bool(&v) {
            Some(b) => {
                params.insert("passingonly".into(), Value::Bool(b));
            }
            None => {
                ui.error(&format!(
                    "Failed to parse passingonly flag: strconv.ParseBool: parsing {v:?}: \
                     invalid syntax"
                ));
                return 1;
            }
        }
    }
    let plan = match crate::watch::parse(&mut params)
        .and_then(|plan| crate::watch::reject_leftovers(&params).map(|()| plan))
    {
        Ok(plan) => plan,
        Err(e) => {
            ui.error(&e.message);
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
    // The watch loop reports failed queries through tracing: show them on stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let handler = if p.args.is_empty() {
        return print_once(client, plan).await;
    } else if shell {
        Handler::Script {
            command: Command::Shell(p.args.join(" ")),
            inherit: true,
        }
    } else {
        Handler::Script {
            command: Command::Args(p.args.clone()),
            inherit: true,
        }
    };
    let stop = CancellationToken::new();
    let (feed, handler_task) = handler::spawn(handler, stop.clone(), |e| eprintln!("{e}"));
    let watch = tokio::spawn(crate::watch::run(
        client,
        plan,
        stop.clone(),
        move |index, data| feed.send(index, data),
    ));
    super::wait_for_interrupt().await;
    stop.cancel();
    let _ = watch.await;
    let _ = handler_task.await;
    0
}

/// Without a command: the first answer, printed as indented JSON; then the watch ends.
async fn print_once(client: muster_api::client::Client, plan: crate::watch::Plan) -> u8 {
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let watch = tokio::spawn(crate::watch::run(
        client,
        plan,
        stop.clone(),
        move |_index, data| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(data);
            }
        },
    ));
    let first = tokio::select! {
        first = rx => first.ok(),
        () = super::wait_for_interrupt() => None,
    };
    stop.cancel();
    let _ = watch.await;
    if let Some(data) = first {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", data.to_pretty());
        let _ = out.flush();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    #[test]
    fn shell_defaults_to_true_and_is_taken_from_the_flags_only() {
        let spec = spec();
        let (rest, shell) = take_shell(
            &spec,
            args(&["-type", "key", "-key=k", "./h.sh", "-shell=false"]),
        )
        .expect("ok");
        assert!(shell);
        assert_eq!(
            rest,
            args(&["-type", "key", "-key=k", "./h.sh", "-shell=false"])
        );
        let (rest, shell) =
            take_shell(&spec, args(&["-shell=false", "-type", "key", "h"])).expect("ok");
        assert!(!shell);
        assert_eq!(rest, args(&["-type", "key", "h"]));
        assert!(take_shell(&spec, args(&["-shell=maybe"])).is_err());
    }

    #[tokio::test]
    async fn usage_errors() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["-http-addr=127.0.0.1:1"]), &mut c.ui()).await, 1);
        assert!(c
            .err()
            .starts_with("Watch type must be specified\n\nUsage: muster watch"));
        let mut c = Captured::default();
        assert_eq!(
            run(args(&["-http-addr=127.0.0.1:1", "-type=key"]), &mut c.ui()).await,
            1
        );
        assert_eq!(c.err(), "Must specify a single key to watch\n");
        let mut c = Captured::default();
        assert_eq!(
            run(
                args(&[
                    "-http-addr=127.0.0.1:1",
                    "-type=service",
                    "-service=a",
                    "-passingonly=x"
                ]),
                &mut c.ui()
            )
            .await,
            1
        );
        assert!(
            c.err().starts_with("Failed to parse passingonly flag"),
            "{}",
            c.err()
        );
        let mut c = Captured::default();
        assert_eq!(
            run(
                args(&["-http-addr=127.0.0.1:1", "-type=nodes"]),
                &mut c.ui()
            )
            .await,
            1
        );
        assert!(
            c.err().starts_with("Error querying Consul agent: "),
            "{}",
            c.err()
        );
    }
}
