//! The `muster` command line: the dispatcher (Consul's command names, help and exit codes), the
//! shared flag/usage machinery every command is declared with, and one module per command.
//!
//! Commands other than `agent` talk HTTP to an agent through [`muster_api::Client`]. Each writes
//! through a [`Ui`] (stdout, stderr, stdin) so its behaviour is testable without a terminal, and
//! keeps its formatting in pure functions with unit tests.

pub mod catalog;
pub mod event;
pub mod force_leave;
pub mod goflags;
pub mod http_flags;
pub mod info;
pub mod join;
pub mod keygen;
pub mod kv;
pub mod leave;
pub mod lock;
pub mod maint;
pub mod members;
pub mod monitor;
pub mod operator;
pub mod reload;
pub mod services;
pub mod validate;
pub mod version;
pub mod watch;

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Exit code for a missing or unknown command: Consul's CLI library (mitchellh/cli) uses 127.
pub const EXIT_UNKNOWN_COMMAND: u8 = 127;

/// Entry point of the `muster` binary.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error starting runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(dispatch(args));
    ExitCode::from(code)
}

async fn dispatch(args: Vec<String>) -> u8 {
    match args.first().map(String::as_str) {
        Some("agent") => agent(args[1..].to_vec()).await,
        _ => {
            let mut out = std::io::stdout();
            let mut err = std::io::stderr();
            let mut stdin = std::io::stdin();
            let mut ui = Ui::new(&mut out, &mut err, &mut stdin);
            run(args, &mut ui).await
        }
    }
}

/// For commands that take no arguments: `Error found unexpected args: [a b]` (Go's `%v` of a
/// `[]string`) and the usage, as Consul prints them; true when there were some (exit 1).
pub(crate) fn refuse_args(parsed: &Parsed, spec: &Spec, ui: &mut Ui<'_>) -> bool {
    if parsed.args.is_empty() {
        return false;
    }
    ui.error(&format!(
        "Error found unexpected args: [{}]",
        parsed.args.join(" ")
    ));
    ui.output(&spec.help_text());
    true
}

/// Until SIGINT or SIGTERM.
pub(crate) async fn wait_for_interrupt() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `muster agent`: resolve the configuration, then run until a signal.
pub async fn agent(args: Vec<String>) -> u8 {
    let config = match crate::config::from_agent_args(args)
        .and_then(|mut c| crate::config::advertise::resolve(&mut c).map(|()| c))
    {
        Ok(c) => c,
        Err(crate::config::ConfigError::Help(text)) => {
            println!("{text}");
            return 0;
        }
        Err(e) => {
            eprintln!("==> {e}");
            return 1;
        }
    };
    match crate::server::run(config).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}

/// The top-level commands, in the order `muster -h` lists them (sorted, as Consul's).
const COMMANDS: &[(&str, &str)] = &[
    ("agent", "Runs a Muster agent"),
    ("catalog", catalog::SYNOPSIS),
    ("event", event::SYNOPSIS),
    ("force-leave", force_leave::SYNOPSIS),
    ("info", info::SYNOPSIS),
    ("join", join::SYNOPSIS),
    ("keygen", keygen::SYNOPSIS),
    ("kv", kv::SYNOPSIS),
    ("leave", leave::SYNOPSIS),
    ("lock", lock::SYNOPSIS),
    ("maint", maint::SYNOPSIS),
    ("members", members::SYNOPSIS),
    ("monitor", monitor::SYNOPSIS),
    ("operator", operator::SYNOPSIS),
    ("reload", reload::SYNOPSIS),
    ("services", services::SYNOPSIS),
    ("validate", validate::SYNOPSIS),
    ("version", version::SYNOPSIS),
    ("watch", watch::SYNOPSIS),
];

