//! Go-style flag spelling for clap: Consul's CLI takes single-dash long flags (`-dev`,
//! `-config-dir=DIR`), stops parsing flags at the first positional argument, and treats a lone
//! `-` as a value (stdin). This module rewrites an argument list into what clap expects.

use clap::Command;

/// Rewrites Go-style arguments for `cmd` (the clap command that will parse them, without the
/// program name): `-name` and `-name=value` become `--name`/`--name=value`; the first positional
/// argument (one that is not the value of a preceding flag) ends flag parsing, as Go's `flag`
/// package does, so a `--` is inserted before it. A single-character flag such as `-h` or `-n`
/// stays short when the command defines that short flag.
pub fn normalize(cmd: &Command, args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            out.push(arg);
            out.extend(iter);
            return out;
        }
        let is_flag = arg.len() > 1 && arg.starts_with('-') && !is_number(&arg);
        if !is_flag {
            out.push("--".to_string());
            out.push(arg);
            out.extend(iter);
            return out;
        }
        let body = arg.trim_start_matches('-');
        let (name, inline_value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let short = name.chars().count() == 1
            && cmd
                .get_arguments()
                .any(|a| a.get_short().map(|c| c.to_string()) == Some(name.to_string()));
        let spelled = if short {
            format!("-{body}")
        } else {
            format!("--{body}")
        };
        out.push(spelled);
        if inline_value.is_none() && takes_value(cmd, name, short) {
            // The next argument is this flag's value even if it starts with '-' (e.g. `-1`).
            if let Some(value) = iter.next() {
                if value.starts_with('-') && value.len() > 1 {
                    // Keep clap from reading it as a flag.
                    let last = out.pop().unwrap_or_default();
                    out.push(format!("{last}={value}"));
                } else {
                    out.push(value);
                }
            }
        }
    }
    out
}

fn is_number(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

fn takes_value(cmd: &Command, name: &str, short: bool) -> bool {
    cmd.get_arguments()
        .find(|a| {
            if short {
                a.get_short().map(|c| c.to_string()).as_deref() == Some(name)
            } else {
                a.get_long() == Some(name)
                    || a.get_all_aliases()
                        .map(|al| al.contains(&name))
                        .unwrap_or(false)
            }
        })
        .map(|a| a.get_action().takes_values())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cmd() -> Command {
        Command::new("t")
            .arg(Arg::new("dev").long("dev").action(ArgAction::SetTrue))
            .arg(
                Arg::new("config-dir")
                    .long("config-dir")
                    .action(ArgAction::Append),
            )
            .arg(Arg::new("http-port").long("http-port"))
            .arg(Arg::new("n").short('n'))
            .arg(Arg::new("rest").num_args(0..).trailing_var_arg(true))
    }

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(&cmd(), args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn single_dash_long_flags() {
        assert_eq!(
            norm(&["-dev", "-config-dir", "a", "-config-dir=b"]),
            ["--dev", "--config-dir", "a", "--config-dir=b"]
        );
        assert_eq!(norm(&["--dev"]), ["--dev"]);
    }

    #[test]
    fn negative_value_and_stdin() {
        assert_eq!(norm(&["-http-port", "-1"]), ["--http-port=-1"]);
        assert_eq!(norm(&["key", "-"]), ["--", "key", "-"]);
    }

    #[test]
    fn first_positional_ends_flags() {
        assert_eq!(
            norm(&["-n", "3", "prefix", "-dev"]),
            ["-n", "3", "--", "prefix", "-dev"]
        );
    }

    #[test]
    fn parses_with_clap() {
        let m = cmd()
            .try_get_matches_from(std::iter::once("t".to_string()).chain(norm(&[
                "-http-port",
                "-1",
                "-dev",
                "x",
            ])))
            .expect("parses");
        assert_eq!(
            m.get_one::<String>("http-port").map(String::as_str),
            Some("-1")
        );
        assert!(m.get_flag("dev"));
    }
}
