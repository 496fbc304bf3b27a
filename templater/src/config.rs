//! Settings: flags, then the `-config-file` (TOML, the flags' names with `-` or `_`; confd's
//! `client_cakeys` for `-client-ca-keys`), then the environment (`CONSUL_HTTP_ADDR`,
//! `CONSUL_HTTP_TOKEN`, and for TLS Consul's `CONSUL_HTTP_SSL`, `CONSUL_CACERT`,
//! `CONSUL_CAPATH`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`,
//! `CONSUL_HTTP_SSL_VERIFY`, as confd's consul backend reads them), then defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_api::{ClientConfig, TlsConfig};

use crate::cli::Flags;

/// Where conf.d/ and templates/ are unless told.
pub const DEFAULT_CONFDIR: &str = "/etc/templater";
/// The config file read when it exists and no `-config-file` is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/templater/templater.toml";
/// confd's default polling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

/// Quiescence: render once changes have paused for `min`, and at the latest `max` after the
/// first change of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// `"2s"` (max 4 × min) or `"2s:10s"`.
    pub fn parse(s: &str) -> Result<Wait, String> {
        let (min, max) = match s.split_once(':') {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (s.trim(), None),
        };
        let min = humantime::parse_duration(min).map_err(|e| format!("{s:?}: {e}"))?;
        let max = match max {
            Some(m) => humantime::parse_duration(m).map_err(|e| format!("{s:?}: {e}"))?,
            None => min * 4,
        };
        if max < min {
            return Err(format!("{s:?}: the maximum is shorter than the minimum"));
        }
        Ok(Wait { min, max })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Consul,
    File,
    Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Onetime,
    Interval,
    Watch,
}

/// Everything the daemon needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub backend: BackendKind,
    pub nodes: Vec<String>,
    pub confdir: PathBuf,
    pub interval: Duration,
    pub mode: Mode,
    pub noop: bool,
    pub sync_only: bool,
    pub keep_stage_file: bool,
    pub prefix: String,
    pub log_level: String,
    pub auth_token: Option<String>,
    /// `-scheme https` (or `CONSUL_HTTP_SSL=true`): reach the consul backend's nodes over TLS.
    pub https: bool,
    /// CA, client certificate and key (`-client-ca-keys`, `-client-cert`, `-client-key`) and
    /// the rest of Consul's TLS client settings from the environment.
    pub tls: TlsConfig,
    pub files: Vec<PathBuf>,
    pub wait: Option<Wait>,
}

impl Settings {
    pub fn conf_d(&self) -> PathBuf {
        self.confdir.join("conf.d")
    }

    pub fn templates_dir(&self) -> PathBuf {
        self.confdir.join("templates")
    }

    /// Resolves flags, config file and environment (`lookup` reads a variable).
    pub fn resolve(
        flags: &Flags,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, String> {
        let file = match &flags.config_file {
            Some(path) => Some(read_config_file(path)?),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                Some(read_config_file(Path::new(DEFAULT_CONFIG_FILE))?)
            }
            None => None,
        };
        let file = file.unwrap_or_default();
        let env = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let backend = flags
            .backend
            .clone()
            .or(file.string("backend")?)
            .unwrap_or_else(|| "consul".into());
        let backend = match backend.as_str() {
            "consul" | "muster" => BackendKind::Consul,
            "file" => BackendKind::File,
            "env" => BackendKind::Env,
            other => return Err(format!("-backend {other:?}: one of consul, file, env")),
        };

        let mut nodes = flags.nodes.clone();
        if nodes.is_empty() {
            nodes = file.strings("nodes")?;
        }
        if nodes.is_empty() {
            nodes = file.string("node")?.into_iter().collect();
        }
        if nodes.is_empty() {
            nodes = vec![env("CONSUL_HTTP_ADDR")
                .unwrap_or_else(|| muster_api::client::DEFAULT_ADDRESS.to_string())];
        }

        // Consul's client variables (CONSUL_HTTP_SSL, CONSUL_CACERT, ...) are the defaults the
        // flags and the config file override, as with confd's consul backend.
        let env_client = ClientConfig::from_lookup(&lookup).map_err(|e| e.to_string())?;
        let https = match flags.scheme.clone().or(file.string("scheme")?) {
            None => env_client.https,
            Some(scheme) => match scheme.as_str() {
                "http" => env_client.https,
                "https" => true,
                other => return Err(format!("-scheme {other:?}: http or https")),
            },
        };
        let mut tls = env_client.tls;
        let tls_file = |flag: &Option<PathBuf>, keys: &[&str]| -> Result<Option<PathBuf>, String> {
            if let Some(path) = flag.clone().filter(|p| !p.as_os_str().is_empty()) {
                return Ok(Some(path));
            }
            for key in keys {
                if let Some(path) = file.string(key)?.filter(|p| !p.is_empty()) {
                    return Ok(Some(PathBuf::from(path)));
                }
            }
            Ok(None)
        };
        if let Some(ca) = tls_file(&flags.client_ca_keys, &["client_cakeys", "client_ca_keys"])? {
            tls.ca_file = Some(ca);
        }
        if let Some(cert) = tls_file(&flags.client_cert, &["client_cert"])? {
            tls.client_cert = Some(cert);
        }
        if let Some(key) = tls_file(&flags.client_key, &["client_key"])? {
            tls.client_key = Some(key);
        }

        let confdir = flags
            .confdir
            .clone()
            .or(file.string("confdir")?.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFDIR));