/// Runs every command but `agent` (which [`main`] hands over before this), the way Consul's CLI
/// does: `-h`/`-help`/`--help` anywhere (before `--`) prints the command's help on stdout (exit
/// 0); `-v`/`-version`/`--version` before the command runs `version`; a missing or unknown
/// command prints the command list on stderr (exit 127).
pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let mut is_help = false;
    let mut is_version = false;
    let mut top_flags: Vec<String> = Vec::new();
    let mut command_at: Option<usize> = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            break;
        }
        if matches!(arg.as_str(), "-h" | "-help" | "--help") {
            is_help = true;
            continue;
        }
        if command_at.is_none() {
            if matches!(arg.as_str(), "-v" | "-version" | "--version") {
                is_version = true;
                continue;
            }
            if arg.starts_with('-') {
                top_flags.push(arg.clone());
                continue;
            }
            if !arg.is_empty() {
                command_at = Some(i);
            }
        }
    }
    if is_version {
        return version::run(Vec::new(), ui).await;
    }
    let Some(at) = command_at else {
        if is_help {
            ui.output(&top_help());
            return 0;
        }
        ui.error(&top_help());
        return EXIT_UNKNOWN_COMMAND;
    };
    let name = args[at].as_str();
    let mut rest: Vec<String> = args[at + 1..].to_vec();
    let command = match (name, rest.first().map(String::as_str)) {
        ("kv", Some(sub)) if kv::SUBCOMMANDS.iter().any(|(n, _)| *n == sub) => {
            let sub = rest.remove(0);
            Resolved::Kv(sub)
        }
        ("kv", _) => Resolved::KvParent,
        ("catalog", Some(sub)) if catalog::SUBCOMMANDS.iter().any(|(n, _)| *n == sub) => {
            Resolved::Nested("catalog", Some(rest.remove(0)))
        }
        ("services", Some(sub)) if services::SUBCOMMANDS.iter().any(|(n, _)| *n == sub) => {
            Resolved::Nested("services", Some(rest.remove(0)))
        }
        ("catalog", _) => Resolved::Nested("catalog", None),
        ("services", _) => Resolved::Nested("services", None),
        (name, _) if COMMANDS.iter().any(|(n, _)| *n == name) => Resolved::Top(name.to_string()),
        _ => {
            ui.error(&top_help());
            return EXIT_UNKNOWN_COMMAND;
        }
    };
    if is_help {
        if matches!(&command, Resolved::Top(n) if n == "operator") {
            ui.output(&operator::help(&rest));
            return 0;
        }
        ui.output(&command.help());
        return 0;
    }
    if !top_flags.is_empty() {
        ui.error(
            "Invalid flags before the subcommand. If these flags are for\n\
             the subcommand, please put them after the subcommand.\n",
        );
        ui.error(&command.help());
        return 1;
    }
    match command {
        Resolved::KvParent => {
            ui.error(&command.help());
            1
        }
        Resolved::Kv(sub) => kv::run(&sub, rest, ui).await,
        Resolved::Nested(_, None) => {
            ui.error(&command.help());
            1
        }
        Resolved::Nested("catalog", Some(sub)) => catalog::run(&sub, rest, ui).await,
        Resolved::Nested(_, Some(sub)) => services::run(&sub, rest, ui).await,
        Resolved::Top(name) => match name.as_str() {
            "agent" => agent(rest).await,
            "info" => info::run(rest, ui).await,
            "join" => join::run(rest, ui).await,
            "keygen" => keygen::run(rest, ui).await,
            "force-leave" => force_leave::run(rest, ui).await,
            "leave" => leave::run(rest, ui).await,
            "lock" => lock::run(rest, ui).await,
            "maint" => maint::run(rest, ui).await,
            "members" => members::run(rest, ui).await,
            "monitor" => monitor::run(rest, ui).await,
            "operator" => operator::run(rest, ui).await,
            "reload" => reload::run(rest, ui).await,
            "validate" => validate::run(rest, ui).await,
            "version" => version::run(rest, ui).await,
            "event" => event::run(rest, ui).await,
            "watch" => watch::run(rest, ui).await,
            _ => {
                ui.error(&top_help());
                EXIT_UNKNOWN_COMMAND
            }
        },
    }
}

