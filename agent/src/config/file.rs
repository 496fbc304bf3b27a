//! Config sources on disk: `-config-file`/`-config-dir` paths read into named sources (a
//! directory's `*.json`/`*.hcl` files in lexical order, as Consul), and each source parsed
//! (JSON or HCL) into one JSON value. Parse errors name the source, line and column.

use std::fs;
use std::path::Path;

use serde_json::Value;

use super::ConfigError;

/// A config file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Hcl,
}

impl Format {
    /// The format a file's extension says, if it says one.
    fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Format::Json),
            Some("hcl") => Some(Format::Hcl),
            _ => None,
        }
    }
}

/// One config document and where it came from (a path, or a description such as "the -hcl
/// flag"), used in every message about it.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub name: String,
    pub text: String,
    pub format: Format,
}

/// Reads a `-config-file` or `-config-dir` path. Like Consul, both flags take either a file or
/// a directory: a directory yields its `*.json` and `*.hcl` files in lexical order (with
/// `forced` set, every file; subdirectories are not read), a file yields itself. `forced` is
/// `-config-format`, which overrides the extension.
pub(super) fn load_path(
    path: &Path,
    forced: Option<Format>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Source>, ConfigError> {
    let meta = fs::metadata(path).map_err(|e| read_error(path, &e))?;
    if !meta.is_dir() {
        let format =
            forced
                .or_else(|| Format::from_path(path))
                .ok_or_else(|| ConfigError::Read {
                    path: path.display().to_string(),
                    message:
                        "unknown extension; must be .hcl or .json, or -config-format must be set"
                            .to_string(),
                })?;
        return Ok(vec![read_source(path, format)?]);
    }

    let mut entries = fs::read_dir(path)
        .map_err(|e| read_error(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(path, &e))?;
    entries.sort_by_key(|e| e.file_name());

    let mut sources = Vec::new();
    for entry in entries {
        let file = entry.path();
        let meta = match fs::metadata(&file) {
            Ok(m) => m,
            Err(e) => {
                let dangling = fs::symlink_metadata(&file)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                if dangling {
                    // Editors leave dangling lock links (".#a.json"); they hold no config.
                    warnings.push(format!(
                        "skipping {}: a symbolic link to nothing ({e})",
                        file.display()
                    ));
                    continue;
                }
                return Err(read_error(&file, &e));
            }
        };
        if meta.is_dir() {
            continue;
        }
        let Some(format) = forced.or_else(|| Format::from_path(&file)) else {
            warnings.push(format!(
                "skipping file {}, extension must be .hcl or .json, or config format must be set",
                file.display()
            ));
            continue;
        };
        sources.push(read_source(&file, format)?);
    }
    Ok(sources)
}

fn read_source(path: &Path, format: Format) -> Result<Source, ConfigError> {
    let text = fs::read_to_string(path).map_err(|e| read_error(path, &e))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
        format,
    })
}

fn read_error(path: &Path, e: &std::io::Error) -> ConfigError {
    ConfigError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Parses a source into a JSON value (an object unless the document is malformed; the schema
/// check refuses anything else). An empty or blank document is an empty object, as Consul
/// skips empty files.
pub(super) fn parse(source: &Source) -> Result<Value, ConfigError> {
    if source.text.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    match source.format {
        Format::Json => parse_json(source),
        Format::Hcl => parse_hcl(source),
    }
}

fn parse_json(source: &Source) -> Result<Value, ConfigError> {
    serde_json::from_str(&source.text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let what = full.strip_suffix(&suffix).unwrap_or(&full);
        ConfigError::Parse {
            source_name: source.name.clone(),
            message: format!("line {}, column {}: {what}", e.line(), e.column()),
        }
    })
}

/// HCL as Consul writes it: attributes and blocks (a block written twice becomes a list, as in
/// HCL's JSON mapping). Expressions are evaluated without variables or functions, so `-1` and
/// literals work; anything needing a variable or function is refused with the parser's message.
fn parse_hcl(source: &Source) -> Result<Value, ConfigError> {
    let ctx = hcl::eval::Context::new();
    hcl::eval::from_str::<Value>(&source.text, &ctx).map_err(|e| {
        let message = match &e {
            hcl::Error::Parse(p) => format!(
                "line {}, column {}: {}",
                p.location().line(),
                p.location().column(),
                p.message()
            ),
            hcl::Error::Eval(_) => format!(
                "{e} (HCL variables, functions and ${{...}} interpolation are not supported in \
                 config files; write $${{ for a literal ${{)"
            ),
            other => other.to_string(),
        };
        ConfigError::Parse {
            source_name: source.name.clone(),
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src(format: Format, text: &str) -> Source {
        Source {
            name: "x".to_string(),
            text: text.to_string(),
            format,
        }
    }

    #[test]
    fn hcl_blocks_and_negative_numbers() {
        let v = parse(&src(
            Format::Hcl,
            "ports { dns = -1 }\nservice { name = \"a\" }\nservice { name = \"b\" }\n# c\n",
        ))
        .expect("parses");
        assert_eq!(
            v,
            json!({"ports": {"dns": -1}, "service": [{"name": "a"}, {"name": "b"}]})
        );
    }

    #[test]
    fn hcl_parse_error_has_line_and_column() {
        let e = parse(&src(
            Format::Hcl,
            "datacenter = \"a\"\nports {\n  http = \n}\n",
        ))
        .expect_err("bad");
        let msg = e.to_string();
        assert!(
            msg.starts_with("Error parsing x: line 3, column 10:"),
            "{msg}"
        );
    }

    #[test]
    fn hcl_interpolation_is_refused_with_a_hint() {
        let e = parse(&src(Format::Hcl, "node_name = \"${foo}\"")).expect_err("bad");
        assert!(e.to_string().contains("$${"), "{e}");
        let v = parse(&src(Format::Hcl, "node_name = \"a$${b}\"")).expect("escaped");
        assert_eq!(v, json!({"node_name": "a${b}"}));
    }

    #[test]
    fn json_parse_error_has_line_and_column() {
        let e = parse(&src(Format::Json, "{\n  \"a\": 1,\n  \"b\" 2\n}")).expect_err("bad");
        assert_eq!(
            e.to_string(),
            "Error parsing x: line 3, column 7: expected `:`"
        );
    }

    #[test]
    fn blank_documents_are_empty() {
        assert_eq!(parse(&src(Format::Json, " \n")).expect("ok"), json!({}));
        assert_eq!(parse(&src(Format::Hcl, "")).expect("ok"), json!({}));
    }
}
