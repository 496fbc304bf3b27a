//! `muster agent`'s command-line flags (Consul's names and meanings): a clap command, Go-style
//! spelling via [`crate::cli::goflags`], Go's `-flag=true|false` for boolean flags, and the
//! result turned into an overlay of canonical config keys plus the ordered config paths.
//! Every error names the flag the way the user wrote it (`-http-port`).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::error::ContextKind;
use clap::error::ContextValue;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::Arg;
use clap::ArgAction;
use clap::ArgMatches;
use clap::Command;
use clap::CommandFactory;
use clap::FromArgMatches;
use clap::Parser;
use clap::ValueEnum;
use serde_json::Map;
use serde_json::Value;

use super::duration::parse_duration;
use super::file::Format;
use super::schema;
use super::schema::merge_value_into;
use super::ConfigError;
use crate::cli::goflags;

/// The flags Muster implements. Each also exists as a config-file key, except `-dev`,
/// `-config-*` and `-hcl`.
#[derive(Parser, Debug)]
#[command(
    name = "agent",
    bin_name = "muster agent",
    about = "Starts a Muster agent (Consul-compatible). Flags override config files.",
    args_override_self = true,
    disable_version_flag = true
)]
struct AgentFlags {
    /// Starts the agent in development mode: an in-memory server on 127.0.0.1 with the UI.
    #[arg(long)]
    dev: bool,
    /// Switches the agent to server mode.
    #[arg(long)]
    server: bool,
    /// Sets the server to bootstrap mode (a single-server cluster).
    #[arg(long)]
    bootstrap: bool,
    /// Sets the server to expect this many servers before bootstrapping the cluster.
    #[arg(long = "bootstrap-expect", value_name = "N")]
    bootstrap_expect: Option<i64>,
    /// Path to a data directory to store agent state.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<String>,
    /// Name of this node; must be unique in the cluster (default: the hostname).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// A unique ID (UUID) for this node.
    #[arg(long = "node-id", value_name = "UUID")]
    node_id: Option<String>,
    /// An arbitrary metadata key:value pair for this node; can be repeated.
    #[arg(long = "node-meta", value_name = "KEY:VALUE")]
    node_meta: Vec<String>,
    /// Datacenter of the agent.
    #[arg(long, value_name = "DC")]
    datacenter: Option<String>,
    /// Domain to use for the DNS interface.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Alternate domain to use for the DNS interface.
    #[arg(long = "alt-domain", value_name = "DOMAIN")]
    alt_domain: Option<String>,
    /// Sets the bind address for cluster communication.
    #[arg(long, value_name = "IP")]
    bind: Option<String>,
    /// Sets the advertise address to use.
    #[arg(long, value_name = "IP")]
    advertise: Option<String>,
    /// Sets the address(es) to bind for client access (HTTP, DNS); space-separated.
    #[arg(long, value_name = "IPS")]
    client: Option<String>,
    /// Sets the HTTP API port to listen on (-1 disables).
    #[arg(long = "http-port", value_name = "PORT")]
    http_port: Option<i64>,
    /// Sets the HTTPS API port to listen on (-1 disables).
    #[arg(long = "https-port", value_name = "PORT")]
    https_port: Option<i64>,
    /// DNS port to use (-1 disables).
    #[arg(long = "dns-port", value_name = "PORT")]
    dns_port: Option<i64>,
    /// Sets the server RPC port to listen on.
    #[arg(long = "server-port", value_name = "PORT")]
    server_port: Option<i64>,
    /// Sets the Serf LAN port to listen on.
    #[arg(long = "serf-lan-port", value_name = "PORT")]
    serf_lan_port: Option<i64>,
    /// Sets the Serf WAN port to listen on.
    #[arg(long = "serf-wan-port", value_name = "PORT")]
    serf_wan_port: Option<i64>,
    /// Sets the gRPC API port to listen on (-1 disables).
    #[arg(long = "grpc-port", value_name = "PORT")]
    grpc_port: Option<i64>,
    /// Sets the gRPC TLS API port to listen on (-1 disables).
    #[arg(long = "grpc-tls-port", value_name = "PORT")]
    grpc_tls_port: Option<i64>,
    /// Path to a config file (JSON or HCL, by extension); can be repeated.
    #[arg(long = "config-file", value_name = "FILE")]
    config_file: Vec<String>,
    /// Path to a directory of *.json and *.hcl config files, read in lexical order; can be
    /// repeated.
    #[arg(long = "config-dir", value_name = "DIR")]
    config_dir: Vec<String>,
    /// Read config files in this format whatever their extension.
    #[arg(long = "config-format", value_name = "FORMAT")]
    config_format: Option<FormatArg>,
    /// An HCL config fragment, applied after the config files; can be repeated.
    #[arg(long, value_name = "HCL")]
    hcl: Vec<String>,
    /// Log level of the agent: trace, debug, info, warn, err.
    #[arg(long = "log-level", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Output logs in JSON format.
    #[arg(long = "log-json")]
    log_json: bool,
    /// Path to a file to store the agent's PID in.
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<String>,
    /// Enables the built-in web UI.
    #[arg(long)]
    ui: bool,
    /// Address of an agent to join at start time; can be repeated.
    #[arg(long, value_name = "ADDR")]
    join: Vec<String>,
    /// Address of an agent to join, retrying until it works; can be repeated.
    #[arg(long = "retry-join", value_name = "ADDR")]
    retry_join: Vec<String>,
    /// Time to wait between join attempts (e.g. 30s).
    #[arg(long = "retry-interval", value_name = "DURATION")]
    retry_interval: Option<String>,
    /// Maximum number of join attempts; 0 retries forever.
    #[arg(long = "retry-max", value_name = "N")]
    retry_max: Option<i64>,
    /// Address of an upstream DNS server; can be repeated.
    #[arg(long, value_name = "ADDR")]
    recursor: Vec<String>,
    /// Gossip encryption key (base64, see `muster keygen`).
    #[arg(long, value_name = "KEY")]
    encrypt: Option<String>,
    /// Enables health check scripts, including ones registered over HTTP.
    #[arg(long = "enable-script-checks")]
    enable_script_checks: bool,
    /// Enables health check scripts from configuration files only.
    #[arg(long = "enable-local-script-checks")]
    enable_local_script_checks: bool,
    /// Accepted for compatibility and ignored: Muster speaks one Raft protocol.
    #[arg(long = "raft-protocol", value_name = "N")]
    raft_protocol: Option<i64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Hcl,
}

