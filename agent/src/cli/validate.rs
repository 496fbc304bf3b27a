//! `muster validate`: loads config files and directories exactly as `muster agent` would (the
//! same reader, schema, service and check definitions, and whole-config checks) without
//! starting anything, and says whether the agent would accept them, as `consul validate`.

use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Validate config files/directories";

const HELP: &str = "
Usage: muster validate [options] FILE_OR_DIRECTORY...

  Performs a thorough sanity test on configuration files. For each file
  or directory given, the validate command will attempt to parse the contents
  just as the \"muster agent\" command would, and catch any errors.

  This is useful to do a test of the configuration only, without actually
  starting the agent. This performs all of the validation the agent would, so
  this should be given the complete set of configuration files that are going
  to be loaded by the agent. This command cannot operate on partial
  configuration fragments since those won't pass the full agent validation.

  Returns 0 if the configuration is valid, or 1 if there are problems.
";

pub fn spec() -> Spec {
    Spec {
        name: "validate",
        help: HELP,
        flags: vec![
            Flag::string(
                "config-format",
                "string",
                "Config files are in this format irrespective of their extension. Must be \
                 'hcl' or 'json'",
            ),
            Flag::bool(
                "quiet",
                "When given, a successful run will produce no output.",
            ),
        ],
    }
}

/// The `muster agent` arguments that load `paths` (files or directories) in order, read as
/// `format` when given.
pub fn agent_args(paths: &[String], format: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = paths.iter().map(|p| format!("-config-file={p}")).collect();
    if let Some(f) = format {
        args.push(format!("-config-format={f}"));
    }
    args
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let p = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.args.is_empty() {
        ui.error("Must specify at least one config file or directory");
        return 1;
    }
    let format = p.string("config-format").filter(|f| !f.is_empty());
    if let Some(f) = &format {
        if f != "json" && f != "hcl" {
            // Consul's message, missing quote and all.
            ui.error("-config-format must be either 'hcl' or 'json");
            return 1;
        }
    }
    match crate::config::from_agent_args(agent_args(&p.args, format.as_deref())) {
        Ok(config) => {
            if !p.flag("quiet") {
                for warning in &config.warnings {
                    ui.error(warning);
                }
                ui.output("Configuration is valid!");
            }
            0
        }
        Err(e) => {
            ui.error(&format!("Config validation failed: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    async fn validate(a: &[&str]) -> (u8, String, String) {
        let mut c = Captured::default();
        let code = run(args(a), &mut c.ui()).await;
        (code, c.out(), c.err())
    }

    #[tokio::test]
    async fn good_and_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            format!(
                r#"{{"data_dir": {:?}, "node_name": "n1", "server": true}}"#,
                data.display().to_string()
            ),
        )
        .expect("write");
        let good = good.display().to_string();
        assert_eq!(
            validate(&[&good]).await,
            (0, "Configuration is valid!\n".to_string(), String::new())
        );
        assert_eq!(
            validate(&["-quiet", &good]).await,
            (0, String::new(), String::new())
        );

        let bad = dir.path().join("bad.hcl");
        std::fs::write(&bad, "datacenter = \"dc1\"\nports {\n  http = \n}\n").expect("write");
        let bad = bad.display().to_string();
        let (code, out, err) = validate(&[&good, &bad]).await;
        assert_eq!(code, 1);
        assert!(out.is_empty());
        assert!(err.starts_with("Config validation failed: "), "{err}");
        assert!(err.contains("bad.hcl"), "{err}");

        // Without data_dir the agent would refuse to start: so does validate.
        let partial = dir.path().join("partial.json");
        std::fs::write(&partial, r#"{"node_name": "n1"}"#).expect("write");
        let (code, _, err) = validate(&[&partial.display().to_string()]).await;
        assert_eq!(code, 1);
        assert_eq!(err, "Config validation failed: data_dir cannot be empty\n");
    }

    #[tokio::test]
    async fn usage_errors() {
        assert_eq!(
            validate(&[]).await,
            (
                1,
                String::new(),
                "Must specify at least one config file or directory\n".to_string()
            )
        );
        assert_eq!(
            validate(&["-config-format=yaml", "x"]).await,
            (
                1,
                String::new(),
                "-config-format must be either 'hcl' or 'json\n".to_string()
            )
        );
        let (code, _, err) = validate(&["-http-addr=x", "dir"]).await;
        assert_eq!(code, 1);
        assert!(err.starts_with("flag provided but not defined: -http-addr\n"));
    }
}
