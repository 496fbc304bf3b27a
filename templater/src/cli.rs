//! Command-line flags in confd's spelling: one dash (`-backend consul`), two accepted
//! (`--backend consul`), `-flag=value` too.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// Renders configuration files from KV and service health (confd-style).
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "templater",
    version,
    about = "Renders configuration files from Muster/Consul KV and service health (confd-style)",
    long_about = None,
)]
pub struct Flags {
    /// Backend: consul (Muster or Consul), file (YAML/JSON files) or env.
    #[arg(long)]
    pub backend: Option<String>,
    /// Agent address HOST:PORT (repeatable: tried in turn). Default: CONSUL_HTTP_ADDR or
    /// 127.0.0.1:8500.
    #[arg(long = "node", value_name = "HOST:PORT")]
    pub nodes: Vec<String>,
    /// Directory holding conf.d/ and templates/. Default: /etc/templater.
    #[arg(long)]
    pub confdir: Option<PathBuf>,
    /// A TOML file with the same settings (keys as the flags: backend, nodes, confdir, ...).
    #[arg(long = "config-file")]
    pub config_file: Option<PathBuf>,
    /// Polling interval (humantime: 2s, 1m). Default: 10m.
    #[arg(long)]
    pub interval: Option<String>,
    /// Watch with blocking queries instead of polling.
    #[arg(long)]
    pub watch: bool,
    /// Render once and exit: 0 only if every resource succeeded.
    #[arg(long)]
    pub onetime: bool,
    /// Print what would change (a diff) and write nothing.
    #[arg(long)]
    pub noop: bool,
    /// Write files but run no check_cmd or reload_cmd.
    #[arg(long = "sync-only")]
    pub sync_only: bool,
    /// Key prefix prepended to every resource's keys.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Keep stage files that are not renamed over the destination (check failures).
    #[arg(long = "keep-stage-file")]
    pub keep_stage_file: bool,
    /// error, warn, info, debug or trace.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// ACL token (default: CONSUL_HTTP_TOKEN).
    #[arg(long = "auth-token")]
    pub auth_token: Option<String>,
    /// http or https: how the consul backend reaches its nodes (default: http, or https when
    /// CONSUL_HTTP_SSL=true).
    #[arg(long)]
    pub scheme: Option<String>,
    /// PEM client certificate for mutual TLS (default: CONSUL_CLIENT_CERT).
    #[arg(long = "client-cert")]
    pub client_cert: Option<PathBuf>,
    /// PEM key of -client-cert (default: CONSUL_CLIENT_KEY).
    #[arg(long = "client-key")]
    pub client_key: Option<PathBuf>,
    /// PEM CA certificates that sign the agent's certificate, instead of the system's
    /// (default: CONSUL_CACERT).
    #[arg(long = "client-ca-keys", alias = "client-cakeys")]
    pub client_ca_keys: Option<PathBuf>,
    /// A YAML or JSON file (or a directory of them) for -backend file (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Quiescence MIN[:MAX] for resources without their own `wait`: render once writes have
    /// paused for MIN, or MAX after the first (default MAX: 4 × MIN).
    #[arg(long)]
    pub wait: Option<String>,
}

/// Turns confd's single-dash long flags into clap's double-dash ones: `-backend` → `--backend`,
/// `-node=x` → `--node=x`. Short flags (`-h`, `-V`), `--x` and values are left alone.
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut after_double_dash = false;
    for (i, arg) in args.into_iter().enumerate() {
        let arg: OsString = arg.into();
        if i == 0 || after_double_dash {
            out.push(arg);
            continue;
        }
        let text = arg.to_string_lossy();
        if text == "--" {
            after_double_dash = true;
            out.push(arg);
            continue;
        }
        let name = text.strip_prefix('-').unwrap_or("");
        let is_long = !text.starts_with("--")
            && name.len() > 1
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if is_long {
            let mut fixed = OsString::from("-");
            fixed.push(&arg);
            out.push(fixed);
        } else {
            out.push(arg);
        }
    }
    out
}

/// Parses the process's arguments (exits with clap's message on an error or `-help`).
pub fn parse() -> Flags {
    Flags::parse_from(normalize_args(std::env::args_os()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["templater"];
        all.extend_from_slice(args);
        Flags::try_parse_from(normalize_args(all)).unwrap()
    }

    #[test]
    fn confd_spelling() {
        let f = flags(&[
            "-backend",
            "consul",
            "-node",
            "127.0.0.1:8500",
            "--node=127.0.0.1:8501",
            "-confdir",
            "./",
            "-interval",
            "2s",
            "-watch",
            "-wait=1s:5s",
            "-client-cakeys",
            "/ca",
            "-sync-only",
        ]);
        assert_eq!(f.backend.as_deref(), Some("consul"));
        assert_eq!(f.nodes, ["127.0.0.1:8500", "127.0.0.1:8501"]);
        assert_eq!(f.confdir, Some(PathBuf::from("./")));
        assert_eq!(f.interval.as_deref(), Some("2s"));
        assert!(f.watch && f.sync_only && !f.onetime);
        assert_eq!(f.wait.as_deref(), Some("1s:5s"));
        assert_eq!(f.client_ca_keys, Some(PathBuf::from("/ca")));
    }

    #[test]
    fn files_repeat_and_unknown_flags_fail() {
        let f = flags(&[
            "-backend", "file", "-file", "a.yaml", "-file", "b.json", "-onetime",
        ]);
        assert_eq!(f.files.len(), 2);
        assert!(f.onetime);
        let bad = Flags::try_parse_from(normalize_args(["templater", "-nope"]));
        assert!(bad.is_err());
    }
}
