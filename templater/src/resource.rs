//! Template resources: `conf.d/*.toml`, confd's format.
//!
//! ```toml
//! [template]
//! src = "nginx.conf.hbs"               # under templates/
//! dest = "/etc/nginx/nginx.conf"
//! keys = ["/nginx"]                    # KV prefixes the template reads
//! services = ["web"]                   # services whose instances it reads
//! prefix = "/production"               # prepended to every key (after -prefix)
//! owner = "root"                       # or uid = 0 / gid = 0
//! mode = "0644"
//! check_cmd = "nginx -t -c {{src}}"    # {{src}} (or confd's {{.src}}) is the staged file
//! reload_cmd = "nginx -s reload"
//! wait = "2s:10s"                      # quiescence, min[:max]
//! ```
//!
//! A resource file with an error is reported with its path and field and skipped; the others
//! are loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;

use crate::backend::{join_key, normalize_key, Dep};
use crate::config::Wait;

/// How long `check_cmd` and `reload_cmd` may run unless the resource says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One template resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The `conf.d` file it came from.
    pub path: PathBuf,
    /// Its file name, for logs (`nginx.toml`).
    pub name: String,
    /// The template's name under `templates/`.
    pub src: String,
    pub dest: PathBuf,
    /// KV prefixes as the template sees them (`/nginx`).
    pub keys: Vec<String>,
    /// The full prefix (`-prefix` joined with the resource's), `/` when there is none.
    pub prefix: String,
    pub services: Vec<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub check_cmd: Option<String>,
    pub reload_cmd: Option<String>,
    pub wait: Option<Wait>,
    pub check_timeout: Duration,
    pub reload_timeout: Duration,
}

impl Resource {
    /// What the resource's template depends on (services it reads without declaring them are
    /// found at render time).
    pub fn deps(&self) -> Vec<Dep> {
        let mut deps: Vec<Dep> = self
            .keys
            .iter()
            .map(|k| Dep::Kv(join_key(&self.prefix, k)))
            .collect();
        deps.extend(self.services.iter().cloned().map(Dep::Service));
        deps.sort();
        deps.dedup();
        deps
    }

    /// The key a template sees for a stored key (`/prod/nginx/port` → `/nginx/port`).
    pub fn relative_key<'k>(&self, key: &'k str) -> &'k str {
        if self.prefix == "/" {
            return key;
        }
        match key.strip_prefix(self.prefix.as_str()) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => key,
        }
    }
}

/// Loads every `*.toml` of `confdir/conf.d`, sorted by name. Returns the good resources and one
/// message per bad file (`conf.d/x.toml: template.mode: ...`).
pub fn load_dir(confd: &Path, global_prefix: &str) -> (Vec<Resource>, Vec<String>) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(confd) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(e) => return (Vec::new(), vec![format!("{}: {e}", confd.display())]),
    };
    files.sort();
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| parse(&file, &text, global_prefix))
        {
            Ok(r) => resources.push(r),
            Err(e) => errors.push(e),
        }
    }
    (resources, errors)
}

/// Parses one resource file.
pub fn parse(path: &Path, text: &str, global_prefix: &str) -> Result<Resource, String> {
    let at = |field: &str, msg: String| format!("{}: {field}: {msg}", path.display());
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?;
    let t = match doc.get("template") {
        Some(Value::Table(t)) => t,
        Some(_) => return Err(at("template", "must be a table ([template])".into())),
        None => {
            return Err(at(
                "template",
                "missing (the file needs a [template] table)".into(),
            ))
        }
    };
    let string = |field: &str| -> Result<Option<String>, String> {
        match t.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(at(
                &format!("template.{field}"),
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    };
    let list = |field: &str| -> Result<Vec<String>, String> {
        match t.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(at(
                        &format!("template.{field}"),
                        format!("expected a list of strings, found a {}", other.type_str()),
                    )),
                })
                .collect(),
            Some(other) => Err(at(
                &format!("template.{field}"),
                format!("expected a list of strings, found {}", other.type_str()),
            )),
        }
    };
    let id = |field: &str| -> Result<Option<u32>, String> {
        match t.get(field) {
            None => Ok(None),
            Some(Value::Integer(n)) if *n >= 0 && *n <= u32::MAX as i64 => Ok(Some(*n as u32)),
            Some(other) => Err(at(
                &format!("template.{field}"),
                format!("expected a non-negative integer, found {other}"),
            )),
        }
    };
    let duration = |field: &str| -> Result<Option<Duration>, String> {
        match string(field)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| at(&format!("template.{field}"), format!("{s:?}: {e}"))),
        }
    };

    let known = [
        "src",
        "dest",
        "keys",
        "prefix",
        "owner",
        "uid",
        "gid",
        "mode",
        "check_cmd",
        "reload_cmd",
        "services",
        "wait",
        "check_timeout",
        "reload_timeout",
    ];
    for key in t.keys() {
        if !known.contains(&key.as_str()) {
            return Err(at(
                &format!("template.{key}"),
                format!("unknown field (known: {})", known.join(", ")),
            ));
        }
    }

    let src = string("src")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at("template.src", "missing".into()))?;
    let dest = string("dest")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at("template.dest", "missing".into()))?;
    let dest = PathBuf::from(dest);
    if dest.file_name().is_none() || dest.to_string_lossy().ends_with('/') {
        return Err(at("template.dest", "must name a file".into()));
    }
    let keys: Vec<String> = list("keys")?.iter().map(|k| normalize_key(k)).collect();
    let services = list("services")?;
    if let Some(bad) = services.iter().find(|s| s.trim().is_empty()) {
        return Err(at(
            "template.services",
            format!("{bad:?} is not a service name"),
        ));
    }
    let prefix = join_key(global_prefix, &string("prefix")?.unwrap_or_default());

    let mode = match t.get("mode") {
        None => None,
        Some(Value::String(s)) => Some(parse_mode(s).map_err(|e| at("template.mode", e))?),
        Some(Value::Integer(n)) => {
            Some(parse_mode(&n.to_string()).map_err(|e| at("template.mode", e))?)
        }
        Some(other) => {
            return Err(at(
                "template.mode",
                format!(
                    "expected an octal string like \"0644\", found {}",
                    other.type_str()
                ),
            ))
        }
    };

    let mut uid = id("uid")?;
    let mut gid = id("gid")?;
    if let Some(owner) = string("owner")?.filter(|o| !o.is_empty()) {
        let user = nix::unistd::User::from_name(&owner)
            .map_err(|e| at("template.owner", format!("{owner:?}: {e}")))?
            .ok_or_else(|| at("template.owner", format!("no user {owner:?}")))?;
        if uid.is_some_and(|u| u != user.uid.as_raw()) {
            return Err(at(
                "template.uid",
                format!("disagrees with owner {owner:?} (uid {})", user.uid),
            ));
        }
        uid = Some(user.uid.as_raw());
        gid = gid.or(Some(user.gid.as_raw()));
    }

    let wait = match string("wait")? {
        None => None,
        Some(s) => Some(Wait::parse(&s).map_err(|e| at("template.wait", e))?),
    };
    let non_empty = |s: Option<String>| s.filter(|c| !c.trim().is_empty());

    Ok(Resource {
        path: path.to_path_buf(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        src,
        dest,
        keys,
        prefix,
        services,
        uid,
        gid,
        mode,
        check_cmd: non_empty(string("check_cmd")?),
        reload_cmd: non_empty(string("reload_cmd")?),
        wait,
        check_timeout: duration("check_timeout")?.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        reload_timeout: duration("reload_timeout")?.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
    })
}