/// Consul flags Muster accepts but does not implement yet: (name, takes a value).
const UNIMPLEMENTED: &[(&str, bool)] = &[
    ("advertise-wan", true),
    ("allow-write-http-from", true),
    ("auto-reload-config", false),
    ("check_output_max_size", true),
    ("default-query-time", true),
    ("disable-host-node-id", false),
    ("disable-keyring-file", false),
    ("join-wan", true),
    ("log-file", true),
    ("log-rotate-bytes", true),
    ("log-rotate-duration", true),
    ("log-rotate-max-files", true),
    ("max-query-time", true),
    ("non-voting-server", false),
    ("partition", true),
    ("primary-gateway", true),
    ("protocol", true),
    ("read-replica", false),
    ("rejoin", false),
    ("retry-interval-wan", true),
    ("retry-join-wan", true),
    ("retry-max-wan", true),
    ("segment", true),
    ("serf-lan-allowed-cidrs", true),
    ("serf-lan-bind", true),
    ("serf-wan-allowed-cidrs", true),
    ("serf-wan-bind", true),
    ("syslog", false),
    ("ui-content-path", true),
    ("ui-dir", true),
];

/// What the flags say.
#[derive(Debug)]
pub(super) struct Flags {
    pub dev: bool,
    /// `-config-file` and `-config-dir` paths, in command-line order.
    pub config_paths: Vec<PathBuf>,
    pub format: Option<Format>,
    /// `-hcl` fragments, in order.
    pub hcl: Vec<String>,
    /// The flags that are config keys, in canonical form (see `schema`), to merge last.
    pub overlay: Map<String, Value>,
    pub warnings: Vec<String>,
}

