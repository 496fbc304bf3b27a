//! The two servers the scenarios drive, as requests and answer checks: Muster's Consul API
//! (`/v1/kv/...`) and etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/watch`). The
//! scenarios only ever ask for "put this key", "get this key", "watch this key", so both
//! servers run through the same loops. etcd over gRPC (`etcd-grpc`, see `grpc.rs`) goes
//! through the same loops too, but its puts and gets are calls on etcd-client, not requests
//! built here; it shares the port, the readiness check and `/health` with the gateway.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use crate::client::{Answer, Body, Endpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Muster,
    /// etcd's v3 JSON gateway, over HTTP/1.1.
    Etcd,
    /// etcd natively over gRPC (etcd-client; needs the `grpc` feature).
    #[value(name = "etcd-grpc")]
    #[serde(rename = "etcd-grpc")]
    EtcdGrpc,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Muster => "muster",
            Kind::Etcd => "etcd",
            Kind::EtcdGrpc => "etcd-grpc",
        }
    }

    pub fn default_addr(self) -> &'static str {
        match self {
            Kind::Muster => "127.0.0.1:8500",
            Kind::Etcd | Kind::EtcdGrpc => "127.0.0.1:2379",
        }
    }

    /// Driven through etcd-client rather than HTTP requests built here.
    pub fn is_grpc(self) -> bool {
        self == Kind::EtcdGrpc
    }
}

/// Read consistency. Muster: default (the leader answers), `?consistent` (read-index),
/// `?stale`. etcd (gateway and gRPC): default and consistent are a linearizable range, stale is
/// `serializable: true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    Default,
    Consistent,
    Stale,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Default => "default",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }
    }
}

/// A server to drive: which kind, where.
pub struct Target {
    pub kind: Kind,
    pub ep: Endpoint,
}

const GRPC_NOT_HTTP: &str = "etcd-grpc is driven through etcd-client, not HTTP requests";

/// A key's path segment for Muster: keys are made of `[A-Za-z0-9/_.-]`, which need no escape.
fn check_key(key: &str) -> Result<()> {
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
    {
        Ok(())
    } else {
        bail!("bench keys use only [A-Za-z0-9/_.-]: {key:?}")
    }
}

/// The JSON body of an etcd put. `value_b64` is encoded once by the caller.
pub fn etcd_put_body(key: &str, value_b64: &str) -> String {
    format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        B64.encode(key.as_bytes()),
        value_b64
    )
}

