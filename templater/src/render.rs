//! The Handlebars registry: every file under `templates/` registered by its path relative to
//! that directory (so one template can include another as a partial), strict mode (a missing
//! variable is an error), no HTML escaping (the output is configuration, not HTML), and the
//! helpers of [`crate::helpers`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::Handlebars;

use crate::helpers::{self, RenderData};

/// The templates of one confdir.
pub struct Templates {
    hb: Handlebars<'static>,
    /// Templates that failed to parse, by name, with the error.
    broken: BTreeMap<String, String>,
    dir: PathBuf,
}

/// What one render gave.
#[derive(Debug)]
pub enum Rendered {
    /// The whole output.
    Done(Vec<u8>),
    /// The template reads dependencies that were not fetched yet (a service it did not declare):
    /// fetch them and render again.
    NeedDeps(Vec<crate::backend::Dep>),
}

impl Templates {
    /// A registry with no templates (add them with [`Templates::add`]).
    pub fn empty() -> Templates {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut hb);
        Templates {
            hb,
            broken: BTreeMap::new(),
            dir: PathBuf::new(),
        }
    }

    /// Loads every file under `dir` (recursively; dotfiles skipped). A template that does not
    /// parse is kept aside with its error: resources using it fail, the others render.
    pub fn load(dir: &Path) -> Templates {
        let mut t = Templates::empty();
        t.dir = dir.to_path_buf();
        let mut files = Vec::new();
        collect(dir, dir, &mut files);
        files.sort();
        for (name, path) in files {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Err(e) = t.add(&name, &text) {
                        t.broken.insert(name, e);
                    }
                }
                Err(e) => {
                    t.broken.insert(name, format!("{}: {e}", path.display()));
                }
            }
        }
        t
    }

    /// Registers one template under `name`.
    pub fn add(&mut self, name: &str, text: &str) -> Result<(), String> {
        self.hb
            .register_template_string(name, text)
            .map_err(|e| format!("template {name}: {e}"))
    }

    /// Templates that did not parse: (name, error).
    pub fn broken(&self) -> impl Iterator<Item = (&String, &String)> {
        self.broken.iter()
    }

    /// Renders template `name` with `data`.
    pub fn render(&self, name: &str, data: Arc<RenderData>) -> Result<Rendered, String> {
        if let Some(e) = self.broken.get(name) {
            return Err(e.clone());
        }
        if !self.hb.has_template(name) {
            return Err(format!(
                "template {name:?} not found in {}",
                self.dir.display()
            ));
        }
        let (result, missing) = helpers::with_data(data, || {
            self.hb
                .render(name, &serde_json::Value::Object(Default::default()))
        });
        if !missing.is_empty() {
            return Ok(Rendered::NeedDeps(missing));
        }
        result
            .map(|s| Rendered::Done(s.into_bytes()))
            .map_err(|e| describe(name, &e))
    }
}

/// A render error with the template's name, line and the helper's own words.
fn describe(name: &str, e: &handlebars::RenderError) -> String {
    let reason = e.reason().to_string();
    let reason = reason
        .strip_prefix("Failed to access variable in strict mode ")
        .map(|v| format!("unknown variable {v} (strict mode: every name must exist)"))
        .unwrap_or(reason);
    let template = e.template_name.as_deref().unwrap_or(name);
    match e.line_no {
        Some(line) => format!("template {template} line {line}: {reason}"),
        None => format!("template {template}: {reason}"),
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let file_name = entry.file_name();
        if file_name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push((rel.to_string_lossy().into_owned(), path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> Arc<RenderData> {
        Arc::new(RenderData {
            kv: Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        })
    }

    fn done(r: Result<Rendered, String>) -> String {
        match r {
            Ok(Rendered::Done(b)) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn renders_without_escaping() {
        let mut t = Templates::empty();
        t.add(
            "a",
            "x={{getv \"/a\"}} {{#each (gets \"/u/*\")}}{{this.Value}};{{/each}}",
        )
        .unwrap();
        let out = done(t.render("a", data(&[("/a", "<&>"), ("/u/1", "h1"), ("/u/2", "h2")])));
        assert_eq!(out, "x=<&> h1;h2;");
    }

    #[test]
    fn a_missing_key_is_an_error_naming_template_and_key() {
        let mut t = Templates::empty();
        t.add("nginx.conf", "line one\nlisten {{getv \"/nginx/port\"}};\n")
            .unwrap();
        let err = t.render("nginx.conf", data(&[])).unwrap_err();
        assert!(err.contains("nginx.conf"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("/nginx/port"), "{err}");
    }

    #[test]
    fn strict_mode_rejects_unknown_variables() {
        let mut t = Templates::empty();
        t.add("s", "{{nope}}").unwrap();
        let err = t.render("s", data(&[])).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn partials_templates_by_path_and_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inc")).unwrap();
        std::fs::write(dir.path().join("inc/head.hbs"), "head {{getv \"/a\"}}").unwrap();
        std::fs::write(dir.path().join("main.hbs"), "{{> inc/head.hbs}}|main").unwrap();
        std::fs::write(dir.path().join("bad.hbs"), "{{#each}}").unwrap();
        let t = Templates::load(dir.path());
        assert_eq!(
            done(t.render("main.hbs", data(&[("/a", "1")]))),
            "head 1|main"
        );
        let err = t.render("bad.hbs", data(&[])).unwrap_err();
        assert!(err.contains("bad.hbs"), "{err}");
        assert!(t
            .render("none.hbs", data(&[]))
            .unwrap_err()
            .contains("not found"));
    }

    #[test]
    fn undeclared_services_are_asked_for() {
        let mut t = Templates::empty();
        t.add("s", "{{#each (service \"web\")}}{{Address}}{{/each}}")
            .unwrap();
        match t.render("s", data(&[])).unwrap() {
            Rendered::NeedDeps(d) => {
                assert_eq!(d, vec![crate::backend::Dep::Service("web".into())])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ten_thousand_keys_render() {
        let mut t = Templates::empty();
        t.add(
            "big",
            "{{#each (gets \"/big/*\")}}server {{this.Value}}; # {{base this.Key}}\n{{/each}}",
        )
        .unwrap();
        let pairs: Vec<(String, String)> = (0..10_000)
            .map(|i| {
                (
                    format!("/big/k{i:05}"),
                    format!("10.0.{}.{}:80", i / 256, i % 256),
                )
            })
            .collect();
        let d = Arc::new(RenderData {
            kv: Arc::new(pairs.into_iter().collect()),
            ..Default::default()
        });
        let out = done(t.render("big", d));
        assert_eq!(out.lines().count(), 10_000);
        assert!(
            out.starts_with("server 10.0.0.0:80; # k00000\n"),
            "{}",
            &out[..40]
        );
        // How fast: `muster-bench templater` (BENCHMARKS.md), never a timed assertion here.
    }
}