/// A resolved command name.
enum Resolved {
    Top(String),
    KvParent,
    Kv(String),
    /// `catalog` or `services`, with its subcommand if one was named.
    Nested(&'static str, Option<String>),
}

impl Resolved {
    /// The text `-h` prints for this command (Consul's help template: the usage, then the
    /// subcommands of a parent command).
    fn help(&self) -> String {
        match self {
            Resolved::KvParent => {
                let mut text = kv::spec().help_text();
                text.push_str("\n\nSubcommands:");
                let longest = kv::SUBCOMMANDS
                    .iter()
                    .map(|(n, _)| n.len())
                    .max()
                    .unwrap_or(0);
                for (name, synopsis) in kv::SUBCOMMANDS {
                    text.push_str(&format!("\n    {name:<longest$}    {synopsis}"));
                }
                text
            }
            Resolved::Kv(sub) => kv::sub_spec(sub)
                .map(|s| s.help_text())
                .unwrap_or_else(top_help),
            Resolved::Nested("catalog", sub) => sub
                .as_deref()
                .and_then(catalog::sub_spec)
                .map(|s| s.help_text())
                .unwrap_or_else(catalog::parent_help),
            Resolved::Nested(_, sub) => sub
                .as_deref()
                .and_then(services::sub_spec)
                .map(|s| s.help_text())
                .unwrap_or_else(services::parent_help),
            Resolved::Top(name) => match name.as_str() {
                "agent" => {
                    "Usage: muster agent [options]\n\n  Starts the Muster agent and runs until \
                            an interrupt is received."
                        .to_string()
                }
                "info" => info::spec().help_text(),
                "join" => join::spec().help_text(),
                "keygen" => keygen::spec().help_text(),
                "force-leave" => force_leave::spec().help_text(),
                "leave" => leave::spec().help_text(),
                "lock" => lock::spec().help_text(),
                "maint" => maint::spec().help_text(),
                "members" => members::spec().help_text(),
                "monitor" => monitor::spec().help_text(),
                "operator" => operator::help(&[]),
                "reload" => reload::spec().help_text(),
                "validate" => validate::spec().help_text(),
                "version" => version::spec().help_text(),
                "event" => event::spec().help_text(),
                "watch" => watch::spec().help_text(),
                _ => top_help(),
            },
        }
    }
}

/// `muster -h`: the usage line and the list of commands with their synopses.
pub fn top_help() -> String {
    let longest = COMMANDS.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from(
        "Usage: muster [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n",
    );
    for (name, synopsis) in COMMANDS {
        text.push_str(&format!("    {name:<longest$}    {synopsis}\n"));
    }
    text
}

/// Where a command writes and reads: stdout, stderr and stdin, injectable for tests. Each
/// `output`/`error` call writes one line, as Consul's `cli.Ui` does. Write errors (a closed
/// pipe) are ignored: there is nobody left to tell.
pub struct Ui<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    stdin: &'a mut dyn Read,
}

impl<'a> Ui<'a> {
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write, stdin: &'a mut dyn Read) -> Self {
        Ui { out, err, stdin }
    }

    /// Writes `text` and a newline to stdout.
    pub fn output(&mut self, text: &str) {
        self.output_bytes(text.as_bytes());
    }

    /// Writes raw bytes and a newline to stdout (values need not be UTF-8).
    pub fn output_bytes(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
        let _ = self.out.write_all(b"\n");
        let _ = self.out.flush();
    }

    /// Writes `text` and a newline to stderr.
    pub fn error(&mut self, text: &str) {
        let _ = self.err.write_all(text.as_bytes());
        let _ = self.err.write_all(b"\n");
        let _ = self.err.flush();
    }

    /// Reads all of stdin.
    pub fn read_stdin(&mut self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.stdin.read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// The type of a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `-name`, `-name=true`, `-name=false`.
    Bool,
    /// `-name=value` / `-name value`.
    String,
    /// An unsigned integer (Go's `uint64` flag).
    Uint,
}

/// One flag of a command, in Consul's spelling.
#[derive(Debug, Clone)]
pub struct Flag {
    pub name: &'static str,
    pub kind: FlagKind,
    /// What the help shows after `=` (`-http-addr=<address>`); unused for booleans.
    pub example: &'static str,
    pub usage: &'static str,
    /// Listed under "HTTP API Options" rather than "Command Options".
    pub http: bool,
}

impl Flag {
    pub const fn bool(name: &'static str, usage: &'static str) -> Flag {
        Flag {
            name,
            kind: FlagKind::Bool,
            example: "",
            usage,
            http: false,
        }
    }

    pub const fn string(name: &'static str, example: &'static str, usage: &'static str) -> Flag {
        Flag {
            name,
            kind: FlagKind::String,
            example,
            usage,
            http: false,
        }
    }

    pub const fn uint(name: &'static str, usage: &'static str) -> Flag {
        Flag {
            name,
            kind: FlagKind::Uint,
            example: "uint",
            usage,
            http: false,
        }
    }
}