/// The JSON body of an etcd range for one key.
pub fn etcd_range_body(key: &str, serializable: bool) -> String {
    let key = B64.encode(key.as_bytes());
    if serializable {
        format!(r#"{{"key":"{key}","serializable":true}}"#)
    } else {
        format!(r#"{{"key":"{key}"}}"#)
    }
}

/// A value to write, in the form each server wants it on the wire.
#[derive(Clone)]
pub struct Value {
    raw: Bytes,
    b64: String,
}

impl Value {
    pub fn new(raw: Vec<u8>) -> Value {
        let b64 = B64.encode(&raw);
        Value {
            raw: Bytes::from(raw),
            b64,
        }
    }

    /// The bytes themselves (what Muster and etcd's gRPC API carry).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// `size` printable bytes.
    pub fn filler(size: usize) -> Value {
        Value::new((0..size).map(|i| b'a' + (i % 26) as u8).collect())
    }
}

impl Target {
    pub fn new(kind: Kind, ep: Endpoint) -> Target {
        Target { kind, ep }
    }

    pub fn put(&self, key: &str, value: &Value) -> Result<Request<Body>> {
        check_key(key)?;
        match self.kind {
            Kind::Muster => self.ep.request(
                Method::PUT,
                &format!("/v1/kv/{key}"),
                None,
                value.raw.clone(),
            ),
            Kind::EtcdGrpc => bail!(GRPC_NOT_HTTP),
            Kind::Etcd => self.ep.request(
                Method::POST,
                "/v3/kv/put",
                Some("application/json"),
                Bytes::from(etcd_put_body(key, &value.b64)),
            ),
        }
    }

    pub fn get(&self, key: &str, c: Consistency) -> Result<Request<Body>> {
        check_key(key)?;
        match self.kind {
            Kind::Muster => {
                let q = match c {
                    Consistency::Default => "",
                    Consistency::Consistent => "?consistent",
                    Consistency::Stale => "?stale",
                };
                self.ep
                    .request(Method::GET, &format!("/v1/kv/{key}{q}"), None, Bytes::new())
            }
            Kind::EtcdGrpc => bail!(GRPC_NOT_HTTP),
            Kind::Etcd => self.ep.request(
                Method::POST,
                "/v3/kv/range",
                Some("application/json"),
                Bytes::from(etcd_range_body(key, c == Consistency::Stale)),
            ),
        }
    }

    /// Whether a put was acknowledged: Muster answers `true`, etcd a header with a revision.
    pub fn put_ok(&self, a: &Answer) -> bool {
        a.status == StatusCode::OK
            && match self.kind {
                Kind::Muster => a.body.trim_ascii() == b"true",
                Kind::Etcd | Kind::EtcdGrpc => a.body.starts_with(b"{\"header\""),
            }
    }

    /// Whether a get found the key (the scenarios read only keys they wrote first).
    pub fn get_ok(&self, a: &Answer) -> bool {
        a.status == StatusCode::OK
            && match self.kind {
                Kind::Muster => true,
                Kind::Etcd | Kind::EtcdGrpc => contains(&a.body, b"\"kvs\""),
            }
    }

    /// The request that says the server is up: Muster has a leader, etcd is healthy.
    pub fn ready_path(&self) -> &'static str {
        match self.kind {
            Kind::Muster => "/v1/status/leader",
            Kind::Etcd | Kind::EtcdGrpc => "/health",
        }
    }

    pub fn is_ready(&self, a: &Answer) -> bool {
        if a.status != StatusCode::OK {
            return false;
        }
        match self.kind {
            // `""` until a leader is known.
            Kind::Muster => a.body.len() > 2,
            Kind::Etcd | Kind::EtcdGrpc => contains(&a.body, b"\"true\""),
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The sequence number a watch scenario writes at the front of a value: `seq:<n>;...`.
pub fn encode_seq(seq: u64, size: usize) -> Vec<u8> {
    let mut v = format!("seq:{seq};").into_bytes();
    while v.len() < size {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

pub fn decode_seq(value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(b"seq:")?;
    let end = rest.iter().position(|&b| b == b';')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The values of a Muster `GET /v1/kv/<key>` answer.
pub fn muster_values(body: &[u8]) -> Result<Vec<Vec<u8>>> {
    let pairs: Vec<muster_api::KvPair> =
        serde_json::from_slice(body).context("decoding a KV answer")?;
    Ok(pairs.into_iter().filter_map(|p| p.value).collect())
}

/// The values carried by one message of etcd's watch stream, and whether it is the "created"
/// message that says the watch is in place.
pub fn etcd_watch_message(msg: &serde_json::Value) -> Result<(bool, Vec<Vec<u8>>)> {
    let result = msg
        .get("result")
        .ok_or_else(|| anyhow!("watch message without result: {msg}"))?;
    let created = result.get("created").and_then(|c| c.as_bool()) == Some(true);
    let mut values = Vec::new();
    if let Some(events) = result.get("events").and_then(|e| e.as_array()) {
        for ev in events {
            if let Some(v) = ev.pointer("/kv/value").and_then(|v| v.as_str()) {
                values.push(B64.decode(v).context("watch event value")?);
            }
        }
    }
    Ok((created, values))
}

/// The etcd watch request for one key.
pub fn etcd_watch_body(key: &str) -> String {
    format!(
        r#"{{"create_request":{{"key":"{}"}}}}"#,
        B64.encode(key.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_round_trips_through_a_padded_value() {
        let v = encode_seq(12345, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(decode_seq(&v), Some(12345));
        assert_eq!(decode_seq(&encode_seq(7, 0)), Some(7));
        assert_eq!(decode_seq(b"nope"), None);
    }

    #[test]
    fn etcd_bodies_are_base64_json() -> Result<()> {
        let put: serde_json::Value = serde_json::from_str(&etcd_put_body("k/1", "dg=="))?;
        assert_eq!(put["key"], "ay8x");
        assert_eq!(put["value"], "dg==");
        let range: serde_json::Value = serde_json::from_str(&etcd_range_body("k/1", true))?;
        assert_eq!(range["serializable"], true);
        Ok(())
    }

    #[test]
    fn reads_etcd_watch_messages() -> Result<()> {
        let created: serde_json::Value =
            serde_json::from_str(r#"{"result":{"header":{"revision":"5"},"created":true}}"#)?;
        assert_eq!(etcd_watch_message(&created)?, (true, vec![]));
        let ev: serde_json::Value = serde_json::from_str(
            r#"{"result":{"header":{},"events":[{"kv":{"key":"aw==","value":"c2VxOjk7"}}]}}"#,
        )?;
        let (c, vals) = etcd_watch_message(&ev)?;
        assert!(!c);
        assert_eq!(decode_seq(&vals[0]), Some(9));
        Ok(())
    }

    #[test]
    fn reads_muster_values() -> Result<()> {
        let body = br#"[{"LockIndex":0,"Key":"k","Flags":0,"Value":"c2VxOjM7","CreateIndex":2,"ModifyIndex":2}]"#;
        let vals = muster_values(body)?;
        assert_eq!(decode_seq(&vals[0]), Some(3));
        Ok(())
    }
}
