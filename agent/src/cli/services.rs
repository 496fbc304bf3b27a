//! `muster services register|deregister`: Consul's commands for the agent's local services,
//! word for word (flags, messages, exit codes). Services come from flags or from files holding
//! `service`/`services` blocks, read exactly as the agent reads its config files (JSON or HCL,
//! in dev mode, as Consul's `ServicesFromFiles` does) and decoded by the agent's own service
//! definition rules.
//!
//! Also home of the flag helpers the other service-discovery commands share: Go's repeatable
//! flags (`-tag`, `-meta k=v`, `-node-meta k=v`) and a parent command's help with its
//! subcommands.

use std::collections::BTreeMap;

use muster_api::{ServiceAddress, ServiceRegistration};

use super::http_flags;
use super::{Flag, FlagKind, Parsed, Spec, Ui};

pub const SYNOPSIS: &str = "Interact with services";

/// The `services` subcommands and their synopses, sorted.
pub const SUBCOMMANDS: &[(&str, &str)] = &[
    ("deregister", "Deregister services with the local agent"),
    ("register", "Register services with the local agent"),
];

/// `muster services` itself (it only prints help).
pub fn spec() -> Spec {
    Spec {
        name: "services",
        help: HELP,
        flags: Vec::new(),
    }
}

const HELP: &str = "
Usage: muster services <subcommand> [options] [args]

  This command has subcommands for interacting with services. The subcommands
  default to working with services registered with the local agent. Please see
  the \"muster catalog\" command for interacting with the entire catalog.

  For more examples, ask for subcommand help or view the documentation.
";

const REGISTER_HELP: &str = "
Usage: muster services register [options] [FILE...]

  Register one or more services using the local agent API. Services can
  be registered from standard configuration files (HCL or JSON) or
  using flags. The service is registered and the command returns. The caller
  must remember to call \"muster services deregister\" or a similar API to
  deregister the service when complete.

      $ muster services register web.json

  Additional flags and more advanced use cases are detailed below.
";

const DEREGISTER_HELP: &str = "
Usage: muster services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with
  the local agent.

      $ muster services deregister web.json db.json

  The -id flag may be used to deregister a single service by ID:

      $ muster services deregister -id=web

  Services are deregistered from the local agent catalog. This command must
  be run against the same agent where the service was registered.
";

/// `muster services -h` (and `muster services` alone, on stderr): the usage and the
/// subcommands.
pub fn parent_help() -> String {
    help_with_subcommands(&spec(), SUBCOMMANDS)
}

/// The declaration of `services <sub>`.
pub fn sub_spec(sub: &str) -> Option<Spec> {
    let mut flags = http_flags::all();
    let (name, help) = match sub {
        "register" => {
            flags.extend(register_flags());
            ("services register", REGISTER_HELP)
        }
        "deregister" => {
            flags.push(Flag::string(
                "id",
                "string",
                "ID to delete. This must not be set if arguments are given.",
            ));
            ("services deregister", DEREGISTER_HELP)
        }
        _ => return None,
    };
    Some(Spec { name, help, flags })
}

fn register_flags() -> Vec<Flag> {
    vec![
        Flag::string(
            "id",
            "string",
            "ID of the service to register for arg-based registration. If this isn't set, it \
             will default to the -name value.",
        ),
        Flag::string(
            "name",
            "string",
            "Name of the service to register for arg-based registration.",
        ),
        Flag::string(
            "address",
            "string",
            "Address of the service to register for arg-based registration.",
        ),
        Flag::uint(
            "port",
            "Port of the service to register for arg-based registration.",
        ),
        Flag::string(
            "meta",
            "value",
            "Metadata to set on the service, formatted as key=value. This flag may be \
             specified multiple times to set multiple meta fields.",
        ),
        Flag::string(
            "tag",
            "value",
            "Tag to add to the service. This flag can be specified multiple times to set \
             multiple tags.",
        ),
        Flag::string(
            "tagged-address",
            "value",
            "Tagged address to set on the service, formatted as key=value. This flag may be \
             specified multiple times to set multiple addresses.",
        ),
        Flag::string("kind", "string", "The services 'kind'"),
    ]
}