        let interval = match flags.interval.clone() {
            Some(s) => parse_interval(&s)?,
            None => match file.get("interval") {
                None => DEFAULT_INTERVAL,
                Some(toml::Value::Integer(n)) if *n > 0 => Duration::from_secs(*n as u64),
                Some(toml::Value::String(s)) => parse_interval(s)?,
                Some(other) => {
                    return Err(format!("config file: interval: {other} is not a duration"))
                }
            },
        };

        let flag = |set: bool, key: &str| -> Result<bool, String> {
            Ok(set || file.bool(key)?.unwrap_or(false))
        };
        let watch = flag(flags.watch, "watch")?;
        let onetime = flag(flags.onetime, "onetime")?;
        let mode = if onetime {
            Mode::Onetime
        } else if watch {
            Mode::Watch
        } else {
            Mode::Interval
        };

        let wait = match flags.wait.clone().or(file.string("wait")?) {
            Some(s) => Some(Wait::parse(&s).map_err(|e| format!("-wait {e}"))?),
            None => None,
        };

        let mut files = flags.files.clone();
        if files.is_empty() {
            files = file
                .strings("file")?
                .into_iter()
                .map(PathBuf::from)
                .collect();
        }
        if backend == BackendKind::File && files.is_empty() {
            return Err("-backend file needs at least one -file PATH".into());
        }

        Ok(Settings {
            backend,
            nodes,
            confdir,
            interval,
            mode,
            noop: flag(flags.noop, "noop")?,
            sync_only: flag(flags.sync_only, "sync_only")?,
            keep_stage_file: flag(flags.keep_stage_file, "keep_stage_file")?,
            prefix: flags
                .prefix
                .clone()
                .or(file.string("prefix")?)
                .unwrap_or_default(),
            log_level: flags
                .log_level
                .clone()
                .or(file.string("log_level")?)
                .unwrap_or_else(|| "info".into()),
            auth_token: flags
                .auth_token
                .clone()
                .or(file.string("auth_token")?)
                .or_else(|| env("CONSUL_HTTP_TOKEN")),
            https,
            tls,
            files,
            wait,
        })
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    // confd's interval is a number of seconds; humantime adds units.
    let d = match s.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("-interval {s:?}: {e}"))?,
    };
    if d.is_zero() {
        return Err(format!("-interval {s:?}: must be more than zero"));
    }
    Ok(d)
}

/// The config file's keys, normalised (`log-level` and `log_level` are one key).
#[derive(Debug, Default)]
struct ConfigFile {
    path: String,
    table: toml::Table,
}

fn read_config_file(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?;
    let table = raw
        .into_iter()
        .map(|(k, v)| (k.to_lowercase().replace('-', "_"), v))
        .collect();
    Ok(ConfigFile {
        path: path.display().to_string(),
        table,
    })
}