/// A command's declaration: its help text and flags. Parsing and `-h` output both come from it.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `kv put`.
    pub name: &'static str,
    /// The usage text (Consul's `help` constant), printed before the options.
    pub help: &'static str,
    pub flags: Vec<Flag>,
}

/// Wrap width of flag descriptions (Consul's 72 columns less the 5-space indent).
const WRAP: usize = 67;

impl Spec {
    /// The help text in Consul's layout: the usage, then "HTTP API Options" and "Command
    /// Options", each flag as `  -name=<example>` with its description indented by 5.
    pub fn help_text(&self) -> String {
        let mut out = self.help.trim().to_string();
        out.push_str("\n\n");
        let mut flags: Vec<&Flag> = self.flags.iter().collect();
        flags.sort_by_key(|f| f.name);
        for (title, http) in [("HTTP API Options", true), ("Command Options", false)] {
            let group: Vec<&&Flag> = flags.iter().filter(|f| f.http == http).collect();
            if group.is_empty() {
                continue;
            }
            out.push_str(title);
            out.push_str("\n\n");
            for flag in group {
                if flag.kind == FlagKind::Bool {
                    out.push_str(&format!("  -{}\n", flag.name));
                } else {
                    out.push_str(&format!("  -{}=<{}>\n", flag.name, flag.example));
                }
                out.push_str(&wrap(flag.usage, WRAP, 5));
                out.push_str("\n\n");
            }
        }
        out.trim_end_matches('\n').to_string()
    }

    fn clap(&self) -> Command {
        let mut cmd = Command::new(self.name)
            .no_binary_name(true)
            .disable_help_flag(true)
            .disable_version_flag(true)
            .args_override_self(true);
        for flag in &self.flags {
            let arg = Arg::new(flag.name).long(flag.name);
            let arg = match flag.kind {
                FlagKind::Bool => arg.action(ArgAction::SetTrue),
                FlagKind::String => arg.action(ArgAction::Set).allow_hyphen_values(true),
                FlagKind::Uint => arg
                    .action(ArgAction::Set)
                    .allow_hyphen_values(true)
                    .value_parser(clap::value_parser!(u64)),
            };
            cmd = cmd.arg(arg);
        }
        cmd.arg(
            // goflags::normalize puts every positional argument after a `--`.
            Arg::new("args").num_args(0..).action(ArgAction::Append),
        )
    }

    /// Parses Go-style arguments. On a usage error prints Go's message and the help on stderr
    /// and returns the exit code (1).
    pub fn parse(&self, args: Vec<String>, ui: &mut Ui<'_>) -> Result<Parsed, u8> {
        match self.try_parse(args) {
            Ok(p) => Ok(p),
            Err(message) => {
                ui.error(&message);
                ui.error(&self.help_text());
                Err(1)
            }
        }
    }

    /// [`Spec::parse`] without printing: the error is Go's `flag` package message.
    pub fn try_parse(&self, args: Vec<String>) -> Result<Parsed, String> {
        let cmd = self.clap();
        let normalized = goflags::normalize(&cmd, args);
        let rewritten = self.rewrite_bools(normalized)?;
        let matches = cmd
            .try_get_matches_from(rewritten)
            .map_err(|e| go_flag_error(&e))?;
        let args = matches
            .get_many::<String>("args")
            .map(|v| v.cloned().collect())
            .unwrap_or_default();
        Ok(Parsed { matches, args })
    }

