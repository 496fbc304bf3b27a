//! Consul's JSON shapes. Field names are Consul's (PascalCase); `Value` is base64 or null.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One KV entry as `GET /v1/kv/<key>` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    /// Raw bytes; `None` (JSON null) for an empty value.
    #[serde(with = "base64_opt", default)]
    pub value: Option<Vec<u8>>,
    pub create_index: u64,
    pub modify_index: u64,
    /// The session holding the lock, only present while locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// `muster kv export` / `kv import` entry: Consul's export format (`key`, `flags`, `value` as
/// base64, lower-case field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvExportEntry {
    pub key: String,
    #[serde(default)]
    pub flags: u64,
    /// base64 of the value ("" for an empty value).
    #[serde(default)]
    pub value: String,
}

/// A gossip member as `/v1/agent/members` and `/v1/agent/self` report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Member {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    /// Serf status: 0 none, 1 alive, 2 leaving, 3 left, 4 failed.
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

impl Member {
    /// The words `consul members` prints for [`Member::status`].
    pub fn status_name(&self) -> &'static str {
        match self.status {
            1 => "alive",
            2 => "leaving",
            3 => "left",
            4 => "failed",
            _ => "none",
        }
    }
}

/// `Config` block of `/v1/agent/self`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSelfConfig {
    pub datacenter: String,
    pub primary_datacenter: String,
    pub node_name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub server: bool,
    pub revision: String,
    /// The Consul version whose API this agent implements.
    pub version: String,
    #[serde(default)]
    pub version_prerelease: String,
    /// Muster's own version (an extra field Consul does not have).
    #[serde(default)]
    pub muster_version: String,
}

/// `/v1/agent/self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AgentSelf {
    pub config: AgentSelfConfig,
    #[serde(default)]
    pub debug_config: serde_json::Value,
    pub member: Member,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub stats: BTreeMap<String, BTreeMap<String, String>>,
}

pub mod base64_opt {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) if !bytes.is_empty() => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from Consul 1.22 `GET /v1/kv/foo`.
    const CONSUL_KV: &str = r#"[{"LockIndex":0,"Key":"foo","Flags":42,"Value":"YmFy","CreateIndex":13,"ModifyIndex":15}]"#;

    #[test]
    fn kv_pair_golden() {
        let v: Vec<KvPair> = serde_json::from_str(CONSUL_KV).expect("parse");
        assert_eq!(v[0].value.as_deref(), Some(&b"bar"[..]));
        assert_eq!(v[0].flags, 42);
        assert_eq!(serde_json::to_string(&v).expect("ser"), CONSUL_KV);
    }

    #[test]
    fn empty_value_is_null() {
        let p = KvPair {
            key: "a/".into(),
            ..Default::default()
        };
        let s = serde_json::to_string(&p).expect("ser");
        assert!(s.contains(r#""Value":null"#), "{s}");
        assert!(!s.contains("Session"));
    }
}