impl ConfigFile {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.table.get(key)
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!(
                "{}: {key}: expected a string, found {other}",
                self.path
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "{}: {key}: expected strings, found {other}",
                        self.path
                    )),
                })
                .collect(),
            Some(other) => Err(format!(
                "{}: {key}: expected a list, found {other}",
                self.path
            )),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(format!(
                "{}: {key}: expected true or false, found {other}",
                self.path
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["templater"];
        all.extend_from_slice(args);
        Flags::try_parse_from(crate::cli::normalize_args(all)).unwrap()
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_and_environment() {
        let s = Settings::resolve(&flags(&[]), none).unwrap();
        assert_eq!(s.backend, BackendKind::Consul);
        assert_eq!(s.nodes, ["127.0.0.1:8500"]);
        assert_eq!(s.mode, Mode::Interval);
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        let s = Settings::resolve(&flags(&["-watch"]), |n| match n {
            "CONSUL_HTTP_ADDR" => Some("10.1.1.1:8500".into()),
            "CONSUL_HTTP_TOKEN" => Some("tok".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.nodes, ["10.1.1.1:8500"]);
        assert_eq!(s.auth_token.as_deref(), Some("tok"));
        assert_eq!(s.mode, Mode::Watch);
    }

    #[test]
    fn the_config_file_fills_what_flags_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "backend = \"consul\"\nnodes = [\"127.0.0.1:9000\"]\nconfdir = \"/x\"\ninterval = 2\nlog-level = \"debug\"\nwatch = true\nprefix = \"/p\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = Settings::resolve(&flags(&["-config-file", p, "-confdir", "/y"]), none).unwrap();
        assert_eq!(s.nodes, ["127.0.0.1:9000"]);
        assert_eq!(s.confdir, PathBuf::from("/y"));
        assert_eq!(s.interval, Duration::from_secs(2));
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.mode, Mode::Watch);
        assert_eq!(s.prefix, "/p");
    }

    #[test]
    fn bad_settings_are_errors() {
        for args in [
            vec!["-backend", "etcd"],
            vec!["-interval", "soon"],
            vec!["-scheme", "ftp"],
            vec!["-backend", "file"],
            vec!["-wait", "5s:1s"],
        ] {
            assert!(Settings::resolve(&flags(&args), none).is_err(), "{args:?}");
        }
    }

    #[test]
    fn wait_and_intervals() {
        assert_eq!(
            Wait::parse("1s").unwrap(),
            Wait {
                min: Duration::from_secs(1),
                max: Duration::from_secs(4)
            }
        );
        assert_eq!(Wait::parse("100ms:2s").unwrap().max, Duration::from_secs(2));
        assert_eq!(parse_interval("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_interval("0s").is_err());
    }

    #[test]
    fn tls_from_flags_config_file_and_environment() {
        let s = Settings::resolve(&flags(&[]), none).unwrap();
        assert!(!s.https);
        assert_eq!(s.tls, TlsConfig::default());

        let s = Settings::resolve(
            &flags(&[
                "-scheme",
                "https",
                "-client-ca-keys",
                "/ca.pem",
                "-client-cert=/c.pem",
                "-client-key",
                "/c.key",
            ]),
            none,
        )
        .unwrap();
        assert!(s.https);
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.tls.client_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(s.tls.client_key, Some(PathBuf::from("/c.key")));

        // confd's toml keys.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "scheme = \"https\"\nclient_cakeys = \"/f/ca.pem\"\nclient_cert = \"/f/c.pem\"\nclient_key = \"/f/c.key\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s =
            Settings::resolve(&flags(&["-config-file", p, "-client-key", "/x.key"]), none).unwrap();
        assert!(s.https);
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/f/ca.pem")));
        assert_eq!(s.tls.client_cert, Some(PathBuf::from("/f/c.pem")));
        assert_eq!(s.tls.client_key, Some(PathBuf::from("/x.key")));

        // Consul's variables are the defaults.
        let env = |n: &str| match n {
            "CONSUL_HTTP_SSL" => Some("true".to_string()),
            "CONSUL_CACERT" => Some("/env/ca.pem".to_string()),
            "CONSUL_TLS_SERVER_NAME" => Some("agent.example".to_string()),
            "CONSUL_HTTP_SSL_VERIFY" => Some("false".to_string()),
            _ => None,
        };
        let s = Settings::resolve(&flags(&[]), env).unwrap();
        assert!(s.https);
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/env/ca.pem")));
        assert_eq!(s.tls.server_name.as_deref(), Some("agent.example"));
        assert!(s.tls.insecure_skip_verify);
        let s = Settings::resolve(&flags(&["-client-ca-keys", "/ca.pem"]), env).unwrap();
        assert_eq!(s.tls.ca_file, Some(PathBuf::from("/ca.pem")));

        let e = Settings::resolve(&flags(&[]), |n| {
            (n == "CONSUL_HTTP_SSL").then(|| "sure".to_string())
        })
        .unwrap_err();
        assert!(e.contains("CONSUL_HTTP_SSL"), "{e}");
        let e = Settings::resolve(&flags(&["-scheme", "ftp"]), none).unwrap_err();
        assert_eq!(e, "-scheme \"ftp\": http or https");
    }
}