/// The clap command for `muster agent` (help, completion, and the parser below).
pub(super) fn command() -> Command {
    let mut cmd = AgentFlags::command();
    for (name, takes_value) in UNIMPLEMENTED {
        let arg = Arg::new(*name).long(*name).hide(true);
        cmd = cmd.arg(if *takes_value {
            arg.action(ArgAction::Append)
        } else {
            arg.action(ArgAction::SetTrue)
        });
    }
    cmd.build();
    cmd
}

/// Parses `muster agent`'s arguments (without the program name and `agent`).
pub(super) fn parse(args: Vec<String>) -> Result<Flags, ConfigError> {
    let mut cmd = command();
    let (args, bools) = split_bool_values(&cmd, args)?;
    let normalized = goflags::normalize(&cmd, args);
    let matches = cmd
        .try_get_matches_from_mut(std::iter::once("muster agent".to_string()).chain(normalized))
        .map_err(|e| flag_error(&e, &mut cmd))?;
    let flags = AgentFlags::from_arg_matches(&matches).map_err(|e| flag_error(&e, &mut cmd))?;
    into_flags(flags, &matches, &bools)
}

/// Go's boolean flags take `-flag=true|false` (and 1, 0, t, f, ...). Clap's boolean flags take
/// no value, so those spellings are taken out here: the result is the argument list for clap
/// and, for every boolean flag given, its last value.
fn split_bool_values(
    cmd: &Command,
    args: Vec<String>,
) -> Result<(Vec<String>, HashMap<String, bool>), ConfigError> {
    let mut out = Vec::with_capacity(args.len());
    let mut bools = HashMap::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let is_flag = arg.len() > 1 && arg.starts_with('-') && arg.parse::<f64>().is_err();
        if arg == "--" || !is_flag {
            // Go stops reading flags at the first positional argument.
            out.push(arg);
            out.extend(iter);
            break;
        }
        let body = arg.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(def) = cmd.get_arguments().find(|a| a.get_long() == Some(name)) else {
            out.push(arg);
            continue;
        };
        let id = def.get_id().to_string();
        if matches!(def.get_action(), ArgAction::SetTrue) {
            match inline {
                None => {
                    bools.insert(id, true);
                    out.push(arg);
                }
                Some(v) => {
                    let b = parse_go_bool(v).ok_or_else(|| {
                        ConfigError::Flag(format!(
                            "invalid boolean value \"{v}\" for -{name}: parse error"
                        ))
                    })?;
                    bools.insert(id, b);
                    if b {
                        out.push(format!("--{name}"));
                    }
                }
            }
            continue;
        }
        let takes_next = inline.is_none() && def.get_action().takes_values();
        out.push(arg);
        if takes_next {
            if let Some(value) = iter.next() {
                out.push(value);
            }
        }
    }
    Ok((out, bools))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A clap error rewritten in Go's words, naming the flag as the user spells it (`-name`).