    /// Go accepts `-flag=true`/`-flag=false` (and `1`, `t`, `F`, ...) for booleans; clap's
    /// `SetTrue` takes no value, so these become `--flag` or nothing.
    fn rewrite_bools(&self, args: Vec<String>) -> Result<Vec<String>, String> {
        let mut out = Vec::with_capacity(args.len());
        let mut iter = args.into_iter();
        while let Some(arg) = iter.next() {
            if arg == "--" {
                out.push(arg);
                out.extend(iter);
                break;
            }
            let bool_value = arg.strip_prefix("--").and_then(|body| {
                let (name, value) = body.split_once('=')?;
                self.flags
                    .iter()
                    .find(|f| f.name == name && f.kind == FlagKind::Bool)
                    .map(|f| (f.name, value.to_string()))
            });
            match bool_value {
                Some((name, value)) => match parse_go_bool(&value) {
                    Some(true) => out.push(format!("--{name}")),
                    Some(false) => {}
                    None => {
                        return Err(format!(
                            "invalid boolean value {value:?} for -{name}: parse error"
                        ))
                    }
                },
                None => out.push(arg),
            }
        }
        Ok(out)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Turns a clap error into the message Go's `flag` package prints.
fn go_flag_error(e: &clap::Error) -> String {
    let context = |kind: ContextKind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    // "--name <name>" or "--name" -> "name"
    let flag_name = |s: String| {
        s.trim_start_matches('-')
            .split(['=', ' '])
            .next()
            .unwrap_or_default()
            .to_string()
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let name = context(ContextKind::InvalidArg)
                .map(flag_name)
                .unwrap_or_default();
            format!("flag provided but not defined: -{name}")
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let name = context(ContextKind::InvalidArg)
                .map(flag_name)
                .unwrap_or_default();
            match context(ContextKind::InvalidValue) {
                Some(v) if !v.is_empty() => {
                    format!("invalid value {v:?} for flag -{name}: parse error")
                }
                _ => format!("flag needs an argument: -{name}"),
            }
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    }
}

/// The result of parsing: flag values and the positional arguments.
#[derive(Debug)]
pub struct Parsed {
    matches: ArgMatches,
    /// Arguments after the flags (Go's `flags.Args()`).
    pub args: Vec<String>,
}

impl Parsed {
    /// Whether a boolean flag was set.
    pub fn flag(&self, name: &str) -> bool {
        self.matches
            .try_get_one::<bool>(name)
            .ok()
            .flatten()
            .copied()
            .unwrap_or(false)
    }

    /// A string flag's value, if given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.matches
            .try_get_one::<String>(name)
            .ok()
            .flatten()
            .cloned()
    }

    /// An unsigned flag's value, if given.
    pub fn uint(&self, name: &str) -> Option<u64> {
        self.matches
            .try_get_one::<u64>(name)
            .ok()
            .flatten()
            .copied()
    }
}

/// Greedy word wrap at `width` columns, each line indented by `pad` spaces.
pub fn wrap(text: &str, width: usize, pad: usize) -> String {
    let indent = " ".repeat(pad);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
        .iter()
        .map(|l| format!("{indent}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
pub(crate) mod testing {
    //! A [`Ui`] over in-memory buffers.

    use super::Ui;

    #[derive(Default)]
    pub struct Captured {
        pub out: Vec<u8>,
        pub err: Vec<u8>,
        pub stdin: std::io::Cursor<Vec<u8>>,
    }

    impl Captured {
        pub fn with_stdin(data: &[u8]) -> Self {
            Captured {
                stdin: std::io::Cursor::new(data.to_vec()),
                ..Default::default()
            }
        }

        pub fn ui(&mut self) -> Ui<'_> {
            Ui::new(&mut self.out, &mut self.err, &mut self.stdin)
        }

        pub fn out(&self) -> String {
            String::from_utf8_lossy(&self.out).into_owned()
        }

        pub fn err(&self) -> String {
            String::from_utf8_lossy(&self.err).into_owned()
        }
    }

    pub fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{args, Captured};
    use super::*;

    fn spec() -> Spec {
        Spec {
            name: "t",
            help: "\nUsage: muster t [options] KEY\n\n  Does t.\n",
            flags: vec![
                Flag::bool("recurse", "Recurse."),
                Flag::uint("flags", "Flags to set."),
                Flag::string("separator", "string", "A separator."),
                Flag {
                    http: true,
                    ..Flag::string("http-addr", "address", "The address.")
                },
            ],
        }
    }

    #[test]
    fn parses_go_style() {
        let p = spec()
            .try_parse(args(&[
                "-recurse",
                "-flags",
                "42",
                "-separator=-",
                "key",
                "-x",
            ]))
            .expect("parse");
        assert!(p.flag("recurse"));
        assert_eq!(p.uint("flags"), Some(42));
        assert_eq!(p.string("separator").as_deref(), Some("-"));
        assert_eq!(p.args, ["key", "-x"]);
        let p = spec()
            .try_parse(args(&["--recurse=false", "k"]))
            .expect("parse");
        assert!(!p.flag("recurse"));
        let p = spec()
            .try_parse(args(&["-recurse=1", "-", "v"]))
            .expect("parse");
        assert!(p.flag("recurse"));
        assert_eq!(p.args, ["-", "v"]);
        let p = spec()
            .try_parse(args(&["-flags=1", "-flags=2"]))
            .expect("last wins");
        assert_eq!(p.uint("flags"), Some(2));
        assert!(p.args.is_empty());
    }

    #[test]
    fn go_error_messages() {
        let err = |a: &[&str]| spec().try_parse(args(a)).expect_err("error");
        assert_eq!(err(&["-nope"]), "flag provided but not defined: -nope");
        assert_eq!(
            err(&["-nope=3", "k"]),
            "flag provided but not defined: -nope"
        );
        assert_eq!(
            err(&["-flags=abc"]),
            "invalid value \"abc\" for flag -flags: parse error"
        );
        assert_eq!(
            err(&["-flags", "-1"]),
            "invalid value \"-1\" for flag -flags: parse error"
        );
        assert_eq!(err(&["-separator"]), "flag needs an argument: -separator");
        assert_eq!(
            err(&["-recurse=maybe"]),
            "invalid boolean value \"maybe\" for -recurse: parse error"
        );
    }

    #[test]
    fn help_layout() {
        assert_eq!(
            spec().help_text(),
            "Usage: muster t [options] KEY\n\n  Does t.\n\n\
             HTTP API Options\n\n  -http-addr=<address>\n     The address.\n\n\
             Command Options\n\n  -flags=<uint>\n     Flags to set.\n\n  -recurse\n     Recurse.\n\n  \
             -separator=<string>\n     A separator."
        );
    }

    #[test]
    fn wraps_long_usage() {
        let text = "word ".repeat(30);
        let wrapped = wrap(&text, 20, 2);
        assert!(wrapped
            .lines()
            .all(|l| l.len() <= 22 && l.starts_with("  word")));
        assert_eq!(wrapped.split_whitespace().count(), 30);
    }

    #[tokio::test]
    async fn unknown_and_missing_commands() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["frobnicate"]), &mut c.ui()).await, 127);
        assert!(c
            .err()
            .starts_with("Usage: muster [--version] [--help] <command> [<args>]"));
        assert!(c
            .err()
            .contains("\n    kv             Interact with the key-value store\n"));
        assert!(c.out().is_empty());

