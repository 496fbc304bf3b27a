//! User events: the wire shape of `/v1/event/*` (Consul's `UserEvent`), the calls that fire and
//! list them, and Consul's `IDToIndex` (an event list's `X-Consul-Index` is derived from the
//! last event's ID, not from Raft).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::{
    decode, http_error, percent_encode, Body, Client, Error, Param, QueryMeta, QueryOptions,
};
use crate::types::base64_opt;

/// A user event as `/v1/event/fire` answers it and `/v1/event/list` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserEvent {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// The opaque payload: base64 in JSON, `null` when empty.
    #[serde(with = "base64_opt", default)]
    pub payload: Option<Vec<u8>>,
    /// Regular expression on node names (empty: every node).
    #[serde(default)]
    pub node_filter: String,
    /// Regular expression on service names (empty: every node).
    #[serde(default)]
    pub service_filter: String,
    /// Regular expression on service tags; only with a service filter.
    #[serde(default)]
    pub tag_filter: String,
    #[serde(default)]
    pub version: i64,
    /// The gossip Lamport time the event was sent at (0 in the answer to a fire).
    #[serde(rename = "LTime", default)]
    pub ltime: u64,
}

/// Consul's `uuidToUint64` / `IDToIndex`: the UUID as a 128-bit number, its two 64-bit halves
/// XORed. `None` when `id` is not a UUID in its 36-character text form.
pub fn id_to_index(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let lower = format!("{}{}{}", &id[0..8], &id[9..13], &id[14..18]);
    let upper = format!("{}{}", &id[19..23], &id[24..36]);
    let low = u64::from_str_radix(&lower, 16).ok()?;
    let high = u64::from_str_radix(&upper, 16).ok()?;
    Some(low ^ high)
}

impl Client {
    /// `PUT /v1/event/fire/:name` with the payload as the body and the filters as `node`,
    /// `service` and `tag`: the event as the agent accepted it (its ID is new).
    pub async fn event_fire(&self, event: &UserEvent) -> Result<UserEvent, Error> {
        let mut params: Vec<Param> = Vec::new();
        for (name, value) in [
            ("node", &event.node_filter),
            ("service", &event.service_filter),
            ("tag", &event.tag_filter),
        ] {
            if !value.is_empty() {
                params.push((name.to_string(), Some(value.clone())));
            }
        }
        let path = format!("/v1/event/fire/{}", percent_encode(&event.name));
        let body = match event.payload.as_deref() {
            Some(p) if !p.is_empty() => Body::Raw(p.to_vec(), "application/octet-stream"),
            _ => Body::Empty,
        };
        let (status, _, bytes) = self.send(Method::PUT, &path, params, body, None).await?;
        if !status.is_success() {
            return Err(http_error(status, &bytes));
        }
        decode(&bytes)
    }

    /// `GET /v1/event/list[?name=]`: the most recent events this agent has seen, oldest first.
    /// Blocking with `opts.index` (an [`id_to_index`] value, compared for equality only).
    pub async fn event_list(
        &self,
        name: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<UserEvent>, QueryMeta), Error> {
        let mut params: Vec<Param> = Vec::new();
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            params.push(("name".to_string(), Some(name.to_string())));
        }
        let (events, meta) = self
            .get_json_with::<Option<Vec<UserEvent>>>("/v1/event/list", &params, opts)
            .await?;
        Ok((events.unwrap_or_default(), meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_to_index_matches_consul() {
        // The first three groups XOR the last two, read as hex.
        assert_eq!(
            id_to_index("9f14eb2e-7d6e-c7b3-52cd-b15f6b6d6f32"),
            Some(0x9f14eb2e7d6ec7b3 ^ 0x52cdb15f6b6d6f32)
        );
        assert_eq!(id_to_index("not-a-uuid"), None);
        assert_eq!(id_to_index("9f14eb2e-7d6e-c7b3-52cd-b15f6b6d6fzz"), None);
    }

    #[test]
    fn wire_shape() {
        let e = UserEvent {
            id: "b54fe110-7af5-cafc-d1fb-afc8ba432b1c".into(),
            name: "deploy".into(),
            payload: Some(b"v1".to_vec()),
            version: 1,
            ltime: 3,
            ..Default::default()
        };
        let v = serde_json::to_value(&e).expect("encode");
        assert_eq!(
            v,
            serde_json::json!({"ID": "b54fe110-7af5-cafc-d1fb-afc8ba432b1c", "Name": "deploy",
                "Payload": "djE=", "NodeFilter": "", "ServiceFilter": "", "TagFilter": "",
                "Version": 1, "LTime": 3})
        );
        let back: UserEvent = serde_json::from_value(v).expect("decode");
        assert_eq!(back, e);
        let none: UserEvent =
            serde_json::from_str(r#"{"ID":"x","Name":"n","Payload":null}"#).expect("decode");
        assert_eq!(none.payload, None);
    }
}