fn flag_error(e: &clap::Error, cmd: &mut Command) -> ConfigError {
    let context = |kind: ContextKind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    // "--http-port <PORT>" -> "-http-port"
    let flag = context(ContextKind::InvalidArg).map(|a| {
        let name = a.split_whitespace().next().unwrap_or_default().to_string();
        match name.strip_prefix("--") {
            Some(long) => format!("-{long}"),
            None => name,
        }
    });
    let value = context(ContextKind::InvalidValue);
    let flag_name = flag.clone().unwrap_or_else(|| "?".to_string());
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ConfigError::Help(cmd.render_help().to_string())
        }
        ErrorKind::UnknownArgument => match flag {
            Some(f) if f.starts_with('-') => {
                let hint = context(ContextKind::SuggestedArg)
                    .map(|s| {
                        format!(
                            " (did you mean -{}?)",
                            s.trim_start_matches('-')
                                .split_whitespace()
                                .next()
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                ConfigError::Flag(format!("flag provided but not defined: {f}{hint}"))
            }
            Some(positional) => ConfigError::Flag(format!(
                "unexpected argument \"{positional}\": muster agent takes only flags"
            )),
            None => ConfigError::Flag(render(e)),
        },
        ErrorKind::InvalidValue if value.as_deref().unwrap_or_default().is_empty() => {
            ConfigError::Flag(format!("flag needs an argument: {flag_name}"))
        }
        ErrorKind::InvalidValue => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) if !v.is_empty() => {
                    format!(": must be one of {}", v.join(", "))
                }
                _ => String::new(),
            };
            ConfigError::Flag(format!(
                "invalid value \"{}\" for flag {flag_name}{valid}",
                value.unwrap_or_default()
            ))
        }
        ErrorKind::ValueValidation => {
            let why = std::error::Error::source(e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            ConfigError::Flag(format!(
                "invalid value \"{}\" for flag {flag_name}{why}",
                value.unwrap_or_default()
            ))
        }
        ErrorKind::TooManyValues | ErrorKind::NoEquals => ConfigError::Flag(format!(
            "invalid value \"{}\" for flag {flag_name}",
            value.unwrap_or_default()
        )),
        _ => ConfigError::Flag(render(e)),
    }
}