        let mut c = Captured::default();
        assert_eq!(run(Vec::new(), &mut c.ui()).await, 127);
        assert!(c.err().contains("Available commands are:"));
    }

    #[tokio::test]
    async fn help_flags() {
        for flag in ["-h", "-help", "--help"] {
            let mut c = Captured::default();
            assert_eq!(run(args(&[flag]), &mut c.ui()).await, 0);
            assert_eq!(c.out(), format!("{}\n", top_help()));
        }
        let mut c = Captured::default();
        assert_eq!(run(args(&["kv", "put", "foo", "-h"]), &mut c.ui()).await, 0);
        assert!(c
            .out()
            .starts_with("Usage: muster kv put [options] KEY [DATA]"));
        assert!(c.out().contains("HTTP API Options"));
    }

    #[tokio::test]
    async fn kv_alone_prints_subcommands() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["kv"]), &mut c.ui()).await, 1);
        assert!(c
            .err()
            .starts_with("Usage: muster kv <subcommand> [options] [args]"));
        assert!(c.err().ends_with(
            "Subcommands:\n    delete    Removes data from the KV store\n    \
             export    Exports a tree from the KV store as JSON\n    \
             get       Retrieves or lists data from the KV store\n    \
             import    Imports a tree stored as JSON to the KV store\n    \
             put       Sets or updates data in the KV store\n"
        ));
        let mut c = Captured::default();
        assert_eq!(run(args(&["kv", "frob"]), &mut c.ui()).await, 1);
        let mut c = Captured::default();
        assert_eq!(run(args(&["kv", "-h"]), &mut c.ui()).await, 0);
        assert!(c.out().contains("Subcommands:"));
    }

    #[tokio::test]
    async fn flags_before_the_command() {
        let mut c = Captured::default();
        assert_eq!(run(args(&["-stale", "members"]), &mut c.ui()).await, 1);
        assert!(c.err().starts_with("Invalid flags before the subcommand."));
    }

    #[tokio::test]
    async fn version_flag() {
        for flag in ["-v", "-version", "--version"] {
            let mut c = Captured::default();
            assert_eq!(run(args(&[flag]), &mut c.ui()).await, 0);
            assert!(c.out().starts_with("Muster v"), "{}", c.out());
        }
    }
}
