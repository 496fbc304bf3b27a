//! `muster info`: the agent's `Stats` from `/v1/agent/self`, printed as Consul does (sections
//! sorted, each `section:` followed by tab-indented `key = value` lines sorted by key).

use serde_json::Value;

use super::http_flags;
use super::{Spec, Ui};

pub const SYNOPSIS: &str = "Provides debugging information for operators.";

pub fn spec() -> Spec {
    Spec {
        name: "info",
        help: HELP,
        flags: http_flags::all(),
    }
}

const HELP: &str = "
Usage: muster info [options]

  Provides debugging information for operators.
";

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let parsed = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some((client, _)) = super::http_flags::connect(&parsed, ui) else {
        return 1;
    };
    // Read as plain JSON rather than `AgentSelf`: `info` needs only `Stats`, and this keeps it
    // working against any agent whatever else its answer holds.
    let this = match client
        .get_json::<Value>("/v1/agent/self", &Default::default())
        .await
    {
        Ok((v, _)) => v,
        Err(e) => {
            ui.error(&format!("Error querying agent: {e}"));
            return 1;
        }
    };
    match format_stats(&this) {
        Ok(text) => {
            if !text.is_empty() {
                ui.output(&text);
            }
            0
        }
        Err(e) => {
            ui.error(&e);
            1
        }
    }
}

/// The `info` text for an `/v1/agent/self` answer (without the final newline). String values
/// print bare, anything else as JSON.
pub fn format_stats(agent_self: &Value) -> Result<String, String> {
    let Some(stats) = agent_self.get("Stats") else {
        return Err(format!(
            "Agent response did not contain 'Stats' key: {agent_self}"
        ));
    };
    let Some(sections) = stats.as_object() else {
        return Err(format!("Got invalid stats: {stats}"));
    };
    let mut names: Vec<&String> = sections.keys().collect();
    names.sort();
    let mut lines = Vec::new();
    for name in names {
        lines.push(format!("{name}:"));
        let Some(values) = sections[name].as_object() else {
            return Err(format!("Got invalid subkey in stats: {}", sections[name]));
        };
        let mut keys: Vec<&String> = values.keys().collect();
        keys.sort();
        for key in keys {
            let value = match &values[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            lines.push(format!("\t{key} = {value}"));
        }
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consul_layout() {
        let v: Value = serde_json::from_str(
            r#"{"Config":{},"Stats":{
                "runtime":{"goroutines":"7","arch":"amd64"},
                "agent":{"checks":"0","services":"1"},
                "raft":{"state":"Leader","applied_index":"12"},
                "consul":{"server":"true","leader":"true"},
                "build":{"version":"1.22.0","revision":"","prerelease":""}}}"#,
        )
        .expect("json");
        assert_eq!(
            format_stats(&v).expect("format"),
            "agent:\n\tchecks = 0\n\tservices = 1\n\
             build:\n\tprerelease = \n\trevision = \n\tversion = 1.22.0\n\
             consul:\n\tleader = true\n\tserver = true\n\
             raft:\n\tapplied_index = 12\n\tstate = Leader\n\
             runtime:\n\tarch = amd64\n\tgoroutines = 7"
        );
    }

    #[test]
    fn missing_or_odd_stats() {
        let e = format_stats(&serde_json::json!({"Config": {}})).expect_err("no stats");
        assert!(e.starts_with("Agent response did not contain 'Stats' key: "));
        let e = format_stats(&serde_json::json!({"Stats": {"agent": 3}})).expect_err("odd");
        assert!(e.starts_with("Got invalid subkey in stats: "));
        assert_eq!(
            format_stats(&serde_json::json!({"Stats": {"a": {"n": 1}}})).expect("ok"),
            "a:\n\tn = 1"
        );
    }
}