/// Clap's own message, first line, without its "error: " prefix.
fn render(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn bad_value(flag: &str, value: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Flag(format!("invalid value \"{value}\" for flag -{flag}: {why}"))
}

/// Sets `path` (e.g. `["ports", "http"]`) in `map`, merging as config sources merge.
fn put(map: &mut Map<String, Value>, path: &[&str], v: Value) {
    match path {
        [] => {}
        [last] => merge_value_into(map, last, v),
        [first, rest @ ..] => {
            let mut inner = Map::new();
            put(&mut inner, rest, v);
            merge_value_into(map, first, Value::Object(inner));
        }
    }
}

/// Values of a repeatable flag in command-line order, with their positions.
fn indexed(matches: &ArgMatches, id: &str) -> Vec<(usize, String)> {
    match (matches.get_many::<String>(id), matches.indices_of(id)) {
        (Some(values), Some(indices)) => indices.zip(values.cloned()).collect(),
        _ => Vec::new(),
    }
}

fn into_flags(
    f: AgentFlags,
    matches: &ArgMatches,
    bools: &HashMap<String, bool>,
) -> Result<Flags, ConfigError> {
    let mut o = Map::new();
    let mut warnings = Vec::new();

    let flag_bool = |id: &str| bools.get(id).copied();
    for (id, path) in [
        ("server", &["server"][..]),
        ("bootstrap", &["bootstrap"][..]),
        ("log_json", &["log_json"][..]),
        ("ui", &["ui_config", "enabled"][..]),
        ("enable_script_checks", &["enable_script_checks"][..]),
        (
            "enable_local_script_checks",
            &["enable_local_script_checks"][..],
        ),
    ] {
        if let Some(b) = flag_bool(id) {
            put(&mut o, path, Value::Bool(b));
        }
    }
    let dev = flag_bool("dev").unwrap_or(f.dev);

    if let Some(n) = f.bootstrap_expect {
        put(&mut o, &["bootstrap_expect"], Value::from(n));
    }
    for (value, path) in [
        (f.data_dir, "data_dir"),
        (f.node, "node_name"),
        (f.node_id, "node_id"),
        (f.datacenter, "datacenter"),
        (f.domain, "domain"),
        (f.alt_domain, "alt_domain"),
        (f.log_level, "log_level"),
        (f.pid_file, "pid_file"),
        (f.encrypt, "encrypt"),
    ] {
        if let Some(v) = value {
            put(&mut o, &[path], Value::String(v));
        }
    }
    for (value, flag, key) in [
        (f.bind, "bind", "bind_addr"),
        (f.advertise, "advertise", "advertise_addr"),
    ] {
        if let Some(v) = value {
            let ip = schema::parse_ip(&v).map_err(|why| bad_value(flag, &v, why))?;
            put(&mut o, &[key], Value::String(ip.to_string()));
        }
    }
    if let Some(v) = f.client {
        let ips = schema::parse_ip_list(&v).map_err(|why| bad_value("client", &v, why))?;
        let joined = ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        put(&mut o, &["client_addr"], Value::String(joined));
    }
    for (value, flag, key) in [
        (f.http_port, "http-port", "http"),
        (f.https_port, "https-port", "https"),
        (f.dns_port, "dns-port", "dns"),
        (f.server_port, "server-port", "server"),
        (f.serf_lan_port, "serf-lan-port", "serf_lan"),
        (f.serf_wan_port, "serf-wan-port", "serf_wan"),
        (f.grpc_port, "grpc-port", "grpc"),
        (f.grpc_tls_port, "grpc-tls-port", "grpc_tls"),
    ] {
        if let Some(n) = value {
            let port = schema::check_port(n).map_err(|why| bad_value(flag, &n.to_string(), why))?;
            put(&mut o, &["ports", key], Value::from(port));
        }
    }

    // -join and -retry-join, interleaved as given.
    let mut joins = indexed(matches, "join");
    joins.extend(indexed(matches, "retry_join"));
    joins.sort_by_key(|(i, _)| *i);
    if !joins.is_empty() {
        let list = joins.into_iter().map(|(_, v)| Value::String(v)).collect();
        put(&mut o, &["retry_join"], Value::Array(list));
    }
    if let Some(v) = f.retry_interval {
        parse_duration(&v).map_err(|why| bad_value("retry-interval", &v, why))?;
        put(&mut o, &["retry_interval"], Value::String(v));
    }
    if let Some(n) = f.retry_max {
        if n < 0 {
            return Err(bad_value(
                "retry-max",
                &n.to_string(),
                "must not be negative",
            ));
        }
        put(&mut o, &["retry_max"], Value::from(n));
    }
    if !f.recursor.is_empty() {
        for r in &f.recursor {
            schema::parse_addr(r).map_err(|why| bad_value("recursor", r, why))?;
        }
        let list = f.recursor.into_iter().map(Value::String).collect();
        put(&mut o, &["recursors"], Value::Array(list));
    }
    for kv in f.node_meta {
        let Some((k, v)) = kv.split_once(':') else {
            return Err(bad_value("node-meta", &kv, "must be key:value"));
        };
        put(&mut o, &["node_meta", k], Value::String(v.to_string()));
    }

    if f.raft_protocol.is_some() {
        warnings.push(
            "flag -raft-protocol is accepted for compatibility and ignored: Muster speaks one \
             Raft protocol"
                .to_string(),
        );
    }
    for (name, _) in UNIMPLEMENTED {
        let given = matches.value_source(name) == Some(ValueSource::CommandLine);
        if given || bools.contains_key(*name) {
            warnings.push(format!(
                "flag -{name} is not implemented yet and is ignored"
            ));
        }
    }

    let mut paths = indexed(matches, "config_file");
    paths.extend(indexed(matches, "config_dir"));
    paths.sort_by_key(|(i, _)| *i);

    Ok(Flags {
        dev,
        config_paths: paths.into_iter().map(|(_, p)| PathBuf::from(p)).collect(),
        format: f.config_format.map(|f| match f {
            FormatArg::Json => Format::Json,
            FormatArg::Hcl => Format::Hcl,
        }),
        hcl: f.hcl,
        overlay: o,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn parse_ok(a: &[&str]) -> Flags {
        match parse(args(a)) {
            Ok(f) => f,
            Err(e) => panic!("{a:?}: {e}"),
        }
    }

    fn parse_err(a: &[&str]) -> String {
        match parse(args(a)) {
            Ok(f) => panic!("{a:?} parsed: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn go_spellings() {
        let f = parse_ok(&[
            "-server",
            "--bootstrap-expect=3",
            "-data-dir",
            "/var/lib/muster",
            "-http-port",
            "-1",
            "-client",
            "127.0.0.1 10.0.0.1",
            "-retry-join=a",
            "-join",
            "b",
            "-retry-join",
            "c",
        ]);
        assert!(!f.dev);
        assert_eq!(
            Value::Object(f.overlay),
            json!({
                "server": true,
                "bootstrap_expect": 3,
                "data_dir": "/var/lib/muster",
                "ports": {"http": -1},
                "client_addr": "127.0.0.1 10.0.0.1",
                "retry_join": ["a", "b", "c"],
            })
        );
    }

    #[test]
    fn go_boolean_values() {
        let f = parse_ok(&["-server=false", "-ui=true", "-log-json=0", "-dev=T"]);
        assert!(f.dev);
        assert_eq!(
            Value::Object(f.overlay),
            json!({"server": false, "ui_config": {"enabled": true}, "log_json": false})
        );
        // The last one wins, as in Go.
        let f = parse_ok(&["-server", "-server=false"]);
        assert_eq!(f.overlay["server"], json!(false));
        let e = parse_err(&["-server=yes"]);
        assert_eq!(e, "invalid boolean value \"yes\" for -server: parse error");
    }

    #[test]
    fn an_absent_boolean_flag_says_nothing() {
        let f = parse_ok(&["-data-dir=/x"]);
        assert!(!f.overlay.contains_key("server"));
        assert!(!f.overlay.contains_key("ui_config"));
    }

    #[test]
    fn config_paths_keep_command_line_order() {
        let f = parse_ok(&[
            "-config-dir=/d1",
            "-config-file",
            "/f1.json",
            "-config-dir",
            "/d2",
            "-config-format=hcl",
        ]);
        assert_eq!(
            f.config_paths,
            vec![
                PathBuf::from("/d1"),
                PathBuf::from("/f1.json"),
                PathBuf::from("/d2")
            ]
        );
        assert_eq!(f.format, Some(Format::Hcl));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        assert_eq!(
            parse_err(&["-bogus"]),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            parse_err(&["-datacentr", "x"]),
            "flag provided but not defined: -datacentr (did you mean -datacenter?)"
        );
        assert_eq!(
            parse_err(&["-data-dir"]),
            "flag needs an argument: -data-dir"
        );
        assert_eq!(
            parse_err(&["-http-port", "abc"]),
            "invalid value \"abc\" for flag -http-port: invalid digit found in string"
        );
        assert_eq!(
            parse_err(&["-http-port=70000"]),
            "invalid value \"70000\" for flag -http-port: invalid port: 70000"
        );
        assert!(parse_err(&["-config-format", "yaml"])
            .starts_with("invalid value \"yaml\" for flag -config-format"));
        assert!(parse_err(&["-bind", "nope"]).contains("-bind"));
        assert!(parse_err(&["-client", "1.2.3.4 nope"]).contains("-client"));
        assert!(parse_err(&["-retry-interval", "soon"]).contains("-retry-interval"));
        assert!(parse_err(&["-recursor", "dns.google"]).contains("-recursor"));
        assert!(parse_err(&["-node-meta", "novalue"]).contains("-node-meta"));
        assert_eq!(
            parse_err(&["-dev", "extra"]),
            "unexpected argument \"extra\": muster agent takes only flags"
        );
    }

    #[test]
    fn repeated_scalar_flags_last_wins() {
        let f = parse_ok(&["-node", "a", "-node", "b"]);
        assert_eq!(f.overlay["node_name"], json!("b"));
    }

    #[test]
    fn unimplemented_flags_warn() {
        let f = parse_ok(&["-syslog", "-log-file", "/tmp/x", "-raft-protocol", "3"]);
        assert_eq!(f.warnings.len(), 3, "{:?}", f.warnings);
        assert!(f.warnings.iter().any(|w| w.contains("-syslog")));
        assert!(f.warnings.iter().any(|w| w.contains("-log-file")));
        assert!(f.warnings.iter().any(|w| w.contains("-raft-protocol")));
    }

    #[test]
    fn help_is_its_own_outcome() {
        for h in ["-h", "-help", "--help"] {
            match parse(args(&[h])) {
                Err(ConfigError::Help(text)) => {
                    assert!(text.contains("-data-dir") || text.contains("--data-dir"))
                }
                other => panic!("{h}: {other:?}"),
            }
        }
    }
}
