//! Transactions (`PUT /v1/txn`): wire types with Consul's field names and the client call.

use serde::{Deserialize, Serialize};

use crate::catalog::{AgentService, HealthCheck, Node};
use crate::client::{Body, Client, Error};
use crate::types::KvPair;

/// One operation: exactly one of the fields is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnOp {
    #[serde(rename = "KV", default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvTxnOp>,
    #[serde(rename = "Node", default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeTxnOp>,
    #[serde(rename = "Service", default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTxnOp>,
    #[serde(rename = "Check", default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckTxnOp>,
}

/// A KV operation (`Verb`: set, cas, lock, unlock, get, get-tree, check-index, check-session,
/// check-not-exists, delete, delete-tree, delete-cas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct KvTxnOp {
    pub verb: String,
    pub key: String,
    /// Raw bytes (base64 on the wire).
    #[serde(with = "crate::types::base64_opt")]
    pub value: Option<Vec<u8>>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// A node operation (`Verb`: set, cas, get, delete, delete-cas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeTxnOp {
    pub verb: String,
    pub node: Node,
}

/// A service operation on `Node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceTxnOp {
    pub verb: String,
    pub node: String,
    pub service: AgentService,
}

/// A check operation (the check names its node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckTxnOp {
    pub verb: String,
    pub check: HealthCheck,
}

/// One result: the entry a KV operation touched or read, or a node, service or check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnResult {
    #[serde(rename = "KV", default, skip_serializing_if = "Option::is_none")]
    pub kv: Option<KvPair>,
    #[serde(rename = "Node", default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(rename = "Service", default, skip_serializing_if = "Option::is_none")]
    pub service: Option<AgentService>,
    #[serde(rename = "Check", default, skip_serializing_if = "Option::is_none")]
    pub check: Option<HealthCheck>,
}

/// Why operation `OpIndex` failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// The answer of `PUT /v1/txn`: `Results` when it committed (200), `Errors` when it rolled
/// back (409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnResponse {
    pub results: Option<Vec<TxnResult>>,
    pub errors: Option<Vec<TxnError>>,
}

impl Client {
    /// `PUT /v1/txn`: `Ok` with the results when it committed, `Ok` with `errors` set when it
    /// was rolled back (409); any other failure (413 too many operations, 400) is an `Err`.
    pub async fn txn(&self, ops: &[TxnOp]) -> Result<TxnResponse, Error> {
        let body = serde_json::to_vec(ops).map_err(|e| Error::Decode(e.to_string()))?;
        let (status, _, bytes) = self
            .send(
                reqwest::Method::PUT,
                "/v1/txn",
                Vec::new(),
                Body::Raw(body, "application/json"),
                None,
            )
            .await?;
        if status.is_success() || status.as_u16() == 409 {
            return crate::client::decode(&bytes);
        }
        Err(crate::client::http_error(status, &bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_responses_have_consuls_shapes() {
        let op = TxnOp {
            kv: Some(KvTxnOp {
                verb: "cas".into(),
                key: "a".into(),
                value: Some(b"hi".to_vec()),
                index: 7,
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&op).expect("encode");
        assert_eq!(
            json,
            serde_json::json!({"KV": {"Verb": "cas", "Key": "a", "Value": "aGk=", "Flags": 0,
                                      "Index": 7, "Session": ""}})
        );
        // Consul's answers (from its documentation).
        let ok: TxnResponse = serde_json::from_str(
            r#"{"Results":[{"KV":{"LockIndex":0,"Key":"a","Flags":0,"Value":null,
                "CreateIndex":8,"ModifyIndex":8}}],"Errors":null}"#,
        )
        .expect("results");
        assert_eq!(ok.results.map(|r| r.len()), Some(1));
        let failed: TxnResponse = serde_json::from_str(
            r#"{"Results":null,"Errors":[{"OpIndex":1,"What":"failed to set key \"a\""}]}"#,
        )
        .expect("errors");
        assert_eq!(failed.errors.map(|e| e[0].op_index), Some(1));
    }
}