/// Runs `services <sub>` with the arguments after the subcommand name.
pub async fn run(sub: &str, args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let Some(spec) = sub_spec(sub) else {
        ui.error(&parent_help());
        return 1;
    };
    match sub {
        "register" => register(&spec, args, ui).await,
        _ => deregister(&spec, args, ui).await,
    }
}

// ---- shared flag helpers ----------------------------------------------------------------------

/// Pulls the values of Go's repeatable flags (`flag.Var` with an appending or map value) named
/// `names` out of `args`, in order, before `spec` parses the rest (its flags keep only the last
/// value). Parsing follows Go's `flag` package: flags end at `--` or the first positional
/// argument; a flag of `spec` that takes a value consumes the next argument unless written
/// `-name=value`. A repeatable flag without a value, and everything from an unknown flag on,
/// stay in place for `spec` to report.
pub fn take_repeated(
    spec: &Spec,
    args: Vec<String>,
    names: &[&str],
) -> (Vec<String>, Vec<(String, String)>) {
    let mut rest = Vec::with_capacity(args.len());
    let mut taken = Vec::new();
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let is_flag = arg.len() > 1 && arg.starts_with('-') && arg.parse::<f64>().is_err();
        if arg == "--" || !is_flag {
            rest.push(arg);
            break;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if names.contains(&name) {
            match inline {
                Some(v) => taken.push((name.to_string(), v.to_string())),
                None => match iter.next() {
                    Some(v) => taken.push((name.to_string(), v)),
                    None => rest.push(arg.clone()),
                },
            }
            continue;
        }
        let Some(flag) = spec.flags.iter().find(|f| f.name == name) else {
            rest.push(arg);
            break;
        };
        let takes_value = flag.kind != FlagKind::Bool && inline.is_none();
        rest.push(arg.clone());
        if takes_value {
            if let Some(v) = iter.next() {
                rest.push(v);
            }
        }
    }
    rest.extend(iter);
    (rest, taken)
}

/// The values given for `name`, in order.
pub fn values_of<'a>(taken: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    taken
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Consul's `FlagMapValue`: `key=value` pairs (split at the first `=`, later keys win). The
/// error is Go's `flag` message for a bad value.
pub fn map_flag(name: &str, values: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for value in values {
        match value.split_once('=') {
            Some((k, v)) => {
                map.insert(k.to_string(), v.to_string());
            }
            None => {
                return Err(format!(
                    "invalid value {value:?} for flag -{name}: Missing \"=\" value in argument: \
                     {value}"
                ))
            }
        }
    }
    Ok(map)
}

/// A parent command's help: its usage, then its subcommands and their synopses (Consul's
/// layout, as `muster kv -h`).
pub fn help_with_subcommands(spec: &Spec, subcommands: &[(&str, &str)]) -> String {
    let mut text = spec.help_text();
    text.push_str("\n\nSubcommands:");
    let longest = subcommands.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, synopsis) in subcommands {
        text.push_str(&format!("\n    {name:<longest$}    {synopsis}"));
    }
    text
}

use super::http_flags::connect;

// ---- files ------------------------------------------------------------------------------------

/// Consul's `ServicesFromFiles`: each file (or directory) is loaded as the agent loads a config
/// file in dev mode, and each `service`/`services` block becomes a registration through the
/// agent's own definition rules. Errors name the file.
pub fn services_from_files(files: &[String]) -> Result<Vec<ServiceRegistration>, String> {
    let mut out = Vec::new();
    for file in files {
        let config = crate::config::from_agent_args(vec![
            "-dev".to_string(),
            // Only decoding happens here; whether a script check may run is the receiving
            // agent's decision, so the file's script checks are not refused at this point.
            "-hcl=enable_local_script_checks = true".to_string(),
            format!("-config-file={file}"),
        ])
        .map_err(|e| e.to_string())?;
        for (i, sourced) in config.services.iter().enumerate() {
            let service = crate::local::definition::parse_service_at(
                &sourced.value,
                &format!("services[{i}]"),
                true,
            )
            .map_err(|e| format!("Error parsing {}: {e}", sourced.source))?;
            out.push(service);
        }
    }
    Ok(out)
}

