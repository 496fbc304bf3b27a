//! `muster version`: Muster's version and the Consul API version it implements, shaped like
//! `consul version` (`-format=pretty|json`). Needs no agent.

use super::{Flag, Spec, Ui};

pub const SYNOPSIS: &str = "Prints the Muster version";

pub fn spec() -> Spec {
    Spec {
        name: "version",
        help: HELP,
        flags: vec![Flag::string(
            "format",
            "string",
            "Output format {pretty|json}",
        )],
    }
}

const HELP: &str = "
Usage: muster version [options]
";

/// What `version` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionInfo {
    /// Muster's own version.
    pub version: String,
    /// The Consul version whose HTTP API Muster implements (`Config.Version` of
    /// `/v1/agent/self`).
    #[serde(rename = "ConsulAPIVersion")]
    pub consul_api_version: String,
}

impl VersionInfo {
    pub fn current() -> Self {
        VersionInfo {
            version: crate::MUSTER_VERSION.to_string(),
            consul_api_version: crate::CONSUL_API_VERSION.to_string(),
        }
    }

    /// `consul version`'s pretty layout: one fact per line, each line ending in a newline.
    pub fn pretty(&self) -> String {
        format!(
            "Muster v{}\nConsul API v{}\n",
            self.version, self.consul_api_version
        )
    }

    /// `-format=json`: indented by three spaces, as Consul's.
    pub fn json(&self) -> String {
        let mut buf = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
        match serde::Serialize::serialize(self, &mut ser) {
            Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
            Err(e) => format!("Failed to marshal version info: {e}"),
        }
    }
}

pub async fn run(args: Vec<String>, ui: &mut Ui<'_>) -> u8 {
    let parsed = match spec().parse(args, ui) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let info = VersionInfo::current();
    match parsed.string("format").as_deref().unwrap_or("pretty") {
        "pretty" => ui.output(&info.pretty()),
        "json" => ui.output(&info.json()),
        other => {
            ui.error(&format!("Unknown format: {other}"));
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::super::testing::{args, Captured};
    use super::*;

    fn info() -> VersionInfo {
        VersionInfo {
            version: "0.1.0".into(),
            consul_api_version: "1.22.0".into(),
        }
    }

    #[test]
    fn formats() {
        assert_eq!(info().pretty(), "Muster v0.1.0\nConsul API v1.22.0\n");
        assert_eq!(
            info().json(),
            "{\n   \"Version\": \"0.1.0\",\n   \"ConsulAPIVersion\": \"1.22.0\"\n}"
        );
    }

    #[tokio::test]
    async fn runs() {
        let mut c = Captured::default();
        assert_eq!(run(Vec::new(), &mut c.ui()).await, 0);
        assert_eq!(c.out(), format!("{}\n", VersionInfo::current().pretty()));
        let mut c = Captured::default();
        assert_eq!(run(args(&["-format=yaml"]), &mut c.ui()).await, 1);
        assert_eq!(c.err(), "Unknown format: yaml\n");
    }
}