/// `"0644"`, `"644"`, `"0o644"` → 0o644.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{s:?} is not an octal mode like \"0644\""))?;
    if mode > 0o7777 {
        return Err(format!("{s:?} is more than 07777"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Resource, String> {
        parse(Path::new("conf.d/x.toml"), text, "")
    }

    #[test]
    fn a_full_resource() {
        let r = p(r#"
[template]
src = "nginx.conf.hbs"
dest = "/etc/nginx/nginx.conf"
keys = ["/nginx/", "app"]
services = ["web"]
prefix = "/prod"
uid = 0
gid = 0
mode = "0640"
check_cmd = "nginx -t -c {{src}}"
reload_cmd = "nginx -s reload"
wait = "2s:10s"
reload_timeout = "5s"
"#)
        .unwrap();
        assert_eq!(r.keys, ["/nginx", "/app"]);
        assert_eq!(r.prefix, "/prod");
        assert_eq!(r.mode, Some(0o640));
        assert_eq!((r.uid, r.gid), (Some(0), Some(0)));
        assert_eq!(r.wait.unwrap().min, Duration::from_secs(2));
        assert_eq!(r.reload_timeout, Duration::from_secs(5));
        assert_eq!(
            r.deps(),
            vec![
                Dep::Kv("/prod/app".into()),
                Dep::Kv("/prod/nginx".into()),
                Dep::Service("web".into())
            ]
        );
        assert_eq!(r.relative_key("/prod/nginx/port"), "/nginx/port");
        assert_eq!(r.name, "x.toml");
    }

    #[test]
    fn the_global_prefix_comes_first() {
        let r = parse(
            Path::new("x.toml"),
            "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nkeys = [\"/k\"]\nprefix = \"app\"\n",
            "/prod",
        )
        .unwrap();
        assert_eq!(r.deps(), vec![Dep::Kv("/prod/app/k".into())]);
        let r = parse(
            Path::new("x.toml"),
            "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nkeys = [\"/k\"]\n",
            "",
        )
        .unwrap();
        assert_eq!(r.prefix, "/");
        assert_eq!(r.relative_key("/k/x"), "/k/x");
    }

    #[test]
    fn owner_resolves_to_uid_and_gid() {
        let r = p("[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nowner = \"root\"\n").unwrap();
        assert_eq!((r.uid, r.gid), (Some(0), Some(0)));
        let e = p("[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nowner = \"no-such-user-x\"\n")
            .unwrap_err();
        assert!(e.contains("template.owner"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        for (text, field) in [
            ("[template]\ndest = \"/tmp/a\"\n", "template.src"),
            ("[template]\nsrc = \"a\"\n", "template.dest"),
            (
                "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nmode = \"0999\"\n",
                "template.mode",
            ),
            (
                "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nuid = -1\n",
                "template.uid",
            ),
            (
                "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nkeys = \"/a\"\n",
                "template.keys",
            ),
            (
                "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nwait = \"soon\"\n",
                "template.wait",
            ),
            (
                "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nsrcc = \"a\"\n",
                "template.srcc",
            ),
            ("[other]\n", "template"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.starts_with("conf.d/x.toml: "), "{e}");
            assert!(e.contains(field), "{field}: {e}");
        }
        assert!(p("[template\n").unwrap_err().starts_with("conf.d/x.toml"));
    }

    #[test]
    fn a_bad_file_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.toml"), "[template]\nsrc = 3\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "ignored").unwrap();
        let (good, bad) = load_dir(dir.path(), "");
        assert_eq!(good.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(
            bad[0].contains("b.toml") && bad[0].contains("template.src"),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert!(parse_mode("rw").is_err());
    }
}