// ---- register ---------------------------------------------------------------------------------

/// Go's `net.SplitHostPort` + `strconv.Atoi`, as Consul's `api.ParseServiceAddr`.
pub fn parse_service_addr(text: &str) -> Result<ServiceAddress, String> {
    let missing = || format!("address {text}: missing port in address");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {text}: missing ']' in address"))?;
        let port = after.strip_prefix(':').ok_or_else(missing)?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(missing)?;
        if host.contains(':') {
            return Err(format!("address {text}: too many colons in address"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("strconv.Atoi: parsing {port:?}: invalid syntax"))?;
    Ok(ServiceAddress {
        address: host.to_string(),
        port,
    })
}

/// Consul's `CombineArgs`: a flag's value fills a field the file left empty; meta and tagged
/// addresses from flags are added (flags win), tags appended.
pub fn combine_args(file: &mut ServiceRegistration, flags: &ServiceRegistration) {
    if file.id.is_empty() {
        file.id = flags.id.clone();
    }
    if file.name.is_empty() {
        file.name = flags.name.clone();
    }
    if file.address.is_empty() {
        file.address = flags.address.clone();
    }
    if file.port == 0 {
        file.port = flags.port;
    }
    if file.kind.is_empty() {
        file.kind = flags.kind.clone();
    }
    for (k, v) in &flags.meta {
        file.meta.insert(k.clone(), v.clone());
    }
    for (k, v) in &flags.tagged_addresses {
        file.tagged_addresses.insert(k.clone(), v.clone());
    }
    file.tags.extend(flags.tags.iter().cloned());
}

/// The registration the flags describe; `Err` is Go's flag error (print it with the usage).
fn service_from_flags(
    p: &Parsed,
    taken: &[(String, String)],
) -> Result<Result<ServiceRegistration, String>, String> {
    let meta = map_flag("meta", &values_of(taken, "meta"))?;
    let tagged = map_flag("tagged-address", &values_of(taken, "tagged-address"))?;
    let port = match p.uint("port") {
        None => 0,
        Some(n) => u16::try_from(n)
            .map_err(|_| format!("invalid value \"{n}\" for flag -port: value out of range"))?,
    };
    let mut tagged_addresses = BTreeMap::new();
    for (k, v) in tagged {
        match parse_service_addr(&v) {
            Ok(addr) => {
                tagged_addresses.insert(k, addr);
            }
            Err(e) => return Ok(Err(format!("Invalid Tagged Address: {e}"))),
        }
    }
    Ok(Ok(ServiceRegistration {
        kind: p.string("kind").unwrap_or_default(),
        id: p.string("id").unwrap_or_default(),
        name: p.string("name").unwrap_or_default(),
        address: p.string("address").unwrap_or_default(),
        port,
        tags: values_of(taken, "tag")
            .into_iter()
            .map(str::to_string)
            .collect(),
        meta,
        tagged_addresses,
        ..Default::default()
    }))
}

async fn register(spec: &Spec, args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let (args, taken) = take_repeated(spec, args, &["tag", "meta", "tagged-address"]);
    let p = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let from_flags = match service_from_flags(&p, &taken) {
        Ok(Ok(s)) => s,
        Ok(Err(message)) => {
            ui.error(&message);
            return 1;
        }
        Err(flag_error) => {
            ui.error(&flag_error);
            ui.error(&spec.help_text());
            return 1;
        }
    };
    if p.args.is_empty() && from_flags.name.is_empty() {
        ui.error("Service registration requires at least one argument or flags.");
        return 1;
    }
    if !p.args.is_empty() && !from_flags.name.is_empty() {
        ui.error("Service registration requires arguments or -id, not both.");
        return 1;
    }
    let services = if p.args.is_empty() {
        vec![from_flags]
    } else {
        match services_from_files(&p.args) {
            Ok(mut list) => {
                for s in &mut list {
                    combine_args(s, &from_flags);
                }
                list
            }
            Err(e) => {
                ui.error(&format!("Error: {e}"));
                return 1;
            }
        }
    };
    let Some((client, _)) = connect(&p, ui) else {
        return 1;
    };
    for service in &services {
        if let Err(e) = client.agent_service_register(service).await {
            ui.error(&format!(
                "Error registering service {:?}: {e}",
                service.name
            ));
            return 1;
        }
        ui.output(&format!("Registered service: {}", service.name));
    }
    0
}

// ---- deregister -------------------------------------------------------------------------------

async fn deregister(spec: &Spec, args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let p = match spec.parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let flag_id = p.string("id").unwrap_or_default();
    if p.args.is_empty() && flag_id.is_empty() {
        ui.error("Service deregistration requires at least one argument or -id.");
        return 1;
    }
    if !p.args.is_empty() && !flag_id.is_empty() {
        ui.error("Service deregistration requires arguments or -id, not both.");
        return 1;
    }
    let ids: Vec<String> = if p.args.is_empty() {
        vec![flag_id]
    } else {
        match services_from_files(&p.args) {
            // A file's service is known by its ID, or its name when it has none.
            Ok(list) => list
                .into_iter()
                .map(|s| if s.id.is_empty() { s.name } else { s.id })
                .collect(),
            Err(e) => {
                ui.error(&format!("Error: {e}"));
                return 1;
            }
        }
    };
    let Some((client, _)) = connect(&p, ui) else {
        return 1;
    };
    for id in ids.iter().filter(|id| !id.is_empty()) {
        if let Err(e) = client.agent_service_deregister(id).await {
            // Consul says "Error registering service" here (a slip); this says what failed.
            ui.error(&format!("Error deregistering service {id:?}: {e}"));
            return 1;
        }
        ui.output(&format!("Deregistered service: {id}"));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    fn register_spec() -> Spec {
        sub_spec("register").expect("register")
    }

    #[test]
    fn repeated_flags_are_taken_in_order() {
        let (rest, taken) = take_repeated(
            &register_spec(),
            args(&[
                "-name",
                "web",
                "-tag=a",
                "--tag",
                "b",
                "-meta",
                "k=v",
                "-port=80",
                "file.json",
                "-tag=c",
            ]),
            &["tag", "meta"],
        );
        assert_eq!(rest, ["-name", "web", "-port=80", "file.json", "-tag=c"]);
        assert_eq!(
            taken,
            [
                ("tag".to_string(), "a".to_string()),
                ("tag".to_string(), "b".to_string()),
                ("meta".to_string(), "k=v".to_string()),
            ]
        );
        // A value that looks like a flag is still the value, as in Go.
        let (rest, taken) = take_repeated(&register_spec(), args(&["-tag", "-x"]), &["tag"]);
        assert!(rest.is_empty());
        assert_eq!(taken, [("tag".to_string(), "-x".to_string())]);
        // No value: left for the parser to report.
        let (rest, _) = take_repeated(&register_spec(), args(&["-tag"]), &["tag"]);
        assert_eq!(rest, ["-tag"]);
        // An unknown flag stops the scan.
        let (rest, taken) = take_repeated(&register_spec(), args(&["-nope", "-tag=a"]), &["tag"]);
        assert_eq!(rest, ["-nope", "-tag=a"]);
        assert!(taken.is_empty());
    }

    #[test]
    fn map_flags() {
        let m = map_flag("meta", &["a=1", "b=x=y", "a=2"]).expect("map");
        assert_eq!(m.get("a").map(String::as_str), Some("2"));
        assert_eq!(m.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(
            map_flag("meta", &["nope"]).expect_err("no ="),
            "invalid value \"nope\" for flag -meta: Missing \"=\" value in argument: nope"
        );
    }

    #[test]
    fn service_addresses() {
        assert_eq!(
            parse_service_addr("10.0.0.1:80"),
            Ok(ServiceAddress {
                address: "10.0.0.1".into(),
                port: 80
            })
        );
        assert_eq!(
            parse_service_addr("[::1]:8080"),
            Ok(ServiceAddress {
                address: "::1".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse_service_addr("10.0.0.1"),
            Err("address 10.0.0.1: missing port in address".to_string())
        );
        assert!(parse_service_addr("h:x").is_err());
    }

    #[test]
    fn combine_fills_gaps_and_appends() {
        let mut file = ServiceRegistration {
            name: "web".into(),
            port: 80,
            tags: vec!["a".into()],
            meta: [("k".to_string(), "file".to_string())].into(),
            ..Default::default()
        };
        let flags = ServiceRegistration {
            id: "web-1".into(),
            name: "other".into(),
            port: 81,
            address: "10.0.0.1".into(),
            tags: vec!["b".into()],
            meta: [("k".to_string(), "flag".to_string())].into(),
            ..Default::default()
        };
        combine_args(&mut file, &flags);
        assert_eq!(file.id, "web-1");
        assert_eq!(file.name, "web");
        assert_eq!(file.port, 80);
        assert_eq!(file.address, "10.0.0.1");
        assert_eq!(file.tags, ["a", "b"]);
        assert_eq!(file.meta.get("k").map(String::as_str), Some("flag"));
    }

    #[tokio::test]
    async fn usage_errors() {
        let run_args = |sub: &'static str, a: &[&str]| {
            let a = args(a);
            async move {
                let mut c = Captured::default();
                let code = run(sub, a, &mut c.ui()).await;
                (code, c.out(), c.err())
            }
        };
        let (code, out, err) = run_args("register", &[]).await;
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert_eq!(
            err,
            "Service registration requires at least one argument or flags.\n"
        );
        let (code, _, err) = run_args("register", &["-name=web", "x.json"]).await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Service registration requires arguments or -id, not both.\n"
        );
        let (code, _, err) = run_args("register", &["-name=web", "-meta", "nope"]).await;
        assert_eq!(code, 1);
        assert!(
            err.starts_with(
                "invalid value \"nope\" for flag -meta: Missing \"=\" value in argument: nope\n\
                 Usage: muster services register"
            ),
            "{err}"
        );
        let (code, _, err) = run_args("register", &["-name=web", "-port=70000"]).await;
        assert_eq!(code, 1);
        assert!(
            err.starts_with("invalid value \"70000\" for flag -port"),
            "{err}"
        );
        let (code, _, err) = run_args(
            "register",
            &["-name=web", "-tagged-address", "lan=10.0.0.1"],
        )
        .await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Invalid Tagged Address: address 10.0.0.1: missing port in address\n"
        );
        let (code, _, err) = run_args("register", &["-bogus"]).await;
        assert_eq!(code, 1);
        assert!(
            err.starts_with("flag provided but not defined: -bogus\n"),
            "{err}"
        );

        let (code, _, err) = run_args("deregister", &[]).await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Service deregistration requires at least one argument or -id.\n"
        );
        let (code, _, err) = run_args("deregister", &["-id=web", "x.json"]).await;
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "Service deregistration requires arguments or -id, not both.\n"
        );
    }

    #[tokio::test]
    async fn missing_file_is_an_error_naming_it() {
        let mut c = Captured::default();
        let code = run(
            "register",
            args(&["/nonexistent/muster-web.json"]),
            &mut c.ui(),
        )
        .await;
        assert_eq!(code, 1);
        assert!(c.err().starts_with("Error: "), "{}", c.err());
        assert!(
            c.err().contains("/nonexistent/muster-web.json"),
            "{}",
            c.err()
        );
    }

    #[test]
    fn parent_help_lists_subcommands() {
        assert!(parent_help().ends_with(
            "Subcommands:\n    deregister    Deregister services with the local agent\n    \
             register      Register services with the local agent"
        ));
    }
}
